"""Operators and the ``[admin]`` section of the config, ``signer admin enroll-operator``, and what
``check-config`` and ``serve`` make of them (signer.config, signer.cli, signer.app.build_admin_gate)."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from signer.app import build_admin_gate
from signer.approval import ApprovalKind
from signer.cli import check_config, main
from signer.config import load_config, parse_config
from signer.errors import ConfigError
from signer.totp import check_secret
from signer.types import NullAudit, NullMonitor


def _config(tmp_path: Path, extra: str = "", operators: str = "") -> Path:
    (tmp_path / "pin").write_text("1234\n")
    path = tmp_path / "signer.toml"
    path.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{tmp_path / "data"}"
pin = {{ file = "{tmp_path / "pin"}" }}

[[clients]]
name = "admin-1"
allow_accounts = ["*"]
operations = ["key_admin", "protection_import", "protection_export"]
{operators}
{extra}
""",
        encoding="utf-8",
    )
    return path


def _enroll(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    secret_file = tmp_path / f"{name}.totp"
    assert main(["admin", "enroll-operator", name, "--secret-file", str(secret_file)]) == 0
    return secret_file, capsys.readouterr().out


def test_enroll_operator_writes_a_0600_secret_and_prints_its_uri_and_qr_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file, out = _enroll(tmp_path, "alice", capsys)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(check_secret(secret)) == 20
    (uri,) = [line for line in out.splitlines() if line.startswith("otpauth://")]
    parsed = urlparse(uri)
    assert (parsed.scheme, parsed.netloc, unquote(parsed.path)) == ("otpauth", "totp", "/validator-signer:alice")
    assert parse_qs(parsed.query)["secret"] == [secret]
    assert "█" in out  # the terminal QR code
    assert f'operators = [{{ name = "alice", secret = {{ file = "{secret_file.resolve()}" }} }}]' in out
    # Never overwritten: a second enrolment under the same file is refused, the secret unchanged.
    assert main(["admin", "enroll-operator", "alice", "--secret-file", str(secret_file)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert secret_file.read_text().strip() == secret


def test_enroll_operator_refuses_a_name_no_call_could_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "enroll-operator", "al ice", "--secret-file", str(tmp_path / "x")]) == 2
    assert "invalid operator name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_operators_come_from_files_and_check_config_reads_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file, _ = _enroll(tmp_path, "alice", capsys)
    path = _config(tmp_path, operators=f'operators = [{{ name = "alice", secret = {{ file = "{secret_file}" }} }}]')
    config = load_config(path)
    assert [op.name for op in config.clients[0].operators] == ["alice"]
    check_config(path)
    secret_file.write_text("not-base32!\n")
    with pytest.raises(ConfigError, match=r"clients 'admin-1'.operators 'alice': an operator secret must be base32"):
        check_config(path)
    secret_file.unlink()
    with pytest.raises(ConfigError, match=r"clients 'admin-1'.operators 'alice': cannot read secret file"):
        check_config(path)


def test_an_operator_secret_is_never_from_the_environment(tmp_path: Path) -> None:
    path = _config(tmp_path, operators='operators = [{ name = "alice", secret = { env = "ALICE_TOTP" } }]')
    with pytest.raises(ConfigError, match="an operator's secret comes from a file"):
        load_config(path)


@pytest.mark.parametrize(
    ("operators", "why"),
    [
        (
            'operators = [{ name = "alice", secret = { file = "/a" } }, { name = "alice", secret = { file = "/a" } }]',
            "'alice' is listed twice",
        ),
        ('operators = [{ name = "al ice", secret = { file = "/a" } }]', "String should match pattern"),
    ],
)
def test_operator_lists_are_checked(tmp_path: Path, operators: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_config(_config(tmp_path, operators=operators))


def test_one_operator_has_one_secret_across_clients(tmp_path: Path) -> None:
    extra = """
[[clients]]
name = "admin-2"
operations = ["key_admin"]
operators = [{ name = "alice", secret = { file = "/elsewhere" } }]
"""
    path = _config(tmp_path, extra, operators='operators = [{ name = "alice", secret = { file = "/a" } }]')
    with pytest.raises(ConfigError, match="'alice' names another secret file than before"):
        load_config(path)


def test_the_safe_default_is_a_second_factor_and_approval_of_delete_and_history_imports(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    assert config.admin.second_factor
    assert set(config.admin.require_approval) == {kind.value for kind in ApprovalKind}
    gate = build_admin_gate(config, dev_plaintext_loopback=False, monitor=NullMonitor(), audit=NullAudit())
    assert gate.second_factor is not None
    assert all(gate.needs_approval(kind) for kind in ApprovalKind)


def test_turning_the_second_factor_off_needs_approval_off_too_and_is_loud(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match=r"set admin.require_approval = \[\] as well"):
        load_config(_config(tmp_path, "[admin]\nsecond_factor = false\n"))
    config = load_config(_config(tmp_path, "[admin]\nsecond_factor = false\nrequire_approval = []\n"))
    gate = build_admin_gate(config, dev_plaintext_loopback=False, monitor=NullMonitor(), audit=NullAudit())
    assert gate.second_factor is None
    assert "admin.second_factor = false" in caplog.text


def test_dev_on_plaintext_loopback_has_no_operators(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config({"keys": {"module": "emulated", "pin": {"file": str(tmp_path / "pin")}}})
    gate = build_admin_gate(config, dev_plaintext_loopback=True, monitor=NullMonitor(), audit=NullAudit())
    assert gate.second_factor is None and not any(gate.needs_approval(kind) for kind in ApprovalKind)
    assert "--dev on plaintext loopback" in caplog.text
    # The same config anywhere else (dev with mTLS, production) requires operators' codes.
    gate = build_admin_gate(config, dev_plaintext_loopback=False, monitor=NullMonitor(), audit=NullAudit())
    assert gate.second_factor is not None
