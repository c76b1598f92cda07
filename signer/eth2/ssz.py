"""The small part of SSZ the signer needs: uint64, fixed byte vectors, bitlists, bitvectors, containers.

Hand-written after the consensus-specs ``ssz/simple-serialize.md``: chunks of 32 bytes, merkleization
padded with zero subtrees up to the type's chunk limit, and the length mixed in for lists and
bitlists. Only fixed-shape containers are hashed here, so everything is a handful of SHA-256 calls
over concatenated bytes. Inputs are validated (lengths, uint64 range, bitlist delimiter and limit)
and a bad one raises ``MalformedRequest`` saying which field is wrong.
"""

from __future__ import annotations

import hashlib

from signer.errors import MalformedRequest

UINT64_MAX = 2**64 - 1
BYTES_PER_CHUNK = 32
ZERO_CHUNK = b"\x00" * BYTES_PER_CHUNK

_sha256 = hashlib.sha256


def hash_pair(left: bytes, right: bytes) -> bytes:
    """SHA-256(left || right): one merkle node."""
    return _sha256(left + right).digest()


def _zero_hashes(depth: int) -> tuple[bytes, ...]:
    out = [ZERO_CHUNK]
    for _ in range(depth):
        out.append(hash_pair(out[-1], out[-1]))
    return tuple(out)


ZERO_HASHES: tuple[bytes, ...] = _zero_hashes(64)
"""ZERO_HASHES[d] is the root of a depth-d subtree of zero chunks."""


# --- validation -------------------------------------------------------------------------------


def check_uint64(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise MalformedRequest(f"{name} must be a uint64 (0..2**64-1), got {value!r}")


def check_bytes(name: str, value: bytes, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise MalformedRequest(f"{name} must be {length} bytes, got {got}")


# --- leaves -----------------------------------------------------------------------------------


def uint64_root(value: int) -> bytes:
    """hash_tree_root(uint64): the little-endian value padded to one chunk."""
    return value.to_bytes(BYTES_PER_CHUNK, "little")


def bytes_root(value: bytes) -> bytes:
    """hash_tree_root of a fixed ByteVector[N] (Bytes4, Bytes20, Bytes32, Bytes48, Bytes96)."""
    n = len(value)
    if n <= BYTES_PER_CHUNK:
        return value + ZERO_CHUNK[n:]
    return merkleize(pack_bytes(value))


def pack_bytes(value: bytes) -> list[bytes]:
    """Split into 32-byte chunks, the last one zero-padded."""
    if not value:
        return []
    padded = value + ZERO_CHUNK[: (-len(value)) % BYTES_PER_CHUNK]
    return [padded[i : i + BYTES_PER_CHUNK] for i in range(0, len(padded), BYTES_PER_CHUNK)]


# --- merkleization ----------------------------------------------------------------------------


def _depth(count: int) -> int:
    return max(count - 1, 0).bit_length()


def merkleize(chunks: list[bytes], limit: int | None = None) -> bytes:
    """Merkle root of ``chunks`` padded with zero chunks to next_pow2(limit or len(chunks))."""
    count = len(chunks)
    if limit is None:
        limit = count
    elif count > limit:
        raise MalformedRequest(f"{count} chunks exceed the type's limit of {limit}")
    depth = _depth(limit)
    if count == 0:
        return ZERO_HASHES[depth]
    layer = list(chunks)
    for d in range(depth):
        if len(layer) % 2:
            layer.append(ZERO_HASHES[d])
        layer = [hash_pair(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def mix_in_length(root: bytes, length: int) -> bytes:
    return hash_pair(root, length.to_bytes(BYTES_PER_CHUNK, "little"))


def list_root(name: str, element_roots: list[bytes], limit: int) -> bytes:
    """hash_tree_root of a List[C, limit] of composite elements, given the elements' roots."""
    if len(element_roots) > limit:
        raise MalformedRequest(f"{name}: {len(element_roots)} items exceed the list limit of {limit}")
    return mix_in_length(merkleize(element_roots, limit), len(element_roots))


def uint64_list_root(name: str, values: list[int], limit: int) -> bytes:
    """hash_tree_root of a List[uint64, limit]: values packed 4 to a chunk, the length mixed in."""
    if len(values) > limit:
        raise MalformedRequest(f"{name}: {len(values)} items exceed the list limit of {limit}")
    for value in values:
        check_uint64(name, value)
    packed = b"".join(v.to_bytes(8, "little") for v in values)
    return mix_in_length(merkleize(pack_bytes(packed), (limit * 8 + 31) // 32), len(values))


# --- bitfields --------------------------------------------------------------------------------


def bitlist_length(name: str, encoded: bytes, limit: int) -> int:
    """Validate an SSZ-encoded Bitlist[limit] (with its delimiter bit); return its length in bits."""
    if type(encoded) is not bytes or not encoded:
        raise MalformedRequest(f"{name}: a bitlist needs at least one byte (the delimiter bit)")
    last = encoded[-1]
    if last == 0:
        raise MalformedRequest(f"{name}: the last byte of a bitlist must carry the delimiter bit")
    length = (len(encoded) - 1) * 8 + last.bit_length() - 1
    if length > limit:
        raise MalformedRequest(f"{name}: {length} bits exceed the bitlist limit of {limit}")
    return length


def bitlist_root(encoded: bytes, limit: int) -> bytes:
    """hash_tree_root of an SSZ-encoded (already validated) Bitlist[limit]."""
    length = (len(encoded) - 1) * 8 + encoded[-1].bit_length() - 1
    # drop the delimiter bit, then drop bytes that only held it
    data = bytearray(encoded)
    data[-1] ^= 1 << (encoded[-1].bit_length() - 1)
    content = bytes(data[: (length + 7) // 8])
    chunk_limit = (limit + 255) // 256
    return mix_in_length(merkleize(pack_bytes(content), chunk_limit), length)


def check_bitvector(name: str, value: bytes, bits: int) -> None:
    """A Bitvector[bits] is exactly ceil(bits/8) bytes with the unused high bits zero."""
    check_bytes(name, value, (bits + 7) // 8)
    if bits % 8 and value[-1] >> (bits % 8):
        raise MalformedRequest(f"{name}: bits beyond the {bits}-bit vector are set")


def bitvector_root(value: bytes) -> bytes:
    """hash_tree_root of a Bitvector (serialized bytes, already validated)."""
    return merkleize(pack_bytes(value))


# --- serialization ----------------------------------------------------------------------------


def uint64_bytes(value: int) -> bytes:
    return value.to_bytes(8, "little")


def offset_bytes(offset: int) -> bytes:
    return offset.to_bytes(4, "little")
