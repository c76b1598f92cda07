"""EmulatedKeyModule: sealing, PIN, tamper detection, persistence, signing with real crypto."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from signer.crypto import bls, ed25519, secp256k1
from signer.errors import KeyModuleError, MalformedRequest, ModuleTampered, UnknownKey, WrongPin
from signer.keys.emulated import MODULE_FILE, EmulatedKeyModule
from signer.keys.module import KeyModule
from signer.types import Scheme

PIN = "unit-test-module-pin-0123"
FAST_N = 2**10  # the tests' scrypt cost; the default (2**17) is exercised by bench/unlock.py
BLS_SECRET = bytes.fromhex("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f")
BLS_PUBKEY = bytes.fromhex(
    "9612d7a727c9d0a22e185a1c768478dfe919cada9266988cb32359c11f2b7b27f4ae4040902382ae2910c15e2b420d07"
)
SECP_SECRET = bytes.fromhex("11" * 32)
ED_SECRET = bytes.fromhex("22" * 32)


def new_module(tmp_path: Path) -> EmulatedKeyModule:
    return EmulatedKeyModule(tmp_path / "data", PIN, create=True, scrypt_n=FAST_N)


def reopen(tmp_path: Path, pin: str = PIN) -> EmulatedKeyModule:
    module = EmulatedKeyModule(tmp_path / "data", pin)
    module.unlock()
    return module


def read_doc(tmp_path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((tmp_path / "data" / MODULE_FILE).read_text())
    return doc


def write_doc(tmp_path: Path, doc: dict[str, Any]) -> None:
    (tmp_path / "data" / MODULE_FILE).write_text(json.dumps(doc))


def test_satisfies_the_protocols(tmp_path: Path) -> None:
    module: KeyModule = new_module(tmp_path)
    assert module.kind == "emulated"
    assert isinstance(module, KeyModule)


def test_create_then_unlock_signs_with_every_scheme(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    assert module.unlocked
    bls_key = module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    secp_key = module.import_secret("comet/secp", Scheme.SECP256K1, SECP_SECRET)
    ed_key = module.import_secret("comet/ed", Scheme.ED25519, ED_SECRET)
    assert bls_key.public_key == BLS_PUBKEY
    assert secp_key.public_key == secp256k1.public_key(SECP_SECRET)
    assert ed_key.public_key == ed25519.public_key(ED_SECRET)

    reopened = reopen(tmp_path)
    assert {(k.name, k.scheme, k.public_key) for k in reopened.list_keys()} == {
        ("val/0", Scheme.BLS, BLS_PUBKEY),
        ("comet/secp", Scheme.SECP256K1, secp_key.public_key),
        ("comet/ed", Scheme.ED25519, ed_key.public_key),
    }
    root = bytes(range(32))
    signature = reopened.sign(BLS_PUBKEY, root)
    assert signature == bls.sign(BLS_SECRET, root)
    assert bls.verify(BLS_PUBKEY, root, signature)
    digest = secp256k1.sha256(b"sign bytes")
    sig64 = reopened.sign(secp_key.public_key, digest)
    assert secp256k1.verify_digest(secp_key.public_key, digest, sig64)
    assert ed25519.verify(ed_key.public_key, b"sign bytes", reopened.sign(ed_key.public_key, b"sign bytes"))
    assert reopened.sign_many([(BLS_PUBKEY, root), (ed_key.public_key, b"m")]) == [
        signature,
        ed25519.sign(ED_SECRET, b"m"),
    ]


def test_generate_makes_distinct_working_keys(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    for scheme in Scheme:
        a = module.generate(f"gen/{scheme.value}-a", scheme)
        b = module.generate(f"gen/{scheme.value}-b", scheme)
        assert a.public_key != b.public_key and a.scheme is scheme
    many = module.generate_many([f"many/{i}" for i in range(5)], Scheme.BLS)
    assert len({k.public_key for k in many}) == 5
    root = b"\x07" * 32
    assert bls.verify(many[3].public_key, root, reopen(tmp_path).sign(many[3].public_key, root))


def test_no_plaintext_secret_on_disk(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    module.import_secret("comet/secp", Scheme.SECP256K1, SECP_SECRET)
    module.import_secret("comet/ed", Scheme.ED25519, ED_SECRET)
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (BLS_SECRET, SECP_SECRET, ED_SECRET):
            assert secret not in data
            assert secret.hex().encode() not in data.lower()
        assert PIN.encode() not in data
    assert oct((tmp_path / "data" / MODULE_FILE).stat().st_mode & 0o777) == "0o600"
    assert not [p for p in files if p.name.endswith(".tmp")]


def test_wrong_pin_is_refused_cleanly(tmp_path: Path) -> None:
    new_module(tmp_path).import_secret("val/0", Scheme.BLS, BLS_SECRET)
    module = EmulatedKeyModule(tmp_path / "data", "wrong pin")
    with pytest.raises(WrongPin, match="wrong PIN"):
        module.unlock()
    assert not module.unlocked
    with pytest.raises(KeyModuleError, match="not been unlocked"):
        module.list_keys()
    with pytest.raises(KeyModuleError, match="locked"):
        module.sign(BLS_PUBKEY, b"\x00" * 32)


def test_verify_pin_does_not_change_lock_state(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    module.lock()
    assert module.verify_pin(PIN)
    assert not module.verify_pin(PIN + " ")
    assert not module.verify_pin("")
    assert not module.unlocked


def test_lock_forgets_secrets(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    module.lock()
    assert not module.unlocked
    with pytest.raises(KeyModuleError, match="locked"):
        module.sign(BLS_PUBKEY, b"\x00" * 32)
    with pytest.raises(KeyModuleError, match="locked"):
        module.generate("val/1", Scheme.BLS)
    module.unlock()
    assert bls.verify(BLS_PUBKEY, b"\x01" * 32, module.sign(BLS_PUBKEY, b"\x01" * 32))


def _tampered(tmp_path: Path, edit: str) -> None:
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    module.import_secret("val/1", Scheme.ED25519, ED_SECRET)
    doc = read_doc(tmp_path)
    entry = doc["keys"][1]
    if edit == "sealed":
        entry["sealed"] = ("0" if entry["sealed"][0] != "0" else "1") + entry["sealed"][1:]
    elif edit == "public_key":
        entry["public_key"] = ed25519.public_key(b"\x33" * 32).hex()
    elif edit == "name":
        entry["name"] = "val/9"
    elif edit == "scheme":
        entry["scheme"] = "secp256k1"
    elif edit == "removed":
        del doc["keys"][0]
    elif edit == "reordered":
        doc["keys"].reverse()
    elif edit == "mac":
        doc["mac"] = "0" * 64
    write_doc(tmp_path, doc)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("sealed", r"key #1 \('val/1'\) failed authentication"),
        ("public_key", r"key #1 \('val/1'\) failed authentication"),
        ("name", r"key #1 \('val/9'\) failed authentication"),
        ("scheme", r"key #1 \('val/1'\) failed authentication"),
        ("removed", "file MAC mismatch"),
        ("reordered", "file MAC mismatch"),
        ("mac", "file MAC mismatch"),
    ],
)
def test_tampered_file_is_refused_naming_what_failed(tmp_path: Path, edit: str, message: str) -> None:
    _tampered(tmp_path, edit)
    with pytest.raises(ModuleTampered, match=message):
        reopen(tmp_path)


def test_malformed_file_is_refused(tmp_path: Path) -> None:
    new_module(tmp_path)
    path = tmp_path / "data" / MODULE_FILE
    path.write_text("{")
    with pytest.raises(ModuleTampered, match="not valid JSON"):
        reopen(tmp_path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ModuleTampered, match="malformed: format"):
        reopen(tmp_path)


@pytest.mark.timeout(30)  # the unbounded KDF these headers asked for took ~90 s and 1.9 GiB
@pytest.mark.parametrize(
    ("kdf", "message"),
    [
        ({"n": 2**20, "r": 15, "p": 16}, r"malformed: kdf\.r: Input should be 8"),
        ({"r": 32}, r"malformed: kdf\.r: Input should be 8"),
        ({"p": 2}, r"malformed: kdf\.p: Input should be 1"),
        ({"n": 3000}, r"malformed: kdf\.n: Value error, scrypt n must be a power of two, got 3000"),
        ({"n": 2**21}, r"malformed: kdf\.n: Input should be less than or equal to 1048576"),
        ({"n": 2.0**17}, r"malformed: kdf\.n: Input should be a valid integer"),
    ],
    ids=["costly-r-and-p", "r-32", "p-2", "n-not-a-power-of-two", "n-too-large", "n-float"],
)
def test_tampered_kdf_parameters_are_refused_before_the_kdf_runs(
    tmp_path: Path, kdf: dict[str, Any], message: str
) -> None:
    new_module(tmp_path).import_secret("val/0", Scheme.BLS, BLS_SECRET)
    doc = read_doc(tmp_path)
    doc["kdf"].update(kdf)
    write_doc(tmp_path, doc)
    with pytest.raises(ModuleTampered, match=message):
        reopen(tmp_path)
    module = EmulatedKeyModule(tmp_path / "data", PIN)
    with pytest.raises(ModuleTampered, match=message):
        module.verify_pin(PIN)  # AccountManager's passphrase check reads the same header


def test_deeply_nested_module_file_is_tampered_not_a_traceback(tmp_path: Path) -> None:
    new_module(tmp_path)
    (tmp_path / "data" / MODULE_FILE).write_text('{"format": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(ModuleTampered, match=r"nests arrays and objects 200001 deep, over the limit of 32"):
        reopen(tmp_path)


def test_missing_module_without_create(tmp_path: Path) -> None:
    with pytest.raises(KeyModuleError, match="no emulated key module"):
        EmulatedKeyModule(tmp_path / "nothing", PIN)


def test_create_opens_an_existing_module(tmp_path: Path) -> None:
    new_module(tmp_path).import_secret("val/0", Scheme.BLS, BLS_SECRET)
    again = EmulatedKeyModule(tmp_path / "data", PIN, create=True)
    again.unlock()
    assert [k.public_key for k in again.list_keys()] == [BLS_PUBKEY]


def test_empty_pin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyModuleError, match="must not be empty"):
        EmulatedKeyModule(tmp_path / "data", "", create=True)


@pytest.mark.parametrize(
    "name",
    ["nowallet", "a/b/c", "/acc", "wal/", "wal/.hidden", "wal/with space", "w\u00e9/x", "w/" + "a" * 65],
)
def test_bad_account_names_are_refused(tmp_path: Path, name: str) -> None:
    module = new_module(tmp_path)
    with pytest.raises(MalformedRequest, match="invalid account name"):
        module.generate(name, Scheme.BLS)


def test_duplicates_are_refused_and_import_is_all_or_nothing(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    with pytest.raises(MalformedRequest, match="already in use"):
        module.generate("val/0", Scheme.BLS)
    with pytest.raises(MalformedRequest, match="already in the module as 'val/0'"):
        module.import_secret("val/other", Scheme.BLS, BLS_SECRET)
    with pytest.raises(MalformedRequest, match="in \\[1, r-1\\]"):
        module.import_secrets([("ok/1", Scheme.ED25519, ED_SECRET), ("bad/1", Scheme.BLS, b"\x00" * 32)])
    assert [k.name for k in reopen(tmp_path).list_keys()] == ["val/0"]


def test_signing_errors(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    with pytest.raises(UnknownKey, match="0x" + "ab" * 48):
        module.sign(b"\xab" * 48, b"\x00" * 32)
    with pytest.raises(MalformedRequest, match="32 bytes"):
        module.sign(BLS_PUBKEY, b"short")


def test_delete(tmp_path: Path) -> None:
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    keep = module.import_secret("val/1", Scheme.ED25519, ED_SECRET)
    assert module.delete(BLS_PUBKEY).name == "val/0"
    with pytest.raises(UnknownKey):
        module.sign(BLS_PUBKEY, b"\x00" * 32)
    with pytest.raises(UnknownKey):
        module.delete(BLS_PUBKEY)
    assert [k.name for k in reopen(tmp_path).list_keys()] == [keep.name]


def test_two_writers_do_not_lose_keys(tmp_path: Path) -> None:
    # e.g. `signer keys generate` while a server holds the same module open.
    first = new_module(tmp_path)
    second = reopen(tmp_path)
    first.generate("a/1", Scheme.BLS)
    second.generate("b/1", Scheme.BLS)
    first.generate("a/2", Scheme.ED25519)
    assert {k.name for k in first.list_keys()} == {"a/1", "b/1", "a/2"}
    assert {k.name for k in reopen(tmp_path).list_keys()} == {"a/1", "b/1", "a/2"}


def test_forked_worker_inherits_unsealed_secrets(tmp_path: Path) -> None:
    # The later process pool forks after unlock: the child must sign without the PIN or the file.
    module = new_module(tmp_path)
    module.import_secret("val/0", Scheme.BLS, BLS_SECRET)
    (tmp_path / "data" / MODULE_FILE).unlink()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        try:
            os.write(write_fd, module.sign(BLS_PUBKEY, b"\x05" * 32))
        finally:
            os._exit(0)
    os.close(write_fd)
    child_signature = os.read(read_fd, 200)
    os.close(read_fd)
    os.waitpid(pid, 0)
    assert bls.verify(BLS_PUBKEY, b"\x05" * 32, child_signature)


def test_verify_pin_after_unlock_runs_no_kdf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13.5: a passphrase check compares against the verifier kept at unlock, no scrypt."""
    import hashlib  # noqa: PLC0415

    module = new_module(tmp_path)
    runs: list[int] = []
    real = hashlib.scrypt

    def counting_scrypt(*args: object, **kwargs: object) -> bytes:
        runs.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    assert module.verify_pin(PIN)
    assert not module.verify_pin(PIN + "x")
    assert not module.verify_pin("")
    assert runs == []
    # A fresh, never-unlocked module object has no verifier yet: one KDF per check.
    other = EmulatedKeyModule(tmp_path / "data", PIN)
    assert other.verify_pin(PIN) and not other.verify_pin("nope")
    assert len(runs) == 2
