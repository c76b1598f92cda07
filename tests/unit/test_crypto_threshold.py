"""signer.crypto.threshold: Shamir shares, Feldman verification vectors, Lagrange combination.

Cross-checked against the py_ecc reference curve arithmetic (Lagrange interpolation written out
there independently) and against every BLS backend of signer.crypto.bls: partial signatures from
any backend combine into the signature of the whole secret. Refusals are named errors, and no
secret value shows in a repr or an error message.
"""

from __future__ import annotations

import itertools
import random
import time

import pytest
from eth_typing import BLSPubkey, BLSSignature
from py_ecc import optimized_bls12_381 as curve
from py_ecc.bls.g2_primitives import (
    G1_to_pubkey,
    G2_to_signature,
    pubkey_to_G1,
    signature_to_G2,
    subgroup_check,
)
from py_ecc.bls.point_compression import decompress_G1, decompress_G2
from py_ecc.bls.typing import G1Compressed, G2Compressed

from signer.crypto import bls
from signer.crypto import threshold as th
from signer.errors import (
    DuplicateParticipantId,
    InvalidParticipantId,
    InvalidPoint,
    InvalidShare,
    InvalidThreshold,
    MalformedRequest,
    NotEnoughShares,
    ThresholdError,
)
from tests.support import missing_component, py_ecc_slow

R = bls.CURVE_ORDER
MESSAGE = b"\x5a" * 32
RNG = random.Random(20250117)

# Points on the curve but outside the prime-order subgroup (x = 4 on E, x = 1 + i on E'), found with
# py_ecc; test_off_subgroup_fixtures_are_on_the_curve_and_off_the_subgroup keeps them honest.
G1_OFF_SUBGROUP = bytes.fromhex("80" + "00" * 46 + "04")
G2_OFF_SUBGROUP = bytes.fromhex("a0" + "00" * 46 + "01" + "00" * 47 + "01")


def _polynomial(threshold: int) -> th.Polynomial:
    return th.Polynomial(tuple(RNG.randrange(1, R) for _ in range(threshold)))


def _backend(name: str) -> bls.BlsBackend:
    try:
        return bls.get_backend(name)
    except ImportError:
        missing_component(f"BLS backend {name} (its Python package does not import)")
        raise


# ------------------------------------------------------------------------------ the whole scheme


@pytest.mark.parametrize(("threshold", "participants"), [(1, 1), (2, 3), (3, 4), (3, 5), (4, 7)])
def test_every_threshold_subset_combines_to_the_signature_of_the_whole_secret(
    threshold: int, participants: int
) -> None:
    polynomial = _polynomial(threshold)
    shares = th.deal(polynomial, range(1, participants + 1))
    whole = bls.sign(bls.secret_from_int(polynomial.secret), MESSAGE)
    partials = {i: share.sign(MESSAGE) for i, share in shares.items()}
    public_key = polynomial.verification_vector().public_key
    assert public_key == bls.secret_to_public(bls.secret_from_int(polynomial.secret))
    for subset in itertools.combinations(sorted(partials), threshold):
        combined = th.combine_signatures({i: partials[i] for i in subset}, threshold)
        assert combined == whole
        assert bls.verify(public_key, MESSAGE, combined)


def test_combining_more_than_the_threshold_gives_the_same_signature() -> None:
    polynomial = _polynomial(3)
    shares = th.deal(polynomial, range(1, 6))
    partials = {i: share.sign(MESSAGE) for i, share in shares.items()}
    assert th.combine_signatures(partials, 3) == bls.sign(bls.secret_from_int(polynomial.secret), MESSAGE)


@pytest.mark.parametrize("name", py_ecc_slow(bls.backend_names()))
def test_partial_signatures_of_every_backend_combine(name: str) -> None:
    backend = _backend(name)
    polynomial = _polynomial(2)
    shares = th.deal(polynomial, [3, 7, 11])
    partials = {i: backend.sign(shares[i].value, MESSAGE) for i in (3, 11)}
    combined = th.combine_signatures(partials, 2)
    public_key = backend.secret_to_public(polynomial.secret)
    assert combined == backend.sign(polynomial.secret, MESSAGE)
    assert backend.verify(public_key, MESSAGE, combined)


def test_public_key_shares_combine_to_the_public_key() -> None:
    polynomial = _polynomial(3)
    shares = th.deal(polynomial, [1, 2, 5, 9, 1000])
    publics = {i: share.public_key() for i, share in shares.items()}
    vector = polynomial.verification_vector()
    for subset in itertools.combinations(sorted(publics), 3):
        assert th.combine_public_keys({i: publics[i] for i in subset}, 3) == vector.public_key
    assert all(vector.public_share(i) == publics[i] for i in publics)


# ------------------------------------------------------------------------------ py_ecc cross-check


def _py_ecc_lagrange_at_zero(ids: list[int]) -> dict[int, int]:
    result = {}
    for i in ids:
        others = [j for j in ids if j != i]
        numerator = 1
        denominator = 1
        for j in others:
            numerator *= j
            denominator *= j - i
        result[i] = numerator * pow(denominator, R - 2, R) % R  # Fermat inverse, not pow(..., -1)
    return result


def test_lagrange_coefficients_match_a_reference_and_interpolate_at_zero() -> None:
    ids = [2, 5, 6]
    assert th.lagrange_coefficients(ids) == _py_ecc_lagrange_at_zero(ids)
    polynomial = _polynomial(3)
    values = {i: polynomial.evaluate(i) for i in ids}
    assert sum(c * values[i] for i, c in th.lagrange_coefficients(ids).items()) % R == polynomial.secret


def test_combination_matches_py_ecc_curve_arithmetic() -> None:
    polynomial = _polynomial(2)
    shares = th.deal(polynomial, [4, 9, 2**64 - 1])
    ids = [9, 2**64 - 1]
    partials = {i: shares[i].sign(MESSAGE) for i in ids}
    total = curve.Z2
    for i, coefficient in _py_ecc_lagrange_at_zero(ids).items():
        total = curve.add(total, curve.multiply(signature_to_G2(BLSSignature(partials[i])), coefficient))
    assert th.combine_signatures(partials, 2) == G2_to_signature(total)


def test_verification_vector_matches_py_ecc_curve_arithmetic() -> None:
    polynomial = _polynomial(3)
    vector = polynomial.verification_vector()
    commitments = [curve.multiply(curve.G1, a) for a in polynomial.coefficients]
    assert vector.commitments == tuple(G1_to_pubkey(c) for c in commitments)
    participant_id = 12345
    expected = curve.Z1
    for k, commitment in enumerate(commitments):
        expected = curve.add(expected, curve.multiply(commitment, pow(participant_id, k, R)))
    assert vector.public_share(participant_id) == G1_to_pubkey(expected)
    assert curve.eq(pubkey_to_G1(BLSPubkey(vector.public_share(participant_id))), expected)


def test_sum_of_vectors_is_the_vector_of_the_sum() -> None:
    first, second = _polynomial(3), _polynomial(3)
    summed = th.Polynomial(tuple((a + b) % R for a, b in zip(first.coefficients, second.coefficients, strict=True)))
    assert th.sum_vectors([first.verification_vector(), second.verification_vector()]) == summed.verification_vector()
    share = th.sum_shares([first.share(4), second.share(4)])
    assert share == summed.share(4)
    summed.verification_vector().verify_share(share)


# ------------------------------------------------------------------------------ shares and vectors


def test_wire_form_of_a_share_is_32_big_endian_bytes() -> None:
    share = th.SecretShare(3, 0x0102)
    assert share.to_bytes() == bytes(30) + b"\x01\x02"
    assert th.SecretShare.from_bytes(3, share.to_bytes()) == share


@pytest.mark.parametrize("data", [b"", bytes(31), bytes(33), bytes(32), R.to_bytes(32, "big"), b"\xff" * 32])
def test_share_out_of_range_or_of_the_wrong_length_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidShare):
        th.SecretShare.from_bytes(1, data)


def test_verification_vector_detects_a_tampered_share() -> None:
    polynomial = _polynomial(2)
    vector = polynomial.verification_vector()
    share = polynomial.share(2)
    vector.verify_share(share)
    with pytest.raises(InvalidShare, match="participant 2 does not match"):
        vector.verify_share(th.SecretShare(2, share.value % (R - 1) + 1))
    with pytest.raises(InvalidShare):
        vector.verify_share(th.SecretShare(3, share.value))  # right value, wrong participant


def test_verification_vector_refuses_bad_points() -> None:
    good = _polynomial(2).verification_vector().commitments
    for bad in (b"", b"\x00" * 48, good[0][:47], G1_OFF_SUBGROUP, good[0] + b"\x00"):
        with pytest.raises(InvalidPoint):
            th.VerificationVector((good[0], bad))
    with pytest.raises(InvalidPoint, match="identity"):
        th.VerificationVector((bls.G1_IDENTITY, good[1]))
    with pytest.raises(InvalidThreshold):
        th.VerificationVector(())
    th.VerificationVector((good[0], bls.G1_IDENTITY))  # a zero higher coefficient is a valid commitment


def test_vectors_of_different_lengths_are_not_summed() -> None:
    with pytest.raises(InvalidThreshold):
        th.sum_vectors([_polynomial(2).verification_vector(), _polynomial(3).verification_vector()])
    with pytest.raises(InvalidShare):
        th.sum_shares([th.SecretShare(1, 5), th.SecretShare(2, 5)])
    with pytest.raises(InvalidShare):
        th.sum_shares([])


def test_vector_whose_sum_cancels_to_the_identity_is_refused() -> None:
    polynomial = _polynomial(2)
    negated = th.Polynomial(tuple((R - a) % R for a in polynomial.coefficients))
    with pytest.raises(InvalidPoint, match="identity"):
        th.sum_vectors([polynomial.verification_vector(), negated.verification_vector()])


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("bad_id", [0, -1, 2**64, True, 1.0, "1"])
def test_participant_id_zero_or_outside_uint64_is_refused(bad_id: object) -> None:
    with pytest.raises(InvalidParticipantId):
        th.check_participant_id(bad_id)  # type: ignore[arg-type]
    with pytest.raises(InvalidParticipantId):
        th.lagrange_coefficients([1, bad_id])  # type: ignore[list-item]


def test_duplicate_participant_ids_are_refused() -> None:
    polynomial = _polynomial(2)
    with pytest.raises(DuplicateParticipantId, match="participant id 2"):
        th.deal(polynomial, [1, 2, 2])
    with pytest.raises(DuplicateParticipantId):
        th.lagrange_coefficients([5, 5])


@pytest.mark.parametrize(
    ("threshold", "participants"), [(1, 2), (2, 4), (3, 6), (2, 5), (0, 1), (4, 3), (-1, 1), (1, 0)]
)
def test_threshold_not_above_half_or_above_all_is_refused(threshold: int, participants: int) -> None:
    with pytest.raises(InvalidThreshold):
        th.check_threshold(threshold, participants)


@pytest.mark.parametrize(("threshold", "participants"), [(1, 1), (2, 2), (2, 3), (3, 4), (3, 5), (5, 5)])
def test_threshold_above_half_is_accepted(threshold: int, participants: int) -> None:
    th.check_threshold(threshold, participants)


def test_dealing_with_a_threshold_not_above_half_is_refused() -> None:
    with pytest.raises(InvalidThreshold, match="more than half"):
        th.deal(_polynomial(2), [1, 2, 3, 4])


def test_fewer_partial_signatures_than_the_threshold_are_refused() -> None:
    shares = th.deal(_polynomial(3), range(1, 6))
    partials = {i: shares[i].sign(MESSAGE) for i in (1, 2)}
    with pytest.raises(NotEnoughShares, match="2 partial signatures for a signing threshold of 3"):
        th.combine_signatures(partials, 3)
    with pytest.raises(NotEnoughShares):
        th.combine_public_keys({i: shares[i].public_key() for i in (4, 5)}, 3)
    with pytest.raises(InvalidThreshold):
        th.combine_signatures(partials, 0)


def test_malformed_identity_or_non_subgroup_partials_are_refused() -> None:
    shares = th.deal(_polynomial(2), [1, 2, 3])
    good = shares[1].sign(MESSAGE)
    for bad in (b"", good[:95], b"\x00" * 96, G2_OFF_SUBGROUP, bls.G2_IDENTITY):
        with pytest.raises(InvalidPoint, match="participant 2"):
            th.combine_signatures({1: good, 2: bad}, 2)
    for bad in (G1_OFF_SUBGROUP, bls.G1_IDENTITY):
        with pytest.raises(InvalidPoint, match="participant 2"):
            th.combine_public_keys({1: shares[1].public_key(), 2: bad}, 2)


def test_off_subgroup_fixtures_are_on_the_curve_and_off_the_subgroup() -> None:
    g1 = decompress_G1(G1Compressed(int.from_bytes(G1_OFF_SUBGROUP, "big")))
    g2 = decompress_G2(
        G2Compressed((int.from_bytes(G2_OFF_SUBGROUP[:48], "big"), int.from_bytes(G2_OFF_SUBGROUP[48:], "big")))
    )
    assert curve.is_on_curve(g1, curve.b) and not subgroup_check(g1)
    assert curve.is_on_curve(g2, curve.b2) and not subgroup_check(g2)


def test_threshold_errors_are_request_errors() -> None:
    # Refusals of bad input: INVALID_ARGUMENT / DENIED on the wire (signer.api.status).
    for cls in (InvalidParticipantId, DuplicateParticipantId, InvalidThreshold, InvalidPoint, InvalidShare):
        assert issubclass(cls, ThresholdError)
        assert not issubclass(cls, MalformedRequest)


# ------------------------------------------------------------------------------ secrets stay secret


def test_no_secret_in_reprs_or_errors() -> None:
    polynomial = _polynomial(3)
    share = polynomial.share(7)
    hidden = [str(a) for a in polynomial.coefficients] + [
        str(share.value),
        hex(share.value)[2:],
        share.to_bytes().hex(),
    ]
    shown = [repr(polynomial), str(polynomial), repr(share), repr(th.deal(polynomial, [1, 2, 3]))]
    try:
        polynomial.verification_vector().verify_share(th.SecretShare(7, share.value + 1))
    except InvalidShare as exc:
        shown += [str(exc), repr(exc)]
    try:
        th.SecretShare(1, R + share.value)
    except InvalidShare as exc:
        shown += [str(exc), repr(exc)]
    for text in shown:
        for secret in hidden:
            assert secret not in text


# ------------------------------------------------------------------------------ speed


def test_combining_three_of_five_takes_milliseconds() -> None:
    shares = th.deal(_polynomial(3), range(1, 6))
    partials = {i: shares[i].sign(MESSAGE) for i in (1, 3, 5)}
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        th.combine_signatures(partials, 3)
        best = min(best, time.perf_counter() - started)
    assert best < 0.05  # ~1.5 ms measured; generous bound for a shared 2-core machine
