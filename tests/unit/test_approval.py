"""Pending operations and their approval (signer.approval.AdminGate) with an injected clock, and the
key-admin core's approved delete on a real emulated module and SQLite store (signer.keyadmin)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest

from signer import errors
from signer.approval import AdminGate, ApprovalKind
from signer.crypto import bls
from signer.eth2.networks import MAINNET
from signer.keyadmin import (
    Deletion,
    ImportStatus,
    KeyAdmin,
    KeyStatus,
    PendingOperation,
    ProtectionAdmin,
    keystore_documents,
)
from signer.keys import eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import SigningService
from signer.totp import OperatorCode, SecondFactor, code_at
from signer.types import AttestationCheck, ClientIdentity, Scheme
from tests.fakes import FakeClock, RecordingAudit
from tests.stores import keys_never_signed
from tests.support import done

ADMIN = ClientIdentity("admin-1")
T0 = 1_800_000_001.0
SECRETS: dict[str, str] = {
    "alice": base64.b32encode(b"a" * 20).decode(),
    "bob": base64.b32encode(b"b" * 20).decode(),
    "carol": base64.b32encode(b"c" * 20).decode(),
}


def _gate(
    clock: FakeClock, audit: RecordingAudit | None = None, *, expiry_s: float = 60.0, max_pending: int = 4
) -> AdminGate:
    factor = SecondFactor(lambda client: SECRETS, clock=clock)
    return AdminGate(
        factor,
        require_approval=list(ApprovalKind),
        expiry_s=expiry_s,
        max_pending=max_pending,
        clock=clock,
        audit=audit,
    )


def _propose(
    gate: AdminGate, operator: str = "alice", kind: ApprovalKind = ApprovalKind.DELETE_KEYS
) -> PendingOperation:
    return gate.propose(kind, ADMIN, operator, ("request",), public_keys=[b"\x01" * 48], summary="delete one key")


def test_a_pending_operation_says_what_it_is_and_a_second_operator_takes_it_once() -> None:
    clock, audit = FakeClock(T0), RecordingAudit()
    gate = _gate(clock, audit)
    pending = gate.propose(
        ApprovalKind.IMPORT_INTERCHANGE,
        ADMIN,
        "alice",
        ("request",),
        public_keys=[b"\x02" * 48],
        document=b"{}",
        summary="import",
    )
    assert (pending.kind, pending.operator, pending.client, pending.expires_s) == (
        ApprovalKind.IMPORT_INTERCHANGE,
        "alice",
        "admin-1",
        T0 + 60.0,
    )
    assert pending.document_sha256.hex() == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert len(pending.id) == 32
    assert gate.pending() == [pending]
    assert gate.claim(ApprovalKind.IMPORT_INTERCHANGE, pending.id, ADMIN, "bob") is pending
    gate.take(pending, ADMIN, "bob")
    assert gate.pending() == []
    with pytest.raises(errors.PendingOperationDone, match=r"^approval_done: .*approved by operator 'bob'"):
        gate.claim(ApprovalKind.IMPORT_INTERCHANGE, pending.id, ADMIN, "carol")
    with pytest.raises(errors.PendingOperationDone):  # a racing approval that claimed it as well
        gate.take(pending, ADMIN, "carol")
    assert [(e.outcome, e.operator, e.approval) for e in audit.events] == [
        ("pending", "alice", pending.id),
        ("approved", "bob", pending.id),
        ("denied", "carol", pending.id),
    ]


def test_the_operator_who_asked_may_not_approve() -> None:
    gate = _gate(FakeClock(T0))
    pending = _propose(gate)
    with pytest.raises(errors.SameOperatorApproval, match=r"^approval_same_operator: operator 'alice'"):
        gate.claim(ApprovalKind.DELETE_KEYS, pending.id, ADMIN, "alice")
    assert gate.pending() == [pending]  # still waiting for a second operator


def test_an_expired_operation_is_refused_and_forgotten() -> None:
    clock = FakeClock(T0)
    gate = _gate(clock, expiry_s=10.0)
    pending = _propose(gate)
    clock.now = T0 + 10.0
    with pytest.raises(errors.PendingOperationExpired, match=r"^approval_expired: "):
        gate.claim(ApprovalKind.DELETE_KEYS, pending.id, ADMIN, "bob")
    assert gate.pending() == []
    with pytest.raises(errors.PendingOperationExpired):  # remembered as expired, not unknown
        gate.claim(ApprovalKind.DELETE_KEYS, pending.id, ADMIN, "bob")


def test_expired_operations_are_cleaned_when_listing() -> None:
    clock = FakeClock(T0)
    gate = _gate(clock, expiry_s=10.0)
    first = _propose(gate)
    clock.now = T0 + 5.0
    second = _propose(gate)
    clock.now = T0 + 12.0
    assert gate.pending() == [second]
    with pytest.raises(errors.PendingOperationExpired):
        gate.claim(ApprovalKind.DELETE_KEYS, first.id, ADMIN, "bob")


def test_unknown_ids_and_other_kinds_are_refused_by_name() -> None:
    gate = _gate(FakeClock(T0))
    pending = _propose(gate)
    with pytest.raises(errors.UnknownPendingOperation, match=r"^approval_unknown: .*restarted"):
        gate.claim(ApprovalKind.DELETE_KEYS, "0" * 32, ADMIN, "bob")
    with pytest.raises(errors.PendingKindMismatch, match="is delete_keys, not import_interchange"):
        gate.claim(ApprovalKind.IMPORT_INTERCHANGE, pending.id, ADMIN, "bob")


def test_pending_operations_are_bounded() -> None:
    clock = FakeClock(T0)
    gate = _gate(clock, max_pending=2, expiry_s=100.0)
    _propose(gate)
    clock.now = T0 + 30
    _propose(gate)
    with pytest.raises(errors.TooManyPending) as refused:
        _propose(gate)
    assert refused.value.retry_after_s == pytest.approx(70.0)
    clock.now = T0 + 100.0  # the first expired: room again
    _propose(gate)


def test_a_gate_without_second_factor_asks_nobody_and_cannot_be_told_to() -> None:
    gate = AdminGate()
    assert gate.operator(ADMIN, None, method="m") is None
    assert not any(gate.needs_approval(kind) for kind in ApprovalKind)
    with pytest.raises(errors.ConfigError, match="second factor"):
        AdminGate(require_approval=[ApprovalKind.DELETE_KEYS])


# --- through the key-admin core -------------------------------------------------------------------


def _admin(tmp_path: Path, clock: FakeClock) -> tuple[KeyAdmin, EmulatedKeyModule, SqliteStore, SigningService]:
    module = EmulatedKeyModule(tmp_path / "keys", "approval-test-module-pin", create=True, scrypt_n=2**10)
    store = SqliteStore(tmp_path / "protection.sqlite", MAINNET.genesis_validators_root)
    keys_never_signed(store)
    service = SigningService(MAINNET, KeyRing(module), store)
    gate = _gate(clock)
    return (
        KeyAdmin(module, service.keyring, ProtectionAdmin(store, loaded=service.keyring.list_keys, gate=gate)),
        module,
        store,
        service,
    )


def _code(operator: str, clock: FakeClock) -> OperatorCode:
    return OperatorCode(operator, code_at(SECRETS[operator], clock.now))


@pytest.mark.slow  # decrypts keystores
def test_a_keystore_import_with_history_waits_and_imports_history_then_key_on_approval(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    admin, module, store, _service = _admin(tmp_path, clock)
    secret = bls.random_secret()
    public_key = bls.secret_to_public(secret)
    kdf = eip2335.KdfParams("pbkdf2", secrets.token_bytes(32), 32, c=1000)
    body = json.dumps(eip2335.encrypt_keystore(secret, "pw", kdf=kdf, pubkey=public_key)).encode()
    history = json.dumps(
        {
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": "0x" + MAINNET.genesis_validators_root.hex(),
            },
            "data": [{"pubkey": "0x" + public_key.hex(), "signed_blocks": [{"slot": "77"}], "signed_attestations": []}],
        }
    ).encode()
    documents = keystore_documents([body], ["pw"])
    asked = admin.import_keystores(ADMIN, documents, slashing_protection=history, code=_code("alice", clock))
    assert isinstance(asked, PendingOperation)
    assert (asked.kind, asked.keystores, asked.public_keys, asked.document_size) == (
        ApprovalKind.IMPORT_KEYSTORES,
        1,
        (public_key,),
        len(history),
    )
    assert "pw" not in repr(asked)  # the passwords stay in the request, which is never shown
    assert public_key not in {k.public_key for k in module.list_keys()}
    assert store.export_interchange([public_key])["data"] == []
    (result,) = admin.approve_import_keystores(ADMIN, asked.id, who="test", code=_code("bob", clock))
    assert result.status is ImportStatus.IMPORTED
    assert public_key in {k.public_key for k in module.list_keys()}
    (entry,) = store.export_interchange([public_key])["data"]
    assert entry["signed_blocks"][0]["slot"] == "77"
    # Without history nothing waits: an import of keys alone runs at once.
    other = bls.random_secret()
    body2 = json.dumps(eip2335.encrypt_keystore(other, "pw", kdf=kdf, pubkey=bls.secret_to_public(other))).encode()
    (alone,) = done(admin.import_keystores(ADMIN, keystore_documents([body2], ["pw"]), code=_code("carol", clock)))
    assert alone.status is ImportStatus.IMPORTED
    store.close()


def test_an_approved_delete_runs_once_with_the_approvers_permission_and_returns_the_history(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    admin, module, store, service = _admin(tmp_path, clock)
    key = module.generate("w/0", Scheme.BLS)
    service.keyring.reload_keys()
    (verdict,) = store.check_and_record([AttestationCheck(key.public_key, 3, 4, b"\x05" * 32)])
    assert verdict.ok

    def code(operator: str) -> OperatorCode:
        return _code(operator, clock)

    asked = admin.delete(ADMIN, [key.public_key], code=code("alice"))
    assert isinstance(asked, PendingOperation)
    assert asked.public_keys == (key.public_key,)
    assert key.public_key in {k.public_key for k in module.list_keys()}  # nothing done yet
    clock.now += 30  # Alice's next code: the factor accepts it, the approval refuses her
    with pytest.raises(errors.SameOperatorApproval):
        admin.approve_delete(ADMIN, asked.id, code=code("alice"))
    with pytest.raises(errors.OneTimeCodeMissing):
        admin.approve_delete(ADMIN, asked.id)
    done = admin.approve_delete(ADMIN, asked.id, code=code("bob"))
    assert isinstance(done, Deletion)
    assert [r.status for r in done.results] == [KeyStatus.DELETED]
    (entry,) = done.slashing_protection["data"]
    assert entry["signed_attestations"][0]["target_epoch"] == "4"
    assert key.public_key not in {k.public_key for k in module.list_keys()}
    with pytest.raises(errors.PendingOperationDone):
        admin.approve_delete(ADMIN, asked.id, code=code("carol"))
    store.close()
