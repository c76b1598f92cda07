"""The emulated key module: HSM semantics in software, for development and small setups.

One module file (``<data_dir>/emulated-module.json``) holds:

* a header: format and version, the scrypt parameters and salt, a PIN verifier and (version 2) the
  master key, sealed under the PIN;
* one entry per key: account name, scheme, public key, a 96-bit nonce and the AES-256-GCM sealed
  secret. The associated data binds the public key (and the scheme and name) to the ciphertext, so
  the stored public key is authenticated and never recomputed at unlock (deriving 10,000 BLS public
  keys would take ~10 s);
* a file MAC (HMAC-SHA256) over everything else, so entries cannot be removed, reordered or
  swapped between files without the module noticing.

Keys: ``ikm = scrypt(NFKD(PIN), salt, n, r, p)`` runs ONCE per unlock; the PIN verifier is
HMAC-SHA256(ikm, "pin-verifier"). Version 2 (every new module): a random 32-byte master key is sealed
(AES-256-GCM) under HMAC-SHA256(ikm, "master-key-wrap"); version 1 (modules made before): the master
key IS ikm. The sealing key and the file MAC key are HMAC-SHA256(master, label) for two distinct
labels. So ``change_pin`` re-seals the master key under a new PIN (new salt) and leaves every key
entry as it is, byte for byte; a version 1 module becomes version 2 on its first PIN change, its
master key the old ikm. A wrong PIN is told apart from a tampered file by the verifier
(constant-time comparison). After unlock, a passphrase check (``verify_pin``: AccountManager Unlock,
Generate) compares a keyed HMAC of the guess with one of the PIN made at unlock, in constant time:
no scrypt per guess.

PIN policy (signer.keys.pin_policy): creating a module or changing its PIN refuses a PIN the
module's ``pin_policy`` refuses (WeakPin); opening a module whose PIN it would refuse logs a warning.

No plaintext secret ever reaches disk, and the file is replaced atomically (``signer.atomicfile``:
temporary file with mode 0600, fsync, rename, fsync of the directory); a PIN change is that one
replacement, so a crash leaves either the old PIN or the new one working. Writers
serialise on an ``flock`` of ``<data_dir>/emulated-module.lock`` and re-read the file first, so
the CLI and a running server can both add keys without losing one another's writes.

Unsealed secrets live in the plain dict ``self._secrets`` (public key -> secret bytes) so that a
forked signing worker inherits them; they are never pickled or sent over a socket. Python cannot
reliably wipe ``bytes``; ``lock()`` drops every reference.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets as _secrets
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signer.atomicfile import atomic_write
from signer.crypto import bls, ed25519, secp256k1
from signer.errors import (
    KeyModuleError,
    MalformedRequest,
    ModuleTampered,
    UnknownKey,
    WeakPin,
    WrongPin,
)
from signer.jsondoc import load_json, read_at_most
from signer.keys.module import check_account_name
from signer.keys.pin_policy import DEFAULT_PIN_POLICY, PinPolicy
from signer.types import KeyInfo, Scheme

log = logging.getLogger(__name__)

MODULE_FILE: Final = "emulated-module.json"
LOCK_FILE: Final = "emulated-module.lock"
FORMAT: Final = "validator-signer/emulated-module"
VERSION: Final = 2
"""What new modules are written as; version 1 modules (master key = the PIN's ikm) still open."""
DEFAULT_SCRYPT_N: Final = 2**17
"""~0.4 s and 128 MiB on this machine kind; paid once per unlock, not per key."""
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
MIN_SCRYPT_N: Final = 2**10
MAX_SCRYPT_N: Final = 2**20
MAX_MODULE_FILE_BYTES: Final = 256 * 1024 * 1024
"""About 300 bytes per key: room for far more keys than one signer holds."""

_AAD_PREFIX: Final = b"validator-signer/emulated-module/v1\x00"
_MASTER_AAD: Final = b"validator-signer/emulated-module/v2\x00master-key"
_SEAL_LABEL: Final = b"seal-key"
_MAC_LABEL: Final = b"file-mac"
_VERIFIER_LABEL: Final = b"pin-verifier"
_WRAP_LABEL: Final = b"master-key-wrap"
MASTER_KEY_BYTES: Final = 32


# --- the file format (an I/O edge: pydantic) --------------------------------------------------


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _KdfModel(_FileModel):
    """Exactly what ``_create`` writes: r and p fixed, n a power of two in [2**10, 2**20]. Checked
    before the KDF runs, so a changed header is ModuleTampered at once, not a 2 GiB scrypt and then
    "wrong PIN". (Only the PIN can authenticate the header, after the KDF: a header changed within
    these values reads as a wrong PIN.)"""

    function: Literal["scrypt"]
    n: int = Field(ge=MIN_SCRYPT_N, le=MAX_SCRYPT_N, strict=True)
    r: Literal[8]
    p: Literal[1]
    salt: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("n")
    @classmethod
    def _power_of_two(cls, n: int) -> int:
        if n & (n - 1):
            raise ValueError(f"scrypt n must be a power of two, got {n}")
        return n


class _EntryModel(_FileModel):
    name: str
    scheme: Scheme
    public_key: str = Field(pattern=r"^([0-9a-f]{2})+$")
    nonce: str = Field(pattern=r"^[0-9a-f]{24}$")
    sealed: str = Field(pattern=r"^([0-9a-f]{2})+$")


class _SealedMasterModel(_FileModel):
    """The master key (version 2), AES-256-GCM under the PIN's wrapping key: 32 bytes + 16 of tag."""

    nonce: str = Field(pattern=r"^[0-9a-f]{24}$")
    sealed: str = Field(pattern=r"^[0-9a-f]{96}$")


class _ModuleFileModel(_FileModel):
    format: Literal["validator-signer/emulated-module"]
    version: Literal[1, 2]
    kdf: _KdfModel
    pin_verifier: str = Field(pattern=r"^[0-9a-f]{64}$")
    master_key: _SealedMasterModel | None = None
    keys: list[_EntryModel]
    mac: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _master_key_iff_version_2(self) -> _ModuleFileModel:
        if (self.version == 2) != (self.master_key is not None):
            raise ValueError("a version 2 module has a master_key, a version 1 module none")
        return self


@dataclass(frozen=True, slots=True)
class _PinKeys:
    """What one scrypt run of a PIN gives: its verifier and the key that seals the master key."""

    verifier: bytes
    wrap: bytes
    ikm: bytes


@dataclass(frozen=True, slots=True)
class _Keys:
    """The unlocked module: the master key, the sealing key, the file MAC key and the PIN verifier."""

    master: bytes
    seal: bytes
    mac: bytes
    verifier: bytes


def _normalize_pin(pin: str) -> bytes:
    return unicodedata.normalize("NFKD", pin).encode("utf-8")


def _label(key: bytes, tag: bytes) -> bytes:
    return hmac.new(key, tag, hashlib.sha256).digest()


def _derive_pin(pin: str, kdf: dict[str, Any]) -> _PinKeys:
    n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
    ikm = hashlib.scrypt(
        _normalize_pin(pin),
        salt=bytes.fromhex(kdf["salt"]),
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * (n + p + 2) + 1024 * 1024,
        dklen=32,
    )
    return _PinKeys(verifier=_label(ikm, _VERIFIER_LABEL), wrap=_label(ikm, _WRAP_LABEL), ikm=ikm)


def _keys_of(master: bytes, verifier: bytes) -> _Keys:
    return _Keys(master=master, seal=_label(master, _SEAL_LABEL), mac=_label(master, _MAC_LABEL), verifier=verifier)


def _new_kdf(scrypt_n: int) -> dict[str, Any]:
    return {"function": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _secrets.token_bytes(32).hex()}


def _seal_master(pin_keys: _PinKeys, master: bytes) -> dict[str, str]:
    nonce = _secrets.token_bytes(12)
    return {"nonce": nonce.hex(), "sealed": AESGCM(pin_keys.wrap).encrypt(nonce, master, _MASTER_AAD).hex()}


def _header(pin: str, master: bytes, scrypt_n: int) -> tuple[dict[str, Any], _Keys]:
    """A version 2 header sealing ``master`` under ``pin`` (one scrypt run, a fresh salt)."""
    kdf = _new_kdf(scrypt_n)
    pin_keys = _derive_pin(pin, kdf)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "kdf": kdf,
        "pin_verifier": pin_keys.verifier.hex(),
        "master_key": _seal_master(pin_keys, master),
    }
    return header, _keys_of(master, pin_keys.verifier)


_KDF_LOCK = threading.Lock()
"""One scrypt at a time for passphrase checks (each takes ~128 MiB; 64 at once took 8 GiB)."""


def _pin_tag(key: bytes, pin: str) -> bytes:
    """The PIN verifier kept in memory after unlock: a keyed HMAC under a random per-module key.

    Never the PIN nor a plain hash of it. Whoever can read this process's memory could test guesses
    against it offline, but that reader already has every unsealed secret and the module's own PIN
    string (kept to unlock again after ``lock()``), so the tag exposes nothing new.
    """
    return hmac.new(key, _normalize_pin(pin), hashlib.sha256).digest()


def _aad(scheme: Scheme, public_key: bytes, name: str) -> bytes:
    return _AAD_PREFIX + scheme.value.encode() + b"\x00" + public_key + b"\x00" + name.encode()


def _file_mac(mac_key: bytes, doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "mac"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(mac_key, canonical, hashlib.sha256).hexdigest()


def public_key_of(scheme: Scheme, secret: bytes) -> bytes:
    """The public key of ``secret`` for ``scheme`` (MalformedRequest for an invalid secret)."""
    if scheme is Scheme.BLS:
        return bls.secret_to_public(secret)
    if scheme is Scheme.SECP256K1:
        return secp256k1.public_key(secret)
    if scheme is Scheme.ED25519:
        return ed25519.public_key(secret)
    raise MalformedRequest(f"unknown scheme {scheme!r}")


def _random_secret(scheme: Scheme) -> bytes:
    if scheme is Scheme.BLS:
        return bls.random_secret()
    if scheme is Scheme.SECP256K1:
        return (1 + _secrets.randbelow(secp256k1.CURVE_ORDER - 1)).to_bytes(32, "big")
    return _secrets.token_bytes(32)


def _sign_with(scheme: Scheme, secret: bytes, message: bytes) -> bytes:
    if scheme is Scheme.BLS:
        if len(message) != 32:
            raise MalformedRequest(f"a BLS signing root must be 32 bytes, got {len(message)}")
        return bls.sign(secret, message)
    if scheme is Scheme.SECP256K1:
        return secp256k1.sign_digest(secret, message)[0]
    return ed25519.sign(secret, message)


# --- the module -------------------------------------------------------------------------------


class EmulatedKeyModule:
    """KeyModule in software: one sealed module file, its master key sealed under the PIN.

    ``EmulatedKeyModule(data_dir, pin)`` opens an existing module (locked: call ``unlock()``).
    With ``create=True`` a missing module is created (and is then unlocked); an existing one is
    opened as usual. ``scrypt_n`` only applies when creating (tests use a small one).
    ``pin_policy`` decides which PINs a new module or a PIN change accepts (signer.keys.pin_policy).
    """

    kind = "emulated"

    def __init__(
        self,
        data_dir: Path,
        pin: str,
        *,
        create: bool = False,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        pin_policy: PinPolicy = DEFAULT_PIN_POLICY,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / MODULE_FILE
        self._pin = pin
        self.pin_policy = pin_policy
        self._policy_warned = False
        self._mutex = threading.RLock()
        self._keys: _Keys | None = None
        self._secrets: dict[bytes, bytes] = {}
        """public key -> unsealed secret. A plain dict so a forked worker inherits it."""
        self._infos: dict[bytes, KeyInfo] = {}
        self._authenticated = False
        self._last_mac: str | None = None
        self._tag_key = _secrets.token_bytes(32)
        self._pin_tag: bytes | None = None
        """HMAC-SHA256(_tag_key, NFKD(PIN)), set at unlock: checks a passphrase without a KDF."""
        if self.path.exists():
            return
        if not create:
            raise KeyModuleError(f"no emulated key module in {self.data_dir} ({MODULE_FILE} is missing)")
        self._create(scrypt_n)

    # -- state ---------------------------------------------------------------------------------

    @property
    def unlocked(self) -> bool:
        return self._keys is not None

    def __len__(self) -> int:
        return len(self._infos)

    def _create(self, scrypt_n: int) -> None:
        if not self._pin:
            raise KeyModuleError("the module PIN must not be empty")
        self.pin_policy.check(self._pin)
        if not MIN_SCRYPT_N <= scrypt_n <= MAX_SCRYPT_N or scrypt_n & (scrypt_n - 1):
            raise KeyModuleError(f"scrypt n must be a power of two in [2**10, 2**20], got {scrypt_n}")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        header, keys = _header(self._pin, _secrets.token_bytes(MASTER_KEY_BYTES), scrypt_n)
        doc: dict[str, Any] = {**header, "keys": []}
        with self._file_lock():
            if self.path.exists():  # created meanwhile by someone else: open theirs
                return
            self._write(doc, keys)
        self._keys = keys
        self._authenticated = True
        self._pin_tag = _pin_tag(self._tag_key, self._pin)

    def _read_doc(self) -> dict[str, Any]:
        try:
            with self.path.open("rb") as fh:
                raw = read_at_most(fh, MAX_MODULE_FILE_BYTES)
        except FileNotFoundError as exc:
            raise KeyModuleError(f"no emulated key module in {self.data_dir} ({MODULE_FILE} is missing)") from exc
        except OSError as exc:
            raise KeyModuleError(f"cannot read {self.path}: {exc.strerror}") from exc
        doc = load_json(raw, what=f"module file {self.path}", max_bytes=MAX_MODULE_FILE_BYTES, error=ModuleTampered)
        try:
            _ModuleFileModel.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "<root>"
            raise ModuleTampered(f"module file {self.path} is malformed: {where}: {err['msg']}") from exc
        result: dict[str, Any] = doc
        return result

    def _check_pin(self, doc: dict[str, Any], pin: str) -> _Keys:
        pin_keys = _derive_pin(pin, doc["kdf"])
        if not hmac.compare_digest(pin_keys.verifier, bytes.fromhex(doc["pin_verifier"])):
            raise WrongPin(f"wrong PIN for the emulated key module in {self.data_dir}")
        sealed = doc.get("master_key")
        if sealed is None:  # version 1: the master key is the PIN's ikm
            return _keys_of(pin_keys.ikm, pin_keys.verifier)
        try:
            master = AESGCM(pin_keys.wrap).decrypt(
                bytes.fromhex(sealed["nonce"]), bytes.fromhex(sealed["sealed"]), _MASTER_AAD
            )
        except InvalidTag as exc:
            raise ModuleTampered(f"module file {self.path}: the sealed master key failed authentication") from exc
        return _keys_of(master, pin_keys.verifier)

    def _load(self, doc: dict[str, Any], keys: _Keys) -> None:
        """Authenticate and unseal every entry of ``doc``; replace the in-memory state."""
        aead = AESGCM(keys.seal)
        secrets_by_pk: dict[bytes, bytes] = {}
        infos: dict[bytes, KeyInfo] = {}
        names: set[str] = set()
        for index, entry in enumerate(doc["keys"]):
            name = entry["name"]
            scheme = Scheme(entry["scheme"])
            public_key = bytes.fromhex(entry["public_key"])
            try:
                secret = aead.decrypt(
                    bytes.fromhex(entry["nonce"]), bytes.fromhex(entry["sealed"]), _aad(scheme, public_key, name)
                )
            except InvalidTag as exc:
                raise ModuleTampered(
                    f"module file {self.path}: key #{index} ({name!r}) failed authentication "
                    "(its ciphertext, public key, scheme or name was changed)"
                ) from exc
            if public_key in infos or name in names:
                raise ModuleTampered(f"module file {self.path}: key #{index} ({name!r}) is a duplicate")
            names.add(name)
            secrets_by_pk[public_key] = secret
            infos[public_key] = KeyInfo(public_key.hex(), name, scheme, public_key)
        if not hmac.compare_digest(_file_mac(keys.mac, doc), doc["mac"]):
            raise ModuleTampered(
                f"module file {self.path}: file MAC mismatch (header changed, or keys added, removed "
                "or reordered outside the module)"
            )
        self._secrets = secrets_by_pk
        self._infos = infos
        self._last_mac = doc["mac"]
        self._authenticated = True

    def unlock(self) -> None:
        with self._mutex:
            doc = self._read_doc()
            keys = self._check_pin(doc, self._pin)
            self._load(doc, keys)
            self._keys = keys
            self._pin_tag = _pin_tag(self._tag_key, self._pin)
        self._warn_if_weak()

    def _warn_if_weak(self) -> None:
        """Once per module object: the PIN that opened the module breaks the PIN policy."""
        problem = self.pin_policy.problem(self._pin)
        if problem is not None and not self._policy_warned:
            self._policy_warned = True
            log.warning(
                "the emulated key module's PIN does not satisfy the PIN policy: change it with "
                "'signer keys change-pin'",
                extra={"data_dir": str(self.data_dir), "rule": problem},
            )

    def change_pin(self, new_pin: str) -> None:
        """Re-seal the master key under ``new_pin`` (a fresh salt, the same scrypt cost); every key
        entry stays as it is. The old PIN is the one this object was opened with. One atomic file
        replacement: before it the old PIN opens the module, after it the new one. Leaves the module
        unlocked (under the new PIN).

        Raises WeakPin (the policy refuses ``new_pin``, or it is the current PIN), WrongPin,
        ModuleTampered (the file is not intact: nothing is re-sealed)."""
        self.pin_policy.check(new_pin)
        if hmac.compare_digest(_normalize_pin(new_pin), _normalize_pin(self._pin)):
            raise WeakPin("PIN refused: the new PIN is the current one")
        with self._mutex, self._file_lock():
            doc = self._read_doc()
            keys = self._check_pin(doc, self._pin)
            self._load(doc, keys)  # every entry and the file MAC authenticate before anything changes
            header, new_keys = _header(new_pin, keys.master, int(doc["kdf"]["n"]))
            new_doc: dict[str, Any] = {**header, "keys": doc["keys"]}
            self._write(new_doc, new_keys)
            self._pin = new_pin
            self._keys = new_keys
            self._pin_tag = _pin_tag(self._tag_key, new_pin)

    def lock(self) -> None:
        with self._mutex:
            self._keys = None
            self._secrets = {}

    def close(self) -> None:
        self.lock()

    def verify_pin(self, pin: str) -> bool:
        """Against the verifier cached at unlock: one HMAC and a constant-time comparison, no KDF.
        Before the first unlock it runs the KDF (scrypt, one at a time in this process)."""
        tag = self._pin_tag
        if tag is not None:
            return hmac.compare_digest(_pin_tag(self._tag_key, pin), tag)
        with _KDF_LOCK:
            try:
                self._check_pin(self._read_doc(), pin)
            except WrongPin:
                return False
        return True

    # -- listing -------------------------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        with self._mutex:
            if not self._authenticated:
                raise KeyModuleError("the emulated key module has not been unlocked yet")
            return list(self._infos.values())

    def key_info(self, public_key: bytes) -> KeyInfo:
        try:
            return self._infos[bytes(public_key)]
        except KeyError:
            raise UnknownKey(f"no key with public key 0x{bytes(public_key).hex()} in the module") from None

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _write(self, doc: dict[str, Any], keys: _Keys) -> None:
        """Set ``doc["mac"]`` and replace the module file with ``doc`` (``atomic_write``, mode 0600)."""
        doc["mac"] = _file_mac(keys.mac, doc)
        atomic_write(self.path, json.dumps(doc, indent=1).encode())
        self._last_mac = doc["mac"]

    def _require_keys(self) -> _Keys:
        if self._keys is None:
            raise KeyModuleError("the emulated key module is locked")
        return self._keys

    @contextlib.contextmanager
    def _mutation(self) -> Iterator[tuple[dict[str, Any], _Keys]]:
        """Lock, re-read the file (taking in other writers' keys), let the caller edit, write."""
        with self._mutex:
            keys = self._require_keys()
            with self._file_lock():
                doc = self._read_doc()
                if doc["mac"] != self._last_mac:
                    if not hmac.compare_digest(keys.verifier, bytes.fromhex(doc["pin_verifier"])):
                        if hmac.compare_digest(_file_mac(keys.mac, doc), doc["mac"]):
                            raise KeyModuleError(
                                f"the PIN of the emulated key module in {self.data_dir} was changed since "
                                "this signer unlocked it (signer keys change-pin): restart it with the new PIN"
                            )
                        raise ModuleTampered(f"module file {self.path} was replaced by one with another PIN")
                    self._load(doc, keys)
                yield doc, keys
                self._write(doc, keys)
                self._load(doc, keys)

    def _seal_entries(
        self, doc: dict[str, Any], keys: _Keys, items: Sequence[tuple[str, Scheme, bytes]]
    ) -> list[KeyInfo]:
        aead = AESGCM(keys.seal)
        names = {e["name"] for e in doc["keys"]}
        public_keys = {bytes.fromhex(e["public_key"]): e["name"] for e in doc["keys"]}
        prepared: list[tuple[dict[str, Any], KeyInfo]] = []
        for name, scheme_value, secret in items:
            check_account_name(name)
            scheme = Scheme(scheme_value)
            if name in names:
                raise MalformedRequest(f"account name {name!r} is already in use")
            public_key = public_key_of(scheme, bytes(secret))
            if public_key in public_keys:
                raise MalformedRequest(
                    f"public key 0x{public_key.hex()} is already in the module as {public_keys[public_key]!r}"
                )
            names.add(name)
            public_keys[public_key] = name
            nonce = _secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, bytes(secret), _aad(scheme, public_key, name))
            entry = {
                "name": name,
                "scheme": scheme.value,
                "public_key": public_key.hex(),
                "nonce": nonce.hex(),
                "sealed": sealed.hex(),
            }
            prepared.append((entry, KeyInfo(public_key.hex(), name, scheme, public_key)))
        doc["keys"].extend(entry for entry, _ in prepared)
        return [info for _, info in prepared]

    def import_secrets(self, items: Sequence[tuple[str, Scheme, bytes]]) -> list[KeyInfo]:
        """Seal many secrets in one write; all or nothing (KeyModule.import_secrets)."""
        with self._mutation() as (doc, keys):
            return self._seal_entries(doc, keys, items)

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        return self.import_secrets([(name, scheme, secret)])[0]

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        return self.import_secret(name, scheme, _random_secret(Scheme(scheme)))

    def generate_many(self, names: Sequence[str], scheme: Scheme) -> list[KeyInfo]:
        """Create one new key per name in one write."""
        return self.import_secrets([(name, scheme, _random_secret(Scheme(scheme))) for name in names])

    def delete(self, public_key: bytes) -> KeyInfo:
        public_key = bytes(public_key)
        with self._mutation() as (doc, _keys):
            info = self.key_info(public_key)
            doc["keys"] = [e for e in doc["keys"] if e["public_key"] != public_key.hex()]
        return info

    # -- signing -------------------------------------------------------------------------------

    def sign(self, public_key: bytes, message: bytes) -> bytes:
        public_key = bytes(public_key)
        info = self._infos.get(public_key)
        secret = self._secrets.get(public_key)
        if info is None or secret is None:
            if self._keys is None:
                raise KeyModuleError("the emulated key module is locked")
            raise UnknownKey(f"no key with public key 0x{public_key.hex()} in the module")
        return _sign_with(info.scheme, secret, bytes(message))

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        return [self.sign(public_key, message) for public_key, message in items]
