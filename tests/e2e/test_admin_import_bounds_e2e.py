"""Issue 13.1 and 13.2 through the admin API of real ``signer serve`` processes, on SQLite and on a
real PostgreSQL (tests.postgres: a throwaway server, a database of its own per signer).

The import lower-bound rule (docs/ARCHITECTURE.md, "Slashing rules"): after local history (10,11)
and slot 160, an import of (100,101) and slot 3200 (no signing roots) raises the bounds, so (50,60)
and slot 2000 are refused, through both admin paths that import history:

* ProtectionAdmin/ImportInterchange, asked by one operator and approved by a second (the default
  ``admin.require_approval``);
* KeyAdmin/ImportKeystores with ``slashing_protection``. It imports the history of the keys it
  imports, and only of those (a duplicate keystore imports nothing), so the key signs locally, is
  deleted (its history stays in the store), then comes back as a keystore with the file: the case of
  a key that signed here, ran elsewhere, and returns. Delete and import each wait for approval.

And a new, empty PostgreSQL database (no tables) under a module that holds keys refuses to sign,
says so on /readyz, gRPC health and the gauge, until the operator initializes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from signer.api._proto.signer.admin.v1 import admin_pb2
from signer.api._proto.v1 import responsestate_pb2, signer_pb2, signer_pb2_grpc
from signer.api.admin import read_document
from signer.keys import eip2335
from signer.keys.dev import DEV_PIN, create_dev_module, dev_bls_secret
from tests.e2e.admin_server import AdminServer, start_admin_server
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_eth2_e2e import att, proposal, public_key
from tests.e2e.test_protection_lifecycle_e2e import (
    assert_not_initialized,
    audit_offences,
    initialized_gauge,
    minimal_interchange,
    wait_ready,
)
from tests.postgres import PostgresServer, postgres_server  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
TIMEOUT_S = 30.0
STORES = ("sqlite", "postgres")
OPERATORS = ("alice", "bob", "carol", "dave", "erin", "frank")
_Request = TypeVar("_Request", signer_pb2.SignBeaconAttestationRequest, signer_pb2.SignBeaconProposalRequest)
LOWER_BOUND_OFFENCES = ["source_below_lower_bound", "slot_not_above_lower_bound"]


def postgres_toml(dsn: str, *, timeout_s: float = 5.0) -> str:
    return f'\n[protection]\nbackend = "postgres"\ndsn = "{dsn}"\ntimeout_s = {timeout_s}\n'


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    protection = ""
    if request.param == "postgres":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        protection = postgres_toml(postgres.new_database())
    started = start_admin_server(
        tmp_path_factory.mktemp(f"bounds-{request.param}"), operators=OPERATORS, protection_toml=protection
    )
    try:
        assert started.proc.ready["protection"] == request.param
        yield started
    finally:
        assert started.proc.terminate() == 0, started.proc.logs


def by_public_key(request: _Request, key: bytes) -> _Request:
    request.public_key = key  # the oneof: the key itself, not its account name
    return request


def sign_local_history(server: AdminServer, index: int) -> None:
    stub = server.signer()
    assert stub.SignBeaconAttestation(att(index, 10, 11).request(), timeout=TIMEOUT_S).state == SUCCEEDED
    assert stub.SignBeaconProposal(proposal(index, 160, "local")[0], timeout=TIMEOUT_S).state == SUCCEEDED


def assert_bounds_raised(server: AdminServer, index: int) -> None:
    """(50,60) and slot 2000 are refused by the imported bounds; what lies above them signs."""
    stub, key, seen = server.signer(), public_key(index), len(server.offences())
    below_vote = by_public_key(att(index, 50, 60).request(), key)
    below_block = by_public_key(proposal(index, 2000, "gap")[0], key)
    assert stub.SignBeaconAttestation(below_vote, timeout=TIMEOUT_S).state == DENIED
    assert stub.SignBeaconProposal(below_block, timeout=TIMEOUT_S).state == DENIED
    assert server.offences_after(seen, 2) == LOWER_BOUND_OFFENCES
    above_vote = by_public_key(att(index, 100, 102).request(), key)
    above_block = by_public_key(proposal(index, 3201, "next")[0], key)
    assert stub.SignBeaconAttestation(above_vote, timeout=TIMEOUT_S).state == SUCCEEDED
    assert stub.SignBeaconProposal(above_block, timeout=TIMEOUT_S).state == SUCCEEDED


def test_an_approved_admin_interchange_import_raises_the_lower_bounds_above_local_history(
    server: AdminServer,
) -> None:
    sign_local_history(server, 0)
    document = json.dumps(minimal_interchange(0, 3200, 100, 101)).encode()
    asked = server.protection().ImportInterchange(
        admin_pb2.ImportInterchangeRequest(interchange_json=document),
        metadata=server.operators.metadata("alice"),
        timeout=TIMEOUT_S,
    )
    assert asked.status == admin_pb2.RESPONSE_STATUS_PENDING, asked.message
    done = server.approvals().ApproveImportInterchange(
        admin_pb2.ApproveRequest(id=asked.pending.id), metadata=server.operators.metadata("bob"), timeout=TIMEOUT_S
    )
    assert (done.status, done.validators, done.blocks_imported, done.attestations_imported) == (
        admin_pb2.RESPONSE_STATUS_OK,
        1,
        1,
        1,
    ), done.message
    assert_bounds_raised(server, 0)


def test_a_keystore_import_with_history_raises_the_lower_bounds_above_local_history(server: AdminServer) -> None:
    index, key = 1, public_key(1)
    sign_local_history(server, index)

    # The key leaves (two operators); its local history stays in the store.
    asked = server.key_admin().DeleteKeys(
        admin_pb2.DeleteKeysRequest(public_keys=[key]), metadata=server.operators.metadata("carol"), timeout=TIMEOUT_S
    )
    first, _ = read_document(asked)
    assert first.status == admin_pb2.RESPONSE_STATUS_PENDING, first.message
    deleted, history = read_document(
        server.approvals().ApproveDeleteKeys(
            admin_pb2.ApproveRequest(id=first.pending.id),
            metadata=server.operators.metadata("dave"),
            timeout=TIMEOUT_S,
        )
    )
    assert [r.status for r in deleted.results] == [admin_pb2.ITEM_STATUS_DELETED], deleted.message
    (entry,) = json.loads(history)["data"]
    assert [(a["source_epoch"], a["target_epoch"]) for a in entry["signed_attestations"]] == [("10", "11")]
    assert [b["slot"] for b in entry["signed_blocks"]] == ["160"]

    # It comes back as a keystore, with the history of where it signed meanwhile.
    kdf = eip2335.KdfParams("pbkdf2", b"\x01" * 32, 32, c=1000)
    keystore = json.dumps(eip2335.encrypt_keystore(dev_bls_secret(index), "pw", kdf=kdf, pubkey=key)).encode()
    history_file = json.dumps(minimal_interchange(index, 3200, 100, 101)).encode()
    asked_import = server.key_admin().ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[keystore], passwords=["pw"], slashing_protection=history_file),
        metadata=server.operators.metadata("erin"),
        timeout=TIMEOUT_S,
    )
    assert asked_import.status == admin_pb2.RESPONSE_STATUS_PENDING, asked_import.message
    assert asked_import.pending.kind == admin_pb2.PENDING_KIND_IMPORT_KEYSTORES
    imported = server.approvals().ApproveImportKeystores(
        admin_pb2.ApproveRequest(id=asked_import.pending.id),
        metadata=server.operators.metadata("frank"),
        timeout=TIMEOUT_S,
    )
    assert [(r.public_key, r.status) for r in imported.results] == [(key, admin_pb2.ITEM_STATUS_IMPORTED)], (
        imported.message
    )
    assert_bounds_raised(server, index)


def test_a_new_empty_postgres_database_refuses_to_sign_until_initialized(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    create_dev_module(data_dir, 2, scrypt_n=2**10).close()  # the module holds keys; the database is new
    pin_file = tmp_path / "module.pin"
    pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{data_dir}"
pin = {{ file = "{pin_file}" }}
{postgres_toml(postgres_server.new_database(empty=True))}
[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation", "sign_proposal"]
""",
        encoding="utf-8",
    )
    with SignerProcess.from_config(config) as proc:
        assert proc.ready["protection"] == "postgres"
        assert_not_initialized(proc)
        stub = proc_signer(proc)
        assert stub.SignBeaconAttestation(att(0, 1, 2).request(), timeout=TIMEOUT_S).state == DENIED
        assert stub.SignBeaconProposal(proposal(0, 64, "first")[0], timeout=TIMEOUT_S).state == DENIED
        expected = ["protection_not_initialized"] * 2
        assert audit_offences(proc, *expected) == expected

        init_protection(config)  # the operator says once that these keys never signed
        wait_ready(proc)
        assert initialized_gauge(proc) == 1
        assert stub.SignBeaconAttestation(att(0, 1, 2).request(), timeout=TIMEOUT_S).state == SUCCEEDED
        assert stub.SignBeaconProposal(proposal(0, 64, "first")[0], timeout=TIMEOUT_S).state == SUCCEEDED
    # The decision is in the database: a restart signs at once.
    with SignerProcess.from_config(config) as proc:
        wait_ready(proc)
        assert proc_signer(proc).SignBeaconAttestation(att(0, 2, 3).request(), timeout=TIMEOUT_S).state == SUCCEEDED


def proc_signer(proc: SignerProcess) -> signer_pb2_grpc.SignerStub:
    return signer_pb2_grpc.SignerStub(proc.channel())
