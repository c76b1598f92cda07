"""The Web3Signer remote-signing API's messages as typed data, and what the core signs for each.

Pure: no HTTP and no JSON here (the JSON bodies are parsed at the edge, ``signer.api.rest_models``).
``prepare`` turns one typed request into a ``Prepared``: the domain computed from OUR network config
(never from the client's ``fork_info``), the object root (hash_tree_root of the typed container), the
signing root, and for blocks and attestations the typed data slashing protection records
(BeaconBlockHeader / AttestationData; a full phase0/altair block gives its header, with
body_root = hash_tree_root(body)).

Checks, each a named refusal:

* ``fork_info`` (every type but VALIDATOR_REGISTRATION and DEPOSIT): its genesis_validators_root must
  be the network's, both of its fork versions must be versions of the network, and the version in
  force at the message's epoch must be one of them (``WrongNetwork``). ``fork.epoch`` is not judged:
  Lodestar sets it to the message's epoch, Lighthouse and Teku to the fork's activation epoch, a
  client signing from a later state to its fork epoch with ``previous_version`` in force. For
  VOLUNTARY_EXIT only the network and versions are checked: since EIP-7044 (deneb) an exit is signed
  with capella's version whatever fork the client's state is in.
* DEPOSIT: its ``genesis_fork_version`` must be the network's (``WrongNetwork``).
* Where the network names the fork in force at the message's epoch, the message must fit it
  (``WrongNetwork``): a BLOCK_V2 ``version`` (a later fork's name, say GLOAS, is accepted only where
  the network's fork at that epoch is an unnamed one, an operator's extension of a built-in
  schedule), BLOCK only in phase0, and aggregates electra-shaped (committee_bits) from electra on,
  phase0-shaped before, with a wrapped AGGREGATE_AND_PROOF_V2's ``version`` naming that fork.
* A ``signingRoot`` sent by the client must equal ours (``SigningRootMismatch``).

Message epochs (consensus-specs ``get_domain`` calls): ATTESTATION its target epoch; blocks,
AGGREGATION_SLOT, aggregates (the aggregate's data slot), sync committee messages, selection proofs
and contributions the epoch of their slot (``Network.epoch_at_slot``, so the network's
slots_per_epoch); RANDAO_REVEAL and VOLUNTARY_EXIT their epoch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from signer.config import FORK_NAMES
from signer.errors import MalformedRequest, SigningRootMismatch, WrongNetwork
from signer.eth2.containers import (
    AggregateAndProof,
    AggregateAndProofElectra,
    AttestationData,
    BeaconBlock,
    BeaconBlockHeader,
    ContributionAndProof,
    DepositMessage,
    Fork,
    SyncAggregatorSelectionData,
    ValidatorRegistration,
    VoluntaryExit,
    block_root,
    epoch_root,
    slot_root,
)
from signer.eth2.networks import Network
from signer.eth2.signing import DomainType, compute_signing_root
from signer.eth2.ssz import check_bytes, check_uint64


class SignType(enum.StrEnum):
    """The ``type`` of a Web3Signer sign request."""

    ATTESTATION = "ATTESTATION"
    BLOCK = "BLOCK"
    """Deprecated: a full phase0 block."""
    BLOCK_V2 = "BLOCK_V2"
    AGGREGATION_SLOT = "AGGREGATION_SLOT"
    AGGREGATE_AND_PROOF = "AGGREGATE_AND_PROOF"
    AGGREGATE_AND_PROOF_V2 = "AGGREGATE_AND_PROOF_V2"
    RANDAO_REVEAL = "RANDAO_REVEAL"
    VOLUNTARY_EXIT = "VOLUNTARY_EXIT"
    SYNC_COMMITTEE_MESSAGE = "SYNC_COMMITTEE_MESSAGE"
    SYNC_COMMITTEE_SELECTION_PROOF = "SYNC_COMMITTEE_SELECTION_PROOF"
    SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF = "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF"
    VALIDATOR_REGISTRATION = "VALIDATOR_REGISTRATION"
    DEPOSIT = "DEPOSIT"


# --- the messages that are not consensus containers themselves ---------------------------------


@dataclass(frozen=True, slots=True)
class AggregationSlot:
    """AGGREGATION_SLOT: the attestation aggregator selection proof signs the slot."""

    slot: int

    def __post_init__(self) -> None:
        check_uint64("aggregation_slot.slot", self.slot)

    def hash_tree_root(self) -> bytes:
        return slot_root(self.slot)


@dataclass(frozen=True, slots=True)
class RandaoReveal:
    epoch: int

    def __post_init__(self) -> None:
        check_uint64("randao_reveal.epoch", self.epoch)

    def hash_tree_root(self) -> bytes:
        return epoch_root(self.epoch)


@dataclass(frozen=True, slots=True)
class SyncCommitteeMessage:
    """SYNC_COMMITTEE_MESSAGE: the block root is signed; the slot picks the domain's epoch."""

    beacon_block_root: bytes
    slot: int

    def __post_init__(self) -> None:
        check_bytes("sync_committee_message.beacon_block_root", self.beacon_block_root, 32)
        check_uint64("sync_committee_message.slot", self.slot)

    def hash_tree_root(self) -> bytes:
        return block_root(self.beacon_block_root)


@dataclass(frozen=True, slots=True)
class Deposit:
    """DEPOSIT: the DepositMessage, and the genesis fork version the client computed the domain with."""

    message: DepositMessage
    genesis_fork_version: bytes

    def __post_init__(self) -> None:
        if type(self.message) is not DepositMessage:
            raise MalformedRequest("deposit.message must be a DepositMessage")
        check_bytes("deposit.genesis_fork_version", self.genesis_fork_version, 4)

    def hash_tree_root(self) -> bytes:
        return self.message.hash_tree_root()


@dataclass(frozen=True, slots=True)
class BlockV2:
    """BLOCK_V2's ``beacon_block``: ``version`` (upper-case fork name) and either the full block
    (PHASE0, ALTAIR) or the header (BELLATRIX and later)."""

    version: str
    block: BeaconBlock | None = None
    block_header: BeaconBlockHeader | None = None

    def __post_init__(self) -> None:
        full = self.version in ("PHASE0", "ALTAIR")
        if full and (type(self.block) is not BeaconBlock or self.block_header is not None):
            raise MalformedRequest(f"beacon_block: version {self.version} carries the full block ('block')")
        if not full and (type(self.block_header) is not BeaconBlockHeader or self.block is not None):
            raise MalformedRequest(
                f"beacon_block: version {self.version} carries the block header ('block_header'), not the block"
            )
        if self.block is not None and (self.block.body.sync_aggregate is None) != (self.version == "PHASE0"):
            what = "a PHASE0 block body has no" if self.version == "PHASE0" else "an ALTAIR block body needs a"
            raise MalformedRequest(f"beacon_block: {what} sync_aggregate")

    @property
    def header(self) -> BeaconBlockHeader:
        if self.block is not None:
            return self.block.header()
        assert self.block_header is not None  # __post_init__
        return self.block_header

    def hash_tree_root(self) -> bytes:
        """The block's root: its header's (equal to the full block's)."""
        return self.header.hash_tree_root()


Message = (
    AttestationData
    | BeaconBlock
    | BlockV2
    | AggregationSlot
    | AggregateAndProof
    | AggregateAndProofElectra
    | RandaoReveal
    | VoluntaryExit
    | SyncCommitteeMessage
    | SyncAggregatorSelectionData
    | ContributionAndProof
    | ValidatorRegistration
    | Deposit
)


@dataclass(frozen=True, slots=True)
class ForkInfo:
    fork: Fork
    genesis_validators_root: bytes

    def __post_init__(self) -> None:
        if type(self.fork) is not Fork:
            raise MalformedRequest("fork_info.fork must be a Fork")
        check_bytes("fork_info.genesis_validators_root", self.genesis_validators_root, 32)


@dataclass(frozen=True, slots=True)
class RemoteSignRequest:
    """One Web3Signer sign request, typed. ``version`` is AGGREGATE_AND_PROOF_V2's fork name when the
    aggregate came wrapped (``{"version", "data"}``); ``signing_root`` is the client's, if sent."""

    sign_type: SignType
    message: Message
    fork_info: ForkInfo | None = None
    signing_root: bytes | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.signing_root is not None:
            check_bytes("signingRoot", self.signing_root, 32)
        allowed = _MESSAGE_TYPES[self.sign_type]
        if type(self.message) not in allowed:
            raise MalformedRequest(
                f"{self.sign_type} signs a {allowed[0].__name__}, not a {type(self.message).__name__}"
            )
        if self.sign_type not in _NO_FORK_INFO and self.fork_info is None:
            raise MalformedRequest(f"{self.sign_type} needs fork_info")


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the core signs for one request. ``block_header`` (BLOCK, BLOCK_V2) and ``attestation``
    (ATTESTATION) are the typed data slashing protection needs; every other type is unprotected."""

    sign_type: SignType
    domain_type: DomainType
    epoch: int
    """The epoch the domain was computed for (0 for the genesis-only builder and deposit domains)."""
    domain: bytes
    object_root: bytes
    signing_root: bytes
    block_header: BeaconBlockHeader | None = None
    attestation: AttestationData | None = None


_MESSAGE_TYPES: dict[SignType, tuple[type, ...]] = {
    SignType.ATTESTATION: (AttestationData,),
    SignType.BLOCK: (BeaconBlock,),
    SignType.BLOCK_V2: (BlockV2,),
    SignType.AGGREGATION_SLOT: (AggregationSlot,),
    SignType.AGGREGATE_AND_PROOF: (AggregateAndProof, AggregateAndProofElectra),
    SignType.AGGREGATE_AND_PROOF_V2: (AggregateAndProof, AggregateAndProofElectra),
    SignType.RANDAO_REVEAL: (RandaoReveal,),
    SignType.VOLUNTARY_EXIT: (VoluntaryExit,),
    SignType.SYNC_COMMITTEE_MESSAGE: (SyncCommitteeMessage,),
    SignType.SYNC_COMMITTEE_SELECTION_PROOF: (SyncAggregatorSelectionData,),
    SignType.SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF: (ContributionAndProof,),
    SignType.VALIDATOR_REGISTRATION: (ValidatorRegistration,),
    SignType.DEPOSIT: (Deposit,),
}

_DOMAIN_TYPES: dict[SignType, DomainType] = {
    SignType.ATTESTATION: DomainType.BEACON_ATTESTER,
    SignType.BLOCK: DomainType.BEACON_PROPOSER,
    SignType.BLOCK_V2: DomainType.BEACON_PROPOSER,
    SignType.AGGREGATION_SLOT: DomainType.SELECTION_PROOF,
    SignType.AGGREGATE_AND_PROOF: DomainType.AGGREGATE_AND_PROOF,
    SignType.AGGREGATE_AND_PROOF_V2: DomainType.AGGREGATE_AND_PROOF,
    SignType.RANDAO_REVEAL: DomainType.RANDAO,
    SignType.VOLUNTARY_EXIT: DomainType.VOLUNTARY_EXIT,
    SignType.SYNC_COMMITTEE_MESSAGE: DomainType.SYNC_COMMITTEE,
    SignType.SYNC_COMMITTEE_SELECTION_PROOF: DomainType.SYNC_COMMITTEE_SELECTION_PROOF,
    SignType.SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF: DomainType.CONTRIBUTION_AND_PROOF,
    SignType.VALIDATOR_REGISTRATION: DomainType.APPLICATION_BUILDER,
    SignType.DEPOSIT: DomainType.DEPOSIT,
}

_NO_FORK_INFO = (SignType.VALIDATOR_REGISTRATION, SignType.DEPOSIT)
_ELECTRA = FORK_NAMES.index("electra")


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def message_epoch(network: Network, message: Message) -> int:
    """The epoch whose fork version the message's domain uses (0 for builder and deposit messages)."""
    if isinstance(message, AttestationData):
        return message.target.epoch
    if isinstance(message, BeaconBlock | AggregationSlot | SyncCommitteeMessage | SyncAggregatorSelectionData):
        return network.epoch_at_slot(message.slot)
    if isinstance(message, BlockV2):
        return network.epoch_at_slot(message.header.slot)
    if isinstance(message, AggregateAndProof | AggregateAndProofElectra):
        return network.epoch_at_slot(message.aggregate.data.slot)
    if isinstance(message, ContributionAndProof):
        return network.epoch_at_slot(message.contribution.slot)
    if isinstance(message, RandaoReveal | VoluntaryExit):
        return message.epoch
    return 0


def check_fork_info(network: Network, sign_type: SignType, fork_info: ForkInfo, epoch: int) -> None:
    """Refuse (WrongNetwork) fork_info that does not describe ``network`` at ``epoch`` (module doc)."""
    if fork_info.genesis_validators_root != network.genesis_validators_root:
        raise WrongNetwork(
            f"fork_info.genesis_validators_root {_hex(fork_info.genesis_validators_root)} is not the one of "
            f"network {network.name!r} ({_hex(network.genesis_validators_root)})"
        )
    fork = fork_info.fork
    for name, version in (("previous_version", fork.previous_version), ("current_version", fork.current_version)):
        if version not in network.versions:
            raise WrongNetwork(
                f"fork_info.fork.{name} {_hex(version)} is not a fork version of network {network.name!r}"
            )
    if sign_type is SignType.VOLUNTARY_EXIT:
        return
    expected = network.fork_version_at(epoch)
    if expected not in (fork.previous_version, fork.current_version):
        raise WrongNetwork(
            f"fork_info has versions {_hex(fork.previous_version)} and {_hex(fork.current_version)}, but at epoch "
            f"{epoch} network {network.name!r} is at fork version {_hex(expected)}"
        )


def _check_fork_shape(network: Network, request: RemoteSignRequest, epoch: int) -> None:
    """Where the network names the fork at ``epoch``, the message's fork-specific shape must fit it."""
    fork = network.fork_name_at(epoch)
    if fork is None:
        return
    message = request.message
    where = f"at epoch {epoch} network {network.name!r} is at {fork}"
    if isinstance(message, BlockV2):
        if message.version.lower() != fork:
            raise WrongNetwork(f"BLOCK_V2 version {message.version}, but {where}")
    elif isinstance(message, BeaconBlock):
        if fork != FORK_NAMES[0]:
            raise WrongNetwork(f"BLOCK signs phase0 blocks only, but {where} (use BLOCK_V2)")
    elif isinstance(message, AggregateAndProof | AggregateAndProofElectra):
        electra = FORK_NAMES.index(fork) >= _ELECTRA
        if electra != isinstance(message, AggregateAndProofElectra):
            shape = (
                "an electra aggregate (committee_bits)" if electra else "a pre-electra aggregate (no committee_bits)"
            )
            raise WrongNetwork(f"{request.sign_type} needs {shape}: {where}")
        if request.version is not None and request.version.lower() != fork:
            raise WrongNetwork(f"{request.sign_type} version {request.version}, but {where}")


def prepare(network: Network, request: RemoteSignRequest) -> Prepared:
    """Domain, object root and signing root of ``request`` on ``network``, after every check of the
    module doc; the typed header/attestation for slashing protection. Raises the named refusal."""
    message = request.message
    domain_type = _DOMAIN_TYPES[request.sign_type]
    epoch = message_epoch(network, message)
    if request.fork_info is not None and request.sign_type not in _NO_FORK_INFO:
        check_fork_info(network, request.sign_type, request.fork_info, epoch)
    if isinstance(message, Deposit) and message.genesis_fork_version != network.genesis_fork_version:
        raise WrongNetwork(
            f"deposit.genesis_fork_version {_hex(message.genesis_fork_version)} is not the one of network "
            f"{network.name!r} ({_hex(network.genesis_fork_version)})"
        )
    _check_fork_shape(network, request, epoch)
    header: BeaconBlockHeader | None = None
    if isinstance(message, BlockV2):
        header = message.header
    elif isinstance(message, BeaconBlock):
        header = message.header()
    object_root = header.hash_tree_root() if header is not None else message.hash_tree_root()
    domain = network.domain(domain_type, epoch)
    signing_root = compute_signing_root(object_root, domain)
    if request.signing_root is not None and request.signing_root != signing_root:
        raise SigningRootMismatch(
            f"{request.sign_type}: the request's signingRoot {_hex(request.signing_root)} is not the signing "
            f"root of its message on network {network.name!r} ({_hex(signing_root)})"
        )
    return Prepared(
        sign_type=request.sign_type,
        domain_type=domain_type,
        epoch=epoch,
        domain=domain,
        object_root=object_root,
        signing_root=signing_root,
        block_header=header,
        attestation=message if isinstance(message, AttestationData) else None,
    )
