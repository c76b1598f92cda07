"""A real ``signer serve --config`` with the admin API behind mTLS and operators, for the admin e2e tests.

``start_admin_server(base, ...)`` writes a throwaway PKI (tests.certs: client ``admin-1``), a dev
module (``dev/0`` ... ``dev/3``, known secrets, fast KDF), one TOTP secret file (0600) per operator
(``signer admin enroll-operator`` writes the same; its own test is in test_operators_config.py), a
config whose ``[admin]`` section is the default unless ``require_approval`` narrows it, and an audit
file; runs the operator's ``signer protection init --keys-never-signed`` (the keys were made for the
test) and starts the server. ``protection_toml`` replaces the default SQLite store (a
``[protection]`` section for PostgreSQL). Stop it with ``server.proc.terminate()``.

Codes come from ``Operators`` (tests.e2e.test_admin_second_factor_e2e): each step's code once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pyotp

from signer.api._proto.signer.admin.v1 import admin_pb2_grpc
from signer.api._proto.v1 import signer_pb2_grpc
from signer.keys.dev import DEV_PIN, create_dev_module
from tests.certs import Pki, make_pki
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_admin_second_factor_e2e import Operators
from tests.e2e.test_security_e2e import credentials, keys_toml

CLIENT = "admin-1"
OPERATIONS = ("key_admin", "protection_import", "protection_export", "sign_attestation", "sign_proposal")


@dataclass
class AdminServer:
    proc: SignerProcess
    pki: Pki
    operators: Operators
    audit: Path

    def channel(self) -> grpc.Channel:
        return self.proc.channel(credentials(self.pki.ca, self.pki.clients[CLIENT]))

    def key_admin(self) -> admin_pb2_grpc.KeyAdminStub:
        return admin_pb2_grpc.KeyAdminStub(self.channel())

    def protection(self) -> admin_pb2_grpc.ProtectionAdminStub:
        return admin_pb2_grpc.ProtectionAdminStub(self.channel())

    def approvals(self) -> admin_pb2_grpc.ApprovalsStub:
        return admin_pb2_grpc.ApprovalsStub(self.channel())

    def status(self) -> admin_pb2_grpc.StatusStub:
        return admin_pb2_grpc.StatusStub(self.channel())

    def signer(self) -> signer_pb2_grpc.SignerStub:
        return signer_pb2_grpc.SignerStub(self.channel())

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        return [json.loads(line) for line in self.audit.read_text(encoding="utf-8").splitlines() if line]

    def offences(self) -> list[str]:
        """The offences audited so far, oldest first."""
        return [str(r["offence"]) for r in self.audit_records() if r.get("offence")]

    def offences_after(self, seen: int, count: int, timeout_s: float = 10.0) -> list[str]:
        """The ``count`` offences audited after the first ``seen`` ones, waiting for them (the audit
        file is written by its own thread, after the answer; bounded wait: fewer if they never come)."""
        deadline = time.monotonic() + timeout_s
        while True:
            offences = self.offences()
            if len(offences) >= seen + count or time.monotonic() > deadline:
                return offences[seen : seen + count]
            time.sleep(0.05)


def write_operator_secrets(directory: Path, names: Sequence[str]) -> dict[str, Path]:
    """One fresh base32 TOTP secret per operator, each in a 0600 file of its own."""
    files: dict[str, Path] = {}
    for name in names:
        path = directory / f"{name}.totp"
        path.write_text(pyotp.random_base32() + "\n", encoding="utf-8")
        path.chmod(0o600)
        files[name] = path
    return files


def admin_config(
    pki: Pki,
    data_dir: Path,
    pin_file: Path,
    audit: Path,
    secret_files: dict[str, Path],
    *,
    require_approval: Sequence[str] | None = None,
    protection_toml: str = "",
) -> str:
    operators = ", ".join(
        f'{{ name = "{name}", secret = {{ file = "{path}" }} }}' for name, path in secret_files.items()
    )
    approval = "" if require_approval is None else f"require_approval = {json.dumps(list(require_approval))}\n"
    return f"""
[server]
shutdown_grace_s = 2.0

[server.tls]
cert_file = "{pki.server.cert}"
key_file = "{pki.server.key}"
client_ca_file = "{pki.ca.cert}"
reload_interval_s = 3600.0
{keys_toml(data_dir, pin_file)}
{protection_toml}
[[clients]]
name = "{CLIENT}"
allow_accounts = ["*"]
operations = {json.dumps(list(OPERATIONS))}
operators = [{operators}]

[admin]
approval_expiry_s = 120.0
{approval}
[audit]
path = "{audit}"
"""


def start_admin_server(
    base: Path,
    *,
    operators: Sequence[str],
    require_approval: Sequence[str] | None = None,
    protection_toml: str = "",
) -> AdminServer:
    base.mkdir(parents=True, exist_ok=True)
    pki = make_pki(base, clients=(CLIENT,))
    data_dir = base / "data"
    create_dev_module(data_dir, 4, scrypt_n=2**10).close()
    pin_file = base / "module.pin"
    pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o600)
    secret_files = write_operator_secrets(base, operators)
    audit = base / "audit.jsonl"
    config = base / "signer.toml"
    config.write_text(
        admin_config(
            pki,
            data_dir,
            pin_file,
            audit,
            secret_files,
            require_approval=require_approval,
            protection_toml=protection_toml,
        ),
        encoding="utf-8",
    )
    init_protection(config)  # keys made for the test: they never signed
    proc = SignerProcess.from_config(config).start()
    secrets = {name: path.read_text(encoding="utf-8").strip() for name, path in secret_files.items()}
    return AdminServer(proc, pki, Operators(secrets), audit)
