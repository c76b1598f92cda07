"""signer.config loading and `signer check-config` (good file, unknown key, missing secret)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from signer.cli import check_config, main
from signer.config import LimitsConfig, load_config, parse_config
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


# --- check-config refuses exactly what serve refuses, with the same message ---------------------

_CHAIN = '\n[[cometbft.chains]]\nchain_id = "{chain_id}"\naccount = "cosmos/validator"\n'
_PKCS11 = """
[keys]
module = "pkcs11"
data_dir = "{data}"

[keys.pkcs11]
library_path = "/nonexistent/libsofthsm2.so"
token_label = "signer"
pin = {{ file = "{pin}" }}
"""
_TLS = """
[server.tls]
cert_file = "{missing}/server.crt"
key_file = "{missing}/server.key"
client_ca_file = "{missing}/ca.crt"
"""

BAD_CONFIGS: list[tuple[str, str, str]] = [
    # (id, TOML appended to the good config (or replacing it: "REPLACE"), what the message says)
    ("duplicate-client", '\n[[clients]]\nname = "vc-1"\n', "clients: 'vc-1' is listed twice"),
    ("short-0x-pattern", '\n[[clients]]\nname = "vc-2"\nallow_accounts = ["0x1234"]\n', "is not a 0x public key"),
    ("non-hex-0x-pattern", f'\n[[clients]]\nname = "vc-2"\ndeny_accounts = ["0x{"zz" * 48}"]\n', "not a 0x public"),
    ("blank-pattern", '\n[[clients]]\nname = "vc-2"\nallow_accounts = [" "]\n', "empty pattern"),
    ("duplicate-chain", _CHAIN.format(chain_id="c-1") * 2, "chain_id 'c-1' is listed twice"),
    ("chain-id-over-50-bytes", _CHAIN.format(chain_id="é" * 26), "chain_id is longer than 50 bytes"),
    ("chain-id-not-printable", _CHAIN.format(chain_id="chain\\u0007one"), "non-printable"),
    ("network-mismatch", '\n[network]\nname = "mainnet"\ngenesis_fork_version = "0x01017000"\n', "does not match"),
    ("plaintext-off-loopback", '\n[server]\ngrpc_listen = "0.0.0.0:9091"\n', "is not a loopback address"),
    ("listen-without-port", '\n[server]\nmetrics_listen = "localhost"\n', "server.metrics_listen: listen address"),
    ("tls-files-missing", "TLS", "server.tls"),
    ("pkcs11-library-missing", "PKCS11", "keys.pkcs11.library_path: no such file"),
    ("untyped-san", '\n[[clients]]\nname = "vc-2"\nsans = ["vc.example"]\n', "is not a typed SAN"),
    (
        "san-in-two-entries",
        '\n[[clients]]\nname = "a"\nsans = ["dns:x.example"]\n[[clients]]\nname = "b"\nsans = ["dns:X.example"]\n',
        "'dns:x.example' is already in the sans of 'a'",
    ),
    ("streams-take-every-worker", "\n[limits]\nmax_streams = 64\n", "must be below server.grpc_workers (64)"),
]


def _bad_config(tmp_path: Path, extra: str) -> Path:
    path = _good(tmp_path)
    if extra == "PKCS11":
        return _write(tmp_path, _PKCS11.format(data=tmp_path / "data", pin=tmp_path / "pin"))
    if extra == "TLS":
        extra = "\n[server]\n" + _TLS.format(missing=tmp_path / "missing")
    path.write_text(path.read_text() + extra, encoding="utf-8")
    return path


@pytest.mark.slow  # a subprocess per case
@pytest.mark.parametrize(("extra", "says"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_check_config_refuses_what_serve_refuses_with_the_same_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, says: str
) -> None:
    path = _bad_config(tmp_path, extra)
    assert main(["check-config", str(path)]) == 2
    checked = capsys.readouterr()
    assert checked.out == ""
    assert checked.err.startswith("error: ") and says in checked.err, checked.err
    served = subprocess.run(
        [sys.executable, "-m", "signer", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert served.returncode == 2, served.stderr
    assert served.stderr.splitlines()[-1] == checked.err.strip()
    assert "Traceback" not in served.stderr


# --- streams and concurrent calls (issue 13.4) ----------------------------------------------------


def test_stream_caps_and_concurrent_rpcs_default_to_the_in_flight_cap() -> None:
    config = parse_config({"keys": {"pin": {"env": "X"}}, "server": {"grpc_workers": 64}})
    assert config.max_streams == 16
    assert config.limits.max_streams_per_client == 4
    assert config.server.concurrent_rpcs == 4096  # the in-flight cap's default: a slot burst waits
    assert config.server.reflection is False
    small = parse_config({"keys": {"pin": {"env": "X"}}, "server": {"grpc_workers": 2, "max_concurrent_rpcs": 5}})
    assert (small.max_streams, small.server.concurrent_rpcs) == (1, 5)


def test_streams_may_not_take_every_worker() -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_streams \(8\) must be below server\.grpc_workers \(8\)"):
        parse_config({"keys": {"pin": {"env": "X"}}, "server": {"grpc_workers": 8}, "limits": {"max_streams": 8}})


def test_the_default_in_flight_cap_holds_the_slot_burst_of_65000_validators() -> None:
    """A slot's burst is ~N/16 REST requests for N validators (N/32 attestations, N/32 aggregation
    slots), all clients together: at 1,024 a signer behind 16,000+ validators answered 429."""
    assert LimitsConfig().max_in_flight >= 65_000 // 16
