"""Issue 4, item 4, on a SoftHSM2 token: ``signer keys import --module pkcs11`` and the AccountManager.

``signer keys import --module pkcs11`` seals the EIP-2335 vector keystores' secret through the
token (the data directory holds no plaintext copy), ``signer keys list --module pkcs11`` shows it,
and a ``signer serve --config`` process on that token signs with it; ``v1.AccountManager`` Lock
refuses the account's signing, Unlock with a wrong PIN is DENIED, Unlock with the token's user PIN
signs again. The server and the CLI get a token of their own (private SOFTHSM2_CONF), as in
tests/e2e/test_pkcs11_e2e.py. With CI=true a missing SoftHSM fails (missing_component).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    responsestate_pb2,
    signer_pb2_grpc,
)
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_eth2_e2e import att, py_ecc_verifies_key
from tests.softhsm import SO_PIN, USER_PIN, find_library
from tests.support import missing_component

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]  # token, scrypt, a server

LABEL = "import-e2e"
SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
VECTOR_PUBKEY = bytes.fromhex(
    "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07"
)


def _signer_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signer", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_keys_import_into_the_token_then_lock_and_unlock_over_grpc(vectors: Path, tmp_path: Path) -> None:
    util, library = shutil.which("softhsm2-util"), find_library()
    if util is None or library is None:
        missing_component("SoftHSM2 (apt: softhsm2): softhsm2-util and libsofthsm2.so")
    assert util is not None and library is not None
    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), "E2E_TOKEN_PIN": USER_PIN}
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--so-pin", SO_PIN, "--pin", USER_PIN],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    cases = json.loads((vectors / "keystore/eip/eip2335_test_vectors.json").read_text(encoding="utf-8"))["cases"]
    keystores = tmp_path / "keystores"
    keystores.mkdir()
    for case in cases:
        (keystores / f"{case['name']}.json").write_text(json.dumps(case["keystore"]), encoding="utf-8")
    (tmp_path / "password").write_text(cases[0]["password"] + "\n", encoding="utf-8")
    (tmp_path / "pin").write_text(USER_PIN + "\n", encoding="utf-8")
    secret = bytes.fromhex(cases[0]["secret"].removeprefix("0x"))
    data_dir = tmp_path / "data"
    module_args = ["--module", "pkcs11", "--pkcs11-library", str(library), "--token-label", LABEL,
                   "--data-dir", str(data_dir), "--pin-file", str(tmp_path / "pin")]  # fmt: skip

    imported = _signer_cli(
        "keys", "import", "--quiet", *module_args, "--wallet", "val",
        "--password-file", str(tmp_path / "password"), str(keystores), env=env,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "1 imported, 1 duplicate" in imported.stderr
    listed = _signer_cli("keys", "list", *module_args, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"0x{VECTOR_PUBKEY.hex()} val/9612d7a7 bls"]
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert files, "the sealed BLS secret lives in the data directory"
    for path in files:
        content = path.read_bytes()
        assert secret not in content and secret.hex().encode() not in content.lower(), path

    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[keys]
module = "pkcs11"
data_dir = "{data_dir}"

[keys.pkcs11]
library_path = "{library}"
token_label = "{LABEL}"
pin = {{ env = "E2E_TOKEN_PIN" }}

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation", "account_management"]
""",
        encoding="utf-8",
    )
    init_protection(config)  # the vector key never signed into this store
    with SignerProcess.from_config(config, env={"SOFTHSM2_CONF": str(conf), "E2E_TOKEN_PIN": USER_PIN}) as proc:
        signer = signer_pb2_grpc.SignerStub(proc.channel())
        manager = accountmanager_pb2_grpc.AccountManagerStub(proc.channel())
        first = att(0, 1, 2, block="token", account="val/9612d7a7")
        signed = signer.SignBeaconAttestation(first.request(), timeout=30)
        assert signed.state == SUCCEEDED
        assert py_ecc_verifies_key(VECTOR_PUBKEY, first.signing_root(), bytes(signed.signature))

        locked = manager.Lock(accountmanager_pb2.LockAccountRequest(account="val/9612d7a7"), timeout=30)
        assert locked.state == SUCCEEDED
        second = att(0, 2, 3, block="token", account="val/9612d7a7")
        assert signer.SignBeaconAttestation(second.request(), timeout=30).state == DENIED
        wrong = manager.Unlock(
            accountmanager_pb2.UnlockAccountRequest(account="val/9612d7a7", passphrase=b"0000-wrong"), timeout=30
        )
        assert wrong.state == DENIED
        assert signer.SignBeaconAttestation(second.request(), timeout=30).state == DENIED
        unlocked = manager.Unlock(
            accountmanager_pb2.UnlockAccountRequest(account="val/9612d7a7", passphrase=USER_PIN.encode()), timeout=30
        )
        assert unlocked.state == SUCCEEDED
        resigned = signer.SignBeaconAttestation(second.request(), timeout=30)
        assert resigned.state == SUCCEEDED
        assert py_ecc_verifies_key(VECTOR_PUBKEY, second.signing_root(), bytes(resigned.signature))
