"""Threshold BLS12-381: Shamir shares, Feldman verification vectors, Lagrange combination.

A distributed account (Dirk's, and ours) is a secret ``s`` that no machine holds. It is the constant
term of a polynomial ``f`` of degree ``t-1`` over the scalar field (order r); participant ``i``
(ids 1..2**64-1, never 0: f(0) is the secret) holds the share ``f(i)``. Any ``t`` shares determine
``f`` and so ``s``; ``t-1`` reveal nothing about it. Nobody needs to rebuild ``s`` to sign: a partial
signature ``f(i)*H(m)`` from each of ``t`` participants combines by Lagrange interpolation at 0 into
``s*H(m)``, the ordinary signature under the public key ``s*G1``.

Feldman verification vector: the commitments ``a_k*G1`` to the coefficients. From it anyone computes
the public share ``f(i)*G1 = sum_k i**k * (a_k*G1)`` of any participant and so checks a secret share
without learning anything else; element 0 is the public key. In a Joint-Feldman DKG every
participant deals its own random polynomial; each one's key share is the sum of the shares it
received, and the composite verification vector the sum of the vectors (signer.distributed.dkg).

The wire forms are Dirk's (herumi's "ETH mode"): a secret or share is 32 big-endian bytes, a
commitment or public key a 48-byte compressed G1 point, a signature a 96-byte compressed G2 point.
Group operations use pyblst (curve-level blst); signing and verification go through
signer.crypto.bls. Shares are wrapped in SecretShare, whose repr and errors never show the value.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyblst

from signer.crypto import bls
from signer.errors import (
    DuplicateParticipantId,
    InvalidParticipantId,
    InvalidPoint,
    InvalidShare,
    InvalidThreshold,
    NotEnoughShares,
)

R: Final = bls.CURVE_ORDER
MAX_PARTICIPANT_ID: Final = 2**64 - 1
"""Participant ids are uint64 on the wire (v1.Endpoint.id)."""

_P1: Any = pyblst.BlstP1Element
_P2: Any = pyblst.BlstP2Element
_G1: Any = _P1.uncompress(bls.G1_GENERATOR)


# --- participants and threshold ---------------------------------------------------------------


def check_participant_id(participant_id: int) -> int:
    """The id itself; InvalidParticipantId unless an int in [1, 2**64-1]."""
    if isinstance(participant_id, bool) or not isinstance(participant_id, int):
        raise InvalidParticipantId("a participant id must be an integer")
    if not 0 < participant_id <= MAX_PARTICIPANT_ID:
        raise InvalidParticipantId(f"participant id {participant_id} is not in [1, 2**64-1]")
    return participant_id


def check_participant_ids(participant_ids: Iterable[int]) -> tuple[int, ...]:
    """The ids in the given order; InvalidParticipantId / DuplicateParticipantId."""
    ids = tuple(check_participant_id(i) for i in participant_ids)
    seen: set[int] = set()
    for participant_id in ids:
        if participant_id in seen:
            raise DuplicateParticipantId(f"participant id {participant_id} appears more than once")
        seen.add(participant_id)
    return ids


def check_threshold(threshold: int, participants: int) -> None:
    """InvalidThreshold unless participants/2 < threshold <= participants: then any two sets of
    ``threshold`` participants overlap, so two conflicting messages can never both be signed by a
    threshold of participants that each refuse the second one (the issue's and Dirk's rule)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not isinstance(participants, int):
        raise InvalidThreshold("the signing threshold and the number of participants must be integers")
    if participants < 1:
        raise InvalidThreshold("a distributed account needs at least one participant")
    if not 2 * threshold > participants:
        raise InvalidThreshold(
            f"signing threshold {threshold} of {participants} participants is too low: it must be more than half"
        )
    if threshold > participants:
        raise InvalidThreshold(f"signing threshold {threshold} is above the {participants} participants")


# --- secret shares and polynomials ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretShare:
    """f(participant_id): one participant's share of a secret. The value is never shown."""

    participant_id: int
    value: int = field(repr=False)

    def __post_init__(self) -> None:
        check_participant_id(self.participant_id)
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not 0 < self.value < R:
            raise InvalidShare(f"the share of participant {self.participant_id} is not in [1, r-1]")

    @classmethod
    def from_bytes(cls, participant_id: int, data: bytes) -> SecretShare:
        """32 big-endian bytes (the wire form, Dirk's ContributeRequest.secret)."""
        if not isinstance(data, bytes | bytearray) or len(data) != bls.SECRET_LENGTH:
            raise InvalidShare(f"the share of participant {participant_id} must be {bls.SECRET_LENGTH} bytes")
        return cls(participant_id, int.from_bytes(data, "big"))

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(bls.SECRET_LENGTH, "big")

    def public_key(self) -> bytes:
        """The public share f(i)*G1, compressed."""
        return bls.get_backend().secret_to_public(self.value)

    def sign(self, message: bytes) -> bytes:
        """The partial signature f(i)*H(message) under the POP ciphersuite."""
        return bls.get_backend().sign(self.value, message)


def _random_scalar() -> int:
    return 1 + _secrets.randbelow(R - 1)


@dataclass(frozen=True, slots=True)
class Polynomial:
    """f(x) = a_0 + a_1*x + ... + a_{t-1}*x**(t-1) over the scalar field; a_0 is the secret.
    Shares of any ``threshold`` = t participants determine it. The coefficients are never shown."""

    coefficients: tuple[int, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.coefficients) < 1:
            raise InvalidThreshold("a polynomial needs at least one coefficient (threshold >= 1)")
        if any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < R for a in self.coefficients):
            raise InvalidShare("a polynomial coefficient is not in [0, r-1]")
        if self.coefficients[0] == 0:
            raise InvalidShare("the secret (constant coefficient) must not be zero")

    @classmethod
    def random(cls, threshold: int) -> Polynomial:
        """A fresh polynomial of degree threshold-1 with coefficients from the OS CSPRNG."""
        return cls.from_secret(_random_scalar(), threshold)

    @classmethod
    def from_secret(cls, secret: int, threshold: int) -> Polynomial:
        """Random higher coefficients around a given secret (to split an existing key)."""
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise InvalidThreshold("the signing threshold must be at least 1")
        return cls((secret, *(_random_scalar() for _ in range(threshold - 1))))

    @property
    def threshold(self) -> int:
        return len(self.coefficients)

    @property
    def secret(self) -> int:
        return self.coefficients[0]

    def evaluate(self, x: int) -> int:
        """f(x) mod r (Horner)."""
        result = 0
        for coefficient in reversed(self.coefficients):
            result = (result * x + coefficient) % R
        return result

    def share(self, participant_id: int) -> SecretShare:
        """f(participant_id); InvalidShare in the (2**-255) case that it is zero."""
        return SecretShare(participant_id, self.evaluate(check_participant_id(participant_id)))

    def verification_vector(self) -> VerificationVector:
        return VerificationVector(tuple(bytes(_G1.scalar_mul(a).compress()) for a in self.coefficients))


def deal(polynomial: Polynomial, participant_ids: Iterable[int]) -> dict[int, SecretShare]:
    """Shamir shares of ``polynomial`` for each participant; refuses bad ids or a threshold that is
    not more than half of the participants."""
    ids = check_participant_ids(participant_ids)
    check_threshold(polynomial.threshold, len(ids))
    return {i: polynomial.share(i) for i in ids}


def sum_shares(shares: Iterable[SecretShare]) -> SecretShare:
    """One participant's key share in a Joint-Feldman DKG: the sum of what every dealer sent it."""
    shares = list(shares)
    if not shares:
        raise InvalidShare("no shares to sum")
    participant_id = shares[0].participant_id
    if any(share.participant_id != participant_id for share in shares):
        raise InvalidShare("shares of different participants cannot be summed")
    total = sum(share.value for share in shares) % R
    if total == 0:
        raise InvalidShare(f"the summed share of participant {participant_id} is zero")
    return SecretShare(participant_id, total)


# --- points -----------------------------------------------------------------------------------


def _decode_g1(data: bytes, what: str) -> Any:
    try:
        point = _P1.uncompress(bytes(data))  # checks length, encoding, curve and subgroup
    except (ValueError, TypeError) as exc:
        raise InvalidPoint(f"{what} is not a compressed G1 point of the subgroup") from exc
    return point


def _decode_g2(data: bytes, what: str) -> Any:
    try:
        point = _P2.uncompress(bytes(data))
    except (ValueError, TypeError) as exc:
        raise InvalidPoint(f"{what} is not a compressed G2 point of the subgroup") from exc
    return point


_G1_IDENTITY: Any = _P1()
_G2_IDENTITY: Any = _P2()


@dataclass(frozen=True, slots=True)
class VerificationVector:
    """Feldman commitments a_k*G1 (compressed) to the coefficients of a polynomial; element 0 is
    the public key of its secret. Every element is checked to be a subgroup point on construction
    and element 0 not to be the identity."""

    commitments: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.commitments) < 1:
            raise InvalidThreshold("a verification vector needs at least one commitment")
        points = [_decode_g1(c, f"verification vector element {k}") for k, c in enumerate(self.commitments)]
        if points[0] == _G1_IDENTITY:
            raise InvalidPoint("verification vector element 0 (the public key) is the identity")
        object.__setattr__(self, "commitments", tuple(bytes(c) for c in self.commitments))

    @property
    def threshold(self) -> int:
        return len(self.commitments)

    @property
    def public_key(self) -> bytes:
        return self.commitments[0]

    def _points(self) -> list[Any]:
        return [_P1.uncompress(c) for c in self.commitments]

    def public_share(self, participant_id: int) -> bytes:
        """f(participant_id)*G1 = sum_k id**k * A_k, compressed."""
        x = check_participant_id(participant_id)
        total, power = _G1_IDENTITY, 1
        for point in self._points():
            total = total + point.scalar_mul(power)
            power = power * x % R
        return bytes(total.compress())

    def verify_share(self, share: SecretShare) -> None:
        """InvalidShare unless share.value*G1 equals the public share the vector gives its id."""
        if share.public_key() != self.public_share(share.participant_id):
            raise InvalidShare(
                f"the share for participant {share.participant_id} does not match the verification vector"
            )


def sum_vectors(vectors: Sequence[VerificationVector]) -> VerificationVector:
    """The composite verification vector of a Joint-Feldman DKG (element 0: the composite key)."""
    if not vectors:
        raise InvalidThreshold("no verification vectors to sum")
    threshold = vectors[0].threshold
    if any(v.threshold != threshold for v in vectors):
        raise InvalidThreshold("verification vectors of different lengths (thresholds) cannot be summed")
    totals = vectors[0]._points()
    for vector in vectors[1:]:
        totals = [a + b for a, b in zip(totals, vector._points(), strict=True)]
    return VerificationVector(tuple(bytes(p.compress()) for p in totals))


# --- Lagrange interpolation at 0 --------------------------------------------------------------


def lagrange_coefficients(participant_ids: Iterable[int]) -> dict[int, int]:
    """lambda_i = prod_{j != i} x_j / (x_j - x_i) mod r, so that f(0) = sum_i lambda_i * f(x_i) for
    any polynomial of degree below the number of ids."""
    ids = check_participant_ids(participant_ids)
    if not ids:
        raise NotEnoughShares("no participants to interpolate from")
    coefficients: dict[int, int] = {}
    for i in ids:
        numerator, denominator = 1, 1
        for j in ids:
            if j != i:
                numerator = numerator * j % R
                denominator = denominator * (j - i) % R
        coefficients[i] = numerator * pow(denominator, -1, R) % R
    return coefficients


def _check_enough(count: int, threshold: int, what: str) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise InvalidThreshold("the signing threshold must be at least 1")
    if count < threshold:
        raise NotEnoughShares(f"{count} {what} for a signing threshold of {threshold}")


def _interpolate(points: Mapping[int, Any], identity: Any) -> Any:
    total = identity
    for participant_id, coefficient in lagrange_coefficients(points).items():
        total = total + points[participant_id].scalar_mul(coefficient)
    return total


def combine_signatures(partial_signatures: Mapping[int, bytes], threshold: int) -> bytes:
    """The full signature from partial signatures by participant id (Vouch's ``Recover``): refuses
    fewer than ``threshold``, bad ids, and partials that are not G2 subgroup points or are the
    identity. Every partial given is used; pass exactly ``threshold`` of them to combine fastest.
    The result is correct only if each partial is; verify it against the composite key."""
    _check_enough(len(partial_signatures), threshold, "partial signatures")
    points = {}
    for participant_id, signature in partial_signatures.items():
        check_participant_id(participant_id)
        point = _decode_g2(signature, f"the partial signature of participant {participant_id}")
        if point == _G2_IDENTITY:
            raise InvalidPoint(f"the partial signature of participant {participant_id} is the identity")
        points[participant_id] = point
    return bytes(_interpolate(points, _G2_IDENTITY).compress())


def combine_public_keys(public_shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The composite public key from public key shares by participant id (as combine_signatures)."""
    _check_enough(len(public_shares), threshold, "public key shares")
    points = {}
    for participant_id, public_key in public_shares.items():
        check_participant_id(participant_id)
        point = _decode_g1(public_key, f"the public key share of participant {participant_id}")
        if point == _G1_IDENTITY:
            raise InvalidPoint(f"the public key share of participant {participant_id} is the identity")
        points[participant_id] = point
    return bytes(_interpolate(points, _G1_IDENTITY).compress())
