"""Pkcs11KeyModule: the KeyModule on a PKCS#11 token (tested against SoftHSM2).

secp256k1 and ed25519 keys live in the token and sign there (``objects``: CKM_ECDSA over the 32-byte
digest, normalised to low S; CKM_EDDSA) on a pool of sessions (``sessions``). BLS secrets are sealed
by the token (``sealed``) and opened at unlock into process memory: a plain dict a forked signing
worker inherits. The token is logged in once per process (``logins``) and every pkcs11 exception
becomes a named error at this package's edge (``cryptoki``). The PIN is never logged nor put in an
error message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pkcs11 import Mechanism

from signer.crypto import bls, ed25519, secp256k1
from signer.errors import KeyModuleError, MalformedRequest, ModuleTampered, UnknownKey, UnsupportedScheme
from signer.keys.module import check_account_name
from signer.keys.pkcs11 import logins, objects, sealed
from signer.keys.pkcs11.cryptoki import edge, open_library
from signer.keys.pkcs11.logins import Login
from signer.keys.pkcs11.sealed import SEALED_FILE_NAME
from signer.keys.pkcs11.sessions import DEFAULT_POOL_SIZE, PooledSession, SessionPool
from signer.types import KeyInfo, Scheme

log = logging.getLogger("signer.keys.pkcs11")


@dataclass(frozen=True, slots=True)
class _Entry:
    info: KeyInfo
    cka_id: bytes | None
    """CKA_ID of the token objects; None for a sealed BLS key."""


def _bls_handle(public_key: bytes) -> str:
    return "sealed:" + public_key.hex()[:16]


def _public_key(scheme: Scheme, secret: bytes) -> bytes:
    if scheme is Scheme.BLS:
        return bls.secret_to_public(secret)
    if len(secret) != 32:
        raise MalformedRequest(f"a {scheme} secret must be 32 bytes")
    if scheme is Scheme.SECP256K1:
        return secp256k1.public_key(secret)
    return ed25519.public_key(secret)


class Pkcs11KeyModule:
    """A KeyModule on a PKCS#11 token selected by label (see the module docstring)."""

    kind = "pkcs11"

    def __init__(
        self,
        library_path: Path,
        token_label: str,
        pin: str,
        data_dir: Path,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.library_path = Path(library_path)
        self.token_label = token_label
        self._pin = pin
        self.data_dir = Path(data_dir)
        self.pool_size = pool_size
        self._state_lock = threading.RLock()
        self._login: Login | None = None
        self._sessions = SessionPool(token_label)
        self._keys: dict[bytes, _Entry] = {}
        self._names: dict[str, bytes] = {}
        self._bls_secrets: dict[bytes, bytes] = {}
        """public key -> 32-byte secret; a plain dict so a forked worker inherits it."""
        self._loaded = False

    def __repr__(self) -> str:
        return f"Pkcs11KeyModule(token_label={self.token_label!r}, unlocked={self.unlocked})"

    @property
    def sealed_file(self) -> Path:
        return self.data_dir / SEALED_FILE_NAME

    # --- lock / unlock --------------------------------------------------------------------

    @property
    def unlocked(self) -> bool:
        return self._login is not None

    def verify_pin(self, pin: str) -> bool:
        """True iff ``pin`` is the token's user PIN (``logins.verify_pin``). Never logs the PIN."""
        return logins.verify_pin(open_library(self.library_path, self.token_label), self.token_label, pin)

    def unlock(self) -> None:
        with self._state_lock:
            if self._login is not None:
                return
            library = open_library(self.library_path, self.token_label)
            login = logins.acquire_login(library, self.token_label, self._pin)
            try:
                self._sessions.open(login.token, self.pool_size)
                self._login = login
                token_keys = self._load_token_keys(login)
                blobs = sealed.read_sealed(self.sealed_file)
                secrets_by_key = self._unseal_all(login, blobs)
            except BaseException:
                self._sessions.close()
                self._login = None
                logins.release_login(login)
                raise
            self._keys.clear()
            self._names.clear()
            for key in token_keys:
                self._index(_Entry(KeyInfo(key.cka_id.hex(), key.name, key.scheme, key.public_key), key.cka_id))
            for blob in blobs:
                self._index(_Entry(KeyInfo(_bls_handle(blob.public_key), blob.name, Scheme.BLS, blob.public_key), None))
            self._bls_secrets.clear()
            self._bls_secrets.update(secrets_by_key)
            self._loaded = True
            log.info(
                "PKCS#11 module on token %r unlocked: %d token keys, %d sealed BLS keys",
                self.token_label,
                len(token_keys),
                len(blobs),
            )

    def lock(self) -> None:
        with self._state_lock:
            self._bls_secrets.clear()
            login, self._login = self._login, None
            self._sessions.close()
            if login is not None:
                logins.release_login(login)

    def close(self) -> None:
        self.lock()

    def _require_login(self) -> Login:
        login = self._login
        if login is None:
            raise KeyModuleError(f"PKCS#11 module on token {self.token_label!r} is locked")
        return login

    def _load_token_keys(self, login: Login) -> list[objects.TokenKey]:
        with login.lock, edge(self.token_label, "listing keys"):
            return objects.list_keys(login.session)

    def _unseal_all(self, login: Login, blobs: list[sealed.SealedBlob]) -> dict[bytes, bytes]:
        if not blobs:
            return {}
        with login.lock:
            with edge(self.token_label, "finding the BLS sealing key"):
                key = sealed.seal_key(login.session, self.token_label, create=False)
            if key is None:
                raise ModuleTampered(
                    f"{self.sealed_file} holds sealed BLS keys but token {self.token_label!r} "
                    "has no sealing key (wrong token?)"
                )
            return {blob.public_key: sealed.unseal(key, blob, self.token_label, self.sealed_file) for blob in blobs}

    # --- listing --------------------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        with self._state_lock:
            if not self._loaded:
                raise KeyModuleError(f"PKCS#11 module on token {self.token_label!r} was never unlocked")
            return sorted((e.info for e in self._keys.values()), key=lambda info: info.name)

    def key_info(self, public_key: bytes) -> KeyInfo:
        return self._entry(public_key).info

    def _index(self, entry: _Entry) -> None:
        self._keys[entry.info.public_key] = entry
        self._names[entry.info.name] = entry.info.public_key

    def _entry(self, public_key: bytes) -> _Entry:
        entry = self._keys.get(bytes(public_key))
        if entry is None:
            raise UnknownKey(f"no key with public key 0x{bytes(public_key).hex()} in this module")
        return entry

    # --- creating, importing, deleting ----------------------------------------------------

    def _check_new(self, name: str, public_key: bytes | None, names: set[str], public_keys: set[bytes]) -> None:
        """Refuse (MalformedRequest) a name or public key that is invalid, in use, or already among
        ``names``/``public_keys`` (this call's earlier items); else add it to them."""
        check_account_name(name)
        if name in self._names:
            raise MalformedRequest(f"account name {name!r} is already in use")
        if public_key is not None and public_key in self._keys:
            existing = self._keys[public_key].info.name
            raise MalformedRequest(f"public key 0x{public_key.hex()} is already present as {existing!r}")
        if name in names:
            raise MalformedRequest(f"account name {name!r} appears twice in one import")
        if public_key is not None and public_key in public_keys:
            raise MalformedRequest(f"public key 0x{public_key.hex()} appears twice in one import")
        names.add(name)
        if public_key is not None:
            public_keys.add(public_key)

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        return self.generate_many([name], scheme)[0]

    def generate_many(self, names: Sequence[str], scheme: Scheme) -> list[KeyInfo]:
        """New keys, all or nothing: secp256k1/ed25519 generated in the token, BLS sealed in one write."""
        scheme = Scheme(scheme)
        if scheme is Scheme.BLS:
            return self.import_secrets([(name, scheme, bls.random_secret()) for name in names])
        with self._state_lock:
            login = self._require_login()
            taken: set[str] = set()
            for name in names:
                self._check_new(name, None, taken, set())
            created: list[objects.TokenKey] = []
            with login.lock, edge(self.token_label, f"generating a {scheme} key"):
                try:
                    for name in names:
                        created.append(objects.generate_key(login.session, name, scheme))
                except BaseException:
                    objects.destroy_quietly(login.session, [key.cka_id for key in created])
                    raise
            return [self._index_token_key(key) for key in created]

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        return self.import_secrets([(name, scheme, secret)])[0]

    def import_secrets(self, items: Sequence[tuple[str, Scheme, bytes]]) -> list[KeyInfo]:
        """Import many secrets, all or nothing; the BLS ones are sealed in one file write."""
        with self._state_lock:
            login = self._require_login()
            prepared: list[tuple[str, Scheme, bytes, bytes]] = []
            names: set[str] = set()
            public_keys: set[bytes] = set()
            for name, scheme_value, secret_value in items:
                scheme, secret = Scheme(scheme_value), bytes(secret_value)
                public_key = _public_key(scheme, secret)
                self._check_new(name, public_key, names, public_keys)
                prepared.append((name, scheme, secret, public_key))
            created: list[objects.TokenKey] = []
            try:
                for name, scheme, secret, public_key in prepared:
                    if scheme is not Scheme.BLS:
                        with login.lock, edge(self.token_label, f"importing a {scheme} key"):
                            created.append(objects.create_key(login.session, name, scheme, secret, public_key))
                bls_infos = self._seal_bls(login, [(n, s, pk) for n, sc, s, pk in prepared if sc is Scheme.BLS])
            except BaseException:
                with login.lock:
                    objects.destroy_quietly(login.session, [key.cka_id for key in created])
                raise
            by_key = {info.public_key: info for info in map(self._index_token_key, created)}
            by_key |= {info.public_key: info for info in bls_infos}
            return [by_key[public_key] for _, _, _, public_key in prepared]

    def _index_token_key(self, key: objects.TokenKey) -> KeyInfo:
        entry = _Entry(KeyInfo(key.cka_id.hex(), key.name, key.scheme, key.public_key), key.cka_id)
        self._index(entry)
        return entry.info

    def _seal_bls(self, login: Login, items: list[tuple[str, bytes, bytes]]) -> list[KeyInfo]:
        """Seal (name, secret, public_key) triples through the token, then write the file once."""
        if not items:
            return []
        with login.lock, edge(self.token_label, "sealing BLS keys"):
            blobs = sealed.seal(sealed.seal_key(login.session, self.token_label, create=True), items)
        sealed.write_sealed(self.sealed_file, self.token_label, sealed.read_sealed(self.sealed_file) + blobs)
        infos: list[KeyInfo] = []
        for name, secret, public_key in items:
            self._bls_secrets[public_key] = secret
            info = KeyInfo(_bls_handle(public_key), name, Scheme.BLS, public_key)
            self._index(_Entry(info, None))
            infos.append(info)
        return infos

    def delete(self, public_key: bytes) -> KeyInfo:
        public_key = bytes(public_key)
        with self._state_lock:
            login = self._require_login()
            entry = self._entry(public_key)
            if entry.cka_id is None:
                kept = [b for b in sealed.read_sealed(self.sealed_file) if b.public_key != public_key]
                sealed.write_sealed(self.sealed_file, self.token_label, kept)
                self._bls_secrets.pop(public_key, None)
            else:
                with login.lock, edge(self.token_label, "deleting a key"):
                    objects.destroy(login.session, entry.cka_id)
                self._sessions.forget(public_key)
            del self._keys[public_key]
            self._names.pop(entry.info.name, None)
            return entry.info

    # --- signing --------------------------------------------------------------------------

    def _sign_bls(self, entry: _Entry, message: bytes) -> bytes:
        secret = self._bls_secrets.get(entry.info.public_key)
        if secret is None:
            raise KeyModuleError(f"PKCS#11 module on token {self.token_label!r} is locked")
        if len(message) != 32:
            raise MalformedRequest("a BLS signing root must be 32 bytes")
        return bls.sign(secret, message)

    def _sign_in_token(self, pooled: PooledSession, entry: _Entry, message: bytes) -> bytes:
        info = entry.info
        with edge(self.token_label, f"signing with {info.name!r}"):
            key = self._sessions.private_key(pooled, info.public_key, entry.cka_id, info.name)
            if info.scheme is Scheme.SECP256K1:
                if len(message) != 32:
                    raise MalformedRequest("a secp256k1 message must be the 32-byte digest")
                return secp256k1.normalize_low_s(bytes(key.sign(bytes(message), mechanism=Mechanism.ECDSA)))
            return bytes(key.sign(bytes(message), mechanism=Mechanism.EDDSA))

    def _sign_one(self, pooled: PooledSession | None, public_key: bytes, message: bytes) -> bytes:
        entry = self._entry(public_key)
        if entry.info.scheme is Scheme.BLS:
            return self._sign_bls(entry, message)
        assert pooled is not None
        return self._sign_in_token(pooled, entry, message)

    def sign(self, public_key: bytes, message: bytes) -> bytes:
        entry = self._entry(public_key)
        self._require_login()
        if entry.info.scheme is Scheme.BLS:
            return self._sign_bls(entry, message)
        with self._sessions.borrow() as pooled:
            return self._sign_in_token(pooled, entry, message)

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        for public_key, _ in items:
            self._entry(public_key)
        self._require_login()
        with self._sessions.borrow() as pooled:
            return [self._sign_one(pooled, public_key, message) for public_key, message in items]

    def sign_recoverable(self, public_key: bytes, digest: bytes) -> tuple[bytes, int]:
        """secp256k1: (64-byte low-S r||s, recovery id) -- for callers that need the recovery id."""
        entry = self._entry(public_key)
        if entry.info.scheme is not Scheme.SECP256K1:
            raise UnsupportedScheme(f"{entry.info.name!r} is a {entry.info.scheme} key, not secp256k1")
        signature = self.sign(public_key, digest)
        return signature, secp256k1.recovery_id(entry.info.public_key, digest, signature)
