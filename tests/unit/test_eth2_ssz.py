"""SSZ primitives and containers: input validation, and the fast paths against a plain reference.

The reference below is written from the SSZ spec independently of signer.eth2.ssz (recursive
merkleization over an explicit power-of-two padded list), so a shared mistake is unlikely.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.errors import MalformedRequest
from signer.eth2 import (
    AggregateAndProof,
    AggregateAndProofElectra,
    Attestation,
    AttestationData,
    AttestationElectra,
    Checkpoint,
    ContributionAndProof,
    SyncCommitteeContribution,
    ValidatorRegistration,
    compute_domain,
    compute_signing_root,
    epoch_root,
)
from signer.eth2.ssz import bitlist_length, bitlist_root, merkleize

U64 = st.integers(min_value=0, max_value=2**64 - 1)
ROOT = st.binary(min_size=32, max_size=32)


# --- reference -------------------------------------------------------------------------------


def ref_hash(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(a + b).digest()


def ref_merkleize(chunks: list[bytes], limit: int | None = None) -> bytes:
    size = 1
    while size < (len(chunks) if limit is None else limit):
        size *= 2
    leaves = chunks + [bytes(32)] * (size - len(chunks))
    while len(leaves) > 1:
        leaves = [ref_hash(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
    return leaves[0]


def ref_u64(n: int) -> bytes:
    return n.to_bytes(8, "little") + bytes(24)


def ref_attestation_data(d: AttestationData) -> bytes:
    cp = [ref_merkleize([ref_u64(c.epoch), c.root]) for c in (d.source, d.target)]
    return ref_merkleize([ref_u64(d.slot), ref_u64(d.index), d.beacon_block_root, *cp])


def ref_bitlist(bits: list[bool], limit: int) -> bytes:
    data = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        data[i // 8] |= bit << (i % 8)
    padded = bytes(data) + bytes(-len(data) % 32)
    chunks = [padded[i : i + 32] for i in range(0, len(padded), 32)]
    return ref_hash(ref_merkleize(chunks, (limit + 255) // 256), len(bits).to_bytes(32, "little"))


def encode_bitlist(bits: list[bool]) -> bytes:
    data = bytearray(len(bits) // 8 + 1)
    for i, bit in enumerate([*bits, True]):  # delimiter bit after the last one
        data[i // 8] |= bit << (i % 8)
    return bytes(data)


# --- fast paths against the reference ---------------------------------------------------------


CHECKPOINTS = st.builds(Checkpoint, epoch=U64, root=ROOT)
ATTESTATION_DATA = st.builds(
    AttestationData, slot=U64, index=U64, beacon_block_root=ROOT, source=CHECKPOINTS, target=CHECKPOINTS
)


@given(data=ATTESTATION_DATA)
@settings(max_examples=200, deadline=None)
def test_attestation_data_root_matches_reference(data: AttestationData) -> None:
    assert data.hash_tree_root() == ref_attestation_data(data)


@given(chunks=st.lists(ROOT, max_size=40), extra=st.integers(min_value=0, max_value=100))
@settings(max_examples=200, deadline=None)
def test_merkleize_matches_reference(chunks: list[bytes], extra: int) -> None:
    assert merkleize(chunks) == ref_merkleize(chunks)
    limit = len(chunks) + extra
    assert merkleize(chunks, limit) == ref_merkleize(chunks, limit)


@given(bits=st.lists(st.booleans(), max_size=2048))
@settings(max_examples=100, deadline=None)
def test_bitlist_root_matches_reference(bits: list[bool]) -> None:
    encoded = encode_bitlist(bits)
    assert bitlist_length("bits", encoded, 2048) == len(bits)
    assert bitlist_root(encoded, 2048) == ref_bitlist(bits, 2048)


def test_signing_root_is_sha256_of_root_and_domain() -> None:
    root, domain = bytes(range(32)), compute_domain(b"\x01\x00\x00\x00", b"\x00\x00\x00\x00", bytes(32))
    assert compute_signing_root(root, domain) == hashlib.sha256(root + domain).digest()
    with pytest.raises(MalformedRequest, match="32 bytes"):
        compute_signing_root(root[:31], domain)
    assert epoch_root(5) == (5).to_bytes(32, "little")


# --- validation -------------------------------------------------------------------------------

R = bytes(32)
SIG = bytes(96)
CP = Checkpoint(0, R)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        # A checkpoint is validated as a field of the attestation data that holds it.
        (lambda: AttestationData(0, 0, R, Checkpoint(2**64, R), CP), "attestation_data.source.epoch"),
        (lambda: AttestationData(0, 0, R, CP, Checkpoint(-1, R)), "attestation_data.target.epoch"),
        (lambda: AttestationData(0, 0, R, Checkpoint(True, R), CP), "attestation_data.source.epoch"),
        (lambda: AttestationData(0, 0, R, CP, Checkpoint(1, R[:31])), "attestation_data.target.root"),
        (lambda: AttestationData(0, 0, R, Checkpoint(1, bytearray(R)), CP), "attestation_data.source.root"),  # type: ignore[arg-type]
        (lambda: AttestationData(2**64, 0, R, CP, CP), "attestation_data.slot"),
        (lambda: AttestationData(0, "1", R, CP, CP), "attestation_data.index"),  # type: ignore[arg-type]
        (lambda: AttestationData(0, 0, R + b"\x00", CP, CP), "attestation_data.beacon_block_root"),
        (lambda: AttestationData(0, 0, R, CP, None), "source and .target"),  # type: ignore[arg-type]
        (lambda: Attestation(b"", AttestationData(0, 0, R, CP, CP), SIG), "delimiter"),
        (lambda: Attestation(b"\x01\x00", AttestationData(0, 0, R, CP, CP), SIG), "delimiter"),
        (lambda: Attestation(bytes(256) + b"\x02", AttestationData(0, 0, R, CP, CP), SIG), "2049 bits"),
        (lambda: Attestation(b"\x01", AttestationData(0, 0, R, CP, CP), SIG[:95]), "attestation.signature"),
        (lambda: SyncCommitteeContribution(0, R, 0, bytes(2), SIG), "aggregation_bits"),
        (lambda: ValidatorRegistration(bytes(19), 1, 1, bytes(48)), "fee_recipient"),
        (lambda: ValidatorRegistration(bytes(20), 1, 1, bytes(47)), "pubkey"),
    ],
)
def test_malformed_fields_are_named(build: object, field: str) -> None:
    with pytest.raises(MalformedRequest, match=field):
        build()  # type: ignore[operator]


def test_bitlist_limits() -> None:
    data = AttestationData(0, 0, R, CP, CP)
    full = encode_bitlist([True] * 2048)
    assert bitlist_length("bits", full, 2048) == 2048
    Attestation(full, data, SIG)  # exactly at the limit
    with pytest.raises(MalformedRequest, match="2049 bits"):
        Attestation(encode_bitlist([True] * 2049), data, SIG)
    empty, one = Attestation(b"\x01", data, SIG), Attestation(b"\x03", data, SIG)
    assert empty.hash_tree_root() != one.hash_tree_root()


def test_sync_contribution_presets_hash_alike() -> None:
    minimal = SyncCommitteeContribution(1, R, 2, b"\x24", SIG)
    mainnet = SyncCommitteeContribution(1, R, 2, b"\x24" + bytes(15), SIG)
    assert minimal.hash_tree_root() == mainnet.hash_tree_root()
    assert len(mainnet.serialize()) == len(minimal.serialize()) + 15
    proof = ContributionAndProof(7, mainnet, SIG)
    assert proof.hash_tree_root() != ContributionAndProof(8, mainnet, SIG).hash_tree_root()


def test_nested_types_are_checked() -> None:
    with pytest.raises(MalformedRequest, match="Attestation"):
        AggregateAndProof(1, AttestationData(0, 0, R, CP, CP), SIG)  # type: ignore[arg-type]


# --- electra (no vectors here: checked against the reference, mainnet preset) -------------------


@given(
    bits=st.lists(st.booleans(), max_size=600),
    committee_bits=st.binary(min_size=8, max_size=8),
    data=ATTESTATION_DATA,
    sig=st.binary(min_size=96, max_size=96),
    index=U64,
)
@settings(max_examples=50, deadline=None)
def test_electra_aggregate_matches_reference(
    bits: list[bool], committee_bits: bytes, data: AttestationData, sig: bytes, index: int
) -> None:
    att = AttestationElectra(encode_bitlist(bits), data, sig, committee_bits)
    sig_root = ref_merkleize([sig[:32], sig[32:64], sig[64:]])
    expected_att = ref_merkleize(
        [ref_bitlist(bits, 2048 * 64), ref_attestation_data(data), sig_root, committee_bits + bytes(24)]
    )
    assert att.hash_tree_root() == expected_att
    agg = AggregateAndProofElectra(index, att, sig)
    assert agg.hash_tree_root() == ref_merkleize([ref_u64(index), expected_att, sig_root])
    encoded = agg.serialize()
    assert encoded[8:12] == (108).to_bytes(4, "little")
    assert encoded[108:112] == (236).to_bytes(4, "little")
    assert encoded[112 + 224 : 112 + 232] == committee_bits
    assert encoded.endswith(encode_bitlist(bits))


def test_electra_limits() -> None:
    data = AttestationData(0, 0, R, CP, CP)
    AttestationElectra(encode_bitlist([True] * 2049), data, SIG, bytes(8))  # above the phase0 limit
    with pytest.raises(MalformedRequest, match="committee_bits"):
        AttestationElectra(b"\x01", data, SIG, bytes(7))
    with pytest.raises(MalformedRequest, match="131073 bits"):
        AttestationElectra(encode_bitlist([False] * 131073), data, SIG, bytes(8))
