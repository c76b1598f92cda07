"""Issue 16.3 and 16.5 through real processes: ``python -m signer keys init`` refuses a weak PIN by
its rule (exit code 2, no module, the PIN never printed), and after ``python -m signer keys
change-pin`` a ``signer serve`` opens the module with the new PIN, signs with the same keys, and
refuses to start with the old one.

(tests/unit/test_cli_pin.py checks the same commands in-process, through ``signer.cli.main``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from signer.api._proto.v1 import responsestate_pb2, signer_pb2_grpc
from signer.cli import PIN_ENV
from signer.keys.emulated import MODULE_FILE
from tests.e2e.harness import SignerProcess, SignerProcessError, init_protection
from tests.e2e.test_eth2_e2e import att

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GOOD_PIN = "e2e-module-pin-not-published-7431"
TIMEOUT_S = 30.0


def signer(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m signer ARGS`` in a process of its own, without a PIN in its environment."""
    environment = {k: v for k, v in os.environ.items() if k != PIN_ENV}
    return subprocess.run(
        [sys.executable, "-m", "signer", *map(str, args)],
        env={**environment, **(env or {})}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("pin", "rule"),
    [
        ("hunter2", "the PIN has 7 characters; the PIN policy needs at least 16"),
        ("passwordpassword", "common or published"),
        ("abababababababababab", "the PIN is a short pattern repeated"),
    ],
    ids=["short", "published", "repeated"],
)
@pytest.mark.parametrize("source", ["pin-file", "environment"])
def test_keys_init_refuses_a_weak_pin_by_its_rule_and_never_prints_it(
    tmp_path: Path, pin: str, rule: str, source: str
) -> None:
    data = tmp_path / "data"
    if source == "pin-file":
        pin_file = tmp_path / "weak.pin"
        pin_file.write_text(pin + "\n", encoding="utf-8")
        done = signer("keys", "init", "--data-dir", data, "--pin-file", pin_file)
    else:
        done = signer("keys", "init", "--data-dir", data, env={PIN_ENV: pin})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "PIN refused: " in done.stderr and rule in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert pin not in done.stdout and pin not in done.stderr
    assert not (data / MODULE_FILE).exists()


def _config(tmp_path: Path, data: Path, pin_file: Path) -> Path:
    config = tmp_path / f"{pin_file.stem}.toml"
    config.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{data}"
pin = {{ file = "{pin_file}" }}

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation"]
""",
        encoding="utf-8",
    )
    return config


def test_after_change_pin_serve_opens_with_the_new_pin_and_refuses_the_old_one(tmp_path: Path) -> None:
    data, old_pin, new_pin = tmp_path / "data", tmp_path / "old.pin", tmp_path / "new.pin"
    old_pin.write_text(GOOD_PIN + "\n", encoding="utf-8")
    old_pin.chmod(0o600)
    assert signer("keys", "init", "--data-dir", data, "--pin-file", old_pin).returncode == 0
    generated = signer("keys", "generate", "--data-dir", data, "--pin-file", old_pin, "--count", "2", "--wallet", "w")
    assert generated.returncode == 0, generated.stderr
    listed = signer("keys", "list", "--data-dir", data, "--pin-file", old_pin)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2, listed

    weak = tmp_path / "weak.pin"
    weak.write_text("passwordpassword\n", encoding="utf-8")
    before = (data / MODULE_FILE).read_bytes()
    refused = signer("keys", "change-pin", "--data-dir", data, "--pin-file", old_pin, "--new-pin-file", weak)
    assert refused.returncode == 2 and "common or published" in refused.stderr, refused
    assert "passwordpassword" not in refused.stdout + refused.stderr
    assert (data / MODULE_FILE).read_bytes() == before

    changed = signer("keys", "change-pin", "--data-dir", data, "--pin-file", old_pin, "--generate-new-pin", new_pin)
    assert changed.returncode == 0, changed.stderr
    pin = new_pin.read_text(encoding="utf-8").splitlines()[0]
    assert pin not in changed.stdout + changed.stderr and "2 keys, unchanged" in changed.stderr
    assert signer("keys", "list", "--data-dir", data, "--pin-file", new_pin).stdout == listed.stdout

    new_config, old_config = _config(tmp_path, data, new_pin), _config(tmp_path, data, old_pin)
    init_protection(new_config)  # the generated keys never signed
    with SignerProcess.from_config(new_config) as proc:
        assert proc.ready["keys"] == 2
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        account = listed.stdout.splitlines()[0].split()[1]
        signed = stub.SignBeaconAttestation(att(0, 1, 2, account=account).request(), timeout=TIMEOUT_S)
        assert signed.state == responsestate_pb2.SUCCEEDED

    old = SignerProcess.from_config(old_config)
    with pytest.raises(SignerProcessError, match="before it was ready"):
        old.start()
    assert old.proc is not None and old.proc.returncode != 0
    assert "wrong PIN" in old.logs, old.logs
    assert GOOD_PIN not in old.logs and pin not in old.logs
