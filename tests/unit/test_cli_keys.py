"""`signer keys ...` end to end through cli.main (real keystores, real module, real crypto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from signer.cli import PIN_ENV, build_parser, main, serve_config_from_args
from signer.keys import eip2335
from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow  # keystores through the whole CLI: the full suite runs it, not make test-fast

PIN = "module-pin-for-tests"
VECTOR_PUBKEY = "0x9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07"


def _eip_cases(vectors: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(
        (vectors / "keystore/eip/eip2335_test_vectors.json").read_text(encoding="utf-8")
    )["cases"]
    return cases


@pytest.fixture
def pin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PIN_ENV, PIN)


def _write_vector_keystores(vectors: Path, where: Path) -> tuple[Path, bytes]:
    """The scrypt and pbkdf2 keystores of the EIP-2335 test cases; returns (password file, secret)."""
    where.mkdir()
    cases = _eip_cases(vectors)
    for case in cases:
        (where / f"{case['name']}.json").write_text(json.dumps(case["keystore"]), encoding="utf-8")
    password_file = where.parent / "password.txt"
    password_file.write_text(cases[0]["password"] + "\n", encoding="utf-8")
    return password_file, bytes.fromhex(cases[0]["secret"].removeprefix("0x"))


def test_import_vector_keystores_then_list(
    vectors: Path, tmp_path: Path, pin_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    password_file, secret = _write_vector_keystores(vectors, tmp_path / "keystores")
    data_dir = tmp_path / "data"
    keystores = sorted(str(p) for p in (tmp_path / "keystores").iterdir())
    pw = ["--password-file", str(password_file)]
    rc = main(["keys", "import", "--quiet", "--data-dir", str(data_dir), *pw, *keystores])
    out = capsys.readouterr()
    assert rc == 0, out.err
    # Both keystores hold the same key: one is imported, the other reported as a duplicate.
    assert out.out.count("imported ") == 1 and out.out.count("duplicate") == 1
    assert "1 imported, 1 duplicate" in out.err

    assert main(["keys", "list", "--data-dir", str(data_dir)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [f"{VECTOR_PUBKEY} imported/9612d7a7 bls"]

    # The secret is nowhere on disk, neither raw nor hex (either case).
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        assert secret not in data
        assert secret.hex().encode() not in data.lower()


def test_import_directory_with_wallet_and_pin_file(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    case = next(c for c in _eip_cases(vectors) if c["name"] == "eip2335_pbkdf2")
    (tmp_path / "ks").mkdir()
    (tmp_path / "ks" / "keystore-m_12381_3600_0_0_0.json").write_text(json.dumps(case["keystore"]))
    (tmp_path / "ks" / "deposit_data-1.json").write_text("[]")  # skipped when a directory is given
    (tmp_path / "pw").write_text(case["password"])
    (tmp_path / "pin").write_text(PIN + "\n")
    common = ["--data-dir", str(tmp_path / "data"), "--pin-file", str(tmp_path / "pin")]
    pw = ["--password-file", str(tmp_path / "pw")]
    rc = main(["keys", "import", "--quiet", *common, "--wallet", "ops", *pw, str(tmp_path / "ks")])
    assert rc == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["keys", "list", *common]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{VECTOR_PUBKEY} ops/9612d7a7 bls"]


def test_import_reports_each_failure_and_goes_on(
    vectors: Path, tmp_path: Path, pin_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in _eip_cases(vectors) if c["name"] == "eip2335_pbkdf2")
    ks = tmp_path / "ks"
    ks.mkdir()
    (ks / "a-good.json").write_text(json.dumps(case["keystore"]))
    other = eip2335.encrypt_keystore(
        b"\x01" * 32, "another password", kdf=eip2335.KdfParams("pbkdf2", b"\x02" * 32, c=1024)
    )
    (ks / "b-other-password.json").write_text(json.dumps(other))
    (ks / "c-broken.json").write_text("{ not json")
    (tmp_path / "pw").write_text(case["password"])
    rc = main(
        [
            "keys",
            "import",
            "--quiet",
            "--data-dir",
            str(tmp_path / "data"),
            "--password-file",
            str(tmp_path / "pw"),
            str(ks),
        ]
    )
    out = capsys.readouterr()
    assert rc == 1
    lines = out.out.splitlines()
    assert lines[0].startswith("imported ") and "a-good.json" in lines[0]
    assert lines[1].startswith("wrong_password") and "b-other-password.json" in lines[1]
    assert lines[2].startswith("malformed") and "c-broken.json" in lines[2] and "not valid JSON" in lines[2]
    assert "1 imported, 1 wrong_password, 1 malformed" in out.err


def test_generate_every_scheme_and_list(tmp_path: Path, pin_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    comet = ["--count", "1", "--wallet", "comet"]
    assert main(["keys", "generate", *data, "--count", "3"]) == 0
    assert main(["keys", "generate", *data, *comet, "--scheme", "secp256k1"]) == 0
    assert main(["keys", "generate", *data, *comet, "--scheme", "ed25519"]) == 0
    assert main(["keys", "generate", *data, "--count", "1"]) == 0  # continues the numbering
    capsys.readouterr()
    assert main(["keys", "list", *data]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(name, scheme) for _, name, scheme in rows] == [
        ("comet/0", "secp256k1"),
        ("comet/1", "ed25519"),
        ("generated/0", "bls"),
        ("generated/1", "bls"),
        ("generated/2", "bls"),
        ("generated/3", "bls"),
    ]
    lengths = {scheme: len(pk) for pk, _, scheme in rows}
    assert lengths == {"bls": 2 + 96, "secp256k1": 2 + 66, "ed25519": 2 + 64}


def test_generate_takes_the_next_free_names(tmp_path: Path, pin_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    # comet/0 exists as secp256k1: generating ed25519 in the same wallet takes the next free name.
    data = ["--data-dir", str(tmp_path / "data"), "--count", "1", "--wallet", "comet"]
    assert main(["keys", "generate", *data, "--scheme", "secp256k1"]) == 0
    assert main(["keys", "generate", *data, "--scheme", "ed25519"]) == 0
    capsys.readouterr()
    assert main(["keys", "list", *data[:2]]) == 0
    names = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert names == ["comet/0", "comet/1"]


def test_missing_pin_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    assert main(["keys", "list", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: no module PIN: set {PIN_ENV} or pass --pin-file FILE"


def test_list_of_missing_module_and_wrong_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PIN_ENV, PIN)
    assert main(["keys", "list", "--data-dir", str(tmp_path / "none")]) == 1
    assert "no emulated key module" in capsys.readouterr().err
    assert main(["keys", "generate", "--data-dir", str(tmp_path / "data"), "--count", "1"]) == 0
    capsys.readouterr()
    monkeypatch.setenv(PIN_ENV, "not the pin")
    assert main(["keys", "list", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: wrong PIN") and "Traceback" not in err
    assert "not the pin" not in err


def test_pkcs11_branch_goes_through_build_key_module(
    tmp_path: Path, pin_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data"), "--module", "pkcs11"]
    assert main(["keys", "list", *data]) == 2
    assert "needs --pkcs11-library PATH and --token-label LABEL" in capsys.readouterr().err
    missing = str(tmp_path / "no-such-lib.so")
    assert main(["keys", "list", *data, "--pkcs11-library", missing, "--token-label", "t"]) == 2
    assert f"keys.pkcs11.library_path: no such file {missing}" in capsys.readouterr().err


def test_dev_command_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "dev", "--data-dir", str(tmp_path / "a"), "--count", "2"]) == 0
    first = capsys.readouterr().out
    assert main(["keys", "dev", "--data-dir", str(tmp_path / "b"), "--count", "2"]) == 0
    assert capsys.readouterr().out == first
    assert [line.split()[1] for line in first.splitlines()] == [
        "dev/0",
        "dev/1",
        "dev/cometbft-ed25519",
        "dev/cometbft-secp256k1",
    ]


def test_python_dash_m_signer_runs_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, PIN_ENV: PIN}
    proc = subprocess.run(
        [sys.executable, "-m", "signer", "keys", "list", "--data-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no emulated key module") and "Traceback" not in proc.stderr


def test_serve_dev_writes_its_pin_file_for_the_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = serve_config_from_args(build_parser().parse_args(["serve", "--dev", "--data-dir", str(data_dir)]))
    pin_file = data_dir / "dev.pin"
    assert config.keys.pin is not None
    assert oct(pin_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in data_dir.iterdir()) == ["dev.pin"]
