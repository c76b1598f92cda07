"""Ed25519 (RFC 8032) through ``cryptography``.

Secrets are the 32-byte RFC 8032 seed, public keys 32 bytes, signatures 64 bytes. Plain
module-level functions taking bytes, so they pickle by reference into a process pool.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from signer.errors import MalformedRequest

SECRET_LENGTH: Final = 32
PUBLIC_KEY_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64


def _private_key(secret32: bytes) -> Ed25519PrivateKey:
    if not isinstance(secret32, bytes | bytearray) or len(secret32) != SECRET_LENGTH:
        raise MalformedRequest(f"an ed25519 secret key must be {SECRET_LENGTH} bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(secret32))


def public_key(secret32: bytes) -> bytes:
    """32-byte seed -> 32-byte public key."""
    return _private_key(secret32).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(secret32: bytes, message: bytes) -> bytes:
    """64-byte Ed25519 signature of ``message`` (the message itself, not a digest)."""
    return _private_key(secret32).sign(bytes(message))


def sign_many(items: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Sign each (secret32, message); results in order. Picklable pool work unit."""
    return [sign(secret32, message) for secret32, message in items]


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is valid; never raises on bad input."""
    if len(public_key) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        return False
    return True
