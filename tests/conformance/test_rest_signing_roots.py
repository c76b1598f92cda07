"""The signing-root vectors (ssz/signing_roots/*.json, Web3Signer-style request objects) through the REST
path: each case as a Web3Signer sign-request body -> parse_sign_request -> prepare gives the vector's
signing root, and the root the gRPC path computes for the same message
(compute_signing_root(obj.hash_tree_root(), domain))."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.api.rest_models import parse_sign_request
from signer.config import NetworkConfig
from signer.eth2 import (
    AggregateAndProof,
    AttestationData,
    BeaconBlockHeader,
    ContributionAndProof,
    DepositMessage,
    SyncAggregatorSelectionData,
    ValidatorRegistration,
    VoluntaryExit,
    block_root,
    compute_signing_root,
    epoch_root,
    network_from_config,
    slot_root,
)
from signer.eth2.remote_signing import prepare
from tests.conformance.test_ssz_vectors import build
from tests.support import vector_path

SIGNING_ROOTS = Path("ssz/signing_roots")

# vector case type -> (REST type, message key, how the message goes into the body)
_BODIES: dict[str, tuple[str, str]] = {
    "BLOCK_V2 (BeaconBlockHeader)": ("BLOCK_V2", "beacon_block"),
    "ATTESTATION": ("ATTESTATION", "attestation"),
    "AGGREGATION_SLOT": ("AGGREGATION_SLOT", "aggregation_slot"),
    "RANDAO_REVEAL": ("RANDAO_REVEAL", "randao_reveal"),
    "VOLUNTARY_EXIT": ("VOLUNTARY_EXIT", "voluntary_exit"),
    "AGGREGATE_AND_PROOF": ("AGGREGATE_AND_PROOF", "aggregate_and_proof"),
    "DEPOSIT": ("DEPOSIT", "deposit"),
    "VALIDATOR_REGISTRATION": ("VALIDATOR_REGISTRATION", "validator_registration"),
    "SYNC_COMMITTEE_MESSAGE": ("SYNC_COMMITTEE_MESSAGE", "sync_committee_message"),
    "SYNC_COMMITTEE_SELECTION_PROOF": ("SYNC_COMMITTEE_SELECTION_PROOF", "sync_aggregator_selection_data"),
    "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF": ("SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF", "contribution_and_proof"),
}


def _cases() -> list[Any]:
    out = []
    for path in sorted(vector_path(*SIGNING_ROOTS.parts).glob("*.json")):
        doc = json.loads(path.read_text())
        out += [pytest.param((doc, case), id=f"{path.stem}:{case['type']}") for case in doc["cases"]]
    return out


CASES = _cases()


def _body(doc: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    sign_type, key = _BODIES[case["type"]]
    obj = case["object"]
    body: dict[str, Any] = {"type": sign_type, "signingRoot": case["signing_root"], "proofs": ["ignored"]}
    if sign_type == "BLOCK_V2":
        body[key] = {"version": "BELLATRIX", "block_header": obj}
    elif sign_type == "DEPOSIT":
        body[key] = obj | {"genesis_fork_version": case["genesis_fork_version"]}
    else:
        body[key] = obj
    if sign_type not in ("DEPOSIT", "VALIDATOR_REGISTRATION"):
        body["fork_info"] = doc["fork_info"]
    return body


def _grpc_object_root(case: dict[str, Any]) -> bytes:
    """The object root the gRPC front is given for the same message (typed containers, as Vouch sends)."""
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
        root: bytes = build(typed[kind], obj).hash_tree_root()
        return root
    if kind == "AGGREGATION_SLOT":
        return slot_root(int(obj["slot"]))
    if kind == "RANDAO_REVEAL":
        return epoch_root(int(obj["epoch"]))
    return block_root(bytes.fromhex(obj["beacon_block_root"][2:]))


@pytest.mark.parametrize("item", CASES)
def test_rest_signing_root_is_the_vectors(item: tuple[dict[str, Any], dict[str, Any]]) -> None:
    doc, case = item
    network = network_from_config(
        NetworkConfig(
            name="vectors",
            genesis_validators_root=doc["fork_info"]["genesis_validators_root"],
            genesis_fork_version=doc["fork_info"]["fork"]["current_version"],
        )
    )
    prepared = prepare(network, parse_sign_request(json.dumps(_body(doc, case))))
    assert "0x" + prepared.signing_root.hex() == case["signing_root"]
    assert compute_signing_root(_grpc_object_root(case), prepared.domain) == prepared.signing_root


def test_every_vector_type_has_a_rest_type() -> None:
    assert len(CASES) == 11
    assert {c.values[0][1]["type"] for c in CASES} == set(_BODIES)
