"""The Keymanager API routes (signer.api.keymanager) over Starlette's TestClient, on the real key-admin
core: an emulated module, a SQLite store and the SigningService as the key index. What is tested here
is the translation (the wire shape of each answer and refusal, the bearer token, the operator headers,
the approval endpoint); the core's rules have their own tests (test_keyadmin, test_approval), and
tests/e2e/test_keymanager_e2e.py runs the same calls against a real ``signer serve``."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from signer.api.auth import PermissionAuthorizer
from signer.api.bearer import BearerToken
from signer.api.context import CallContext
from signer.api.http_server import PEER_KEY
from signer.api.keymanager import KEYSTORES_PATH, OPERATOR_HEADER, OTP_HEADER, KeymanagerApi
from signer.api.rest import RestContext, build_rest_app
from signer.approval import AdminGate, ApprovalKind
from signer.config import ClientConfig
from signer.crypto import bls
from signer.eth2.networks import MAINNET
from signer.keyadmin import KeyAdmin, ProtectionAdmin
from signer.keys import eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import SigningService
from signer.totp import STEP_S, SecondFactor, code_at
from signer.types import AttestationCheck, AuditEvent, ClientIdentity, NullMonitor
from tests.stores import keys_never_signed

GVR = MAINNET.genesis_validators_root
PIN = "unit-test-module-pin"
TOKEN = secrets.token_hex(32)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "keystore-password"  # noqa: S105 - a test keystore's password
OPERATORS: dict[str, str] = {
    "alice": base64.b32encode(b"a" * 20).decode(),
    "bob": base64.b32encode(b"b" * 20).decode(),
}


class Audit:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


@dataclass
class Rig:
    http: TestClient
    store: SqliteStore
    keys: KeyRing
    """The signer's key index: what signs."""
    audit: Audit


class Peer:
    """What the HTTP server does for every request: the caller's identity in the ASGI scope."""

    def __init__(self, app: ASGIApp, client: ClientIdentity) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, PEER_KEY: self.client}, receive, send)


def _rig(
    tmp_path: Path, *, authorizer: PermissionAuthorizer | None = None, gate: AdminGate | None = None
) -> Iterator[Rig]:
    module = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=2**10)
    store = SqliteStore(tmp_path / "protection.sqlite", GVR)
    keys_never_signed(store)
    ring = KeyRing(module)
    service = SigningService(MAINNET, ring, store)
    history = ProtectionAdmin(store, loaded=ring.list_keys, authorizer=authorizer, gate=gate)
    admin = KeyAdmin(module, ring, history, authorizer=authorizer, import_workers=1)
    audit = Audit()
    rest = RestContext(None, NullMonitor(), audit=audit, workers=2)
    api = KeymanagerApi(rest, CallContext(service, audit=audit), admin, BearerToken(TOKEN))
    app = Peer(build_rest_app([api.routes()]), ClientIdentity("admin-1"))
    with TestClient(app, raise_server_exceptions=True) as http:
        yield Rig(http, store, ring, audit)
    rest.close()
    store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    yield from _rig(tmp_path)


def _keystore(password: str = PASSWORD) -> tuple[str, bytes]:
    secret = bls.random_secret()
    public_key = bls.secret_to_public(secret)
    kdf = eip2335.KdfParams("pbkdf2", secrets.token_bytes(32), 32, c=1000)
    return json.dumps(eip2335.encrypt_keystore(secret, password, kdf=kdf, pubkey=public_key)), public_key


def _interchange(*public_keys: bytes, attestation: tuple[int, int] | None = None) -> str:
    entry: dict[str, Any] = {"signed_blocks": [], "signed_attestations": []}
    if attestation is not None:
        entry["signed_attestations"] = [{"source_epoch": str(attestation[0]), "target_epoch": str(attestation[1])}]
    return json.dumps(
        {
            "metadata": {"interchange_format_version": "5", "genesis_validators_root": "0x" + GVR.hex()},
            "data": [{"pubkey": "0x" + pk.hex(), **entry} for pk in public_keys],
        }
    )


def _hex(public_key: bytes) -> str:
    return "0x" + public_key.hex()


# --- the bearer token --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_every_keystores_call_needs_the_bearer_token(rig: Rig, method: str) -> None:
    body = {"keystores": [], "passwords": []} if method == "POST" else {"pubkeys": ["0x" + "aa" * 48]}
    for headers, code, words in (
        ({}, 401, "no bearer token"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "malformed Authorization header"),
        ({"Authorization": f"Bearer {'0' * 64}"}, 403, "wrong bearer token"),
    ):
        answer = rig.http.request(method, KEYSTORES_PATH, json=None if method == "GET" else body, headers=headers)
        assert answer.status_code == code, answer.text
        assert words in answer.json()["message"]
        assert answer.headers["content-type"] == "application/json"
    assert rig.audit.events and {e.outcome for e in rig.audit.events} == {"denied"}
    assert all(TOKEN not in str(e) for e in rig.audit.events)


# --- list, import, delete ----------------------------------------------------------------------


def test_import_with_history_then_list(rig: Rig) -> None:
    keystore, public_key = _keystore()
    answer = rig.http.post(
        KEYSTORES_PATH,
        json={
            "keystores": [keystore],
            "passwords": [PASSWORD],
            "slashing_protection": _interchange(public_key, attestation=(3, 4)),
        },
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"data": [{"status": "imported", "message": ""}]}
    listed = rig.http.get(KEYSTORES_PATH, headers=AUTH)
    assert listed.status_code == 200
    assert listed.json() == {"data": [{"validating_pubkey": _hex(public_key), "readonly": False}]}
    # the history came with the key: an attestation at or below the imported target is refused
    (verdict,) = rig.store.check_and_record([AttestationCheck(public_key, 3, 4, b"\x09" * 32)])
    assert not verdict.ok
    imported = [e for e in rig.audit.events if e.method == "KeymanagerImportKeystores"]
    assert [(e.outcome, e.public_key, e.client) for e in imported] == [("succeeded", public_key, "admin-1")]


def test_import_answers_per_keystore_and_imports_history_only_for_keys_imported(rig: Rig) -> None:
    first, first_key = _keystore()
    rig.http.post(KEYSTORES_PATH, json={"keystores": [first], "passwords": [PASSWORD]}, headers=AUTH)
    wrong, wrong_key = _keystore("another password")
    fresh, fresh_key = _keystore()
    history = _interchange(first_key, wrong_key, fresh_key, attestation=(5, 6))
    answer = rig.http.post(
        KEYSTORES_PATH,
        json={"keystores": [first, wrong, fresh], "passwords": [PASSWORD] * 3, "slashing_protection": history},
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [d["status"] for d in data] == ["duplicate", "error", "imported"]
    assert "password" in data[1]["message"]
    exported = rig.store.export_interchange([first_key, wrong_key, fresh_key])
    with_history = {d["pubkey"] for d in exported["data"] if d["signed_attestations"]}
    assert with_history == {_hex(fresh_key)}
    outcomes = [(e.outcome, e.public_key) for e in rig.audit.events if e.method == "KeymanagerImportKeystores"][-3:]
    assert outcomes == [("succeeded", first_key), ("denied", wrong_key), ("succeeded", fresh_key)]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "keystore import request"),
        (b"[]", "keystore import request"),
        (json.dumps({"keystores": ["{}"], "passwords": []}).encode(), "1 keystores"),
        (json.dumps({"keystores": [{"crypto": {}}], "passwords": ["x"]}).encode(), "keystores.0"),
        (json.dumps({"passwords": ["x"]}).encode(), "keystores: Field required"),
    ],
    ids=["not-json", "not-object", "unequal-lists", "keystore-not-string", "no-keystores"],
)
def test_a_malformed_import_is_400_naming_the_problem(rig: Rig, body: bytes, words: str) -> None:
    answer = rig.http.post(KEYSTORES_PATH, content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["message"]
    assert rig.keys.list_keys() == []


def test_a_refused_history_document_is_400_and_imports_nothing(rig: Rig) -> None:
    keystore, public_key = _keystore()
    other_network = _interchange(public_key).replace(GVR.hex(), "11" * 32)
    answer = rig.http.post(
        KEYSTORES_PATH,
        json={"keystores": [keystore], "passwords": [PASSWORD], "slashing_protection": other_network},
        headers=AUTH,
    )
    assert answer.status_code == 400, answer.text
    assert "genesis_validators_root" in answer.json()["message"]
    assert rig.keys.list_keys() == []


def test_an_empty_import_answers_an_empty_list(rig: Rig) -> None:
    answer = rig.http.post(KEYSTORES_PATH, json={"keystores": [], "passwords": []}, headers=AUTH)
    assert (answer.status_code, answer.json()) == (200, {"data": []})


def test_delete_returns_and_retains_the_history_and_is_never_404(rig: Rig) -> None:
    keystore, public_key = _keystore()
    rig.http.post(KEYSTORES_PATH, json={"keystores": [keystore], "passwords": [PASSWORD]}, headers=AUTH)
    (verdict,) = rig.store.check_and_record([AttestationCheck(public_key, 1, 2, b"\x07" * 32)])
    assert verdict.ok
    never_seen = bls.secret_to_public(bls.random_secret())

    first = rig.http.request(
        "DELETE", KEYSTORES_PATH, json={"pubkeys": [_hex(public_key), _hex(never_seen)]}, headers=AUTH
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert [d["status"] for d in body["data"]] == ["deleted", "not_found"]
    history = json.loads(body["slashing_protection"])
    assert history["metadata"]["genesis_validators_root"] == "0x" + GVR.hex()
    assert [d["pubkey"] for d in history["data"]] == [_hex(public_key)]
    assert [(a["source_epoch"], a["target_epoch"]) for a in history["data"][0]["signed_attestations"]] == [("1", "2")]
    assert rig.keys.list_keys() == []
    assert rig.http.get(KEYSTORES_PATH, headers=AUTH).json() == {"data": []}

    again = rig.http.request("DELETE", KEYSTORES_PATH, json={"pubkeys": [_hex(public_key)]}, headers=AUTH)
    assert again.status_code == 200
    assert [d["status"] for d in again.json()["data"]] == ["not_active"]
    assert json.loads(again.json()["slashing_protection"]) == history

    nothing = rig.http.request("DELETE", KEYSTORES_PATH, json={"pubkeys": [_hex(never_seen)]}, headers=AUTH)
    assert nothing.status_code == 200
    assert [d["status"] for d in nothing.json()["data"]] == ["not_found"]
    assert json.loads(nothing.json()["slashing_protection"])["data"] == []


def test_delete_answers_error_for_a_key_of_no_valid_length_and_400_for_one_not_hex(rig: Rig) -> None:
    short = rig.http.request("DELETE", KEYSTORES_PATH, json={"pubkeys": ["0x1234"]}, headers=AUTH)
    assert short.status_code == 200
    assert short.json()["data"][0]["status"] == "error"
    assert "48 (BLS12-381)" in short.json()["data"][0]["message"]
    bad = rig.http.request("DELETE", KEYSTORES_PATH, json={"pubkeys": ["0xzz"]}, headers=AUTH)
    assert bad.status_code == 400
    assert "pubkeys.0 is not 0x-hex" in bad.json()["message"]
    missing = rig.http.request("DELETE", KEYSTORES_PATH, json={}, headers=AUTH)
    assert missing.status_code == 400
    assert "pubkeys" in missing.json()["message"]


# --- permissions and the second factor ---------------------------------------------------------


def test_a_client_without_key_admin_is_403_naming_the_permission(tmp_path: Path) -> None:
    authorizer = PermissionAuthorizer(
        [ClientConfig(name="admin-1", allow_accounts=("*",), operations=("sign_attestation",))]
    )
    for rig in _rig(tmp_path, authorizer=authorizer):
        answer = rig.http.get(KEYSTORES_PATH, headers=AUTH)
        assert answer.status_code == 403
        assert "may not key_admin" in answer.json()["message"]


class Clock:
    """The second factor's clock: each operator's code is taken once per 30 s step, so the clock moves
    one step after every code handed out."""

    def __init__(self) -> None:
        self.now = 1_800_000_001.0

    def __call__(self) -> float:
        return self.now

    def code(self, operator: str) -> dict[str, str]:
        headers = {OPERATOR_HEADER: operator, OTP_HEADER: code_at(OPERATORS[operator], self.now)}
        self.now += STEP_S
        return headers


def test_with_the_second_factor_on_a_missing_code_is_refused_by_name_and_a_delete_waits_for_approval(
    tmp_path: Path,
) -> None:
    clock = Clock()
    gate = AdminGate(
        SecondFactor(lambda client: OPERATORS, clock=clock), require_approval=[ApprovalKind.DELETE_KEYS], clock=clock
    )
    for rig in _rig(tmp_path, gate=gate):
        refused = rig.http.get(KEYSTORES_PATH, headers=AUTH)
        assert refused.status_code == 403
        assert refused.json()["message"].startswith("otp_missing: ")

        keystore, public_key = _keystore()
        imported = rig.http.post(
            KEYSTORES_PATH,
            json={"keystores": [keystore], "passwords": [PASSWORD]},
            headers={**AUTH, **clock.code("alice")},
        )
        assert [d["status"] for d in imported.json()["data"]] == ["imported"]
        (verdict,) = rig.store.check_and_record([AttestationCheck(public_key, 1, 2, b"\x07" * 32)])
        assert verdict.ok

        asked = rig.http.request(
            "DELETE", KEYSTORES_PATH, json={"pubkeys": [_hex(public_key)]}, headers={**AUTH, **clock.code("alice")}
        )
        assert asked.status_code == 202, asked.text
        pending = asked.json()["pending"]
        assert pending["kind"] == "delete_keys" and pending["requested_by_operator"] == "alice"
        assert pending["public_keys"] == [_hex(public_key)]
        assert "nothing done yet" in asked.json()["message"] and pending["approve"] in asked.json()["message"]
        assert [k.public_key for k in rig.keys.list_keys()] == [public_key]

        same = rig.http.post(pending["approve"], headers={**AUTH, **clock.code("alice")})
        assert same.status_code == 403
        assert same.json()["message"].startswith("approval_same_operator: ")

        approved = rig.http.post(pending["approve"], headers={**AUTH, **clock.code("bob")})
        assert approved.status_code == 200, approved.text
        assert [d["status"] for d in approved.json()["data"]] == ["deleted"]
        assert json.loads(approved.json()["slashing_protection"])["data"][0]["pubkey"] == _hex(public_key)
        assert rig.keys.list_keys() == []

        unknown = rig.http.post("/signer/v1/approvals/reload_keys/abc", headers={**AUTH, **clock.code("bob")})
        assert unknown.status_code == 404
        assert "no such endpoint" in unknown.json()["message"]
