"""secp256k1: low-S signing, high-S refusal, normalisation, recovery ids, strict DER."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from signer.crypto import secp256k1
from signer.errors import MalformedRequest

N = secp256k1.CURVE_ORDER


def _high_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (N - s).to_bytes(32, "big")


def test_signatures_are_low_s_and_verify() -> None:
    rng = random.Random(7)
    for _ in range(50):
        secret = rng.randrange(1, N).to_bytes(32, "big")
        digest = rng.randbytes(32)
        signature, recovery_id = secp256k1.sign_digest(secret, digest)
        assert len(signature) == 64 and 0 <= recovery_id <= 3
        assert secp256k1.is_low_s(signature)
        public_key = secp256k1.public_key(secret)
        assert len(public_key) == 33
        assert secp256k1.verify_digest(public_key, digest, signature)
        assert not secp256k1.verify_digest(public_key, bytes(32), signature)
        assert secp256k1.recovery_id(public_key, digest, signature) == recovery_id


def test_high_s_is_refused_and_normalised_back() -> None:
    secret, digest = (5).to_bytes(32, "big"), hashlib.sha256(b"vote").digest()
    signature, _ = secp256k1.sign_digest(secret, digest)
    high = _high_s(signature)
    public_key = secp256k1.public_key(secret)
    assert not secp256k1.is_low_s(high)
    assert not secp256k1.verify_digest(public_key, digest, high)
    assert secp256k1.normalize_low_s(high) == signature
    assert secp256k1.normalize_low_s(signature) == signature


def test_foreign_high_s_signature_normalises_and_gets_a_recovery_id() -> None:
    """What the PKCS#11 module does with an HSM's r||s: normalise, then find the recovery id."""
    key = ec.generate_private_key(ec.SECP256K1())
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    public_key = secp256k1.public_key(secret)
    seen_high = False
    for i in range(20):
        message = f"proposal {i}".encode()
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(hashes.SHA256())))
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        seen_high |= s > secp256k1.HALF_ORDER
        digest = secp256k1.sha256(message)
        low = secp256k1.normalize_low_s(raw)
        assert secp256k1.verify_digest(public_key, digest, low)
        assert secp256k1.recovery_id(public_key, digest, low) in {0, 1, 2, 3}  # raises if none fits
    assert seen_high  # cryptography gives high S about half of the time: 20 tries


def test_recovery_id_refuses_the_wrong_key() -> None:
    digest = bytes(range(32))
    signature, _ = secp256k1.sign_digest((3).to_bytes(32, "big"), digest)
    with pytest.raises(MalformedRequest):
        secp256k1.recovery_id(secp256k1.public_key((4).to_bytes(32, "big")), digest, signature)


@pytest.mark.parametrize(
    "secret",
    [b"", bytes(32), N.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31],
    ids=["empty", "zero", "n", "max", "short"],
)
def test_bad_secret_is_malformed(secret: bytes) -> None:
    with pytest.raises(MalformedRequest):
        secp256k1.sign_digest(secret, bytes(32))
    with pytest.raises(MalformedRequest):
        secp256k1.public_key(secret)


def test_digest_must_be_32_bytes() -> None:
    with pytest.raises(MalformedRequest):
        secp256k1.sign_digest((1).to_bytes(32, "big"), b"short")
    public_key = secp256k1.public_key((1).to_bytes(32, "big"))
    assert not secp256k1.verify_digest(public_key, b"short", bytes(64))


@pytest.mark.parametrize(
    "signature",
    [
        bytes(64),
        b"\x00" * 32 + (1).to_bytes(32, "big"),
        N.to_bytes(32, "big") + (1).to_bytes(32, "big"),
        b"x",
    ],
    ids=["zeros", "r-zero", "r-n", "short"],
)
def test_out_of_range_signatures_do_not_verify(signature: bytes) -> None:
    public_key = secp256k1.public_key((1).to_bytes(32, "big"))
    assert not secp256k1.verify_digest(public_key, bytes(32), signature)


def test_strict_der() -> None:
    r, s = 0x80, 0x01
    good = bytes([0x30, 7, 0x02, 2, 0x00, 0x80, 0x02, 1, 0x01])
    assert secp256k1.signature_from_der(good) == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    for bad in [
        bytes([0x30, 6, 0x02, 1, 0x80, 0x02, 1, 0x01]),  # negative r
        bytes([0x30, 8, 0x02, 3, 0x00, 0x00, 0x80, 0x02, 1, 0x01]),  # padded r
        bytes([0x30, 0x81, 7, 0x02, 2, 0x00, 0x80, 0x02, 1, 0x01]),  # long-form short length
        good + b"\x00",  # trailing byte
        good[:-1],  # truncated
    ]:
        with pytest.raises(MalformedRequest):
            secp256k1.signature_from_der(bad)
