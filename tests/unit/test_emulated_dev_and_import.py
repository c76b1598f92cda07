"""Dev keys (fixed seed) and the parallel keystore importer, on a real emulated module."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from signer.cli import find_keystores, read_keystores
from signer.crypto import bls, ed25519, secp256k1
from signer.errors import MalformedRequest
from signer.keys import dev, eip2333, eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.importer import ImportStatus, account_name, import_keystores
from signer.types import Scheme

FAST_N = 2**10
PIN = "unit-test-module-pin"
CHEAP_KDF_C = 1024  # pbkdf2 rounds for keystores made here (the vector keystores use 2**18)


def test_dev_seed_and_secrets_are_as_documented() -> None:
    assert hashlib.sha256(b"validator-signer dev seed").digest() == dev.DEV_SEED
    for index in (0, 1, 7):
        expected = eip2333.derive_path_SK(dev.DEV_SEED, f"m/12381/3600/{index}/0/0")
        assert dev.dev_bls_secret(index) == expected.to_bytes(32, "big")
    assert dev.dev_bls_secret(0) != dev.dev_bls_secret(1)
    assert dev.dev_secp256k1_secret() == hashlib.sha256(dev.DEV_SEED + b"cometbft/secp256k1").digest()
    assert dev.dev_ed25519_secret() == hashlib.sha256(dev.DEV_SEED + b"cometbft/ed25519").digest()


def test_create_dev_module_then_reopen(tmp_path: Path) -> None:
    module = dev.create_dev_module(tmp_path / "dev", 3, scrypt_n=FAST_N)
    by_name = {k.name: k for k in module.list_keys()}
    assert set(by_name) == {"dev/0", "dev/1", "dev/2", "dev/cometbft-secp256k1", "dev/cometbft-ed25519"}
    assert by_name["dev/2"].public_key == bls.secret_to_public(dev.dev_bls_secret(2))
    assert by_name["dev/cometbft-secp256k1"].public_key == secp256k1.public_key(dev.dev_secp256k1_secret())
    assert by_name["dev/cometbft-ed25519"].public_key == ed25519.public_key(dev.dev_ed25519_secret())
    # An existing module is opened unchanged (count is not applied again).
    again = dev.create_dev_module(tmp_path / "dev", 10)
    assert again.unlocked
    assert {k.name for k in again.list_keys()} == set(by_name)
    pk = by_name["dev/1"].public_key
    assert bls.verify(pk, b"\x09" * 32, again.sign(pk, b"\x09" * 32))


def _keystore(path: Path, secret: bytes, password: str, *, pubkey: bytes | None = None) -> Path:
    kdf = eip2335.KdfParams("pbkdf2", secret[:16] + b"\x00" * 16, c=CHEAP_KDF_C)
    body = eip2335.encrypt_keystore(secret, password, kdf=kdf, pubkey=pubkey)
    path.write_text(json.dumps(body))
    return path


@pytest.mark.slow  # decrypts keystores in worker processes
def test_parallel_import_reports_every_keystore(tmp_path: Path) -> None:
    module = EmulatedKeyModule(tmp_path / "data", PIN, create=True, scrypt_n=FAST_N)
    module.import_secret("old/0", Scheme.BLS, dev.dev_bls_secret(0))
    ks = tmp_path / "ks"
    ks.mkdir()
    secrets = [dev.dev_bls_secret(i) for i in range(1, 6)]
    paths = [_keystore(ks / f"k{i}.json", s, "pw", pubkey=bls.secret_to_public(s)) for i, s in enumerate(secrets)]
    paths.append(_keystore(ks / "same-key-again.json", secrets[0], "pw"))  # no pubkey field: decrypted
    paths.append(
        _keystore(ks / "already.json", dev.dev_bls_secret(0), "pw", pubkey=bls.secret_to_public(dev.dev_bls_secret(0)))
    )
    paths.append(_keystore(ks / "wrong-pw.json", dev.dev_bls_secret(9), "other"))
    paths.append(
        _keystore(
            ks / "lying-pubkey.json", dev.dev_bls_secret(10), "pw", pubkey=bls.secret_to_public(dev.dev_bls_secret(11))
        )
    )
    paths.append(_keystore(ks / "zero-secret.json", b"\x00" * 32, "pw"))
    (ks / "not-json.json").write_text("nope")
    paths.append(ks / "not-json.json")
    paths.append(ks / "absent.json")

    results = import_keystores(module, read_keystores(paths, "pw"), wallet="batch", workers=2, progress=False)
    assert [r.source for r in results] == [str(p) for p in paths]
    statuses = {Path(r.source).name: r.status for r in results}
    assert statuses == {
        **{f"k{i}.json": ImportStatus.IMPORTED for i in range(5)},
        "same-key-again.json": ImportStatus.DUPLICATE,
        "already.json": ImportStatus.DUPLICATE,
        "wrong-pw.json": ImportStatus.WRONG_PASSWORD,
        "lying-pubkey.json": ImportStatus.MALFORMED,
        "zero-secret.json": ImportStatus.MALFORMED,
        "not-json.json": ImportStatus.MALFORMED,
        "absent.json": ImportStatus.MALFORMED,
    }
    messages = {Path(r.source).name: r.message for r in results}
    assert "does not match" in messages["lying-pubkey.json"]
    assert "r-1" in messages["zero-secret.json"]
    assert messages["wrong-pw.json"].startswith("checksum mismatch")
    # Each imported key is in the module under batch/<first 8 hex>, and signs.
    reopened = EmulatedKeyModule(tmp_path / "data", PIN)
    reopened.unlock()
    names = {k.public_key: k.name for k in reopened.list_keys()}
    for secret in secrets:
        pk = bls.secret_to_public(secret)
        assert names[pk] == f"batch/{pk.hex()[:8]}"
        assert reopened.sign(pk, b"\x01" * 32) == bls.sign(secret, b"\x01" * 32)
    assert len(names) == 6


def test_account_name_grows_on_collision() -> None:
    pk = bytes.fromhex("aabbccdd" + "11" * 44)
    assert account_name("w", pk, set()) == "w/aabbccdd"
    assert account_name("w", pk, {"w/aabbccdd"}) == "w/aabbccdd1111"


def test_find_keystores_and_bad_wallet(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.json", "sub/a.json", "deposit_data-1.json", "notes.txt"):
        (tmp_path / name).write_text("{}")
    assert find_keystores([tmp_path]) == [tmp_path / "b.json", tmp_path / "sub/a.json"]
    module = EmulatedKeyModule(tmp_path / "data", PIN, create=True, scrypt_n=FAST_N)
    with pytest.raises(MalformedRequest):
        import_keystores(module, [], wallet="bad wallet", progress=False)
