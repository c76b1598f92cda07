"""End to end, admin calls' second factor and two-person approval (issue 16.1, 16.2).

One ``signer serve --config`` process (module scope) over mTLS (tests.certs), with keys made by the
CLI first (dev/0..3, other/0..1; tests.e2e.test_security_e2e.make_keys). Client ``admin-1`` may
administer and sign and has operators, each enrolled with ``signer admin enroll-operator`` (its
secret in a 0600 file, named in the config); ``admin-bare`` may administer but has no operators.
``[admin]``: the defaults (second factor on; delete and history imports wait for approval) with a
short ``approval_expiry_s`` and a low ``otp_max_failures``.

Codes are computed from the operators' secret files (``Operators.code``): a code is single-use, so
each test spends the codes of operators of its own, and the helper never hands out a code twice.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import grpc
import pytest

from signer.api._proto.signer.admin.v1 import admin_pb2, admin_pb2_grpc
from signer.api._proto.v1 import responsestate_pb2, signer_pb2_grpc
from signer.api.admin import OPERATOR_METADATA, OTP_METADATA, read_document
from signer.totp import STEP_S, code_at
from tests.certs import Pki, make_pki
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_eth2_e2e import att
from tests.e2e.test_security_e2e import credentials, keys_toml, make_keys, signer_cli
from tests.support import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

OPERATORS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "henry", "ivan", "judy", "ken")
EXPIRY_S = 5.0
MAX_FAILURES = 3
CALL_TIMEOUT_S = 30.0
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass
class Operators:
    """The operators' secrets, and the codes handed out so far (each step's code once)."""

    secrets: dict[str, str]
    last_step: dict[str, int] = field(default_factory=dict)

    def code(self, operator: str) -> str:
        """The operator's next unused code: the current step's, or the next step's (the server
        accepts one step either side); waits for a later step when both are spent."""
        current = int(time.time() // STEP_S)
        step = max(current, self.last_step.get(operator, current - 1) + 1)
        if step > current + 1:
            time.sleep((step - 1) * STEP_S - time.time() + 0.1)
        self.last_step[operator] = step
        return code_at(self.secrets[operator], step * STEP_S)

    def metadata(self, operator: str) -> tuple[tuple[str, str], ...]:
        return ((OPERATOR_METADATA, operator), (OTP_METADATA, self.code(operator)))


@dataclass
class Admin:
    proc: SignerProcess
    pki: Pki
    keys: dict[str, bytes]
    operators: Operators
    audit: Path

    def channel(self, client: str = "admin-1") -> grpc.Channel:
        return self.proc.channel(credentials(self.pki.ca, self.pki.clients[client]))

    def key_admin(self, client: str = "admin-1") -> admin_pb2_grpc.KeyAdminStub:
        return admin_pb2_grpc.KeyAdminStub(self.channel(client))

    def approvals(self) -> admin_pb2_grpc.ApprovalsStub:
        return admin_pb2_grpc.ApprovalsStub(self.channel())

    def audit_records(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.audit.read_text(encoding="utf-8").splitlines()]

    def wait_for_audit(self, wanted: object, timeout_s: float = 10.0) -> list[dict[str, object]]:
        """The audit records once one satisfies ``wanted`` (the log is written by its own thread)."""
        deadline = time.monotonic() + timeout_s
        while True:
            records = self.audit_records()
            if any(wanted(r) for r in records) or time.monotonic() > deadline:  # type: ignore[operator]
                return records
            time.sleep(0.1)

    def security_events(self, event: str) -> float:
        with urllib.request.urlopen(self.proc.metrics_url, timeout=10) as resp:  # noqa: S310 - loopback http
            for line in resp.read().decode().splitlines():
                if line.startswith(f'signer_security_events_total{{event="{event}"}} '):
                    return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"signer_security_events_total{{event={event!r}}} not exposed")


def _config(pki: Pki, data_dir: Path, pin_file: Path, audit: Path, secret_files: dict[str, Path]) -> str:
    operators = ", ".join(
        f'{{ name = "{name}", secret = {{ file = "{path}" }} }}' for name, path in secret_files.items()
    )
    return f"""
[server]
shutdown_grace_s = 2.0

[server.tls]
cert_file = "{pki.server.cert}"
key_file = "{pki.server.key}"
client_ca_file = "{pki.ca.cert}"
reload_interval_s = 3600.0
{keys_toml(data_dir, pin_file)}
[[clients]]
name = "admin-1"
allow_accounts = ["*"]
operations = ["key_admin", "protection_import", "protection_export", "sign_attestation"]
operators = [{operators}]

[[clients]]
name = "admin-bare"
allow_accounts = ["*"]
operations = ["key_admin", "protection_import", "protection_export"]

[admin]
approval_expiry_s = {EXPIRY_S}
otp_max_failures = {MAX_FAILURES}
otp_lockout_s = 600.0

[audit]
path = "{audit}"
"""


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    base = tmp_path_factory.mktemp("admin-2fa")
    pki = make_pki(base, clients=("admin-1", "admin-bare"))
    data_dir = base / "data"
    pin_file, keys = make_keys(data_dir)
    secret_files = {name: base / f"{name}.totp" for name in OPERATORS}
    for name, path in secret_files.items():
        printed = signer_cli("admin", "enroll-operator", name, "--secret-file", path, "--no-qr")
        assert "otpauth://totp/" in printed
    audit = base / "audit.jsonl"
    config = base / "signer.toml"
    config.write_text(_config(pki, data_dir, pin_file, audit, secret_files), encoding="utf-8")
    init_protection(config)  # keys made for this test: never signed
    proc = SignerProcess.from_config(config).start()
    secrets = {name: path.read_text(encoding="utf-8").strip() for name, path in secret_files.items()}
    try:
        yield Admin(proc, pki, keys, Operators(secrets), audit)
    finally:
        assert proc.terminate() == 0, proc.logs


def _refused(call: object, request: object, *, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.Call:
    """The failed call (grpc's RpcError is, at run time, also the Call that failed)."""
    with pytest.raises(grpc.RpcError) as refused:
        result = call(request, metadata=metadata, timeout=CALL_TIMEOUT_S)  # type: ignore[operator]
        if isinstance(result, Iterator):
            list(result)
    return cast(grpc.Call, refused.value)


def test_an_admin_call_without_a_code_is_refused_by_name(admin: Admin) -> None:
    keys = admin.key_admin()
    for metadata in ((), ((OPERATOR_METADATA, "alice"),), ((OTP_METADATA, "123456"),)):
        error = _refused(keys.ListKeys, admin_pb2.ListKeysRequest(), metadata=metadata)
        assert error.code() == PERMISSION_DENIED
        assert error.details().startswith("otp_missing: ")


def test_a_wrong_code_is_refused_by_name(admin: Admin) -> None:
    right = code_at(admin.operators.secrets["bob"], time.time())
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    error = _refused(
        admin.key_admin().ListKeys,
        admin_pb2.ListKeysRequest(),
        metadata=((OPERATOR_METADATA, "bob"), (OTP_METADATA, wrong)),
    )
    assert (error.code(), error.details().split(":")[0]) == (PERMISSION_DENIED, "otp_wrong")


def test_an_expired_code_is_refused_by_name(admin: Admin) -> None:
    old = code_at(admin.operators.secrets["bob"], time.time() - 4 * STEP_S)
    error = _refused(
        admin.key_admin().ListKeys,
        admin_pb2.ListKeysRequest(),
        metadata=((OPERATOR_METADATA, "bob"), (OTP_METADATA, old)),
    )
    assert (error.code(), error.details().split(":")[0]) == (PERMISSION_DENIED, "otp_expired")


def test_a_code_works_once_and_its_replay_is_refused_by_name(admin: Admin) -> None:
    keys = admin.key_admin()
    metadata = admin.operators.metadata("alice")
    listed = keys.ListKeys(admin_pb2.ListKeysRequest(), metadata=metadata, timeout=CALL_TIMEOUT_S)
    assert listed.status == admin_pb2.RESPONSE_STATUS_OK
    assert {k.account for k in listed.keys} >= {"dev/0", "other/0", "other/1"}
    replayed_before = admin.security_events("otp_replayed")
    error = _refused(keys.ListKeys, admin_pb2.ListKeysRequest(), metadata=metadata)
    assert (error.code(), error.details().split(":")[0]) == (PERMISSION_DENIED, "otp_replayed")
    assert admin.security_events("otp_replayed") == replayed_before + 1

    def replay_audited(r: dict[str, object]) -> bool:
        return (r.get("operation"), r.get("operator")) == ("second_factor", "alice") and str(r["reason"]).startswith(
            "otp_replayed: "
        )

    assert any(replay_audited(r) for r in admin.wait_for_audit(replay_audited))


def test_failures_lock_an_operator_out_even_for_its_right_code(admin: Admin) -> None:
    keys = admin.key_admin()
    right = code_at(admin.operators.secrets["frank"], time.time())
    wrong = f"{(int(right) + 7) % 10**6:06d}"
    for _ in range(MAX_FAILURES):
        error = _refused(
            keys.ListKeys, admin_pb2.ListKeysRequest(), metadata=((OPERATOR_METADATA, "frank"), (OTP_METADATA, wrong))
        )
        assert error.code() == PERMISSION_DENIED
    error = _refused(keys.ListKeys, admin_pb2.ListKeysRequest(), metadata=admin.operators.metadata("frank"))
    assert (error.code(), error.details().split(":")[0]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "otp_locked_out")
    assert trailers(error)["retry-after-ms"]


def test_a_client_without_operators_makes_no_admin_call_but_reads_status_with_one_factor(admin: Admin) -> None:
    error = _refused(
        admin.key_admin("admin-bare").ListKeys, admin_pb2.ListKeysRequest(), metadata=admin.operators.metadata("judy")
    )
    assert (error.code(), error.details().split(":")[0]) == (PERMISSION_DENIED, "otp_not_configured")
    status = admin_pb2_grpc.StatusStub(admin.channel("admin-bare")).GetStatus(
        admin_pb2.GetStatusRequest(), timeout=CALL_TIMEOUT_S
    )
    assert status.status == admin_pb2.RESPONSE_STATUS_OK and status.ready


def test_an_approved_delete_runs_once_and_returns_its_history(admin: Admin) -> None:
    public_key = admin.keys["other/0"]
    signer = signer_pb2_grpc.SignerStub(admin.channel())
    attestation = att(0, 3, 4, account="other/0")
    signed = signer.SignBeaconAttestation(attestation.request(), timeout=CALL_TIMEOUT_S)
    assert signed.state == responsestate_pb2.SUCCEEDED

    keys, approvals = admin.key_admin(), admin.approvals()
    asked, _ = read_document(
        keys.DeleteKeys(
            admin_pb2.DeleteKeysRequest(public_keys=[public_key]),
            metadata=admin.operators.metadata("carol"),
            timeout=CALL_TIMEOUT_S,
        )
    )
    assert asked.status == admin_pb2.RESPONSE_STATUS_PENDING, asked.message
    pending = asked.pending
    assert (pending.kind, pending.requested_by_operator, pending.requested_by_client) == (
        admin_pb2.PENDING_KIND_DELETE_KEYS,
        "carol",
        "admin-1",
    )
    assert list(pending.public_keys) == [public_key]
    assert pending.expires_unix_s - pending.created_unix_s == int(EXPIRY_S)
    assert pending.id in asked.message and "ApproveDeleteKeys" in asked.message
    assert not asked.results
    # Nothing was done: the key still signs.
    again = signer.SignBeaconAttestation(att(0, 4, 5, account="other/0").request(), timeout=CALL_TIMEOUT_S)
    assert again.state == responsestate_pb2.SUCCEEDED

    same = _refused(
        approvals.ApproveDeleteKeys, admin_pb2.ApproveRequest(id=pending.id), metadata=admin.operators.metadata("carol")
    )
    assert (same.code(), same.details().split(":")[0]) == (PERMISSION_DENIED, "approval_same_operator")

    listed = approvals.ListPending(
        admin_pb2.ListPendingRequest(), metadata=admin.operators.metadata("dave"), timeout=CALL_TIMEOUT_S
    )
    (shown,) = [p for p in listed.pending if p.id == pending.id]
    assert shown == pending

    done, document = read_document(
        approvals.ApproveDeleteKeys(
            admin_pb2.ApproveRequest(id=pending.id), metadata=admin.operators.metadata("erin"), timeout=CALL_TIMEOUT_S
        )
    )
    assert done.status == admin_pb2.RESPONSE_STATUS_OK, done.message
    assert [(r.public_key, r.status) for r in done.results] == [(public_key, admin_pb2.ITEM_STATUS_DELETED)]
    (entry,) = json.loads(document)["data"]
    assert entry["pubkey"] == "0x" + public_key.hex()
    assert [(a["source_epoch"], a["target_epoch"]) for a in entry["signed_attestations"]] == [("3", "4"), ("4", "5")]
    assert entry["signed_attestations"][0]["signing_root"] == "0x" + attestation.signing_root().hex()
    after = signer.SignBeaconAttestation(att(0, 5, 6, account="other/0").request(), timeout=CALL_TIMEOUT_S)
    assert after.state == responsestate_pb2.DENIED  # the key is gone

    twice = _refused(
        approvals.ApproveDeleteKeys, admin_pb2.ApproveRequest(id=pending.id), metadata=admin.operators.metadata("grace")
    )
    assert (twice.code(), twice.details().split(":")[0]) == (PERMISSION_DENIED, "approval_done")

    records = admin.wait_for_audit(lambda r: (r.get("approval"), r.get("operator")) == (pending.id, "grace"))
    steps = [(r["outcome"], r.get("operator")) for r in records if r.get("approval") == pending.id]
    assert ("pending", "carol") in steps and ("approved", "erin") in steps
    assert ("denied", "carol") in steps and ("denied", "grace") in steps


def test_a_pending_operation_expires_unapproved(admin: Admin) -> None:
    public_key = admin.keys["other/1"]
    asked, _ = read_document(
        admin.key_admin().DeleteKeys(
            admin_pb2.DeleteKeysRequest(public_keys=[public_key]),
            metadata=admin.operators.metadata("henry"),
            timeout=CALL_TIMEOUT_S,
        )
    )
    assert asked.status == admin_pb2.RESPONSE_STATUS_PENDING
    time.sleep(EXPIRY_S + 0.5)
    error = _refused(
        admin.approvals().ApproveDeleteKeys,
        admin_pb2.ApproveRequest(id=asked.pending.id),
        metadata=admin.operators.metadata("ivan"),
    )
    assert (error.code(), error.details().split(":")[0]) == (PERMISSION_DENIED, "approval_expired")
    signed = signer_pb2_grpc.SignerStub(admin.channel()).SignBeaconAttestation(
        att(0, 1, 2, account="other/1").request(), timeout=CALL_TIMEOUT_S
    )
    assert signed.state == responsestate_pb2.SUCCEEDED  # never deleted


def test_an_interchange_import_waits_for_approval_and_the_approver_sees_its_digest(admin: Admin) -> None:
    public_key = admin.keys["dev/3"]
    document = json.dumps(
        {
            "metadata": {
                "interchange_format_version": "5",
                "genesis_validators_root": "0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
            },
            "data": [
                {"pubkey": "0x" + public_key.hex(), "signed_blocks": [{"slot": "1000"}], "signed_attestations": []}
            ],
        }
    ).encode()
    protection = admin_pb2_grpc.ProtectionAdminStub(admin.channel())
    asked = protection.ImportInterchange(
        admin_pb2.ImportInterchangeRequest(interchange_json=document),
        metadata=admin.operators.metadata("judy"),
        timeout=CALL_TIMEOUT_S,
    )
    assert asked.status == admin_pb2.RESPONSE_STATUS_PENDING, asked.message
    assert asked.pending.kind == admin_pb2.PENDING_KIND_IMPORT_INTERCHANGE
    assert bytes(asked.pending.document_sha256) == hashlib.sha256(document).digest()
    assert list(asked.pending.public_keys) == [public_key]
    wrong_kind = _refused(
        admin.approvals().ApproveDeleteKeys,
        admin_pb2.ApproveRequest(id=asked.pending.id),
        metadata=admin.operators.metadata("ken"),
    )
    assert wrong_kind.details().split(":")[0] == "approval_wrong_kind"
    done = admin.approvals().ApproveImportInterchange(
        admin_pb2.ApproveRequest(id=asked.pending.id), metadata=admin.operators.metadata("ken"), timeout=CALL_TIMEOUT_S
    )
    assert (done.status, done.validators, done.blocks_imported) == (admin_pb2.RESPONSE_STATUS_OK, 1, 1)
