"""Ethereum consensus objects: SSZ hash_tree_root, domains, signing roots, network binding.

Imports only go down: this package uses ``signer.errors`` and ``signer.config`` (for
``NetworkConfig``) and nothing above.
"""

from signer.eth2.containers import (
    AggregateAndProof,
    AggregateAndProofElectra,
    Attestation,
    AttestationData,
    AttestationElectra,
    BeaconBlockHeader,
    Checkpoint,
    ContributionAndProof,
    DepositData,
    DepositMessage,
    Fork,
    ForkData,
    SigningData,
    SyncAggregatorSelectionData,
    SyncCommitteeContribution,
    ValidatorRegistration,
    VoluntaryExit,
    block_root,
    epoch_root,
    slot_root,
)
from signer.eth2.networks import BUILTIN_NETWORKS, Network, network_from_config
from signer.eth2.signing import (
    DomainType,
    compute_domain,
    compute_fork_data_root,
    compute_signing_root,
)

__all__ = [
    "BUILTIN_NETWORKS",
    "AggregateAndProof",
    "AggregateAndProofElectra",
    "Attestation",
    "AttestationData",
    "AttestationElectra",
    "BeaconBlockHeader",
    "Checkpoint",
    "ContributionAndProof",
    "DepositData",
    "DepositMessage",
    "DomainType",
    "Fork",
    "ForkData",
    "Network",
    "SigningData",
    "SyncAggregatorSelectionData",
    "SyncCommitteeContribution",
    "ValidatorRegistration",
    "VoluntaryExit",
    "block_root",
    "compute_domain",
    "compute_fork_data_root",
    "compute_signing_root",
    "epoch_root",
    "network_from_config",
    "slot_root",
]
