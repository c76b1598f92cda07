"""Issue 16.1 and 16.2 end to end, on one real ``signer serve --config`` over mTLS (tests.e2e.admin_server)
whose ``admin.require_approval`` is narrowed to ``["delete_keys"]``.

* Every admin method but Status/GetStatus, taken from the service descriptors of admin.proto (so a
  method added later is in the list by itself, and fails here unless the key-admin core gates it),
  called without a one-time code, is refused with PERMISSION_DENIED ``otp_missing`` and changes no
  key. Each request is one that would do something if it ran (a key to delete, a document to import).
* With approval narrowed to deletions, a history import (ImportInterchange, ImportKeystores with
  ``slashing_protection``) runs on one operator's code, while a deletion still waits for a second
  operator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory

from signer.api._proto.signer.admin.v1 import admin_pb2
from signer.api._proto.v1 import responsestate_pb2
from signer.api.admin import OPERATOR_METADATA, OTP_METADATA, read_document
from signer.crypto import bls
from signer.keys import eip2335
from tests.e2e.admin_server import AdminServer, start_admin_server
from tests.e2e.test_eth2_e2e import att, public_key
from tests.e2e.test_protection_lifecycle_e2e import minimal_interchange

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
TIMEOUT_S = 30.0
OPERATORS = ("alice", "bob", "carol", "dave")
ONE_FACTOR = {"signer.admin.v1.Status/GetStatus"}
"""The only admin method a client calls with its certificate alone."""


def admin_methods() -> list[tuple[descriptor.ServiceDescriptor, descriptor.MethodDescriptor]]:
    return [
        (service, method)
        for service in admin_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if f"{service.full_name}/{method.name}" not in ONE_FACTOR
    ]


GATED = admin_methods()


def _keystore() -> tuple[bytes, bytes]:
    """(keystore JSON of a new key under password "pw" with a fast KDF, its public key)."""
    secret = bls.random_secret()
    key = bls.secret_to_public(secret)
    kdf = eip2335.KdfParams("pbkdf2", b"\x02" * 32, 32, c=1000)
    return json.dumps(eip2335.encrypt_keystore(secret, "pw", kdf=kdf, pubkey=key)).encode(), key


def _interchange(index: int) -> bytes:
    return json.dumps(minimal_interchange(index, 3200, 100, 101)).encode()


def _request(method: descriptor.MethodDescriptor) -> Any:
    """A request of the method's type that would change something if it ran."""
    keystore, _ = _keystore()
    fields: dict[str, dict[str, Any]] = {
        "ImportKeystores": {"keystores": [keystore], "passwords": ["pw"]},
        "GenerateKeys": {"count": 1},
        "DeleteKeys": {"public_keys": [public_key(0)]},
        "ImportInterchange": {"interchange_json": _interchange(0)},
        "ExportInterchange": {"public_keys": [public_key(0)]},
    }
    request_class: Any = message_factory.GetMessageClass(method.input_type)  # made from the descriptor
    if method.input_type.name == "ApproveRequest":
        return request_class(id="0" * 32)
    return request_class(**fields.get(method.name, {}))


def _call(server: AdminServer, service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor,
          request: Any, metadata: tuple[tuple[str, str], ...]) -> grpc.RpcError | None:  # fmt: skip
    """Call ``service/method`` generically; the error it ended with, None if it answered."""
    assert not method.client_streaming, "no admin method streams requests; teach this test if one does"
    path = f"/{service.full_name}/{method.name}"
    channel = server.channel()
    kwargs = {"request_serializer": type(request).SerializeToString, "response_deserializer": bytes}
    try:
        if method.server_streaming:
            list(channel.unary_stream(path, **kwargs)(request, metadata=metadata, timeout=TIMEOUT_S))
        else:
            channel.unary_unary(path, **kwargs)(request, metadata=metadata, timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        return exc
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    started = start_admin_server(
        tmp_path_factory.mktemp("admin-gate"), operators=OPERATORS, require_approval=["delete_keys"]
    )
    try:
        yield started
    finally:
        assert started.proc.terminate() == 0, started.proc.logs


def _keys_loaded(server: AdminServer) -> list[tuple[int, int]]:
    status = server.status().GetStatus(admin_pb2.GetStatusRequest(), timeout=TIMEOUT_S)  # one factor
    assert status.status == admin_pb2.RESPONSE_STATUS_OK
    return [(c.scheme, c.count) for c in status.keys_loaded]


def test_the_list_of_gated_methods_comes_from_the_descriptors_and_holds_every_service() -> None:
    names = {f"{s.name}/{m.name}" for s, m in GATED}
    assert {s.name for s, _ in GATED} >= {"KeyAdmin", "ProtectionAdmin", "Approvals"}
    assert {"KeyAdmin/DeleteKeys", "ProtectionAdmin/ImportInterchange", "Approvals/ApproveDeleteKeys"} <= names
    assert len(names) >= 14
    assert not any(name.startswith("Status/") for name in names)


@pytest.mark.parametrize(("service", "method"), GATED, ids=[f"{s.name}/{m.name}" for s, m in GATED])
def test_every_admin_method_but_get_status_is_refused_without_a_code(
    server: AdminServer, service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor
) -> None:
    before = _keys_loaded(server)
    for metadata in ((), ((OPERATOR_METADATA, "alice"),), ((OTP_METADATA, "123456"),)):
        error = _call(server, service, method, _request(method), metadata)
        assert error is not None, f"{service.name}/{method.name} answered without a one-time code"
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
        assert (error.details() or "").startswith("otp_missing: "), error.details()
    assert _keys_loaded(server) == before


def test_a_history_import_runs_on_one_code_while_a_delete_waits_for_a_second_operator(server: AdminServer) -> None:
    signer = server.signer()
    interchange = server.protection().ImportInterchange(
        admin_pb2.ImportInterchangeRequest(interchange_json=_interchange(2)),
        metadata=server.operators.metadata("alice"),
        timeout=TIMEOUT_S,
    )
    assert (interchange.status, interchange.blocks_imported, interchange.attestations_imported) == (
        admin_pb2.RESPONSE_STATUS_OK,
        1,
        1,
    ), interchange.message
    assert signer.SignBeaconAttestation(att(2, 50, 60).request(), timeout=TIMEOUT_S).state == DENIED  # in force

    keystore, key = _keystore()
    history = json.loads(_interchange(0))
    history["data"][0]["pubkey"] = "0x" + key.hex()
    imported = server.key_admin().ImportKeystores(
        admin_pb2.ImportKeystoresRequest(
            keystores=[keystore], passwords=["pw"], slashing_protection=json.dumps(history).encode()
        ),
        metadata=server.operators.metadata("alice"),
        timeout=TIMEOUT_S,
    )
    assert imported.status == admin_pb2.RESPONSE_STATUS_OK, imported.message
    assert [(r.public_key, r.status) for r in imported.results] == [(key, admin_pb2.ITEM_STATUS_IMPORTED)]

    asked, _ = read_document(
        server.key_admin().DeleteKeys(
            admin_pb2.DeleteKeysRequest(public_keys=[public_key(3)]),
            metadata=server.operators.metadata("bob"),
            timeout=TIMEOUT_S,
        )
    )
    assert asked.status == admin_pb2.RESPONSE_STATUS_PENDING, asked.message
    assert asked.pending.kind == admin_pb2.PENDING_KIND_DELETE_KEYS
    assert signer.SignBeaconAttestation(att(3, 1, 2).request(), timeout=TIMEOUT_S).state == SUCCEEDED  # not yet
    listed = server.approvals().ListPending(
        admin_pb2.ListPendingRequest(), metadata=server.operators.metadata("carol"), timeout=TIMEOUT_S
    )
    assert [p.id for p in listed.pending] == [asked.pending.id]  # the imports did not wait
    done, _ = read_document(
        server.approvals().ApproveDeleteKeys(
            admin_pb2.ApproveRequest(id=asked.pending.id), metadata=server.operators.metadata("dave"), timeout=TIMEOUT_S
        )
    )
    assert [r.status for r in done.results] == [admin_pb2.ITEM_STATUS_DELETED], done.message
    assert signer.SignBeaconAttestation(att(3, 2, 3).request(), timeout=TIMEOUT_S).state == DENIED  # gone
