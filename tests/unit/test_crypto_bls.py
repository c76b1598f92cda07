"""BLS backends: agreement with the py_ecc reference, scheme-level checks the curve library leaves
to us (identity keys and signatures, subgroup), secret range, and picklability for process pools."""

from __future__ import annotations

import pickle
import random
from concurrent.futures import ProcessPoolExecutor

import pytest

from signer.crypto import bls
from signer.errors import MalformedRequest
from tests.support import missing_component, py_ecc_slow

NATIVE = [name for name in bls.backend_names() if name != "py_ecc"]


def _backend(name: str) -> bls.BlsBackend:
    try:
        return bls.get_backend(name)
    except ImportError:
        missing_component(f"BLS backend {name} (its Python package does not import)")
        raise


def _negate(point: bytes) -> bytes:
    """-P for a compressed point: flip the sign flag (bit 0x20 of the first byte)."""
    return bytes([point[0] ^ 0x20]) + point[1:]


def _seeded_cases(count: int) -> list[tuple[int, bytes]]:
    rng = random.Random(20240611)
    cases = [(1, b""), (bls.CURVE_ORDER - 1, b"\xff" * 32)]
    while len(cases) < count:
        cases.append((rng.randrange(1, bls.CURVE_ORDER), rng.randbytes(rng.choice([0, 1, 32, 100]))))
    return cases


@pytest.mark.parametrize("name", NATIVE)
@pytest.mark.parametrize(("secret", "message"), _seeded_cases(5), ids=[f"case{i}" for i in range(5)])
def test_native_backend_matches_py_ecc(name: str, secret: int, message: bytes) -> None:
    native, reference = _backend(name), bls.get_backend("py_ecc")
    public_key = native.secret_to_public(secret)
    signature = native.sign(secret, message)
    assert public_key == reference.secret_to_public(secret)
    assert signature == reference.sign(secret, message)
    assert native.verify(public_key, message, signature)
    assert not native.verify(public_key, message + b"x", signature)


@pytest.mark.parametrize("name", bls.backend_names())
def test_identity_key_and_identity_signature_refused(name: str) -> None:
    backend = _backend(name)
    message = b"\x12" * 32
    assert not backend.key_validate(bls.G1_IDENTITY)
    assert backend.g1_point_valid(bls.G1_IDENTITY)  # it decodes; KeyValidate is what refuses it
    assert not backend.verify(bls.G1_IDENTITY, message, bls.G2_IDENTITY)
    assert not backend.fast_aggregate_verify([bls.G1_IDENTITY], message, bls.G2_IDENTITY)
    assert not backend.aggregate_verify([bls.G1_IDENTITY], [message], bls.G2_IDENTITY)
    assert not backend.batch_verify([bls.G1_IDENTITY], [message], [bls.G2_IDENTITY])


@pytest.mark.parametrize("name", bls.backend_names())
def test_identity_signature_refused_for_a_real_key(name: str) -> None:
    backend = _backend(name)
    public_key = backend.secret_to_public(7)
    assert not backend.verify(public_key, b"m", bls.G2_IDENTITY)


@pytest.mark.parametrize("name", bls.backend_names())
def test_keys_cancelling_out_do_not_fast_aggregate_verify(name: str) -> None:
    backend = _backend(name)
    public_key = backend.secret_to_public(12345)
    assert backend.key_validate(_negate(public_key))
    assert not backend.fast_aggregate_verify([public_key, _negate(public_key)], b"\x11" * 32, bls.G2_IDENTITY)


@pytest.mark.parametrize("name", bls.backend_names())
def test_empty_inputs_refused(name: str) -> None:
    backend = _backend(name)
    signature = backend.sign(3, b"m")
    assert not backend.fast_aggregate_verify([], b"m", signature)
    assert not backend.aggregate_verify([], [], signature)
    assert not backend.batch_verify([], [], [])
    with pytest.raises(MalformedRequest):
        backend.aggregate([])
    with pytest.raises(MalformedRequest):
        backend.aggregate([signature, b"\x00" * 96])


@pytest.mark.parametrize("name", py_ecc_slow(bls.backend_names()))
def test_aggregate_then_verify(name: str) -> None:
    backend = _backend(name)
    secrets = [11, 22, 33]
    keys = [backend.secret_to_public(s) for s in secrets]
    same = backend.aggregate([backend.sign(s, b"root") for s in secrets])
    assert backend.fast_aggregate_verify(keys, b"root", same)
    assert not backend.fast_aggregate_verify(keys[:2], b"root", same)
    messages = [b"a", b"b", b"c"]
    distinct = backend.aggregate([backend.sign(s, m) for s, m in zip(secrets, messages, strict=True)])
    assert backend.aggregate_verify(keys, messages, distinct)
    assert not backend.aggregate_verify(keys, [b"a", b"b", b"d"], distinct)


def test_batch_verify_catches_one_bad_signature() -> None:
    backend = _backend("blst")
    secrets = list(range(100, 110))
    keys = [backend.secret_to_public(s) for s in secrets]
    messages = [bytes([i]) * 32 for i in range(len(secrets))]
    signatures = [backend.sign(s, m) for s, m in zip(secrets, messages, strict=True)]
    assert backend.batch_verify(keys, messages, signatures)
    swapped = [signatures[1], signatures[0], *signatures[2:]]
    assert not backend.batch_verify(keys, messages, swapped)
    assert not backend.batch_verify(keys, messages, signatures[:-1])


@pytest.mark.parametrize(
    "secret",
    [b"", b"\x00" * 32, bls.CURVE_ORDER.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31, b"\x01" * 33],
    ids=["empty", "zero", "r", "max", "short", "long"],
)
def test_secret_out_of_range_is_malformed(secret: bytes) -> None:
    with pytest.raises(MalformedRequest) as raised:
        bls.sign(secret, b"m")
    if secret:
        assert secret.hex() not in str(raised.value)  # messages never carry secret material
    with pytest.raises(MalformedRequest):
        bls.secret_to_public(secret)


def test_secret_round_trip_and_bounds() -> None:
    assert bls.secret_to_int(bls.secret_from_int(1)) == 1
    assert bls.secret_to_int(bls.secret_from_int(bls.CURVE_ORDER - 1)) == bls.CURVE_ORDER - 1
    with pytest.raises(MalformedRequest):
        bls.secret_from_int(0)
    with pytest.raises(MalformedRequest):
        bls.secret_from_int(bls.CURVE_ORDER)
    assert 0 < bls.secret_to_int(bls.random_secret()) < bls.CURVE_ORDER


def test_module_functions_use_the_default_backend() -> None:
    secret = bls.secret_from_int(42)
    public_key = bls.secret_to_public(secret)
    signature = bls.sign(secret, b"\x00" * 32)
    assert len(public_key) == 48 and len(signature) == 96
    assert bls.verify(public_key, b"\x00" * 32, signature)
    assert bls.key_validate(public_key)
    assert bls.sign_many([(secret, b"\x00" * 32)]) == [signature]
    assert bls.get_backend().name == bls.DEFAULT_BACKEND
    with pytest.raises(MalformedRequest):
        bls.get_backend("no-such-backend")


def test_sign_is_picklable_and_runs_in_a_process_pool() -> None:
    assert pickle.loads(pickle.dumps(bls.sign)) is bls.sign  # noqa: S301 - our own bytes
    secret = bls.secret_from_int(9)
    items = [(secret, bytes([i]) * 32) for i in range(4)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        from_pool = list(pool.map(bls.sign_many, [items[:2], items[2:]]))
    assert [s for chunk in from_pool for s in chunk] == [bls.sign(s, m) for s, m in items]
