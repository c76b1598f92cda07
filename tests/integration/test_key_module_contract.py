"""The KeyModule contract, run against both modules: emulated (software) and pkcs11 (SoftHSM2)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signer.crypto import bls, ed25519, secp256k1
from signer.errors import KeyModuleError, MalformedRequest, UnknownKey, WrongPin
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.module import KeyModule
from signer.keys.pkcs11 import Pkcs11KeyModule
from signer.types import Scheme
from tests.softhsm import SoftHsm, clean_token, softhsm  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

PIN = "key-module-contract-pin"
KINDS = ["emulated", "pkcs11"]
SCHEMES = [Scheme.BLS, Scheme.SECP256K1, Scheme.ED25519]

SECRETS = {
    Scheme.BLS: bytes.fromhex("263dbd792f5b1be47ed85f8938c0f29586af0d3ac7b977f21c278fe1462040e3"),
    Scheme.SECP256K1: bytes.fromhex("b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef"),
    Scheme.ED25519: bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
}

Opener = Callable[..., KeyModule]


@pytest.fixture(params=KINDS)
def open_module(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """``open_module(pin=PIN)``: a new, locked instance on this test's storage (created if new)."""
    kind = request.param
    data_dir = tmp_path / "data"
    opened: list[KeyModule] = []

    if kind == "emulated":
        EmulatedKeyModule(data_dir, PIN, create=True, scrypt_n=2**10).close()

        def opener(pin: str = PIN) -> KeyModule:
            module = EmulatedKeyModule(data_dir, pin)
            opened.append(module)
            return module

    else:
        hsm: SoftHsm = request.getfixturevalue("softhsm")
        label = request.getfixturevalue("clean_token")

        def opener(pin: str = PIN) -> KeyModule:
            module = Pkcs11KeyModule(hsm.library_path, label, hsm.pin if pin == PIN else pin, data_dir)
            opened.append(module)
            return module

    yield opener
    for module in opened:
        module.close()


@pytest.fixture
def module(open_module: Opener) -> KeyModule:
    module = open_module()
    module.unlock()
    return module


def message_for(scheme: Scheme, text: bytes = b"validator-signer") -> bytes:
    return hashlib.sha256(text).digest() if scheme is not Scheme.ED25519 else text


def verifies(scheme: Scheme, public_key: bytes, message: bytes, signature: bytes) -> bool:
    if scheme is Scheme.BLS:
        return len(signature) == 96 and bls.verify(public_key, message, signature)
    if scheme is Scheme.SECP256K1:
        return (
            len(signature) == 64
            and secp256k1.is_low_s(signature)
            and secp256k1.verify_digest(public_key, message, signature)
        )
    return len(signature) == 64 and ed25519.verify(public_key, message, signature)


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_generate_list_sign_verify(module: KeyModule, scheme: Scheme) -> None:
    info = module.generate(f"wallet/{scheme}", scheme)
    assert info.scheme is scheme
    assert len(info.public_key) == {Scheme.BLS: 48, Scheme.SECP256K1: 33, Scheme.ED25519: 32}[scheme]
    assert [(k.name, k.scheme, k.public_key) for k in module.list_keys()] == [
        (f"wallet/{scheme}", scheme, info.public_key)
    ]
    message = message_for(scheme)
    signature = module.sign(info.public_key, message)
    assert verifies(scheme, info.public_key, message, signature)
    assert not verifies(scheme, info.public_key, message_for(scheme, b"other"), signature)


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_import_sign_verify(module: KeyModule, scheme: Scheme) -> None:
    secret = SECRETS[scheme]
    info = module.import_secret("wallet/imported", scheme, secret)
    expected_public = {
        Scheme.BLS: bls.secret_to_public,
        Scheme.SECP256K1: secp256k1.public_key,
        Scheme.ED25519: ed25519.public_key,
    }[scheme](secret)
    assert info.public_key == expected_public
    message = message_for(scheme)
    signature = module.sign(info.public_key, message)
    assert verifies(scheme, info.public_key, message, signature)
    if scheme is Scheme.BLS:
        assert signature == bls.sign(secret, message)
    if scheme is Scheme.ED25519:
        assert signature == ed25519.sign(secret, message)


def test_secp256k1_signatures_are_always_low_s(module: KeyModule) -> None:
    info = module.generate("wallet/low-s", Scheme.SECP256K1)
    for i in range(40):
        digest = hashlib.sha256(i.to_bytes(4, "big")).digest()
        signature = module.sign(info.public_key, digest)
        assert secp256k1.is_low_s(signature), i
        assert secp256k1.verify_digest(info.public_key, digest, signature)


def test_sign_many_mixed_schemes_in_order(module: KeyModule) -> None:
    infos = [module.generate(f"wallet/many-{scheme}", scheme) for scheme in SCHEMES]
    items = [(info.public_key, message_for(info.scheme, f"m{i}".encode())) for i in range(12) for info in infos]
    signatures = module.sign_many(items)
    assert len(signatures) == len(items)
    by_key = {info.public_key: info for info in infos}
    for (public_key, message), signature in zip(items, signatures, strict=True):
        assert verifies(by_key[public_key].scheme, public_key, message, signature)


def test_unknown_key(module: KeyModule) -> None:
    module.generate("wallet/known", Scheme.ED25519)
    stranger = ed25519.public_key(b"\x07" * 32)
    with pytest.raises(UnknownKey):
        module.sign(stranger, b"m")
    with pytest.raises(UnknownKey):
        module.sign_many([(stranger, b"m")])
    with pytest.raises(UnknownKey):
        module.delete(stranger)


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_duplicate_name_and_public_key_refused(module: KeyModule, scheme: Scheme) -> None:
    module.import_secret("wallet/first", scheme, SECRETS[scheme])
    with pytest.raises(MalformedRequest, match="already"):
        module.generate("wallet/first", scheme)
    with pytest.raises(MalformedRequest, match="already"):
        module.import_secret("wallet/second", scheme, SECRETS[scheme])
    assert [k.name for k in module.list_keys()] == ["wallet/first"]


def test_lock_refuses_signing_and_unlock_restores(module: KeyModule) -> None:
    infos = [module.generate(f"wallet/lock-{scheme}", scheme) for scheme in SCHEMES]
    module.lock()
    assert not module.unlocked
    for info in infos:
        with pytest.raises(KeyModuleError):
            module.sign(info.public_key, message_for(info.scheme))
    with pytest.raises(KeyModuleError):
        module.generate("wallet/while-locked", Scheme.BLS)
    module.unlock()
    assert module.unlocked
    for info in infos:
        message = message_for(info.scheme)
        assert verifies(info.scheme, info.public_key, message, module.sign(info.public_key, message))


def test_reopen_keeps_keys(open_module: Opener) -> None:
    first = open_module()
    first.unlock()
    infos = [first.generate(f"wallet/keep-{scheme}", scheme) for scheme in SCHEMES]
    infos.append(first.import_secret("wallet/keep-imported", Scheme.BLS, SECRETS[Scheme.BLS]))
    first.close()
    second = open_module()
    second.unlock()
    assert sorted((k.name, k.scheme, k.public_key) for k in second.list_keys()) == sorted(
        (k.name, k.scheme, k.public_key) for k in infos
    )
    for info in infos:
        message = message_for(info.scheme)
        assert verifies(info.scheme, info.public_key, message, second.sign(info.public_key, message))


def test_wrong_pin(open_module: Opener) -> None:
    good = open_module()
    good.unlock()
    good.generate("wallet/pin", Scheme.SECP256K1)
    assert good.verify_pin(good._pin)  # type: ignore[attr-defined]
    assert not good.verify_pin("not-the-pin")
    good.close()
    bad = open_module(pin="not-the-pin")
    with pytest.raises(WrongPin) as excinfo:
        bad.unlock()
    assert "not-the-pin" not in str(excinfo.value)
    assert not bad.unlocked


def test_delete(open_module: Opener) -> None:
    module = open_module()
    module.unlock()
    infos = {scheme: module.generate(f"wallet/del-{scheme}", scheme) for scheme in SCHEMES}
    keep = module.generate("wallet/keep", Scheme.ED25519)
    for scheme, info in infos.items():
        assert module.delete(info.public_key).name == f"wallet/del-{scheme}"
        with pytest.raises(UnknownKey):
            module.sign(info.public_key, message_for(scheme))
    assert [k.public_key for k in module.list_keys()] == [keep.public_key]
    module.close()
    again = open_module()
    again.unlock()
    assert [k.public_key for k in again.list_keys()] == [keep.public_key]
    # A deleted name can be used again.
    again.generate("wallet/del-bls", Scheme.BLS)


@pytest.mark.parametrize("scheme", SCHEMES, ids=str)
def test_generate_many_is_all_or_nothing(open_module: Opener, scheme: Scheme) -> None:
    module = open_module()
    module.unlock()
    module.generate("wallet/taken", Scheme.ED25519)
    with pytest.raises(MalformedRequest, match="wallet/taken"):
        module.generate_many(["wallet/a", "wallet/b", "wallet/taken"], scheme)
    with pytest.raises(MalformedRequest, match="wallet/a"):
        module.generate_many(["wallet/a", "wallet/b", "wallet/a"], scheme)
    assert [k.name for k in module.list_keys()] == ["wallet/taken"]
    module.close()
    again = open_module()
    again.unlock()
    assert [k.name for k in again.list_keys()] == ["wallet/taken"]
    infos = again.generate_many(["wallet/a", "wallet/b", "wallet/c"], scheme)
    assert [(k.name, k.scheme) for k in infos] == [(f"wallet/{n}", scheme) for n in "abc"]
    for info in infos:
        message = message_for(scheme)
        assert verifies(scheme, info.public_key, message, again.sign(info.public_key, message))


def test_import_secrets_is_all_or_nothing(open_module: Opener) -> None:
    module = open_module()
    module.unlock()
    items = [(f"wallet/{scheme}", scheme, SECRETS[scheme]) for scheme in SCHEMES]
    with pytest.raises(MalformedRequest):
        module.import_secrets([*items, ("wallet/zero", Scheme.BLS, b"\x00" * 32)])
    with pytest.raises(MalformedRequest, match=r"twice|already"):
        module.import_secrets([*items, ("wallet/again", Scheme.SECP256K1, SECRETS[Scheme.SECP256K1])])
    assert module.list_keys() == []
    infos = module.import_secrets(items)
    assert [(k.name, k.scheme) for k in infos] == [(name, scheme) for name, scheme, _ in items]
    module.close()
    again = open_module()
    again.unlock()
    assert sorted(k.public_key for k in again.list_keys()) == sorted(k.public_key for k in infos)
