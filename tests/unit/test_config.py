"""signer.config loading and `signer check-config` (good file, unknown key, missing secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.cli import check_config, main
from signer.config import load_config, parse_config
from signer.errors import ConfigError


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "signer.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _good(tmp_path: Path) -> Path:
    (tmp_path / "pin").write_text("1234\n")
    return _write(
        tmp_path,
        f"""
[keys]
module = "emulated"
data_dir = "{tmp_path / "data"}"
pin = {{ file = "{tmp_path / "pin"}" }}

[protection]
backend = "sqlite"

[[clients]]
name = "vc-1"
allow_accounts = ["dev/*"]
operations = ["sign_attestation", "sign_proposal"]
""",
    )


def test_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _good(tmp_path)
    config = load_config(path)
    assert config.keys.pin is not None and config.keys.pin.read() == "1234"
    assert config.clients[0].operations == ("sign_attestation", "sign_proposal")
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "config OK" and out.err == ""


def test_unknown_key_is_named_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _good(tmp_path)
    path.write_text(path.read_text().replace('backend = "sqlite"', 'backend = "sqlite"\nsqlite_pth = "x"'))
    with pytest.raises(ConfigError, match=r"protection\.sqlite_pth: Extra inputs are not permitted"):
        load_config(path)
    assert main(["check-config", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("error: invalid configuration: protection.sqlite_pth")
    assert "Traceback" not in out.err


def test_missing_secret_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _good(tmp_path)
    (tmp_path / "pin").unlink()
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: keys.pin: cannot read secret file")
    assert "1234" not in err


def test_missing_secret_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGNER_TEST_NO_SUCH_VAR", raising=False)
    path = _good(tmp_path)
    pin_line = next(line for line in path.read_text().splitlines() if line.startswith("pin ="))
    path.write_text(path.read_text().replace(pin_line, 'pin = { env = "SIGNER_TEST_NO_SUCH_VAR" }'))
    with pytest.raises(ConfigError, match=r"keys\.pin: environment variable SIGNER_TEST_NO_SUCH_VAR is not set"):
        check_config(path)
    monkeypatch.setenv("SIGNER_TEST_NO_SUCH_VAR", "")
    with pytest.raises(ConfigError, match=r"keys\.pin: the secret is empty"):
        check_config(path)
    monkeypatch.setenv("SIGNER_TEST_NO_SUCH_VAR", "5678")
    check_config(path)


def test_unknown_nested_key_and_bad_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _good(tmp_path)
    path.write_text(path.read_text().replace('name = "vc-1"', 'name = "vc-1"\nrole = "admin"'))
    assert main(["check-config", str(path)]) == 2
    assert "clients.0.role" in capsys.readouterr().err
    path.write_text("[keys\n")
    assert main(["check-config", str(path)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_emulated_without_pin_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[keys]\nmodule = "emulated"\n')
    with pytest.raises(ConfigError, match=r"keys: Value error, keys\.module = 'emulated' needs keys\.pin"):
        load_config(path)


# --- streams and concurrent calls (issue 13.4) ----------------------------------------------------


def test_stream_caps_and_concurrent_rpcs_default_relative_to_the_workers() -> None:
    config = parse_config({"keys": {"pin": {"env": "X"}}, "server": {"grpc_workers": 64}})
    assert config.max_streams == 16
    assert config.limits.max_streams_per_client == 4
    assert config.server.concurrent_rpcs == 256
    assert config.server.reflection is False
    small = parse_config({"keys": {"pin": {"env": "X"}}, "server": {"grpc_workers": 2, "max_concurrent_rpcs": 5}})
    assert (small.max_streams, small.server.concurrent_rpcs) == (1, 5)


def test_streams_may_not_take_every_worker() -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_streams \(8\) must be below server\.grpc_workers \(8\)"):
        parse_config({"keys": {"pin": {"env": "X"}}, "server": {"grpc_workers": 8}, "limits": {"max_streams": 8}})
