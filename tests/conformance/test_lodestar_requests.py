"""Web3Signer sign requests as Lodestar 1.5.1 sent them (tests/vectors/lodestar): our signing roots equal
Lodestar's for every type, full PHASE0/ALTAIR blocks included, and the gRPC path (proto -> the
SigningService) signs exactly the root the REST path computes, with the interop keys of the dev chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signer.api import eth2 as grpc_front
from signer.api._proto.v1 import eth2_pb2, signer_pb2
from signer.api.rest_models import parse_sign_request
from signer.config import ForkEntry, NetworkConfig
from signer.crypto import bls
from signer.errors import SigningRootMismatch, WrongNetwork
from signer.eth2 import network_from_config
from signer.eth2.networks import Network
from signer.eth2.remote_signing import Prepared, SignType, prepare
from signer.keys.emulated import MIN_SCRYPT_N, EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import Outcome, SigningService
from signer.types import LOCAL_CLIENT, Scheme
from tests.stores import keys_never_signed
from tests.support import vector_path

SAMPLES_FILE = vector_path("lodestar", "request_samples.json")
SAMPLES: dict[str, dict[str, Any]] = json.loads(SAMPLES_FILE.read_text())
SIGN_SAMPLES = {name: s for name, s in SAMPLES.items() if s["method"] == "POST"}
GVR = "0x270d43e74ce340de4bca2b1936beca0f4f5408d9e78aec4850920baf659d5b69"
PIN = "conformance-test-module-pin"
CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001


def interop_secret(index: int) -> bytes:
    """Lodestar's interopSecretKey: sha256 of the little-endian index, read little-endian, mod r."""
    digest = hashlib.sha256(index.to_bytes(32, "little")).digest()
    return (int.from_bytes(digest, "little") % CURVE_ORDER).to_bytes(32, "big")


def dev_chain(slots_per_epoch: int = 8, forks: bool = True) -> Network:
    """The runs' network: altair@0, bellatrix@1, capella@2 (or phase0 only), minimal preset."""
    schedule = (
        ForkEntry(name="altair", epoch=0, version="0x01000001"),
        ForkEntry(name="bellatrix", epoch=1, version="0x02000001"),
        ForkEntry(name="capella", epoch=2, version="0x03000001"),
    )
    return network_from_config(
        NetworkConfig(
            name="lodestar-dev" if forks else "lodestar-dev-phase0",
            genesis_validators_root=GVR,
            genesis_fork_version="0x00000001",
            slots_per_epoch=slots_per_epoch,
            forks=schedule if forks else (),
        )
    )


def network_of(name: str) -> Network:
    return dev_chain(forks=name != "BLOCK_V2 PHASE0")


def lodestar_root(sample: dict[str, Any]) -> bytes:
    return bytes.fromhex(sample["body"]["signingRoot"][2:])


def test_every_sign_type_lodestar_sends_is_sampled() -> None:
    types = {s["body"]["type"] for s in SIGN_SAMPLES.values()}
    assert types == {
        "ATTESTATION",
        "AGGREGATION_SLOT",
        "AGGREGATE_AND_PROOF",
        "RANDAO_REVEAL",
        "BLOCK_V2",
        "SYNC_COMMITTEE_MESSAGE",
        "SYNC_COMMITTEE_SELECTION_PROOF",
        "SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF",
        "VALIDATOR_REGISTRATION",
    }
    versions = {s["body"]["beacon_block"]["version"] for s in SIGN_SAMPLES.values() if "beacon_block" in s["body"]}
    assert versions == {"PHASE0", "ALTAIR", "BELLATRIX", "CAPELLA"}


@pytest.mark.parametrize("name", sorted(SIGN_SAMPLES))
def test_signing_root_equals_lodestars(name: str) -> None:
    sample = SIGN_SAMPLES[name]
    prepared = prepare(network_of(name), parse_sign_request(json.dumps(sample["body"])))
    assert prepared.signing_root == lodestar_root(sample)
    # the same body without Lodestar's root gives the same root (the check is not what produced it)
    body = {k: v for k, v in sample["body"].items() if k != "signingRoot"}
    assert prepare(network_of(name), parse_sign_request(json.dumps(body))).signing_root == lodestar_root(sample)


def test_full_blocks_give_the_header_slashing_protection_records() -> None:
    for name in ("BLOCK_V2 PHASE0", "BLOCK_V2 ALTAIR"):
        body = SIGN_SAMPLES[name]["body"]
        prepared = prepare(network_of(name), parse_sign_request(json.dumps(body)))
        block = body["beacon_block"]["block"]
        header = prepared.block_header
        assert header is not None
        assert (header.slot, header.proposer_index) == (int(block["slot"]), int(block["proposer_index"]))
        assert header.parent_root.hex() == block["parent_root"][2:]
        assert prepared.object_root == header.hash_tree_root()


def test_with_32_slots_per_epoch_the_capella_block_is_refused() -> None:
    """Slot 16 is epoch 2 (capella) on the dev chain; a signer that assumes 32 slots puts it in
    epoch 0 and must not sign it under another fork's domain."""
    body = SIGN_SAMPLES["BLOCK_V2 CAPELLA"]["body"]
    with pytest.raises(WrongNetwork, match="at epoch 0"):
        prepare(dev_chain(slots_per_epoch=32), parse_sign_request(json.dumps(body)))
    # without fork_info to catch it, the root differs from Lodestar's and is refused as such
    unnamed = network_from_config(
        NetworkConfig(
            name="unnamed-32",
            genesis_validators_root=GVR,
            genesis_fork_version="0x00000001",
            forks=(ForkEntry(epoch=0, version="0x01000001"), ForkEntry(epoch=1, version="0x03000001")),
        )
    )
    fork = {"previous_version": "0x00000001", "current_version": "0x01000001", "epoch": "0"}
    relabelled = body | {"fork_info": {"fork": fork, "genesis_validators_root": GVR}}
    with pytest.raises(SigningRootMismatch, match="signingRoot"):
        prepare(unnamed, parse_sign_request(json.dumps(relabelled)))


# --- the gRPC path signs what the REST path computes ---------------------------------------------


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SigningService]]:
    tmp = tmp_path_factory.mktemp("lodestar")
    module = EmulatedKeyModule(tmp / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    module.import_secrets([(f"interop/{i}", Scheme.BLS, interop_secret(i)) for i in range(8)])
    out: dict[str, SigningService] = {}
    stores = []
    for net in (dev_chain(), dev_chain(forks=False)):
        store = keys_never_signed(SqliteStore(Path(tmp / f"{net.name}.sqlite"), net.genesis_validators_root))
        stores.append(store)
        out[net.name] = SigningService(net, KeyRing(module), store)
    yield out
    for store in stores:
        store.close()


def _sign_over_grpc(service: SigningService, public_key: bytes, prepared: Prepared) -> Outcome:
    """Build the Dirk-API proto request for ``prepared`` and run it through the gRPC front's translation."""
    if prepared.attestation is not None:
        d = prepared.attestation
        msg = signer_pb2.SignBeaconAttestationRequest(
            public_key=public_key,
            domain=prepared.domain,
            data=eth2_pb2.AttestationData(
                slot=d.slot,
                committee_index=d.index,
                beacon_block_root=d.beacon_block_root,
                source=eth2_pb2.Checkpoint(epoch=d.source.epoch, root=d.source.root),
                target=eth2_pb2.Checkpoint(epoch=d.target.epoch, root=d.target.root),
            ),
        )
        (outcome,) = service.sign(LOCAL_CLIENT, [grpc_front.attestation_request(msg)])
        return outcome
    if prepared.block_header is not None:
        h = prepared.block_header
        proposal = signer_pb2.SignBeaconProposalRequest(
            public_key=public_key,
            domain=prepared.domain,
            data=eth2_pb2.BeaconBlockHeader(
                slot=h.slot,
                proposer_index=h.proposer_index,
                parent_root=h.parent_root,
                state_root=h.state_root,
                body_root=h.body_root,
            ),
        )
        (outcome,) = service.sign(LOCAL_CLIENT, [grpc_front.proposal_request(proposal)])
        return outcome
    generic = signer_pb2.SignRequest(public_key=public_key, domain=prepared.domain, data=prepared.object_root)
    (outcome,) = service.sign(LOCAL_CLIENT, [grpc_front.generic_request(generic)])
    return outcome


@pytest.mark.parametrize("name", sorted(SIGN_SAMPLES))
def test_grpc_path_signs_the_rest_root(name: str, services: dict[str, SigningService]) -> None:
    sample = SIGN_SAMPLES[name]
    network = network_of(name)
    prepared = prepare(network, parse_sign_request(json.dumps(sample["body"])))
    public_key = bytes.fromhex(sample["path"].rsplit("/", 1)[1][2:])
    index = next(i for i in range(8) if bls.secret_to_public(interop_secret(i)) == public_key)
    outcome = _sign_over_grpc(services[network.name], public_key, prepared)
    assert outcome.error is None, outcome.error
    # the signature the gRPC path produced is over Lodestar's (== our REST) signing root
    assert outcome.signature == bls.sign(interop_secret(index), lodestar_root(sample))
    assert prepared.sign_type in SignType
