"""BLS12-381 signatures, ciphersuite ``BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_``.

Public keys are 48-byte compressed G1 points, signatures 96-byte compressed G2 points, secrets
32 big-endian bytes in [1, r-1]. The module-level functions use the default backend; they are plain
functions taking and returning bytes, so they pickle by reference into a process pool.

Backends (``BlsBackend``):

* ``blst``   -- supranational/blst through ``pyblst`` (the default). pyblst is curve-level; the
  scheme is written here: KeyValidate rejects the identity public key and non-subgroup points,
  signatures are subgroup-checked on decode, and pairing products skip identity terms. Holds the GIL.
* ``blspy``  -- Chia's bls-signatures (``PopSchemeMPL``, same ciphersuite). Releases the GIL.
  Optional: used only if it imports.
* ``py_ecc`` -- the pure-Python reference, to cross-check the native backends; never a default.

A thread-based caller should check ``get_backend().releases_gil`` or pick blspy with
``set_default_backend("blspy")``. Rates and why blst is the default: bench/RESULTS.md, "Crypto
core rates".
"""

from __future__ import annotations

import hashlib
import secrets as _secrets
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from signer.errors import MalformedRequest

CIPHERSUITE_DST: Final = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_"
CURVE_ORDER: Final = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
"""r, the order of G1 and G2."""
SECRET_LENGTH: Final = 32
PUBLIC_KEY_LENGTH: Final = 48
SIGNATURE_LENGTH: Final = 96

G1_GENERATOR: Final = bytes.fromhex(
    "97f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb22c6bb"
)
G1_IDENTITY: Final = b"\xc0" + b"\x00" * 47
G2_IDENTITY: Final = b"\xc0" + b"\x00" * 95


# --- secrets ----------------------------------------------------------------------------------


def secret_to_int(secret: bytes) -> int:
    """32 big-endian bytes -> the scalar; MalformedRequest unless in [1, r-1]."""
    if not isinstance(secret, bytes | bytearray) or len(secret) != SECRET_LENGTH:
        raise MalformedRequest(f"a BLS secret key must be {SECRET_LENGTH} bytes")
    value = int.from_bytes(secret, "big")
    if not 0 < value < CURVE_ORDER:
        raise MalformedRequest("a BLS secret key must be in [1, r-1]")
    return value


def secret_from_int(value: int) -> bytes:
    """The scalar -> 32 big-endian bytes; MalformedRequest unless in [1, r-1]."""
    if not 0 < value < CURVE_ORDER:
        raise MalformedRequest("a BLS secret key must be in [1, r-1]")
    return value.to_bytes(SECRET_LENGTH, "big")


def random_secret() -> bytes:
    """A uniformly random secret in [1, r-1] (from the OS CSPRNG)."""
    return secret_from_int(1 + _secrets.randbelow(CURVE_ORDER - 1))


# --- the backend protocol ---------------------------------------------------------------------


class BlsBackend(Protocol):
    """One implementation of the ciphersuite. Verification functions never raise on bad input:
    anything that does not decode, is off the curve or outside the subgroup makes them False."""

    name: str
    releases_gil: bool
    """True if signing releases the GIL, so threads scale; otherwise fan out over processes."""

    def secret_to_public(self, secret: int) -> bytes: ...

    def sign(self, secret: int, message: bytes) -> bytes: ...

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool: ...

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        """Sum of the signatures; MalformedRequest for none or for one that does not decode."""

    def fast_aggregate_verify(self, public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool: ...

    def aggregate_verify(self, public_keys: Sequence[bytes], messages: Sequence[bytes], signature: bytes) -> bool: ...

    def batch_verify(
        self, public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
    ) -> bool:
        """True iff every (public key, message, signature) triple verifies; False for none."""

    def key_validate(self, public_key: bytes) -> bool:
        """A G1 point in the subgroup, and not the identity."""

    def g1_point_valid(self, data: bytes) -> bool:
        """Decodes (canonical compressed form) to a point of the G1 subgroup (identity allowed)."""

    def g2_point_valid(self, data: bytes) -> bool:
        """Decodes (canonical compressed form) to a point of the G2 subgroup (identity allowed)."""

    def hash_to_g2(self, message: bytes, dst: bytes) -> bytes:
        """RFC 9380 hash_to_curve to G2 (SSWU, random oracle), compressed."""


def _fail_to_false(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (ValueError, TypeError, AssertionError, RuntimeError, MalformedRequest):
        return False


def _verify_each(
    backend: BlsBackend,
    public_keys: Sequence[bytes],
    messages: Sequence[bytes],
    signatures: Sequence[bytes],
) -> bool:
    if len(public_keys) == 0 or not len(public_keys) == len(messages) == len(signatures):
        return False
    return all(backend.verify(pk, m, s) for pk, m, s in zip(public_keys, messages, signatures, strict=True))


# --- blst through pyblst ----------------------------------------------------------------------


class BlstBackend:
    """blst through pyblst: the scheme on top of curve operations (see the module docstring)."""

    name = "blst"
    releases_gil = False

    def __init__(self) -> None:
        import pyblst  # noqa: PLC0415 - optional native module, imported when chosen

        self._p1: Any = pyblst.BlstP1Element
        self._p2: Any = pyblst.BlstP2Element
        self._miller_loop: Any = pyblst.miller_loop
        self._final_verify: Any = pyblst.final_verify
        self._generator = self._p1.uncompress(G1_GENERATOR)
        self._neg_g1 = -self._generator
        self._identity_g1 = self._p1()
        self._identity_g2 = self._p2()
        g2 = self._p2.hash_to_group(b"signer", CIPHERSUITE_DST)
        # e(g1, q) * e(-g1, q) = 1: a Miller-loop value whose final exponentiation is one.
        self._ml_one = self._miller_loop(self._generator, g2) * self._miller_loop(self._neg_g1, g2)

    # decoding: pyblst's uncompress checks length, encoding, curve and subgroup.
    def _g1(self, data: bytes) -> Any:
        return self._p1.uncompress(bytes(data))

    def _g2(self, data: bytes) -> Any:
        return self._p2.uncompress(bytes(data))

    def _hash(self, message: bytes) -> Any:
        return self._p2.hash_to_group(bytes(message), CIPHERSUITE_DST)

    def secret_to_public(self, secret: int) -> bytes:
        return bytes(self._generator.scalar_mul(secret).compress())

    def sign(self, secret: int, message: bytes) -> bytes:
        return bytes(self._hash(message).scalar_mul(secret).compress())

    def key_validate(self, public_key: bytes) -> bool:
        return _fail_to_false(lambda: self._g1(public_key) != self._identity_g1)

    def g1_point_valid(self, data: bytes) -> bool:
        return _fail_to_false(lambda: self._g1(data) is not None)

    def g2_point_valid(self, data: bytes) -> bool:
        return _fail_to_false(lambda: self._g2(data) is not None)

    def hash_to_g2(self, message: bytes, dst: bytes) -> bytes:
        return bytes(self._p2.hash_to_group(bytes(message), bytes(dst)).compress())

    def _pairing_check(self, pairs: Sequence[tuple[Any, Any]], signature: Any) -> bool:
        """prod e(P_i, Q_i) == e(g1, signature); identity terms contribute one and are skipped."""
        lhs = self._ml_one
        for p, q in pairs:
            if p == self._identity_g1 or q == self._identity_g2:
                continue
            lhs = lhs * self._miller_loop(p, q)
        is_identity = signature == self._identity_g2
        rhs = self._ml_one if is_identity else self._miller_loop(self._generator, signature)
        return bool(self._final_verify(lhs, rhs))

    def _public_keys(self, public_keys: Sequence[bytes]) -> list[Any]:
        points = [self._g1(pk) for pk in public_keys]
        if any(p == self._identity_g1 for p in points):
            raise ValueError("identity public key")
        return points

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        def check() -> bool:
            (pk,) = self._public_keys([public_key])
            return self._pairing_check([(pk, self._hash(message))], self._g2(signature))

        return _fail_to_false(check)

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if len(signatures) == 0:
            raise MalformedRequest("cannot aggregate zero signatures")
        total = self._identity_g2
        for index, signature in enumerate(signatures):
            try:
                total = total + self._g2(signature)
            except (ValueError, TypeError) as exc:
                raise MalformedRequest(f"signature {index} is not a valid G2 point") from exc
        return bytes(total.compress())

    def fast_aggregate_verify(self, public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
        def check() -> bool:
            if len(public_keys) == 0:
                return False
            points = self._public_keys(public_keys)
            total = points[0]
            for p in points[1:]:
                total = total + p
            if total == self._identity_g1:
                return False  # the aggregate key must pass KeyValidate too (as py_ecc and blspy do)
            return self._pairing_check([(total, self._hash(message))], self._g2(signature))

        return _fail_to_false(check)

    def aggregate_verify(self, public_keys: Sequence[bytes], messages: Sequence[bytes], signature: bytes) -> bool:
        def check() -> bool:
            if len(public_keys) == 0 or len(public_keys) != len(messages):
                return False
            points = self._public_keys(public_keys)
            pairs = [(p, self._hash(m)) for p, m in zip(points, messages, strict=True)]
            return self._pairing_check(pairs, self._g2(signature))

        return _fail_to_false(check)

    def batch_verify(
        self, public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
    ) -> bool:
        """One multi-pairing with random 64-bit weights r_i (the consensus-specs batch check):
        prod e(r_i * pk_i, H(m_i)) == e(g1, sum r_i * sig_i). A forged set passes with
        probability about 2^-64."""

        def check() -> bool:
            if len(public_keys) == 0 or not len(public_keys) == len(messages) == len(signatures):
                return False
            points = self._public_keys(public_keys)
            weights = [1 + _secrets.randbits(64) for _ in points]
            total = self._identity_g2
            for weight, signature in zip(weights, signatures, strict=True):
                total = total + self._g2(signature).scalar_mul(weight)
            pairs = [(p.scalar_mul(w), self._hash(m)) for p, w, m in zip(points, weights, messages, strict=True)]
            return self._pairing_check(pairs, total)

        return _fail_to_false(check)


# --- blspy (Chia bls-signatures) --------------------------------------------------------------


class BlspyBackend:
    """Chia's bls-signatures, PopSchemeMPL. Releases the GIL."""

    name = "blspy"
    releases_gil = True

    def __init__(self) -> None:
        import blspy  # noqa: PLC0415 - optional native module, imported when chosen

        self._scheme: Any = blspy.PopSchemeMPL
        self._private_key: Any = blspy.PrivateKey
        self._g1_element: Any = blspy.G1Element
        self._g2_element: Any = blspy.G2Element
        self._identity_g1 = self._g1_element()

    def _g1(self, data: bytes) -> Any:
        if len(data) != PUBLIC_KEY_LENGTH:
            raise ValueError("wrong length for a G1 point")
        return self._g1_element.from_bytes(bytes(data))

    def _g2(self, data: bytes) -> Any:
        if len(data) != SIGNATURE_LENGTH:
            raise ValueError("wrong length for a G2 point")
        return self._g2_element.from_bytes(bytes(data))

    def _key(self, secret: int) -> Any:
        return self._private_key.from_bytes(secret.to_bytes(SECRET_LENGTH, "big"))

    def _public_keys(self, public_keys: Sequence[bytes]) -> list[Any]:
        points = [self._g1(pk) for pk in public_keys]
        if any(p == self._identity_g1 for p in points):
            raise ValueError("identity public key")
        return points

    def secret_to_public(self, secret: int) -> bytes:
        return bytes(self._key(secret).get_g1())

    def sign(self, secret: int, message: bytes) -> bytes:
        return bytes(self._scheme.sign(self._key(secret), bytes(message)))

    def key_validate(self, public_key: bytes) -> bool:
        return _fail_to_false(lambda: bool(self._public_keys([public_key])))

    def g1_point_valid(self, data: bytes) -> bool:
        return _fail_to_false(lambda: self._g1(data) is not None)

    def g2_point_valid(self, data: bytes) -> bool:
        return _fail_to_false(lambda: self._g2(data) is not None)

    def hash_to_g2(self, message: bytes, dst: bytes) -> bytes:
        return bytes(self._g2_element.from_message(bytes(message), bytes(dst)))

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        return _fail_to_false(
            lambda: bool(self._scheme.verify(self._public_keys([public_key])[0], bytes(message), self._g2(signature)))
        )

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if len(signatures) == 0:
            raise MalformedRequest("cannot aggregate zero signatures")
        points = []
        for index, signature in enumerate(signatures):
            try:
                points.append(self._g2(signature))
            except (ValueError, TypeError, RuntimeError) as exc:
                raise MalformedRequest(f"signature {index} is not a valid G2 point") from exc
        return bytes(self._scheme.aggregate(points))

    def fast_aggregate_verify(self, public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
        def check() -> bool:
            if len(public_keys) == 0:
                return False
            points = self._public_keys(public_keys)
            return bool(self._scheme.fast_aggregate_verify(points, bytes(message), self._g2(signature)))

        return _fail_to_false(check)

    def aggregate_verify(self, public_keys: Sequence[bytes], messages: Sequence[bytes], signature: bytes) -> bool:
        def check() -> bool:
            if len(public_keys) == 0 or len(public_keys) != len(messages):
                return False
            points = self._public_keys(public_keys)
            return bool(self._scheme.aggregate_verify(points, [bytes(m) for m in messages], self._g2(signature)))

        return _fail_to_false(check)

    def batch_verify(
        self, public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
    ) -> bool:
        return _verify_each(self, public_keys, messages, signatures)


# --- py_ecc (pure-Python reference) -----------------------------------------------------------


class PyEccBackend:
    """py_ecc's G2ProofOfPossession: slow, pure Python, the reference to cross-check against."""

    name = "py_ecc"
    releases_gil = False

    def __init__(self) -> None:
        from py_ecc.bls.ciphersuites import G2ProofOfPossession  # noqa: PLC0415
        from py_ecc.bls.g2_primitives import (  # noqa: PLC0415
            G2_to_signature,
            pubkey_to_G1,
            signature_to_G2,
            subgroup_check,
        )
        from py_ecc.bls.hash_to_curve import hash_to_G2  # noqa: PLC0415

        self._scheme: Any = G2ProofOfPossession
        self._pubkey_to_g1: Any = pubkey_to_G1
        self._signature_to_g2: Any = signature_to_G2
        self._g2_to_signature: Any = G2_to_signature
        self._subgroup_check: Any = subgroup_check
        self._hash_to_g2: Any = hash_to_G2

    def _g1_ok(self, data: bytes) -> bool:
        if len(data) != PUBLIC_KEY_LENGTH:
            return False
        return bool(self._subgroup_check(self._pubkey_to_g1(bytes(data))))

    def _g2_ok(self, data: bytes) -> bool:
        if len(data) != SIGNATURE_LENGTH:
            return False
        return bool(self._subgroup_check(self._signature_to_g2(bytes(data))))

    def secret_to_public(self, secret: int) -> bytes:
        return bytes(self._scheme.SkToPk(secret))

    def sign(self, secret: int, message: bytes) -> bytes:
        return bytes(self._scheme.Sign(secret, bytes(message)))

    def key_validate(self, public_key: bytes) -> bool:
        return _fail_to_false(lambda: bool(self._scheme.KeyValidate(bytes(public_key))))

    def g1_point_valid(self, data: bytes) -> bool:
        return _fail_to_false(lambda: self._g1_ok(data))

    def g2_point_valid(self, data: bytes) -> bool:
        return _fail_to_false(lambda: self._g2_ok(data))

    def hash_to_g2(self, message: bytes, dst: bytes) -> bytes:
        point = self._hash_to_g2(bytes(message), bytes(dst), hashlib.sha256)
        return bytes(self._g2_to_signature(point))

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        return _fail_to_false(lambda: bool(self._scheme.Verify(bytes(public_key), bytes(message), bytes(signature))))

    def aggregate(self, signatures: Sequence[bytes]) -> bytes:
        if len(signatures) == 0:
            raise MalformedRequest("cannot aggregate zero signatures")
        for index, signature in enumerate(signatures):
            if not self.g2_point_valid(signature):
                raise MalformedRequest(f"signature {index} is not a valid G2 point")
        return bytes(self._scheme.Aggregate([bytes(s) for s in signatures]))

    def fast_aggregate_verify(self, public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
        return _fail_to_false(
            lambda: bool(
                self._scheme.FastAggregateVerify([bytes(pk) for pk in public_keys], bytes(message), bytes(signature))
            )
        )

    def aggregate_verify(self, public_keys: Sequence[bytes], messages: Sequence[bytes], signature: bytes) -> bool:
        return _fail_to_false(
            lambda: bool(
                self._scheme.AggregateVerify(
                    [bytes(pk) for pk in public_keys], [bytes(m) for m in messages], bytes(signature)
                )
            )
        )

    def batch_verify(
        self, public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]
    ) -> bool:
        return _verify_each(self, public_keys, messages, signatures)


# --- backend registry and the default ---------------------------------------------------------

_FACTORIES: Final[dict[str, Callable[[], BlsBackend]]] = {
    "blst": BlstBackend,
    "blspy": BlspyBackend,
    "py_ecc": PyEccBackend,
}
_instances: dict[str, BlsBackend] = {}
DEFAULT_BACKEND: Final = "blst"
_default_name = DEFAULT_BACKEND


def backend_names() -> list[str]:
    """Every known backend name (whether or not its library imports here)."""
    return list(_FACTORIES)


def available_backends() -> list[str]:
    """The backends whose library imports on this machine."""
    names = []
    for name in _FACTORIES:
        try:
            get_backend(name)
        except ImportError:
            continue
        names.append(name)
    return names


def get_backend(name: str | None = None) -> BlsBackend:
    """The named backend (default: the current default). ImportError if its library is missing."""
    name = _default_name if name is None else name
    instance = _instances.get(name)
    if instance is None:
        factory = _FACTORIES.get(name)
        if factory is None:
            raise MalformedRequest(f"unknown BLS backend {name!r}; known: {', '.join(_FACTORIES)}")
        instance = factory()
        _instances[name] = instance
    return instance


def set_default_backend(name: str) -> None:
    """Make ``name`` the backend of the module-level functions (in this process)."""
    global _default_name  # noqa: PLW0603 - a process-wide choice, set once at start-up
    get_backend(name)
    _default_name = name


# --- the module-level API (default backend) ---------------------------------------------------


def secret_to_public(secret: bytes) -> bytes:
    """32-byte big-endian secret -> 48-byte compressed G1 public key."""
    return get_backend().secret_to_public(secret_to_int(secret))


def sign(secret: bytes, message: bytes) -> bytes:
    """96-byte compressed G2 signature of ``message`` under the POP ciphersuite."""
    return get_backend().sign(secret_to_int(secret), message)


def sign_many(secret_message_pairs: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """Sign each (secret, message); picklable unit of work for a process pool."""
    backend = get_backend()
    return [backend.sign(secret_to_int(s), m) for s, m in secret_message_pairs]


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    return get_backend().verify(public_key, message, signature)


def aggregate(signatures: Sequence[bytes]) -> bytes:
    """Sum of the signatures; MalformedRequest for an empty list or an invalid signature."""
    return get_backend().aggregate(signatures)


def fast_aggregate_verify(public_keys: Sequence[bytes], message: bytes, signature: bytes) -> bool:
    return get_backend().fast_aggregate_verify(public_keys, message, signature)


def aggregate_verify(public_keys: Sequence[bytes], messages: Sequence[bytes], signature: bytes) -> bool:
    return get_backend().aggregate_verify(public_keys, messages, signature)


def batch_verify(public_keys: Sequence[bytes], messages: Sequence[bytes], signatures: Sequence[bytes]) -> bool:
    """True iff every (public_key, message, signature) triple verifies (and there is at least one)."""
    return get_backend().batch_verify(public_keys, messages, signatures)


def key_validate(public_key: bytes) -> bool:
    """KeyValidate: a canonical G1 point in the subgroup, not the identity."""
    return get_backend().key_validate(public_key)
