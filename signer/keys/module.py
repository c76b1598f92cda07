"""The KeyModule protocol: what every key module (emulated, PKCS#11) offers.

HSM semantics: keys are created or imported inside the module, referred to by handle and public
key, used only to sign, and never exported. Secret material never leaves a module through this
interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from signer.types import KeyInfo, Scheme


class KeyModule(Protocol):
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

    def list_keys(self) -> list[KeyInfo]: ...

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        """Create a new key inside the module. ``name`` is ``wallet/account`` and must be new."""

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        """Seal an existing secret into the module (EIP-2335 import, EIP-2333 derivation).

        BLS secrets are 32 big-endian bytes. Raises MalformedRequest for a name in use or a public
        key already present (the message says which).
        """

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
