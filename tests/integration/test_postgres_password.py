"""Issue 6: ``protection.backend = "postgres"`` with a DSN without the password and the password from a
file, against a PostgreSQL server that checks passwords (scram-sha-256 on TCP; see
tests.postgres.PasswordPostgresServer), not the trusting throwaway server of the other tests.

PostgresStore with the right password opens and records; a wrong or a missing password is refused
with a ProtectionStoreError that says why (the server's reason) and never contains the password; and
``signer serve --config`` with ``password = { file = ... }`` starts and signs (and, with a wrong
password in the file, refuses to start, saying why, without printing it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from signer.api._proto.v1 import responsestate_pb2, signer_pb2_grpc
from signer.errors import ProtectionStoreError
from signer.keys.dev import DEV_PIN
from signer.protection.postgres import PostgresStore
from signer.types import AttestationCheck, BlockCheck, Safe
from tests.e2e.harness import MAINNET_GENESIS_VALIDATORS_ROOT, SignerProcess, SignerProcessError, init_protection
from tests.e2e.test_eth2_e2e import att, py_ecc_verifies
from tests.postgres import PasswordPostgresServer, postgres_password_server  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

PK_A = b"\xa1" * 48
R1 = b"\x01" * 32
R2 = b"\x02" * 32
GVR = MAINNET_GENESIS_VALIDATORS_ROOT
"""The database is shared with the server tests below, which run on mainnet."""


@pytest.fixture(autouse=True)
def _no_ambient_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """libpq would also take a password from PGPASSWORD or ~/.pgpass: none of that here."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


def _assert_secret_free(text: str, password: str) -> None:
    assert password not in text
    assert password.encode().hex() not in text


# --- the store ---------------------------------------------------------------------------------------


def test_server_really_checks_passwords(postgres_password_server: PasswordPostgresServer) -> None:  # noqa: F811
    server = postgres_password_server
    with psycopg.connect(server.role_dsn, password=server.password) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("signer",)
    with psycopg.connect(server.admin_dsn) as admin:
        rules = admin.execute("SELECT type, auth_method FROM pg_hba_file_rules").fetchall()
        verifier = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'signer'").fetchone()
    assert {m for t, m in rules if t == "host"} == {"scram-sha-256"}
    assert verifier is not None and str(verifier[0]).startswith("SCRAM-SHA-256$")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(server.role_dsn, password="not-" + server.password)


def test_store_with_the_right_password_records(postgres_password_server: PasswordPostgresServer) -> None:  # noqa: F811
    server = postgres_password_server
    store = PostgresStore(server.role_dsn, GVR, password=server.password, timeout_s=5.0, pool_size=2)
    try:
        store.ping()
        (first,) = store.check_and_record([BlockCheck(PK_A, 10, R1)])
        assert first.safe is Safe.VALID
        (again,) = store.check_and_record([BlockCheck(PK_A, 10, R1)])
        assert again.safe is Safe.SAME_DATA
        (double,) = store.check_and_record([BlockCheck(PK_A, 10, R2)])
        assert double.refusal is not None
        (vote,) = store.check_and_record([AttestationCheck(PK_A, 1, 2, R1)])
        assert vote.safe is Safe.VALID
    finally:
        store.close()
    # The records are in the role's database (read back with a connection of its own).
    with psycopg.connect(server.role_dsn, password=server.password) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert "schema_version" in tables


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        pytest.param("wrong", "password authentication failed", id="wrong-password"),
        pytest.param("missing", "no password supplied", id="missing-password"),
        pytest.param("empty", "no password supplied", id="empty-password"),
    ],
)
def test_store_refuses_a_bad_password_saying_why(
    postgres_password_server: PasswordPostgresServer,  # noqa: F811
    kind: str,
    reason: str,
) -> None:
    server = postgres_password_server
    given = {"wrong": "wrong-" + server.password[::-1], "missing": None, "empty": ""}[kind]
    with pytest.raises(ProtectionStoreError) as caught:
        PostgresStore(server.role_dsn, GVR, password=given, timeout_s=2.0, pool_size=1)
    message = caught.value.message
    assert reason in message, message
    assert "127.0.0.1" in message and "/signer" in message, message  # which database
    for text in (message, str(caught.value), repr(caught.value)):
        _assert_secret_free(text, server.password)
        if given:
            _assert_secret_free(text, given)


# --- signer serve --config ---------------------------------------------------------------------------


def _dev_keys(data_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "signer", "keys", "dev", "--data-dir", str(data_dir), "--count", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _config(root: Path, data_dir: Path, dsn: str, password_file: Path) -> Path:
    (root / "module.pin").write_text(DEV_PIN + "\n", encoding="utf-8")
    config = root / "signer.toml"
    config.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{data_dir}"
pin = {{ file = "{root / "module.pin"}" }}

[protection]
backend = "postgres"
dsn = "{dsn}"
password = {{ file = "{password_file}" }}
timeout_s = 2.0

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation"]
""",
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def dev_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("pgpw-keys") / "data"
    _dev_keys(data_dir)
    return data_dir


@pytest.mark.e2e
def test_serve_with_password_from_file_starts_and_signs(
    postgres_password_server: PasswordPostgresServer,  # noqa: F811
    dev_data_dir: Path,
    tmp_path: Path,
) -> None:
    server = postgres_password_server
    password_file = tmp_path / "pg.password"
    password_file.write_text(server.password + "\n", encoding="utf-8")
    config = _config(tmp_path, dev_data_dir, server.role_dsn, password_file)
    assert "password" not in server.role_dsn
    assert server.password not in config.read_text(encoding="utf-8")
    env = {"PGPASSFILE": str(tmp_path / "no-such-pgpass")}
    init_protection(config, env=env)  # the dev keys never signed into this database
    with SignerProcess.from_config(config, env=env) as proc:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        a = att(0, 1, 2, block="pgpw")
        resp = stub.SignBeaconAttestation(a.request(), timeout=30)
        assert resp.state == responsestate_pb2.SUCCEEDED, proc.logs
        assert py_ecc_verifies(0, a.signing_root(), bytes(resp.signature))
        conflicting = att(0, 1, 2, block="pgpw-other")
        assert stub.SignBeaconAttestation(conflicting.request(), timeout=30).state == responsestate_pb2.DENIED
        logs, audit = proc.logs, proc.stdout
    # The record is in the password-protected database, under the network the server is bound to.
    with psycopg.connect(server.role_dsn, password=server.password) as conn:
        gvr = conn.execute("SELECT value FROM metadata WHERE key = 'genesis_validators_root'").fetchone()
    assert gvr is not None and bytes(gvr[0]) == MAINNET_GENESIS_VALIDATORS_ROOT
    _assert_secret_free(logs + audit, server.password)


@pytest.mark.e2e
def test_serve_with_a_wrong_password_in_the_file_refuses_to_start(
    postgres_password_server: PasswordPostgresServer,  # noqa: F811
    dev_data_dir: Path,
    tmp_path: Path,
) -> None:
    server = postgres_password_server
    wrong = "wrong-" + server.password[::-1]
    password_file = tmp_path / "pg.password"
    password_file.write_text(wrong + "\n", encoding="utf-8")
    config = _config(tmp_path, dev_data_dir, server.role_dsn, password_file)
    proc = SignerProcess.from_config(config, env={"PGPASSFILE": str(tmp_path / "no-such-pgpass")})
    try:
        with pytest.raises(SignerProcessError, match="before it was ready"):
            proc.start()
        assert proc.proc is not None and proc.proc.returncode != 0
    finally:
        proc.stop()
    errors = [line for line in proc.logs.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.logs
    assert "password authentication failed" in errors[0], errors[0]  # the one line says why
    _assert_secret_free(proc.logs + proc.stdout, wrong)
    _assert_secret_free(proc.logs + proc.stdout, server.password)


def test_check_config_reads_the_password_file(dev_data_dir: Path, tmp_path: Path) -> None:
    """``check-config`` names a missing password file (the path, not a secret) and exits 2."""
    config = _config(tmp_path, dev_data_dir, "host=127.0.0.1 port=1 user=signer dbname=signer", tmp_path / "absent")
    done = subprocess.run(
        [sys.executable, "-m", "signer", "check-config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "protection.password" in done.stderr and str(tmp_path / "absent") in done.stderr


# --- the password beside --protection-dsn, never in it (issue 13.15) ----------------------------------


def _protection(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signer", "protection", *map(str, args)],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_protection_commands_take_the_password_from_a_file_or_the_environment(
    postgres_password_server: PasswordPostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = postgres_password_server
    password_file = tmp_path / "pg.password"
    password_file.write_text(server.password + "\n", encoding="utf-8")
    store: list[str | Path] = ["--data-dir", tmp_path / "unused", "--protection-dsn", server.role_dsn]
    without = _protection("export", *store)
    assert without.returncode == 1 and "password" in without.stderr, without.stderr  # the server wants one
    with_file = _protection("export", *store, "--protection-password-file", password_file)
    assert with_file.returncode == 0, with_file.stderr
    assert json.loads(with_file.stdout)["metadata"]["genesis_validators_root"] == "0x" + GVR.hex()
    from_env = _protection("init", *store, "--keys-never-signed", env={"SIGNER_PROTECTION_PASSWORD": server.password})
    assert from_env.returncode == 0, from_env.stderr
    assert from_env.stdout.startswith(("initialized:", "already initialized")), from_env.stdout
    for done in (without, with_file, from_env):
        _assert_secret_free(done.stdout + done.stderr, server.password)
    refused = _protection("export", "--data-dir", tmp_path, "--protection-password-file", password_file)
    assert refused.returncode == 2 and "--protection-dsn" in refused.stderr, refused.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["file", "env"])
def test_serve_dev_takes_the_password_from_a_file_or_the_environment_not_the_command_line(
    postgres_password_server: PasswordPostgresServer,  # noqa: F811
    tmp_path: Path,
    source: str,
) -> None:
    server = postgres_password_server
    password_file = tmp_path / "pg.password"
    password_file.write_text(server.password + "\n", encoding="utf-8")
    env = {"PGPASSFILE": str(tmp_path / "no-such-pgpass")}
    extra = ["--protection-dsn", server.role_dsn]
    if source == "file":
        extra += ["--protection-password-file", str(password_file)]
    else:
        env["SIGNER_PROTECTION_PASSWORD"] = server.password
    with SignerProcess.dev(tmp_path / "data", dev_keys=2, extra_args=extra, env=env) as proc:
        command_line = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()  # what ps shows
        _assert_secret_free(command_line, server.password)
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        source_epoch = {"file": 7, "env": 9}[source]  # one shared database: distinct votes
        a = att(1, source_epoch, source_epoch + 1, block=f"pgpw-dev-{source}")
        resp = stub.SignBeaconAttestation(a.request(), timeout=30)
        assert resp.state == responsestate_pb2.SUCCEEDED, proc.logs
        assert py_ecc_verifies(1, a.signing_root(), bytes(resp.signature))
        logs = proc.logs + proc.stdout
    _assert_secret_free(logs, server.password)
