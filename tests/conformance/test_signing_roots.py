"""End-to-end signing roots (ssz/signing_roots/*.json): typed object -> object root -> domain -> root.

Each case also goes through a custom ``Network`` built from the vectors' fork info: the domain the
network computes must be the one the vector used, and ``check_domain`` must accept it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.config import NetworkConfig
from signer.eth2 import (
    AggregateAndProof,
    AttestationData,
    BeaconBlockHeader,
    ContributionAndProof,
    DepositMessage,
    DomainType,
    SyncAggregatorSelectionData,
    ValidatorRegistration,
    VoluntaryExit,
    block_root,
    compute_domain,
    compute_signing_root,
    epoch_root,
    network_from_config,
    slot_root,
)
from signer.eth2.networks import Network
from tests.conformance.test_ssz_vectors import build
from tests.support import vector_path

SIGNING_ROOTS = Path("ssz/signing_roots")
ZERO = bytes(32)


def _object_root(case: dict[str, Any]) -> tuple[bytes, int]:
    """The case's object root and the epoch its domain is computed for."""
    obj, kind = case["object"], case["type"]
    typed: dict[str, type[Any]] = {
        "BLOCK_V2 (BeaconBlockHeader)": BeaconBlockHeader,
        "ATTESTATION": AttestationData,
        "VOLUNTARY_EXIT": VoluntaryExit,
        "AGGREGATE_AND_PROOF": AggregateAndProof,
        "DEPOSIT": DepositMessage,
        "VALIDATOR_REGISTRATION": ValidatorRegistration,
        "SYNC_COMMITTEE_SELECTION_PROOF": SyncAggregatorSelectionData,
        "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF": ContributionAndProof,
    }
    if kind in typed:
        value = build(typed[kind], obj)
        root: bytes = value.hash_tree_root()
        epoch = {
            "ATTESTATION": lambda: value.target.epoch,
            "VOLUNTARY_EXIT": lambda: value.epoch,
        }.get(kind, lambda: 0)()
        return root, epoch
    if kind == "AGGREGATION_SLOT":
        return slot_root(int(obj["slot"])), 0
    if kind == "RANDAO_REVEAL":
        return epoch_root(int(obj["epoch"])), int(obj["epoch"])
    if kind == "SYNC_COMMITTEE_MESSAGE":
        return block_root(bytes.fromhex(obj["beacon_block_root"][2:])), 0
    raise AssertionError(f"no mapping for vector type {kind}")


def _load() -> tuple[dict[str, Any], list[Any]]:
    files = sorted(vector_path(*SIGNING_ROOTS.parts).glob("*.json"))
    params = []
    doc: dict[str, Any] = {}
    for path in files:
        doc = json.loads(path.read_text())
        for case in doc["cases"]:
            params.append(pytest.param((doc, case), id=f"{path.stem}:{case['type']}"))
    return doc, params


_, CASES = _load()


def test_eleven_cases() -> None:
    assert len(CASES) == 11
    kinds = {c.values[0][1]["domain_type"] for c in CASES}
    assert {f"DOMAIN_{t.name}" for t in DomainType} == kinds


@pytest.mark.parametrize("item", CASES)
def test_signing_root(item: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = item
    dtype = DomainType(bytes.fromhex(doc["domain_types"][case["domain_type"]][2:]))
    fork = doc["fork_info"]["fork"]
    gvr = bytes.fromhex(doc["fork_info"]["genesis_validators_root"][2:])
    if dtype in (DomainType.DEPOSIT, DomainType.APPLICATION_BUILDER):
        domain = compute_domain(dtype, bytes.fromhex(case["genesis_fork_version"][2:]), ZERO)
    else:
        epoch_of_fork = int(fork["epoch"])
        version = fork["current_version"]  # previous == current in these vectors
        assert fork["previous_version"] == version and epoch_of_fork >= 0
        domain = compute_domain(dtype, bytes.fromhex(version[2:]), gvr)
    object_root, epoch = _object_root(case)
    assert "0x" + compute_signing_root(object_root, domain).hex() == case["signing_root"]

    network = _vector_network(doc)
    assert network.domain(dtype, epoch) == domain
    assert network.check_domain(domain, epoch) is dtype


def _vector_network(doc: dict[str, Any]) -> Network:
    """The vectors' network: genesis version 0x00000001 (minimal config), one fork version."""
    return network_from_config(
        NetworkConfig(
            name="custom",
            genesis_validators_root=doc["fork_info"]["genesis_validators_root"],
            genesis_fork_version=doc["fork_info"]["fork"]["current_version"],
        )
    )
