"""The Web3Signer message layer: JSON edge rules (rest_models) and the checks of prepare (remote_signing):
fork_info judged by versions, signing-root mismatch, fork shapes, EIP-7044 exits, builder and deposit
domains, epochs from slots with the network's slots_per_epoch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signer.api.rest_models import parse_sign_request
from signer.errors import MalformedRequest, SigningRootMismatch, WrongNetwork
from signer.eth2 import DomainType, compute_domain
from signer.eth2.containers import AggregateAndProofElectra, AttestationData, AttestationElectra, Checkpoint
from signer.eth2.networks import MAINNET, Network
from signer.eth2.remote_signing import Prepared, SignType, prepare

GVR = "0x" + MAINNET.genesis_validators_root.hex()
Z32 = "0x" + "00" * 32
SIG = "0x" + "aa" * 96
EPOCH = {"altair": 74240, "bellatrix": 144896, "capella": 194048, "deneb": 269568, "electra": 364032, "fulu": 411392}
VERSION = {
    "phase0": "0x00000000",
    "altair": "0x01000000",
    "bellatrix": "0x02000000",
    "capella": "0x03000000",
    "deneb": "0x04000000",
    "electra": "0x05000000",
    "fulu": "0x06000000",
}


def fork_info(current: str, previous: str | None = None, epoch: int = 0, gvr: str = GVR) -> dict[str, Any]:
    fork = {"previous_version": VERSION[previous or current], "current_version": VERSION[current], "epoch": str(epoch)}
    return {"fork": fork, "genesis_validators_root": gvr}


def attestation(target: int, slot: int | None = None) -> dict[str, Any]:
    return {
        "slot": str(target * 32 if slot is None else slot),
        "index": "3",
        "beacon_block_root": "0x" + "11" * 32,
        "source": {"epoch": str(max(target - 1, 0)), "root": Z32},
        "target": {"epoch": str(target), "root": "0x" + "22" * 32},
    }


def header(slot: int) -> dict[str, Any]:
    return {"slot": str(slot), "proposer_index": "7", "parent_root": Z32, "state_root": Z32, "body_root": Z32}


def run(body: dict[str, Any], network: Network = MAINNET) -> Prepared:
    return prepare(network, parse_sign_request(json.dumps(body)))


def att_body(target: int, fi: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ATTESTATION", "fork_info": fi, "attestation": attestation(target)}


# --- JSON at the edge -----------------------------------------------------------------------------


def test_attestation_gives_typed_data_and_the_attester_domain() -> None:
    prepared = run(att_body(EPOCH["capella"] + 5, fork_info("capella", "bellatrix", EPOCH["capella"])))
    assert prepared.sign_type is SignType.ATTESTATION
    assert isinstance(prepared.attestation, AttestationData)
    assert prepared.attestation.index == 3 and prepared.block_header is None
    assert prepared.domain == MAINNET.domain(DomainType.BEACON_ATTESTER, EPOCH["capella"] + 5)
    assert prepared.object_root == prepared.attestation.hash_tree_root()


@pytest.mark.parametrize("key", ["signingRoot", "signing_root"])
def test_client_signing_root_is_checked_under_either_name(key: str) -> None:
    body = att_body(EPOCH["deneb"], fork_info("deneb", "capella"))
    good = run(body).signing_root
    assert run(body | {key: "0x" + good.hex()}).signing_root == good
    with pytest.raises(SigningRootMismatch, match="signingRoot 0x" + "ab" * 32):
        run(body | {key: "0x" + "ab" * 32})


def test_unknown_fields_are_ignored() -> None:
    body = att_body(EPOCH["deneb"], fork_info("deneb")) | {"proofs": [{"x": 1}], "extra": None}
    body["attestation"]["future_field"] = "1"
    assert run(body).attestation is not None


@pytest.mark.parametrize("bad", ["-1", "1.0", "0x10", " 1", "", "18446744073709551616", True, 1.5, None])
def test_numbers_are_decimal_uint64(bad: object) -> None:
    body = att_body(10, fork_info("phase0"))
    body["attestation"]["slot"] = bad
    with pytest.raises(MalformedRequest, match=r"attestation\.slot"):
        run(body)


def test_json_integers_are_accepted_too() -> None:
    body = att_body(10, fork_info("phase0"))
    body["attestation"]["slot"] = 320
    assert run(body).attestation is not None


@pytest.mark.parametrize("bad", ["11" * 32, "0x" + "11" * 31, "0x" + "11" * 33, "0x1", "0xzz" + "11" * 31])
def test_bytes_are_0x_hex_of_the_exact_length(bad: str) -> None:
    body = att_body(10, fork_info("phase0"))
    body["attestation"]["beacon_block_root"] = bad
    with pytest.raises(MalformedRequest, match=r"attestation\.beacon_block_root"):
        run(body)


def test_unknown_type_and_missing_message_are_malformed() -> None:
    with pytest.raises(MalformedRequest, match="type: must be one of ATTESTATION, BLOCK, BLOCK_V2"):
        run({"type": "BLS_TO_EXECUTION_CHANGE", "fork_info": fork_info("phase0")})
    with pytest.raises(MalformedRequest, match="attestation"):
        run({"type": "ATTESTATION", "fork_info": fork_info("phase0")})
    with pytest.raises(MalformedRequest, match="needs fork_info"):
        run({"type": "ATTESTATION", "attestation": attestation(1)})
    with pytest.raises(MalformedRequest, match="malformed sign request"):
        parse_sign_request(b"{not json")


# --- fork_info: judge the versions, not fork.epoch -------------------------------------------------


@pytest.mark.parametrize(
    "fi",
    [
        fork_info("capella", "bellatrix", EPOCH["capella"] + 7),  # Lodestar: fork.epoch = message epoch
        fork_info("capella", "bellatrix", EPOCH["capella"]),  # Lighthouse/Teku: the fork's activation epoch
        fork_info("deneb", "capella", EPOCH["deneb"]),  # a later state's fork: previous_version in force
    ],
    ids=["message-epoch", "activation-epoch", "later-state"],
)
def test_fork_info_epoch_is_not_judged(fi: dict[str, Any]) -> None:
    assert run(att_body(EPOCH["capella"] + 7, fi)).epoch == EPOCH["capella"] + 7


def test_fork_info_of_another_network_or_fork_is_refused() -> None:
    target = EPOCH["capella"] + 7
    with pytest.raises(WrongNetwork, match="genesis_validators_root"):
        run(att_body(target, fork_info("capella", gvr="0x" + "01" * 32)))
    with pytest.raises(WrongNetwork, match="at epoch 194055 network 'mainnet' is at fork version 0x03000000"):
        run(att_body(target, fork_info("electra", "deneb")))
    unknown = fork_info("capella")
    unknown["fork"]["previous_version"] = "0x90000069"  # sepolia's genesis
    with pytest.raises(WrongNetwork, match="previous_version 0x90000069 is not a fork version"):
        run(att_body(target, unknown))


# --- blocks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fork", ["bellatrix", "capella", "deneb", "electra", "fulu"])
def test_block_v2_header_forms_up_to_fulu(fork: str) -> None:
    slot = EPOCH[fork] * 32 + 3
    body = {
        "type": "BLOCK_V2",
        "fork_info": fork_info(fork),
        "beacon_block": {"version": fork.upper(), "block_header": header(slot)},
    }
    prepared = run(body)
    assert prepared.block_header is not None and prepared.block_header.slot == slot
    assert prepared.domain == compute_domain(
        DomainType.BEACON_PROPOSER, bytes.fromhex(VERSION[fork][2:]), MAINNET.genesis_validators_root
    )


def test_block_v2_version_must_be_the_fork_at_its_slot() -> None:
    slot = EPOCH["capella"] * 32
    body = {
        "type": "BLOCK_V2",
        "fork_info": fork_info("capella"),
        "beacon_block": {"version": "DENEB", "block_header": header(slot)},
    }
    with pytest.raises(WrongNetwork, match="version DENEB, but at epoch 194048 network 'mainnet' is at capella"):
        run(body)
    body["beacon_block"] = {"version": "BELLATRIX", "block": None}
    with pytest.raises(MalformedRequest, match="block_header"):
        run(body)


def test_a_later_fork_name_is_accepted_where_the_network_has_an_unnamed_fork() -> None:
    from signer.config import ForkEntry, NetworkConfig  # noqa: PLC0415 - only here
    from signer.eth2 import network_from_config  # noqa: PLC0415

    gloas = network_from_config(NetworkConfig(name="mainnet", forks=(ForkEntry(epoch=500_000, version="0x07000000"),)))
    fi = {
        "fork": {"previous_version": "0x06000000", "current_version": "0x07000000", "epoch": "500000"},
        "genesis_validators_root": GVR,
    }
    body = {
        "type": "BLOCK_V2",
        "fork_info": fi,
        "beacon_block": {"version": "GLOAS", "block_header": header(500_000 * 32)},
    }
    assert run(body, gloas).block_header is not None
    with pytest.raises(WrongNetwork, match="at fulu"):
        run(body | {"fork_info": fork_info("fulu")}, MAINNET)


# --- aggregates (phase0 and electra shapes, wrapped or bare) ---------------------------------------


def aggregate(slot: int, committee_bits: bool) -> dict[str, Any]:
    agg: dict[str, Any] = {"aggregation_bits": "0x0d", "data": attestation(slot // 32, slot), "signature": SIG}
    if committee_bits:
        agg["committee_bits"] = "0x0100000000000000"
    return {"aggregator_index": "9", "aggregate": agg, "selection_proof": SIG}


@pytest.mark.parametrize("sign_type", ["AGGREGATE_AND_PROOF", "AGGREGATE_AND_PROOF_V2"])
@pytest.mark.parametrize("wrapped", [True, False], ids=["wrapped", "bare"])
def test_electra_aggregates_wrapped_or_bare(sign_type: str, wrapped: bool) -> None:
    slot = EPOCH["electra"] * 32 + 1
    message = aggregate(slot, committee_bits=True)
    body = {
        "type": sign_type,
        "fork_info": fork_info("electra", "deneb"),
        "aggregate_and_proof": {"version": "ELECTRA", "data": message} if wrapped else message,
    }
    prepared = run(body)
    data = AttestationData(
        slot, 3, b"\x11" * 32, Checkpoint(EPOCH["electra"] - 1, bytes(32)), Checkpoint(EPOCH["electra"], b"\x22" * 32)
    )
    expected = AggregateAndProofElectra(
        9, AttestationElectra(b"\x0d", data, b"\xaa" * 96, b"\x01" + bytes(7)), b"\xaa" * 96
    )
    assert prepared.object_root == expected.hash_tree_root()
    assert prepared.domain == MAINNET.domain(DomainType.AGGREGATE_AND_PROOF, EPOCH["electra"])


def test_aggregate_shape_and_version_must_fit_the_fork() -> None:
    electra_slot = EPOCH["electra"] * 32
    body = {
        "type": "AGGREGATE_AND_PROOF_V2",
        "fork_info": fork_info("electra", "deneb"),
        "aggregate_and_proof": {"version": "ELECTRA", "data": aggregate(electra_slot, committee_bits=False)},
    }
    with pytest.raises(WrongNetwork, match="needs an electra aggregate"):
        run(body)
    deneb_slot = EPOCH["deneb"] * 32
    body = {
        "type": "AGGREGATE_AND_PROOF",
        "fork_info": fork_info("deneb", "capella"),
        "aggregate_and_proof": aggregate(deneb_slot, committee_bits=True),
    }
    with pytest.raises(WrongNetwork, match="needs a pre-electra aggregate"):
        run(body)
    body = {
        "type": "AGGREGATE_AND_PROOF_V2",
        "fork_info": fork_info("deneb", "capella"),
        "aggregate_and_proof": {"version": "CAPELLA", "data": aggregate(deneb_slot, committee_bits=False)},
    }
    with pytest.raises(WrongNetwork, match="version CAPELLA"):
        run(body)


# --- exits, builder, deposits, sync committee ------------------------------------------------------


def test_voluntary_exit_after_deneb_uses_capella_whatever_the_clients_fork() -> None:
    body = {
        "type": "VOLUNTARY_EXIT",
        "fork_info": fork_info("electra", "deneb", EPOCH["electra"]),
        "voluntary_exit": {"epoch": str(EPOCH["electra"] + 10), "validator_index": "5"},
    }
    prepared = run(body)
    assert prepared.domain == compute_domain(
        DomainType.VOLUNTARY_EXIT, bytes.fromhex("03000000"), MAINNET.genesis_validators_root
    )
    with pytest.raises(WrongNetwork):
        run(body | {"fork_info": fork_info("electra", gvr="0x" + "01" * 32)})


def test_validator_registration_uses_the_builder_domain_without_fork_info() -> None:
    body = {
        "type": "VALIDATOR_REGISTRATION",
        "validator_registration": {
            "fee_recipient": "0x" + "aa" * 20,
            "gas_limit": "30000000",
            "timestamp": "1700000000",
            "pubkey": "0x" + "bb" * 48,
        },
    }
    prepared = run(body)
    assert prepared.domain == compute_domain(DomainType.APPLICATION_BUILDER, bytes(4), bytes(32))
    assert prepared.epoch == 0


def test_deposit_needs_the_networks_genesis_fork_version() -> None:
    deposit = {
        "pubkey": "0x" + "bb" * 48,
        "withdrawal_credentials": Z32,
        "amount": "32000000000",
        "genesis_fork_version": "0x00000000",
    }
    prepared = run({"type": "DEPOSIT", "deposit": deposit})
    assert prepared.domain == compute_domain(DomainType.DEPOSIT, bytes(4), bytes(32))
    with pytest.raises(WrongNetwork, match="genesis_fork_version 0x90000069"):
        run({"type": "DEPOSIT", "deposit": deposit | {"genesis_fork_version": "0x90000069"}})


@pytest.mark.parametrize(
    ("sign_type", "key", "message"),
    [
        ("SYNC_COMMITTEE_MESSAGE", "sync_committee_message", {"beacon_block_root": Z32, "slot": "17"}),
        ("SYNC_COMMITTEE_SELECTION_PROOF", "sync_aggregator_selection_data", {"slot": "17", "subcommittee_index": "1"}),
        ("AGGREGATION_SLOT", "aggregation_slot", {"slot": "17"}),
    ],
)
def test_slot_messages_take_the_epoch_of_their_slot(sign_type: str, key: str, message: dict[str, Any]) -> None:
    from tests.unit.test_custom_network import lodestar_dev  # noqa: PLC0415

    dev = lodestar_dev()
    fi = {
        "fork": {"previous_version": "0x02000001", "current_version": "0x03000001", "epoch": "2"},
        "genesis_validators_root": "0x" + dev.genesis_validators_root.hex(),
    }
    prepared = run({"type": sign_type, "fork_info": fi, key: message}, dev)
    assert prepared.epoch == 2
    assert prepared.domain == dev.domain(prepared.domain_type, 2)


def test_full_block_body_must_fit_its_version() -> None:
    from tests.conformance.test_lodestar_requests import SIGN_SAMPLES, dev_chain  # noqa: PLC0415

    altair = json.loads(json.dumps(SIGN_SAMPLES["BLOCK_V2 ALTAIR"]["body"]))
    altair["beacon_block"]["version"] = "PHASE0"
    with pytest.raises(MalformedRequest, match="a PHASE0 block body has no sync_aggregate"):
        run(altair, dev_chain())
    del altair["beacon_block"]["block"]["body"]["sync_aggregate"]
    altair["beacon_block"]["version"] = "ALTAIR"
    with pytest.raises(MalformedRequest, match="an ALTAIR block body needs a sync_aggregate"):
        run(altair, dev_chain())
    phase0 = SIGN_SAMPLES["BLOCK_V2 PHASE0"]["body"]
    with pytest.raises(WrongNetwork, match="version PHASE0, but at epoch 0 network 'lodestar-dev' is at altair"):
        run(phase0 | {"fork_info": altair["fork_info"]}, dev_chain())
    # the deprecated BLOCK type: a phase0 block, on a network in phase0 at its slot
    block = {"type": "BLOCK", "fork_info": phase0["fork_info"], "block": phase0["beacon_block"]["block"]}
    assert run(block, dev_chain(forks=False)).signing_root.hex() == phase0["signingRoot"][2:]
    with pytest.raises(WrongNetwork, match="BLOCK signs phase0 blocks only"):
        run(block | {"fork_info": altair["fork_info"]}, dev_chain())
