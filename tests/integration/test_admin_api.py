"""The admin gRPC API (signer.admin.v1) over a real in-process GrpcServer on 127.0.0.1:0.

Real parts throughout: an emulated key module (scrypt n = 2**10 for the module PIN, for speed), a
SQLite protection store, the SigningService, the eth2-signer-api servicers. Keystores come from the
EIP-2335 conformance vectors (each vector keystore is its own test id); behaviours that need many
distinct keys use keystores written here with a cheap pbkdf2 KDF.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

import signer
from signer import errors
from signer.api._proto.signer.admin.v1 import admin_pb2, admin_pb2_grpc
from signer.api._proto.v1 import eth2_pb2, responsestate_pb2, signer_pb2, signer_pb2_grpc
from signer.api.admin import DOCUMENT_CHUNK_BYTES, SERVICE_NAMES, admin_servicers, read_document
from signer.api.context import CallContext
from signer.api.server import GrpcServer
from signer.config import ClientConfig
from signer.crypto import bls
from signer.eth2.containers import AttestationData, Checkpoint
from signer.eth2.networks import MAINNET
from signer.eth2.signing import DomainType, compute_signing_root
from signer.keyadmin import KeyAdmin, ProtectionAdmin
from signer.keys import eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import SigningService
from signer.types import AttestationCheck, AuditSink, Authorizer, Scheme
from tests.fakes import RecordingAudit, RecordingMonitor
from tests.stores import keys_never_signed
from tests.support import vector_path

PIN = "admin-api-test-pin"
OK = admin_pb2.RESPONSE_STATUS_OK
GVR = MAINNET.genesis_validators_root
OTHER_GVR = bytes(range(32))


# --- the server under test ------------------------------------------------------------------


@dataclass
class Signer:
    server: GrpcServer
    service: SigningService
    module: EmulatedKeyModule
    store: SqliteStore
    channel: grpc.Channel
    data_dir: Path

    @property
    def keys(self) -> admin_pb2_grpc.KeyAdminStub:
        return admin_pb2_grpc.KeyAdminStub(self.channel)

    @property
    def protection(self) -> admin_pb2_grpc.ProtectionAdminStub:
        return admin_pb2_grpc.ProtectionAdminStub(self.channel)

    @property
    def status(self) -> admin_pb2_grpc.StatusStub:
        return admin_pb2_grpc.StatusStub(self.channel)

    @property
    def eth2(self) -> signer_pb2_grpc.SignerStub:
        return signer_pb2_grpc.SignerStub(self.channel)


def _start(
    tmp_path: Path,
    authorizer: Authorizer | None = None,
    *,
    max_batch_items: int = 1000,
    audit: AuditSink | None = None,
) -> Signer:
    module = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=2**10)
    store = SqliteStore(tmp_path / "protection.sqlite", GVR)
    keys_never_signed(store)  # module and store are made together here
    service = SigningService(MAINNET, KeyRing(module), store, authorizer=authorizer)
    calls = CallContext(service, max_batch_items=max_batch_items, audit=audit)
    history = ProtectionAdmin(store, loaded=service.keyring.list_keys, authorizer=service.authorizer)
    admin = KeyAdmin(module, service.keyring, history, authorizer=service.authorizer, max_items=max_batch_items)
    server = GrpcServer(service, calls, workers=4, extra_servicers=admin_servicers(admin, calls, network=MAINNET.name))
    port = server.bind("127.0.0.1:0", None)
    server.start()
    server.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return Signer(server, service, module, store, channel, tmp_path / "keys")


@pytest.fixture
def signer_server(tmp_path: Path) -> Iterator[Signer]:
    s = _start(tmp_path)
    yield s
    s.channel.close()
    s.server.stop(0)
    s.store.close()


# --- helpers --------------------------------------------------------------------------------


def cheap_keystore(password: str) -> tuple[bytes, bytes]:
    """(keystore JSON, public key): a fresh BLS key under a fast pbkdf2 KDF."""
    secret = bls.random_secret()
    public_key = bls.secret_to_public(secret)
    kdf = eip2335.KdfParams("pbkdf2", secrets.token_bytes(32), 32, c=1000)
    body = eip2335.encrypt_keystore(secret, password, kdf=kdf, pubkey=public_key)
    return json.dumps(body).encode(), public_key


def attestation(public_key: bytes, source_epoch: int, target_epoch: int, block_root: bytes = b"\x01" * 32) -> Any:
    domain = MAINNET.domain(DomainType.BEACON_ATTESTER, target_epoch)
    return signer_pb2.SignBeaconAttestationRequest(
        public_key=public_key,
        domain=domain,
        data=eth2_pb2.AttestationData(
            slot=target_epoch * 32,
            committee_index=0,
            beacon_block_root=block_root,
            source=eth2_pb2.Checkpoint(epoch=source_epoch, root=b"\x02" * 32),
            target=eth2_pb2.Checkpoint(epoch=target_epoch, root=b"\x03" * 32),
        ),
    )


def signing_root_of(request: Any) -> bytes:
    d = request.data
    data = AttestationData(
        slot=d.slot,
        index=d.committee_index,
        beacon_block_root=bytes(d.beacon_block_root),
        source=Checkpoint(d.source.epoch, bytes(d.source.root)),
        target=Checkpoint(d.target.epoch, bytes(d.target.root)),
    )
    return compute_signing_root(data.hash_tree_root(), bytes(request.domain))


def interchange(public_key: bytes, *, gvr: bytes = GVR, source_epoch: int = 5, target_epoch: int = 10) -> bytes:
    return json.dumps(
        {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": "0x" + gvr.hex()},
            "data": [
                {
                    "pubkey": "0x" + public_key.hex(),
                    "signed_blocks": [{"slot": "100"}],
                    "signed_attestations": [{"source_epoch": str(source_epoch), "target_epoch": str(target_epoch)}],
                }
            ],
        }
    ).encode()


def import_one(s: Signer) -> bytes:
    body, public_key = cheap_keystore("pw")
    response = s.keys.ImportKeystores(admin_pb2.ImportKeystoresRequest(keystores=[body], passwords=["pw"]))
    assert response.status == OK, response.message
    assert response.results[0].status == admin_pb2.ITEM_STATUS_IMPORTED
    return public_key


# --- EIP-2335 vector keystores: import, list, sign --------------------------------------------


def _vector_keystores() -> list[Any]:
    base = vector_path("keystore")
    cases: list[Any] = []
    eip = json.loads((base / "eip/eip2335_test_vectors.json").read_text(encoding="utf-8"))
    for case in eip["cases"]:
        cases.append(pytest.param((case["keystore"], case["password"], case["secret"]), id=f"eip-{case['name']}"))
    # staking-deposit-cli's test keystores are the EIP's cases (same password and secret).
    password, secret = eip["cases"][0]["password"], eip["cases"][0]["secret"]
    for path in sorted((base / "staking-deposit-cli/keystore_test_vectors").glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        cases.append(pytest.param((body, password, secret), id=f"staking-deposit-cli-{path.stem}"))
    for path in sorted((base / "chainsafe-bls-keystore").glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        cases.append(pytest.param((body, body["password"], body["secret"]), id=f"chainsafe-{path.stem}"))
    return cases


@pytest.mark.parametrize("case", _vector_keystores())
def test_import_vector_keystore_then_list_and_sign(
    vectors: Path, signer_server: Signer, case: tuple[dict[str, Any], str, str]
) -> None:
    body, password, secret_hex = case
    public_key = bls.secret_to_public(bytes.fromhex(secret_hex.removeprefix("0x")))
    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[json.dumps(body).encode()], passwords=[password], wallet="vec")
    )
    assert response.status == OK, response.message
    assert [(r.index, r.status, bytes(r.public_key)) for r in response.results] == [
        (0, admin_pb2.ITEM_STATUS_IMPORTED, public_key)
    ]

    listed = signer_server.keys.ListKeys(admin_pb2.ListKeysRequest())
    assert listed.status == OK
    assert [(bytes(k.public_key), k.scheme, k.module) for k in listed.keys] == [
        (public_key, admin_pb2.KEY_SCHEME_BLS12_381, admin_pb2.KEY_MODULE_KIND_EMULATED)
    ]
    assert listed.keys[0].account.startswith("vec/")

    # Usable at once, through v1.Signer, with a signature that verifies.
    request = attestation(public_key, 1, 2)
    signed = signer_server.eth2.SignBeaconAttestation(request)
    assert signed.state == responsestate_pb2.SUCCEEDED
    assert bls.verify(public_key, signing_root_of(request), bytes(signed.signature))

    # Importing it again is a duplicate, not an error.
    again = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[json.dumps(body).encode()], passwords=[password])
    )
    assert again.status == OK
    assert again.results[0].status == admin_pb2.ITEM_STATUS_DUPLICATE


# --- per-item results, passwords, secrets ---------------------------------------------------


def test_import_reports_each_item_and_never_echoes_secrets(
    signer_server: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    good, good_pk = cheap_keystore("right horse")
    wrong, wrong_pk = cheap_keystore("the real one")
    caplog.set_level(logging.DEBUG)
    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[good, good, wrong, b"{not json", b'{"version": 4}'],
            passwords=["right horse", "right horse", "battery staple", "x", "y"],
        )
    )
    assert response.status == admin_pb2.RESPONSE_STATUS_PARTIAL
    statuses = [(r.index, r.status, bytes(r.public_key)) for r in response.results]
    assert statuses == [
        (0, admin_pb2.ITEM_STATUS_IMPORTED, good_pk),
        (1, admin_pb2.ITEM_STATUS_DUPLICATE, good_pk),
        (2, admin_pb2.ITEM_STATUS_ERROR, wrong_pk),
        (3, admin_pb2.ITEM_STATUS_ERROR, b""),
        (4, admin_pb2.ITEM_STATUS_ERROR, b""),
    ]
    assert response.results[2].message.startswith("wrong password")
    assert response.results[3].message.startswith("malformed keystore")
    assert response.results[4].message.startswith("malformed keystore")
    everything = response.SerializeToString().decode("latin-1") + "\n".join(
        r.getMessage() + repr(r.__dict__) for r in caplog.records
    )
    for secret in ("right horse", "battery staple", "the real one", "signer-import-"):
        assert secret not in everything
    assert json.loads(wrong)["crypto"]["cipher"]["message"] not in everything
    assert [bytes(k.public_key) for k in signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys] == [good_pk]


def test_one_password_per_keystore_or_one_for_all(signer_server: Signer) -> None:
    (a, a_pk), (b, b_pk) = cheap_keystore("pw-a"), cheap_keystore("pw-b")
    refused = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[a, b], passwords=["pw-a", "pw-b", "extra"])
    )
    assert refused.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert "one password for all keystores or one per keystore" in refused.message
    assert not signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys

    per_keystore = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[a, b], passwords=["pw-a", "pw-b"])
    )
    assert [(r.status, bytes(r.public_key)) for r in per_keystore.results] == [
        (admin_pb2.ITEM_STATUS_IMPORTED, a_pk),
        (admin_pb2.ITEM_STATUS_IMPORTED, b_pk),
    ]
    (c, _), (d, _) = cheap_keystore("same"), cheap_keystore("same")
    for_all = signer_server.keys.ImportKeystores(admin_pb2.ImportKeystoresRequest(keystores=[c, d], passwords=["same"]))
    assert [r.status for r in for_all.results] == [admin_pb2.ITEM_STATUS_IMPORTED] * 2
    all_wrong = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[cheap_keystore("p")[0]], passwords=["q"])
    )
    assert all_wrong.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert len(signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys) == 4


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        pytest.param(admin_pb2.ImportKeystoresRequest(), "no keystores", id="no-keystores"),
        pytest.param(
            admin_pb2.ImportKeystoresRequest(keystores=[b"{}"], passwords=["p"], wallet="../etc"),
            "invalid wallet name",
            id="bad-wallet",
        ),
    ],
)
def test_import_refuses_bad_requests(signer_server: Signer, request_: Any, why: str) -> None:
    response = signer_server.keys.ImportKeystores(request_)
    assert response.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert why in response.message


# --- slashing protection imported with the keys -----------------------------------------------


def test_import_with_slashing_protection_applies_before_the_key_signs(signer_server: Signer) -> None:
    body, public_key = cheap_keystore("pw")
    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[body], passwords=["pw"], slashing_protection=interchange(public_key, target_epoch=10)
        )
    )
    assert response.status == OK, response.message
    # At or below the imported target: refused; above it: signed.
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, 5, 10)).state == responsestate_pb2.DENIED
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, 6, 9)).state == responsestate_pb2.DENIED
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, 5, 11)).state == responsestate_pb2.SUCCEEDED


def test_import_with_interchange_for_another_network_imports_nothing(signer_server: Signer) -> None:
    body, public_key = cheap_keystore("pw")
    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[body], passwords=["pw"], slashing_protection=interchange(public_key, gvr=OTHER_GVR)
        )
    )
    assert response.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert "genesis_validators_root" in response.message
    assert not response.results
    assert not signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, 1, 2)).state == responsestate_pb2.DENIED


def test_keystore_import_brings_the_history_of_the_keys_it_imports_and_of_no_other(signer_server: Signer) -> None:
    """The slashing_protection document is imported for the keys the call imports, and only for
    them: not for a keystore refused (wrong password), not for a key already loaded (duplicate), not
    for a key the call does not import at all (issue 14.2; the Keymanager API's semantics)."""
    loaded_body, loaded = cheap_keystore("pw")
    assert signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[loaded_body], passwords=["pw"])
    ).results[0].status == (admin_pb2.ITEM_STATUS_IMPORTED)
    new_body, new = cheap_keystore("pw")
    refused_body, refused = cheap_keystore("another password")
    outsider = bls.secret_to_public(bls.random_secret())
    document = json.loads(interchange(new, target_epoch=10))
    for public_key in (refused, loaded, outsider):
        document["data"].append(json.loads(interchange(public_key, target_epoch=20))["data"][0])

    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[new_body, refused_body, loaded_body],
            passwords=["pw", "pw", "pw"],
            slashing_protection=json.dumps(document).encode(),
        )
    )
    assert [r.status for r in response.results] == [
        admin_pb2.ITEM_STATUS_IMPORTED,
        admin_pb2.ITEM_STATUS_ERROR,
        admin_pb2.ITEM_STATUS_DUPLICATE,
    ]
    exported = signer_server.store.export_interchange()
    assert [d["pubkey"] for d in exported["data"]] == ["0x" + new.hex()]
    assert signer_server.eth2.SignBeaconAttestation(attestation(new, 5, 10)).state == responsestate_pb2.DENIED
    assert signer_server.eth2.SignBeaconAttestation(attestation(loaded, 5, 10)).state == responsestate_pb2.SUCCEEDED


def test_a_history_for_another_network_is_refused_even_when_no_keystore_is_new(signer_server: Signer) -> None:
    body, public_key = cheap_keystore("pw")
    first = signer_server.keys.ImportKeystores(admin_pb2.ImportKeystoresRequest(keystores=[body], passwords=["pw"]))
    assert first.results[0].status == admin_pb2.ITEM_STATUS_IMPORTED
    again = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[body], passwords=["pw"], slashing_protection=interchange(public_key, gvr=OTHER_GVR)
        )
    )
    assert again.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert "genesis_validators_root" in again.message and not again.results


def test_a_history_the_store_cannot_take_imports_no_keystore(signer_server: Signer) -> None:
    body, public_key = cheap_keystore("pw")
    signer_server.store.close()
    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[body], passwords=["pw"], slashing_protection=interchange(public_key)
        )
    )
    assert response.status == admin_pb2.RESPONSE_STATUS_FAILED
    assert "closed" in response.message and not response.results
    assert signer_server.module.list_keys() == []


# --- delete -----------------------------------------------------------------------------------


def test_delete_returns_history_with_the_signed_attestation_and_the_key_stops_signing(signer_server: Signer) -> None:
    public_key = import_one(signer_server)
    other = import_one(signer_server)
    request = attestation(public_key, 3, 4)
    assert signer_server.eth2.SignBeaconAttestation(request).state == responsestate_pb2.SUCCEEDED

    response, history = read_document(
        signer_server.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key]))
    )
    assert response.status == OK, response.message
    assert [(r.index, r.status, bytes(r.public_key)) for r in response.results] == [
        (0, admin_pb2.ITEM_STATUS_DELETED, public_key)
    ]
    document = json.loads(history)
    assert document["metadata"]["genesis_validators_root"] == "0x" + GVR.hex()
    assert [d["pubkey"] for d in document["data"]] == ["0x" + public_key.hex()]
    assert document["data"][0]["signed_attestations"] == [
        {"source_epoch": "3", "target_epoch": "4", "signing_root": "0x" + signing_root_of(request).hex()}
    ]

    # Gone: not listed, not signable (even the identical, otherwise safe repeat), the other key unaffected.
    listed = [bytes(k.public_key) for k in signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys]
    assert listed == [other]
    assert signer_server.eth2.SignBeaconAttestation(request).state == responsestate_pb2.DENIED
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, 4, 5)).state == responsestate_pb2.DENIED
    assert signer_server.eth2.SignBeaconAttestation(attestation(other, 3, 4)).state == responsestate_pb2.SUCCEEDED


def test_delete_answers_not_active_not_found_and_bad_keys_per_item(signer_server: Signer) -> None:
    public_key = import_one(signer_server)
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, 1, 2)).state == responsestate_pb2.SUCCEEDED
    first, _ = read_document(signer_server.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key])))
    assert first.results[0].status == admin_pb2.ITEM_STATUS_DELETED

    never_seen = bls.secret_to_public(bls.random_secret())
    response, history = read_document(
        signer_server.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key, never_seen, b"\x01" * 5]))
    )
    assert [r.status for r in response.results] == [
        admin_pb2.ITEM_STATUS_NOT_ACTIVE,
        admin_pb2.ITEM_STATUS_NOT_FOUND,
        admin_pb2.ITEM_STATUS_ERROR,
    ]
    assert response.status == admin_pb2.RESPONSE_STATUS_PARTIAL
    assert "48 (BLS12-381)" in response.results[2].message
    document = json.loads(history)
    assert [d["pubkey"] for d in document["data"]] == ["0x" + public_key.hex()]
    refused, nothing = read_document(signer_server.keys.DeleteKeys(admin_pb2.DeleteKeysRequest()))
    assert refused.status == admin_pb2.RESPONSE_STATUS_REFUSED and nothing == b""


def test_delete_reports_a_malformed_public_key_as_invalid_not_as_an_outage(tmp_path: Path) -> None:
    """Per-item outcomes of DeleteKeys name what refused each item: a public key of no key's length
    is the caller's mistake (outcome "invalid"), not an unavailable key module."""
    audit = RecordingAudit()
    s = _start(tmp_path, audit=audit)
    try:
        public_key = import_one(s)
        answer, _ = read_document(s.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key, b"\x01" * 5])))
        assert [r.status for r in answer.results] == [admin_pb2.ITEM_STATUS_DELETED, admin_pb2.ITEM_STATUS_ERROR]
        deleted = [e for e in audit.events if e.method == "DeleteKeys"]
        assert [(e.outcome, e.reason) for e in deleted] == [
            ("succeeded", None),
            ("invalid", "a public key is 48 (BLS12-381), 33 (secp256k1) or 32 (Ed25519) bytes, got 5"),
        ]
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


def test_delete_refused_by_a_closed_store_deletes_nothing(signer_server: Signer) -> None:
    public_key = import_one(signer_server)
    signer_server.store.close()
    response, _ = read_document(signer_server.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key])))
    assert response.status == admin_pb2.RESPONSE_STATUS_FAILED
    assert "closed" in response.message
    assert [bytes(k.public_key) for k in signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys] == [public_key]
    assert [k.public_key for k in signer_server.service.keyring.list_keys()] == [public_key]


FOUR_MIB = 4 * 1024 * 1024


def long_history(public_key: bytes, attestations: int) -> bytes:
    """An EIP-3076 document of ``attestations`` attestations (with signing roots) for one key."""
    records = [
        {"source_epoch": str(e), "target_epoch": str(e + 1), "signing_root": "0x" + e.to_bytes(32, "big").hex()}
        for e in range(1, attestations + 1)
    ]
    return json.dumps(
        {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": "0x" + GVR.hex()},
            "data": [{"pubkey": "0x" + public_key.hex(), "signed_blocks": [], "signed_attestations": records}],
        }
    ).encode()


def test_a_history_over_4_mib_streams_and_a_broken_delete_stream_loses_nothing(signer_server: Signer) -> None:
    """40,000 attestations (five months of duties) export to over 4 MiB, gRPC's default message
    limit: ExportInterchange and DeleteKeys stream the document in chunks. A DeleteKeys stream that
    breaks after its first message has deleted the key, but the history stays in the store: the
    same DeleteKeys again answers NOT_ACTIVE with the whole document."""
    public_key = import_one(signer_server)
    count = 40_000
    report = signer_server.store.import_interchange(long_history(public_key, count))
    assert report.attestations_imported == count

    request = admin_pb2.ExportInterchangeRequest(public_keys=[public_key])
    messages = list(signer_server.protection.ExportInterchange(request))
    exported, exported_json = read_document(iter(messages))
    assert exported.status == OK, exported.message
    assert exported.interchange_json_size == len(exported_json) > FOUR_MIB
    assert len(messages) == -(-len(exported_json) // DOCUMENT_CHUNK_BYTES) >= 5
    (entry,) = json.loads(exported_json)["data"]
    assert len(entry["signed_attestations"]) == count

    delete = admin_pb2.DeleteKeysRequest(public_keys=[public_key])
    stream = signer_server.keys.DeleteKeys(delete)
    first = next(iter(stream))
    assert first.status == OK and first.results[0].status == admin_pb2.ITEM_STATUS_DELETED
    assert first.slashing_protection_size == len(exported_json)
    assert len(first.slashing_protection) == DOCUMENT_CHUNK_BYTES
    stream.cancel()  # type: ignore[no-untyped-call]  # the client goes away after the first chunk
    assert signer_server.module.list_keys() == []
    assert signer_server.eth2.SignBeaconAttestation(attestation(public_key, count + 5, count + 6)).state == (
        responsestate_pb2.DENIED
    )

    again, history = read_document(signer_server.keys.DeleteKeys(delete))
    assert again.status == OK
    assert [(r.status, bytes(r.public_key)) for r in again.results] == [(admin_pb2.ITEM_STATUS_NOT_ACTIVE, public_key)]
    assert history == exported_json  # the same document, whole


def test_read_document_refuses_a_stream_short_of_its_size() -> None:
    first = admin_pb2.ExportInterchangeResponse(status=OK, interchange_json=b"{", interchange_json_size=2)
    with pytest.raises(errors.MalformedRequest, match="carried 1 of 2 document bytes"):
        read_document(iter([first]))
    with pytest.raises(errors.MalformedRequest, match="ended without a message"):
        read_document(iter([]))
    whole = [first, admin_pb2.ExportInterchangeResponse(interchange_json=b"}")]
    assert read_document(iter(whole)) == (first, b"{}")


# --- generate, reload -------------------------------------------------------------------------


def test_generate_keys_then_sign_with_them(signer_server: Signer) -> None:
    response = signer_server.keys.GenerateKeys(admin_pb2.GenerateKeysRequest(count=2, wallet="fresh"))
    assert response.status == OK, response.message
    assert [(r.index, r.status) for r in response.results] == [(0, admin_pb2.ITEM_STATUS_GENERATED), (1, 2)]
    public_keys = [bytes(r.public_key) for r in response.results]
    assert all(len(pk) == 48 for pk in public_keys) and len(set(public_keys)) == 2
    for pk in public_keys:
        request = attestation(pk, 1, 2)
        signed = signer_server.eth2.SignBeaconAttestation(request)
        assert signed.state == responsestate_pb2.SUCCEEDED
        assert bls.verify(pk, signing_root_of(request), bytes(signed.signature))
    accounts = sorted(k.account for k in signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys)
    assert accounts == ["fresh/0", "fresh/1"]

    more = signer_server.keys.GenerateKeys(
        admin_pb2.GenerateKeysRequest(count=1, wallet="fresh", scheme=admin_pb2.KEY_SCHEME_SECP256K1)
    )
    assert more.status == OK and len(more.results[0].public_key) == 33
    secp = signer_server.keys.ListKeys(admin_pb2.ListKeysRequest(scheme=admin_pb2.KEY_SCHEME_SECP256K1)).keys
    assert [(k.account, bytes(k.public_key)) for k in secp] == [("fresh/2", bytes(more.results[0].public_key))]

    assert signer_server.keys.GenerateKeys(admin_pb2.GenerateKeysRequest(count=0)).status == (
        admin_pb2.RESPONSE_STATUS_REFUSED
    )


def test_reload_keys_picks_up_keys_added_out_of_band(signer_server: Signer) -> None:
    outside = EmulatedKeyModule(signer_server.data_dir, PIN)
    outside.unlock()
    added = outside.generate("outside/0", Scheme.BLS)
    assert signer_server.eth2.SignBeaconAttestation(attestation(added.public_key, 1, 2)).state == (
        responsestate_pb2.DENIED
    )
    response = signer_server.keys.ReloadKeys(admin_pb2.ReloadKeysRequest())
    assert response.status == OK
    counts = {c.scheme: c.count for c in response.keys_loaded}
    assert counts[admin_pb2.KEY_SCHEME_BLS12_381] == 1 and counts[admin_pb2.KEY_SCHEME_SECP256K1] == 0
    assert signer_server.eth2.SignBeaconAttestation(attestation(added.public_key, 1, 2)).state == (
        responsestate_pb2.SUCCEEDED
    )


# --- ProtectionAdmin ------------------------------------------------------------------------


def test_interchange_round_trip(signer_server: Signer, tmp_path: Path) -> None:
    public_key = bls.secret_to_public(bls.random_secret())
    response = signer_server.protection.ImportInterchange(
        admin_pb2.ImportInterchangeRequest(interchange_json=interchange(public_key))
    )
    assert (response.status, response.validators, response.blocks_imported, response.attestations_imported) == (
        OK,
        1,
        1,
        1,
    )
    exported, exported_json = read_document(
        signer_server.protection.ExportInterchange(admin_pb2.ExportInterchangeRequest())
    )
    assert exported.status == OK
    document = json.loads(exported_json)
    assert document["data"] == [
        {
            "pubkey": "0x" + public_key.hex(),
            "signed_blocks": [{"slot": "100"}],
            "signed_attestations": [{"source_epoch": "5", "target_epoch": "10"}],
        }
    ]
    # Exported -> imported into another signer -> the same history; into this one -> all skipped.
    other = _start(tmp_path / "other")
    try:
        into_other = other.protection.ImportInterchange(
            admin_pb2.ImportInterchangeRequest(interchange_json=exported_json)
        )
        assert (into_other.blocks_imported, into_other.attestations_imported) == (1, 1)
        _, again = read_document(
            other.protection.ExportInterchange(admin_pb2.ExportInterchangeRequest(public_keys=[public_key]))
        )
        assert json.loads(again) == document
    finally:
        other.channel.close()
        other.server.stop(0)
        other.store.close()
    repeat = signer_server.protection.ImportInterchange(
        admin_pb2.ImportInterchangeRequest(interchange_json=exported_json)
    )
    assert (repeat.blocks_imported, repeat.blocks_skipped, repeat.attestations_skipped) == (0, 1, 1)


@pytest.mark.parametrize(
    ("document", "why"),
    [
        pytest.param(interchange(b"\xaa" * 48, gvr=OTHER_GVR), "genesis_validators_root", id="wrong-genesis-root"),
        pytest.param(b"{not json", "JSON", id="bad-json"),
        pytest.param(b"", "empty", id="empty"),
    ],
)
def test_interchange_import_refusals(signer_server: Signer, document: bytes, why: str) -> None:
    response = signer_server.protection.ImportInterchange(admin_pb2.ImportInterchangeRequest(interchange_json=document))
    assert response.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert why in response.message
    assert (
        json.loads(read_document(signer_server.protection.ExportInterchange(admin_pb2.ExportInterchangeRequest()))[1])[
            "data"
        ]
        == []
    )


def test_cometbft_state_round_trip(signer_server: Signer) -> None:
    generated = signer_server.keys.GenerateKeys(
        admin_pb2.GenerateKeysRequest(count=1, wallet="comet", scheme=admin_pb2.KEY_SCHEME_ED25519)
    )
    public_key = bytes(generated.results[0].public_key)
    state = json.dumps({"height": "36", "round": 0, "step": 3}).encode()
    imported = signer_server.protection.ImportCometbftState(
        admin_pb2.ImportCometbftStateRequest(chain_id="test-chain", public_key=public_key, state_json=state)
    )
    assert imported.status == OK, imported.message
    exported = signer_server.protection.ExportCometbftState(
        admin_pb2.ExportCometbftStateRequest(chain_id="test-chain", public_key=public_key)
    )
    assert exported.status == OK
    assert {k: v for k, v in json.loads(exported.state_json).items() if k in ("height", "round", "step")} == {
        "height": "36",
        "round": 0,
        "step": 3,
    }
    bad = signer_server.protection.ImportCometbftState(
        admin_pb2.ImportCometbftStateRequest(chain_id="", public_key=public_key, state_json=state)
    )
    assert bad.status == admin_pb2.RESPONSE_STATUS_REFUSED and "chain_id" in bad.message


@pytest.mark.parametrize("chain_id", ["c" * 300, "é" * 26, "chain\none"], ids=["300-chars", "52-bytes", "newline"])
def test_cometbft_state_calls_apply_the_chain_id_rule(signer_server: Signer, chain_id: str) -> None:
    generated = signer_server.keys.GenerateKeys(
        admin_pb2.GenerateKeysRequest(count=1, wallet="comet", scheme=admin_pb2.KEY_SCHEME_ED25519)
    )
    public_key = bytes(generated.results[0].public_key)
    state = json.dumps({"height": "36", "round": 0, "step": 3}).encode()
    imported = signer_server.protection.ImportCometbftState(
        admin_pb2.ImportCometbftStateRequest(chain_id=chain_id, public_key=public_key, state_json=state)
    )
    assert imported.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert imported.message.startswith("chain_id "), imported.message
    exported = signer_server.protection.ExportCometbftState(
        admin_pb2.ExportCometbftStateRequest(chain_id=chain_id, public_key=public_key)
    )
    assert exported.status == admin_pb2.RESPONSE_STATUS_REFUSED and not exported.state_json


# --- untrusted documents: nesting bombs and costly keystores are named refusals ------------------

BOMB = b"[" * 200_000 + b"]" * 200_000
BOMB_REFUSAL = "nests arrays and objects 200000 deep, over the limit of 32"


def test_nesting_bombs_are_refused_by_name_not_failed(signer_server: Signer) -> None:
    generated = signer_server.keys.GenerateKeys(
        admin_pb2.GenerateKeysRequest(count=1, wallet="comet", scheme=admin_pb2.KEY_SCHEME_ED25519)
    )
    public_key = bytes(generated.results[0].public_key)
    interchange_bomb = signer_server.protection.ImportInterchange(
        admin_pb2.ImportInterchangeRequest(interchange_json=BOMB)
    )
    assert interchange_bomb.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert interchange_bomb.message == f"the interchange document {BOMB_REFUSAL}"
    state_bomb = signer_server.protection.ImportCometbftState(
        admin_pb2.ImportCometbftStateRequest(chain_id="test-chain", public_key=public_key, state_json=BOMB)
    )
    assert state_bomb.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert state_bomb.message == f"the priv_validator_state document {BOMB_REFUSAL}"
    keystore_bomb = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[BOMB], passwords=["pw"])
    )
    assert keystore_bomb.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert [(r.status, r.message) for r in keystore_bomb.results] == [
        (admin_pb2.ITEM_STATUS_ERROR, f"malformed keystore: the keystore {BOMB_REFUSAL}")
    ]
    with_protection = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[cheap_keystore("pw")[0]], passwords=["pw"], slashing_protection=BOMB
        )
    )
    assert with_protection.status == admin_pb2.RESPONSE_STATUS_REFUSED
    assert with_protection.message == f"the interchange document {BOMB_REFUSAL}"
    assert [bytes(k.public_key) for k in signer_server.keys.ListKeys(admin_pb2.ListKeysRequest()).keys] == [public_key]


@pytest.mark.timeout(60)  # run, the hostile KDF takes ~90 s and ~1.9 GiB
def test_a_keystore_over_the_kdf_limits_is_refused_before_its_kdf_runs(signer_server: Signer) -> None:
    body, _ = cheap_keystore("pw")
    hostile = json.loads(body)
    hostile["crypto"]["kdf"] = {
        "function": "scrypt",
        "params": {"dklen": 32, "n": 2**20, "r": 15, "p": 16, "salt": "07" * 32},
        "message": "",
    }
    response = signer_server.keys.ImportKeystores(
        admin_pb2.ImportKeystoresRequest(keystores=[json.dumps(hostile).encode(), body], passwords=["pw"])
    )
    assert response.status == admin_pb2.RESPONSE_STATUS_PARTIAL
    assert response.results[0].status == admin_pb2.ITEM_STATUS_ERROR
    assert response.results[0].message == (
        "malformed keystore: crypto.kdf.params: scrypt n=1048576, r=15, p=16 needs 2,013,300,480 bytes of memory "
        "(128*r*(n+p+2)), over the limit of 1,073,741,824 (1 GiB)"
    )
    assert response.results[1].status == admin_pb2.ITEM_STATUS_IMPORTED


def test_an_import_over_the_kdf_work_per_call_is_refused_before_any_kdf_runs(tmp_path: Path) -> None:
    s = _start(tmp_path, max_batch_items=4)  # the per-call budget: 4 standard keystores of KDF work
    try:
        secret = bls.random_secret()
        kdf = eip2335.KdfParams("pbkdf2", secrets.token_bytes(32), 32, c=2**20)  # 4 standard keystores each
        body = json.dumps(eip2335.encrypt_keystore(secret, "pw", kdf=kdf)).encode()
        started = time.monotonic()
        response = s.keys.ImportKeystores(admin_pb2.ImportKeystoresRequest(keystores=[body, body], passwords=["pw"]))
        assert response.status == admin_pb2.RESPONSE_STATUS_REFUSED
        assert response.message == (
            "the 2 keystores to decrypt need 8.0 standard keystores' worth of KDF work, over the limit of 4 per "
            "call; import them in smaller calls"
        )
        assert not response.results
        assert time.monotonic() - started < 1.0  # two pbkdf2 runs of c=2**20 would take longer
        assert not s.keys.ListKeys(admin_pb2.ListKeysRequest()).keys
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


# --- Status, registration ---------------------------------------------------------------------


def test_status_reports_version_network_readiness_keys_and_store(signer_server: Signer) -> None:
    import_one(signer_server)
    signer_server.keys.GenerateKeys(admin_pb2.GenerateKeysRequest(count=1, scheme=admin_pb2.KEY_SCHEME_SECP256K1))
    response = signer_server.status.GetStatus(admin_pb2.GetStatusRequest())
    assert response.status == OK
    assert response.version == signer.__version__
    assert response.network == "mainnet"
    assert response.ready and response.message == ""
    assert {c.scheme: c.count for c in response.keys_loaded} == {
        admin_pb2.KEY_SCHEME_BLS12_381: 1,
        admin_pb2.KEY_SCHEME_SECP256K1: 1,
        admin_pb2.KEY_SCHEME_ED25519: 0,
    }
    assert response.key_module == admin_pb2.KEY_MODULE_KIND_EMULATED
    assert response.protection_store.backend == admin_pb2.STORE_BACKEND_SQLITE
    assert response.protection_store.reachable and not response.protection_store.message

    signer_server.store.close()
    down = signer_server.status.GetStatus(admin_pb2.GetStatusRequest())
    assert not down.ready and "protection store unreachable" in down.message
    assert not down.protection_store.reachable and down.protection_store.message


def test_admin_services_are_in_reflection_and_health(signer_server: Signer) -> None:
    assert set(SERVICE_NAMES) == {
        "signer.admin.v1.KeyAdmin",
        "signer.admin.v1.ProtectionAdmin",
        "signer.admin.v1.Status",
        "signer.admin.v1.Approvals",
    }
    assert set(SERVICE_NAMES) <= set(signer_server.server.service_names)
    health = health_pb2_grpc.HealthStub(signer_server.channel)
    for name in SERVICE_NAMES:
        answer = health.Check(health_pb2.HealthCheckRequest(service=name))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


# --- permissions ------------------------------------------------------------------------------


def _permission_authorizer(*clients: ClientConfig) -> Authorizer:
    try:
        from signer.api.auth import PermissionAuthorizer  # noqa: PLC0415 - another engineer's module
    except ImportError:  # pragma: no cover - only before signer/api/auth.py exists
        pytest.fail("signer/api/auth.py (PermissionAuthorizer) is missing")
    return PermissionAuthorizer(clients)


_DENIED_CALLS = [
    pytest.param("keys", "ListKeys", admin_pb2.ListKeysRequest(), id="ListKeys"),
    pytest.param(
        "keys",
        "ImportKeystores",
        admin_pb2.ImportKeystoresRequest(keystores=[b"{}"], passwords=["p"]),
        id="ImportKeystores",
    ),
    pytest.param("keys", "GenerateKeys", admin_pb2.GenerateKeysRequest(count=1), id="GenerateKeys"),
    pytest.param("keys", "DeleteKeys", admin_pb2.DeleteKeysRequest(public_keys=[b"\xaa" * 48]), id="DeleteKeys"),
    pytest.param("keys", "ReloadKeys", admin_pb2.ReloadKeysRequest(), id="ReloadKeys"),
    pytest.param(
        "protection",
        "ImportInterchange",
        admin_pb2.ImportInterchangeRequest(interchange_json=interchange(b"\xaa" * 48)),
        id="ImportInterchange",
    ),
    pytest.param("protection", "ExportInterchange", admin_pb2.ExportInterchangeRequest(), id="ExportInterchange"),
    pytest.param(
        "protection",
        "ImportCometbftState",
        admin_pb2.ImportCometbftStateRequest(chain_id="c", public_key=b"\x02" * 33, state_json=b"{}"),
        id="ImportCometbftState",
    ),
    pytest.param(
        "protection",
        "ExportCometbftState",
        admin_pb2.ExportCometbftStateRequest(chain_id="c", public_key=b"\x02" * 33),
        id="ExportCometbftState",
    ),
    pytest.param("status", "GetStatus", admin_pb2.GetStatusRequest(), id="GetStatus"),
]


@pytest.mark.parametrize(("stub", "method", "request_"), _DENIED_CALLS)
def test_a_client_without_admin_operations_is_denied(tmp_path: Path, stub: str, method: str, request_: Any) -> None:
    signing_only = ClientConfig(name="local", allow_accounts=("*",), operations=("sign_attestation",))
    s = _start(tmp_path, _permission_authorizer(signing_only))
    try:
        with pytest.raises(grpc.RpcError) as caught:
            answer = getattr(getattr(s, stub), method)(request_)
            if not isinstance(answer, Message):  # a stream: the refusal comes with the first message
                list(answer)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "may not" in (caught.value.details() or "")
        assert s.module.list_keys() == []
        assert json.loads(json.dumps(s.store.export_interchange()))["data"] == []
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


def test_delete_is_authorized_per_key(tmp_path: Path) -> None:
    admin = ClientConfig(
        name="local",
        allow_accounts=("mine/*",),
        operations=("key_admin", "sign_attestation"),
    )
    s = _start(tmp_path, _permission_authorizer(admin))
    try:
        mine = s.module.generate("mine/0", Scheme.BLS).public_key
        theirs = s.module.generate("theirs/0", Scheme.BLS).public_key
        s.service.keyring.reload_keys()
        with pytest.raises(grpc.RpcError) as caught:
            read_document(s.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[mine, theirs])))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "theirs/0" in (caught.value.details() or "")
        assert {k.public_key for k in s.module.list_keys()} == {mine, theirs}  # nothing deleted
        assert s.eth2.SignBeaconAttestation(attestation(mine, 1, 2)).state == responsestate_pb2.SUCCEEDED
        deleted, _ = read_document(s.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[mine])))
        assert deleted.results[0].status == admin_pb2.ITEM_STATUS_DELETED
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


# --- import and export are scoped to the caller's keys (issue 13.8) -----------------------------


def _scoped_signer(tmp_path: Path) -> tuple[Signer, bytes, bytes]:
    """A server whose client "local" may import/export (and sign) for mine/* only; (server, mine, theirs)."""
    scoped = ClientConfig(
        name="local",
        allow_accounts=("mine/*",),
        operations=("key_admin", "protection_import", "protection_export", "sign_attestation"),
    )
    s = _start(tmp_path, _permission_authorizer(scoped))
    mine = s.module.generate("mine/0", Scheme.BLS).public_key
    theirs = s.module.generate("theirs/0", Scheme.BLS).public_key
    s.service.keyring.reload_keys()
    return s, mine, theirs


def _two_keys(mine: bytes, theirs: bytes) -> bytes:
    """An interchange for both keys; the other key's record at epoch 2**63-1 would block it forever."""
    document = json.loads(interchange(mine))
    far = str(2**63 - 1)
    document["data"].append(
        {
            "pubkey": "0x" + theirs.hex(),
            "signed_blocks": [{"slot": far}],
            "signed_attestations": [{"source_epoch": far, "target_epoch": far}],
        }
    )
    return json.dumps(document).encode()


def test_import_naming_a_key_the_client_may_not_use_is_refused_whole(tmp_path: Path) -> None:
    s, mine, theirs = _scoped_signer(tmp_path)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            s.protection.ImportInterchange(admin_pb2.ImportInterchangeRequest(interchange_json=_two_keys(mine, theirs)))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "0x" + theirs.hex() in (caught.value.details() or "")
        assert s.store.export_interchange()["data"] == []  # nothing imported, not even for mine
        # the other key is not blocked
        (verdict,) = s.store.check_and_record([AttestationCheck(theirs, 1, 2, b"\x01" * 32)])
        assert verdict.ok
        # a document naming only the caller's keys is imported
        answer = s.protection.ImportInterchange(admin_pb2.ImportInterchangeRequest(interchange_json=interchange(mine)))
        assert answer.status == OK and answer.validators == 1
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


def test_keystore_import_with_history_for_a_key_the_client_may_not_use_is_refused(tmp_path: Path) -> None:
    s, mine, theirs = _scoped_signer(tmp_path)
    try:
        body, _ = cheap_keystore("pw")
        with pytest.raises(grpc.RpcError) as caught:
            s.keys.ImportKeystores(
                admin_pb2.ImportKeystoresRequest(
                    keystores=[body], passwords=["pw"], wallet="mine", slashing_protection=_two_keys(mine, theirs)
                )
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "0x" + theirs.hex() in (caught.value.details() or "")
        assert s.store.export_interchange()["data"] == []
        assert {k.name for k in s.module.list_keys()} == {"mine/0", "theirs/0"}  # no keystore imported
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


def test_an_export_leaving_keys_out_records_no_refusal(tmp_path: Path) -> None:
    """An export that names no keys is filtered to the caller's keys: the keys it leaves out are not
    refusals (no access_denied metric, no denied audit event), only the keys it may see."""
    monitor = RecordingMonitor()
    scoped = ClientConfig(name="local", allow_accounts=("mine/*",), operations=("key_admin", "protection_export"))
    try:
        from signer.api.auth import PermissionAuthorizer  # noqa: PLC0415 - as _permission_authorizer
    except ImportError:  # pragma: no cover
        pytest.fail("signer/api/auth.py (PermissionAuthorizer) is missing")
    s = _start(tmp_path, PermissionAuthorizer([scoped], monitor=monitor))
    try:
        mine = s.module.generate("mine/0", Scheme.BLS).public_key
        theirs = s.module.generate("theirs/0", Scheme.BLS).public_key
        s.service.keyring.reload_keys()
        s.store.import_interchange(_two_keys(mine, theirs))
        answer, document = read_document(s.protection.ExportInterchange(admin_pb2.ExportInterchangeRequest()))
        assert answer.status == OK, answer.message
        assert [d["pubkey"] for d in json.loads(document)["data"]] == ["0x" + mine.hex()]
        assert monitor.denied == []
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


def test_export_naming_no_keys_holds_only_the_callers_keys(tmp_path: Path) -> None:
    s, mine, theirs = _scoped_signer(tmp_path)
    try:
        outsider = b"\xab" * 48  # history of a key that is not loaded (imported earlier by an operator)
        s.store.import_interchange(_two_keys(mine, theirs))
        s.store.import_interchange(interchange(outsider))
        answer, document = read_document(s.protection.ExportInterchange(admin_pb2.ExportInterchangeRequest()))
        assert answer.status == OK, answer.message
        exported = json.loads(document)
        assert [d["pubkey"] for d in exported["data"]] == ["0x" + mine.hex()]
        # naming another key is refused, as before
        with pytest.raises(grpc.RpcError) as caught:
            read_document(s.protection.ExportInterchange(admin_pb2.ExportInterchangeRequest(public_keys=[theirs])))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        s.channel.close()
        s.server.stop(0)
        s.store.close()


# --- delete while the key is signing ----------------------------------------------------------


def test_every_signature_made_before_delete_is_in_the_returned_history(signer_server: Signer) -> None:
    """Signers hammer one key from several threads while DeleteKeys runs: each attestation that was
    signed must be in the history DeleteKeys returns (the key leaves the index before the export)."""
    public_key = import_one(signer_server)
    counter = itertools.count(2)
    signed: list[tuple[int, int]] = []
    refused_after_delete = threading.Event()
    lock = threading.Lock()

    def sign_until_refused() -> None:
        stub = signer_pb2_grpc.SignerStub(signer_server.channel)
        while not refused_after_delete.is_set() and time.monotonic() < give_up_at:
            with lock:
                target = next(counter)
            answer = stub.SignBeaconAttestation(attestation(public_key, target - 1, target))
            if answer.state == responsestate_pb2.SUCCEEDED:
                with lock:
                    signed.append((target - 1, target))
            elif deleted.is_set():
                refused_after_delete.set()

    deleted = threading.Event()
    give_up_at = time.monotonic() + 30
    threads = [threading.Thread(target=sign_until_refused, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    while len(signed) < 20 and time.monotonic() < give_up_at:
        time.sleep(0.01)
    response, returned = read_document(
        signer_server.keys.DeleteKeys(admin_pb2.DeleteKeysRequest(public_keys=[public_key]))
    )
    deleted.set()
    for t in threads:
        t.join(timeout=30)
    assert refused_after_delete.is_set()
    assert response.results[0].status == admin_pb2.ITEM_STATUS_DELETED
    history = json.loads(returned)["data"][0]["signed_attestations"]
    exported = {(int(a["source_epoch"]), int(a["target_epoch"])) for a in history}
    assert len(signed) >= 20
    assert set(signed) <= exported
