"""The key-admin core (signer.keyadmin) on its own, below every front: a real emulated module, a real
SQLite store and the SigningService as the key index. The fronts' behaviour is tested through them
(tests/integration/test_admin_api.py, tests/unit/test_cli_keys.py, the CLI e2e tests)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from signer import errors
from signer.crypto import bls
from signer.eth2.networks import MAINNET
from signer.keyadmin import (
    ImportStatus,
    KeyAdmin,
    KeyStatus,
    ModuleIndex,
    ProtectionAdmin,
    keystore_documents,
)
from signer.keys import eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import SigningService
from signer.types import LOCAL_CLIENT, AttestationCheck, KeyInfo, Scheme
from tests.stores import keys_never_signed
from tests.support import done

GVR = MAINNET.genesis_validators_root
PIN = "unit-test-module-pin"


def _module(tmp_path: Path) -> EmulatedKeyModule:
    return EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=2**10)


def _keystore(password: str) -> tuple[bytes, bytes]:
    secret = bls.random_secret()
    kdf = eip2335.KdfParams("pbkdf2", secrets.token_bytes(32), 32, c=1000)
    body = eip2335.encrypt_keystore(secret, password, kdf=kdf, pubkey=bls.secret_to_public(secret))
    return json.dumps(body).encode(), bls.secret_to_public(secret)


def test_the_cli_core_works_on_the_module_alone(tmp_path: Path) -> None:
    """``signer keys ...`` runs the core on a module without a store or a running signer
    (ModuleIndex): everything that needs no history works; what does is refused, changing nothing."""
    module = _module(tmp_path)
    admin = KeyAdmin(module, ModuleIndex(module), import_workers=1)
    module.generate("generated/1", Scheme.BLS)
    generated = admin.generate(LOCAL_CLIENT, 2)
    assert [(r.status, r.name) for r in generated] == [
        (KeyStatus.GENERATED, "generated/0"),
        (KeyStatus.GENERATED, "generated/2"),
    ]
    body, public_key = _keystore("pw")
    (imported,) = done(admin.import_keystores(LOCAL_CLIENT, keystore_documents([body], ["pw"])))
    assert (imported.status, imported.public_key, imported.source) == (ImportStatus.IMPORTED, public_key, "keystore 0")
    assert [k.name for k in admin.list_keys(LOCAL_CLIENT, Scheme.BLS)] == [
        "generated/0",
        "generated/1",
        "generated/2",
        f"imported/{public_key.hex()[:8]}",
    ]

    other, other_key = _keystore("pw")
    with pytest.raises(errors.ConfigError, match="slashing-protection store"):
        admin.import_keystores(LOCAL_CLIENT, keystore_documents([other], ["pw"]), slashing_protection=b"{}")
    with pytest.raises(errors.ConfigError, match="slashing-protection store"):
        admin.delete(LOCAL_CLIENT, [public_key])
    assert other_key not in {k.public_key for k in module.list_keys()}
    assert public_key in {k.public_key for k in module.list_keys()}


class _RecordingIndex:
    """A KeyIndex that is not the KeyRing: it forwards to one and writes down each call."""

    def __init__(self, service: SigningService, log: list[str]) -> None:
        self.service = service
        self.log = log

    def list_keys(self) -> list[KeyInfo]:
        return self.service.keyring.list_keys()

    def reload_keys(self) -> list[KeyInfo]:
        self.log.append("reload")
        return self.service.keyring.reload_keys()

    def retire_keys(self, public_keys: Sequence[bytes]) -> None:
        self.log.append(f"retire {len(public_keys)}")
        self.service.keyring.retire_keys(public_keys)

    def readmit_keys(self, public_keys: Sequence[bytes]) -> list[KeyInfo]:
        self.log.append(f"readmit {len(public_keys)}")
        return self.service.keyring.readmit_keys(public_keys)


class _RecordingStore(SqliteStore):
    log: list[str]

    def export_interchange(self, public_keys: Sequence[bytes] | None = None) -> dict[str, Any]:
        self.log.append("export")
        return super().export_interchange(public_keys)


class _RecordingModule(EmulatedKeyModule):
    log: list[str]

    def delete(self, public_key: bytes) -> KeyInfo:
        self.log.append("delete")
        return super().delete(public_key)


def test_delete_retires_then_exports_then_deletes_and_keeps_the_history(tmp_path: Path) -> None:
    """The order that makes the returned history complete, through the KeyIndex protocol alone; then
    the Keymanager semantics: the history stays in the store, a second delete returns it again
    (not_active), a key with no history is not_found, and nothing is an error of the call."""
    log: list[str] = []
    module = _RecordingModule(tmp_path / "keys", PIN, create=True, scrypt_n=2**10)
    module.log = log
    store = _RecordingStore(tmp_path / "protection.sqlite", GVR)
    store.log = log
    keys_never_signed(store)
    service = SigningService(MAINNET, KeyRing(module), store)
    index = _RecordingIndex(service, log)
    admin = KeyAdmin(module, index, ProtectionAdmin(store, loaded=index.list_keys))
    (generated,) = admin.generate(LOCAL_CLIENT, 1)
    (verdict,) = store.check_and_record([AttestationCheck(generated.public_key, 1, 2, b"\x07" * 32)])
    assert verdict.ok
    never_seen = bls.secret_to_public(bls.random_secret())
    log.clear()

    first = done(admin.delete(LOCAL_CLIENT, [generated.public_key, never_seen]))
    assert log == ["retire 1", "export", "delete", "readmit 1", "reload"]
    assert [r.status for r in first.results] == [KeyStatus.DELETED, KeyStatus.NOT_FOUND]
    assert first.returns_history
    assert [d["pubkey"] for d in first.slashing_protection["data"]] == ["0x" + generated.public_key.hex()]
    assert service.keyring.list_keys() == []

    again = done(admin.delete(LOCAL_CLIENT, [generated.public_key]))
    assert [r.status for r in again.results] == [KeyStatus.NOT_ACTIVE]
    assert again.slashing_protection == first.slashing_protection
    nothing = done(admin.delete(LOCAL_CLIENT, [never_seen]))
    assert [r.status for r in nothing.results] == [KeyStatus.NOT_FOUND]
    assert not nothing.returns_history and nothing.slashing_protection["data"] == []
    assert nothing.slashing_protection["metadata"] == first.slashing_protection["metadata"]
    store.close()
