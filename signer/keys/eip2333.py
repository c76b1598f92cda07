"""EIP-2333: BLS12-381 key generation and the tree of child keys.

A direct transcription of https://eips.ethereum.org/EIPS/eip-2333 (HKDF_mod_r as in the IETF BLS
KeyGen, version 4+ of the draft; Lamport-based hardened child derivation). Secret keys are plain
ints in [1, r-1]; ``secret_to_bytes`` gives the 32 big-endian bytes the key modules use.
"""

from __future__ import annotations

import hashlib
import hmac

from signer.errors import MalformedRequest

CURVE_ORDER = 52435875175126190479447740508185965837690552500527637822603658699938581184513
"""r, the order of the BLS12-381 subgroups."""

_KEYGEN_SALT = b"BLS-SIG-KEYGEN-SALT-"
_LAMPORT_CHUNKS = 255
_HASH_LEN = 32


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return bytes(out[:length])


def hkdf_mod_r(ikm: bytes, key_info: bytes = b"") -> int:
    """HKDF_mod_r(IKM, key_info): the IETF KeyGen core used by EIP-2333."""
    length = 48  # ceil((3 * ceil(log2(r))) / 16)
    salt = _KEYGEN_SALT
    secret = 0
    while secret == 0:
        salt = hashlib.sha256(salt).digest()
        prk = _hkdf_extract(salt, ikm + b"\x00")
        okm = _hkdf_expand(prk, key_info + length.to_bytes(2, "big"), length)
        secret = int.from_bytes(okm, "big") % CURVE_ORDER
    return secret


def ikm_to_lamport_sk(ikm: bytes, salt: bytes) -> list[bytes]:
    prk = _hkdf_extract(salt, ikm)
    okm = _hkdf_expand(prk, b"", _HASH_LEN * _LAMPORT_CHUNKS)
    return [okm[i : i + _HASH_LEN] for i in range(0, len(okm), _HASH_LEN)]


def parent_sk_to_lamport_pk(parent_SK: int, index: int) -> bytes:
    """The compressed Lamport public key of EIP-2333 (32 bytes)."""
    salt = index.to_bytes(4, "big")
    ikm = parent_SK.to_bytes(32, "big")
    not_ikm = bytes(b ^ 0xFF for b in ikm)
    lamport_0 = ikm_to_lamport_sk(ikm, salt)
    lamport_1 = ikm_to_lamport_sk(not_ikm, salt)
    sha = hashlib.sha256
    lamport_pk = b"".join(sha(chunk).digest() for chunk in lamport_0 + lamport_1)
    return sha(lamport_pk).digest()


def derive_master_SK(seed: bytes) -> int:
    """master_SK from a seed of at least 32 bytes."""
    if len(seed) < 32:
        raise MalformedRequest(f"EIP-2333 seed must be at least 32 bytes, got {len(seed)}")
    return hkdf_mod_r(seed)


def derive_child_SK(parent_SK: int, index: int) -> int:
    """The hardened child ``index`` (0 <= index < 2**32) of ``parent_SK``."""
    if not 0 <= index < 2**32:
        raise MalformedRequest(f"EIP-2333 child index must be in [0, 2**32), got {index}")
    if not 0 <= parent_SK < CURVE_ORDER:
        raise MalformedRequest("EIP-2333 parent secret key is out of range")
    return hkdf_mod_r(parent_sk_to_lamport_pk(parent_SK, index))


def parse_path(path: str) -> list[int]:
    """``m/12381/3600/0/0/0`` -> [12381, 3600, 0, 0, 0]."""
    parts = path.split("/")
    if not parts or parts[0] != "m":
        raise MalformedRequest(f"EIP-2333 path must start with 'm': {path!r}")
    indices: list[int] = []
    for part in parts[1:]:
        if not part.isdigit() or not 0 <= int(part) < 2**32:
            raise MalformedRequest(f"EIP-2333 path has an invalid index {part!r}: {path!r}")
        indices.append(int(part))
    return indices


def derive_path_SK(seed: bytes, path: str) -> int:
    """The secret key at ``path`` (e.g. ``m/12381/3600/0/0/0``) below the master key of ``seed``."""
    secret = derive_master_SK(seed)
    for index in parse_path(path):
        secret = derive_child_SK(secret, index)
    return secret


def validator_signing_path(index: int) -> str:
    """EIP-2334 signing key path of validator ``index``: ``m/12381/3600/{index}/0/0``."""
    return f"m/12381/3600/{index}/0/0"


def secret_to_bytes(secret: int) -> bytes:
    """I2OSP(SK, 32): the 32 big-endian bytes a key module seals."""
    if not 0 < secret < CURVE_ORDER:
        raise MalformedRequest("BLS secret key is out of range [1, r-1]")
    return secret.to_bytes(32, "big")
