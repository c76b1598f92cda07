"""secp256k1 ECDSA over a 32-byte digest, through coincurve (libsecp256k1).

Signatures are 64 bytes r||s with low S (s <= n/2), as CometBFT expects. Signing is RFC 6979
deterministic (libsecp256k1's default nonce function) and always low-S. Verification rejects
high-S signatures, r or s out of [1, n-1], and public keys that are not on the curve.
coincurve releases the GIL. All functions are plain module-level functions taking bytes, so they
pickle by reference into a process pool.
"""

from __future__ import annotations

import hashlib
from typing import Final

from coincurve import PrivateKey, PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

from signer.errors import MalformedRequest

CURVE_ORDER: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""n, the order of the secp256k1 group."""
HALF_ORDER: Final = CURVE_ORDER // 2
SECRET_LENGTH: Final = 32
DIGEST_LENGTH: Final = 32
SIGNATURE_LENGTH: Final = 64
PUBLIC_KEY_LENGTH: Final = 33
"""Compressed SEC1 form."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _private_key(secret: bytes) -> PrivateKey:
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECRET_LENGTH:
        raise MalformedRequest(f"a secp256k1 secret key must be {SECRET_LENGTH} bytes")
    if not 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
        raise MalformedRequest("a secp256k1 secret key must be in [1, n-1]")
    return PrivateKey(bytes(secret))


def _check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes | bytearray) or len(digest) != DIGEST_LENGTH:
        raise MalformedRequest(f"a secp256k1 digest must be {DIGEST_LENGTH} bytes")


def _split(signature64: bytes) -> tuple[int, int]:
    if not isinstance(signature64, bytes | bytearray) or len(signature64) != SIGNATURE_LENGTH:
        raise MalformedRequest(f"a secp256k1 signature must be {SIGNATURE_LENGTH} bytes r||s")
    return int.from_bytes(signature64[:32], "big"), int.from_bytes(signature64[32:], "big")


def public_key(secret: bytes) -> bytes:
    """32-byte secret -> 33-byte compressed public key. MalformedRequest unless in [1, n-1]."""
    return bytes(_private_key(secret).public_key.format(compressed=True))


def sign_digest(secret: bytes, digest: bytes) -> tuple[bytes, int]:
    """RFC 6979 deterministic, low-S signature of a 32-byte digest: (r||s, recovery id)."""
    _check_digest(digest)
    recoverable = _private_key(secret).sign_recoverable(bytes(digest), hasher=None)
    return bytes(recoverable[:64]), recoverable[64]


def sign_digest_many(items: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Sign each (secret, digest); the 64-byte signatures in order. Picklable pool work unit."""
    return [sign_digest(secret, digest)[0] for secret, digest in items]


def is_low_s(signature64: bytes) -> bool:
    _, s = _split(signature64)
    return s <= HALF_ORDER


def normalize_low_s(signature64: bytes) -> bytes:
    """The equivalent low-S signature (s -> n - s when s > n/2). r and s must be in [1, n-1]."""
    r, s = _split(signature64)
    if not (0 < r < CURVE_ORDER and 0 < s < CURVE_ORDER):
        raise MalformedRequest("a secp256k1 signature needs r and s in [1, n-1]")
    if s > HALF_ORDER:
        s = CURVE_ORDER - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_digest(public_key: bytes, digest: bytes, signature64: bytes) -> bool:
    """True iff ``signature64`` (r||s, low S) is valid for ``digest`` under ``public_key``
    (33-byte compressed or 65-byte uncompressed). Never raises on bad input."""
    try:
        _check_digest(digest)
        r, s = _split(signature64)
        if not (0 < r < CURVE_ORDER and 0 < s <= HALF_ORDER):
            return False
        key = PublicKey(bytes(public_key))
        der = cdata_to_der(deserialize_compact(bytes(signature64)))
        return bool(key.verify(der, bytes(digest), hasher=None))
    except (ValueError, TypeError, MalformedRequest):
        return False


def recovery_id(public_key: bytes, digest: bytes, signature64: bytes) -> int:
    """The recovery id (0..3) that recovers ``public_key`` from (digest, signature), by trial.

    For signatures made elsewhere (an HSM returns r||s without it). MalformedRequest if none does.
    """
    _check_digest(digest)
    _split(signature64)
    try:
        wanted = PublicKey(bytes(public_key)).format(compressed=True)
    except (ValueError, TypeError) as exc:
        raise MalformedRequest("not a secp256k1 public key") from exc
    for candidate in range(4):
        try:
            recovered = PublicKey.from_signature_and_message(
                bytes(signature64) + bytes([candidate]), bytes(digest), hasher=None
            )
        except (ValueError, TypeError):
            continue
        if recovered.format(compressed=True) == wanted:
            return candidate
    raise MalformedRequest("no recovery id recovers this public key from the signature")


def signature_from_der(der: bytes) -> bytes:  # noqa: C901 -- strict DER: each BER variant refused by name, in one reader
    """Strict DER ``SEQUENCE { INTEGER r, INTEGER s }`` -> 64-byte r||s.

    Refuses BER variants (long-form or non-minimal lengths, padded or negative integers, trailing
    bytes) and r, s outside [0, 2^256): MalformedRequest. The range check [1, n-1] is verify's.
    """
    data = bytes(der)

    def read_length(pos: int) -> tuple[int, int]:
        if pos >= len(data):
            raise MalformedRequest("DER signature truncated")
        first = data[pos]
        if first < 0x80:
            return first, pos + 1
        count = first & 0x7F
        if count == 0 or count > 2 or pos + 1 + count > len(data):
            raise MalformedRequest("DER signature has a bad length")
        value = int.from_bytes(data[pos + 1 : pos + 1 + count], "big")
        if value < 0x80 or data[pos + 1] == 0:
            raise MalformedRequest("DER signature has a non-minimal length")
        return value, pos + 1 + count

    def read_integer(pos: int) -> tuple[int, int]:
        if pos >= len(data) or data[pos] != 0x02:
            raise MalformedRequest("DER signature: expected an INTEGER")
        length, pos = read_length(pos + 1)
        body = data[pos : pos + length]
        if length == 0 or len(body) != length:
            raise MalformedRequest("DER signature: bad INTEGER")
        if body[0] & 0x80:
            raise MalformedRequest("DER signature: negative INTEGER")
        if length > 1 and body[0] == 0 and not body[1] & 0x80:
            raise MalformedRequest("DER signature: non-minimal INTEGER")
        value = int.from_bytes(body, "big")
        if value >= 1 << 256:
            raise MalformedRequest("DER signature: INTEGER too large")
        return value, pos + length

    if len(data) < 2 or data[0] != 0x30:
        raise MalformedRequest("DER signature: expected a SEQUENCE")
    length, pos = read_length(1)
    if pos + length != len(data):
        raise MalformedRequest("DER signature: SEQUENCE length does not match")
    r, pos = read_integer(pos)
    s, pos = read_integer(pos)
    if pos != len(data):
        raise MalformedRequest("DER signature: trailing bytes")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")
