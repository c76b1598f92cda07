"""Property tests of the threshold-BLS math (signer.crypto.threshold), issue 17.

For random polynomials (degree t-1, every coefficient non-zero), participant ids and messages:
- any t-subset of partial signatures combines into the same signature, the one of the whole
  secret, and it verifies under the public key in the verification vector;
- fewer than t are refused, and interpolating from them anyway never gives that signature (with a
  non-zero top coefficient the lower-degree interpolant differs from f at 0);
- a verification vector detects every tampered share, and every share that was dealt passes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from signer.crypto import bls
from signer.crypto import threshold as th
from signer.errors import InvalidShare, NotEnoughShares

R = bls.CURVE_ORDER
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.integers(min_value=1, max_value=R - 1)
participant_ids = st.integers(min_value=1, max_value=2**64 - 1)
messages = st.binary(min_size=0, max_size=64)


@st.composite
def dealings(draw: st.DrawFn) -> tuple[th.Polynomial, dict[int, th.SecretShare]]:
    """A polynomial of threshold t and its shares for n participants, n/2 < t <= n <= 6."""
    participants = draw(st.integers(min_value=1, max_value=6))
    threshold = draw(st.integers(min_value=participants // 2 + 1, max_value=participants))
    ids = draw(st.lists(participant_ids, min_size=participants, max_size=participants, unique=True))
    polynomial = th.Polynomial(tuple(draw(st.lists(scalars, min_size=threshold, max_size=threshold))))
    # A zero share is refused (InvalidShare); random coefficients hit one with probability n * 2**-255,
    # drawn ones can be built to (hypothesis finds f(i) == 0 quickly).
    assume(all(polynomial.evaluate(i) != 0 for i in ids))
    return polynomial, th.deal(polynomial, ids)


@SETTINGS
@given(dealing=dealings(), message=messages, data=st.data())
def test_any_threshold_subset_combines_to_the_same_valid_signature(
    dealing: tuple[th.Polynomial, dict[int, th.SecretShare]], message: bytes, data: st.DataObject
) -> None:
    polynomial, shares = dealing
    t = polynomial.threshold
    public_key = polynomial.verification_vector().public_key
    whole = bls.get_backend().sign(polynomial.secret, message)
    subsets = data.draw(
        st.lists(st.lists(st.sampled_from(sorted(shares)), min_size=t, max_size=t, unique=True), min_size=2, max_size=3)
    )
    for subset in subsets:
        combined = th.combine_signatures({i: shares[i].sign(message) for i in subset}, t)
        assert combined == whole
        assert bls.verify(public_key, message, combined)


@SETTINGS
@given(dealing=dealings(), message=messages, data=st.data())
def test_fewer_than_threshold_do_not_combine(
    dealing: tuple[th.Polynomial, dict[int, th.SecretShare]], message: bytes, data: st.DataObject
) -> None:
    polynomial, shares = dealing
    t = polynomial.threshold
    assume(t >= 2)
    count = data.draw(st.integers(min_value=1, max_value=t - 1))
    subset = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=count, max_size=count, unique=True))
    partials = {i: shares[i].sign(message) for i in subset}
    with pytest.raises(NotEnoughShares):
        th.combine_signatures(partials, t)
    forced = th.combine_signatures(partials, count)  # interpolate from too few points anyway
    assert forced != bls.get_backend().sign(polynomial.secret, message)
    assert not bls.verify(polynomial.verification_vector().public_key, message, forced)


@SETTINGS
@given(dealing=dealings(), delta=scalars, data=st.data())
def test_verification_vector_detects_a_tampered_share(
    dealing: tuple[th.Polynomial, dict[int, th.SecretShare]], delta: int, data: st.DataObject
) -> None:
    polynomial, shares = dealing
    vector = polynomial.verification_vector()
    for share in shares.values():
        vector.verify_share(share)
    victim = shares[data.draw(st.sampled_from(sorted(shares)))]
    tampered_value = (victim.value + delta) % R
    assume(tampered_value != 0)
    with pytest.raises(InvalidShare):
        vector.verify_share(th.SecretShare(victim.participant_id, tampered_value))


@SETTINGS
@given(dealing=dealings(), data=st.data())
def test_public_key_shares_of_any_threshold_subset_combine_to_the_public_key(
    dealing: tuple[th.Polynomial, dict[int, th.SecretShare]], data: st.DataObject
) -> None:
    polynomial, shares = dealing
    t = polynomial.threshold
    vector = polynomial.verification_vector()
    subset = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=t, max_size=t, unique=True))
    assert th.combine_public_keys({i: vector.public_share(i) for i in subset}, t) == vector.public_key
