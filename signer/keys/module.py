"""The KeyModule protocol: what every key module (emulated, PKCS#11) offers.

HSM semantics: keys are created or imported inside the module, referred to by handle and public
key, used only to sign, and never exported. Secret material never leaves a module through this
interface.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from signer.errors import MalformedRequest
from signer.types import KeyInfo, Scheme

ACCOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""``wallet/account`` as in Dirk: two parts of 1-64 letters, digits, '.', '_' or '-', each starting
with a letter or digit (so no hidden names, no path tricks, no whitespace)."""


def check_account_name(name: str) -> str:
    """Return ``name`` if it is a valid ``wallet/account`` name, else raise MalformedRequest."""
    if not isinstance(name, str) or not ACCOUNT_NAME_RE.fullmatch(name):
        raise MalformedRequest(
            f"invalid account name {name!r}: expected 'wallet/account', each part 1-64 of "
            "[A-Za-z0-9._-] starting with a letter or digit"
        )
    return name


@runtime_checkable
class KeyModule(Protocol):
    """Every module offers all of it (no optional parts to probe for). Runtime-checkable so a test can
    assert that an object has every member."""

    kind: str
    """"emulated" or "pkcs11": a metric label, never a key."""

    def unlock(self) -> None:
        """Open the module with its PIN and load every key (one KDF, not one per key).

        Raises WrongPin, ModuleTampered or KeyModuleError.
        """

    def lock(self) -> None:
        """Forget every unsealed secret; signing then raises KeyModuleError until unlock."""

    @property
    def unlocked(self) -> bool: ...

    def verify_pin(self, pin: str) -> bool:
        """True iff ``pin`` is the module PIN (constant-time comparison; used by AccountManager Unlock).

        Does not change the lock state.
        """

    def list_keys(self) -> list[KeyInfo]: ...

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        """Create a new key inside the module. ``name`` is ``wallet/account`` and must be new."""

    def generate_many(self, names: Sequence[str], scheme: Scheme) -> list[KeyInfo]:
        """Create one new key per name, all or nothing (every name is checked before any key is made);
        results in order."""

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        """Seal an existing secret into the module (EIP-2335 import, EIP-2333 derivation).

        BLS secrets are 32 big-endian bytes. Raises MalformedRequest for a name in use or a public
        key already present (the message says which).
        """

    def import_secrets(self, items: Sequence[tuple[str, Scheme, bytes]]) -> list[KeyInfo]:
        """Seal many (name, scheme, secret) items, all or nothing: every item is checked first (names,
        duplicates within the call, secret ranges) and nothing is stored if one is refused. The
        importer seals keystores in chunks through it (the emulated module writes its file once)."""

    def delete(self, public_key: bytes) -> KeyInfo: ...

    def sign(self, public_key: bytes, message: bytes) -> bytes:
        """Sign with the key.

        BLS: ``message`` is the 32-byte signing root, result 96 bytes (compressed G2).
        secp256k1: ``message`` is the 32-byte digest (SHA-256 of the sign bytes), result 64 bytes
        r||s with low S. ed25519: ``message`` is the message itself, result 64 bytes.
        Raises UnknownKey, KeyModuleError.
        """

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """Sign (public_key, message) pairs; same rules as ``sign``; results in order."""

    def close(self) -> None: ...
