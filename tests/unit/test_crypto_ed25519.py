"""Ed25519 through cryptography: RFC 8032 test vector 1, round trip, refusals."""

from __future__ import annotations

import pytest

from signer.crypto import ed25519
from signer.errors import MalformedRequest

# RFC 8032, section 7.1, TEST 1 (empty message)
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_rfc8032_test_1() -> None:
    assert ed25519.public_key(RFC8032_SECRET) == RFC8032_PUBLIC
    assert ed25519.sign(RFC8032_SECRET, b"") == RFC8032_SIGNATURE
    assert ed25519.verify(RFC8032_PUBLIC, b"", RFC8032_SIGNATURE)
    assert not ed25519.verify(RFC8032_PUBLIC, b"x", RFC8032_SIGNATURE)
    assert ed25519.sign_many([(RFC8032_SECRET, b"")]) == [RFC8032_SIGNATURE]


def test_bad_inputs() -> None:
    with pytest.raises(MalformedRequest):
        ed25519.sign(b"\x01" * 31, b"m")
    assert not ed25519.verify(RFC8032_PUBLIC[:31], b"", RFC8032_SIGNATURE)
    assert not ed25519.verify(RFC8032_PUBLIC, b"", RFC8032_SIGNATURE[:63])
    tampered = bytes([RFC8032_SIGNATURE[0] ^ 1]) + RFC8032_SIGNATURE[1:]
    assert not ed25519.verify(RFC8032_PUBLIC, b"", tampered)
