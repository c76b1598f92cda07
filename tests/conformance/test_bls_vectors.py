"""Every case of ethereum/bls12-381-tests v0.1.2, against every BLS backend.

``output: null`` means the call must fail (raise, or return False for verification); decoding
errors count as False. hash_to_G2 cases use the RFC 9380 test DST, not the ciphersuite DST.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from py_ecc.bls.g2_primitives import G2_to_signature
from py_ecc.optimized_bls12_381 import FQ2

from signer.crypto import bls
from signer.errors import MalformedRequest
from tests.support import missing_component, vector_path

SUITE = Path("bls") / "bls12-381-tests-v0.1.2"
HANDLERS = (
    "sign",
    "verify",
    "aggregate",
    "fast_aggregate_verify",
    "aggregate_verify",
    "batch_verify",
    "deserialization_G1",
    "deserialization_G2",
    "hash_to_G2",
)
HASH_TO_G2_DST = b"QUUX-V01-CS02-with-BLS12381G2_XMD:SHA-256_SSWU_RO_"


def _case_files() -> list[Path]:
    root = vector_path(*SUITE.parts)
    return sorted(p for handler in HANDLERS for p in (root / handler).glob("*.json"))


CASES = _case_files()


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def _g2_compressed(x: str, y: str) -> bytes:
    """The compressed form of the affine G2 point (x, y) given as 're,im' hex pairs."""

    def fq2(pair: str) -> Any:
        re, im = (int(part, 16) for part in pair.split(","))
        return FQ2([re, im])

    return bytes(G2_to_signature((fq2(x), fq2(y), FQ2.one())))


def _run(backend: bls.BlsBackend, handler: str, data: Any) -> Any:  # noqa: C901 -- one dispatch over the vector suite's handlers
    """What the backend answers for one case: bytes, a bool, or None for a refused call."""
    given = data["input"]
    if handler == "sign":
        try:
            return backend.sign(bls.secret_to_int(_hex(given["privkey"])), _hex(given["message"]))
        except MalformedRequest:
            return None
    if handler == "verify":
        return backend.verify(_hex(given["pubkey"]), _hex(given["message"]), _hex(given["signature"]))
    if handler == "aggregate":
        try:
            return backend.aggregate([_hex(s) for s in given])
        except MalformedRequest:
            return None
    if handler == "fast_aggregate_verify":
        return backend.fast_aggregate_verify(
            [_hex(pk) for pk in given["pubkeys"]], _hex(given["message"]), _hex(given["signature"])
        )
    if handler == "aggregate_verify":
        return backend.aggregate_verify(
            [_hex(pk) for pk in given["pubkeys"]],
            [_hex(m) for m in given["messages"]],
            _hex(given["signature"]),
        )
    if handler == "batch_verify":
        return backend.batch_verify(
            [_hex(pk) for pk in given["pubkeys"]],
            [_hex(m) for m in given["messages"]],
            [_hex(s) for s in given["signatures"]],
        )
    if handler == "deserialization_G1":
        return backend.g1_point_valid(_hex(given["pubkey"]))
    if handler == "deserialization_G2":
        return backend.g2_point_valid(_hex(given["signature"]))
    if handler == "hash_to_G2":
        return backend.hash_to_g2(given["msg"].encode(), HASH_TO_G2_DST)
    raise AssertionError(f"unknown handler {handler}")


def _expected(handler: str, output: Any) -> Any:
    if output is None or isinstance(output, bool):
        return output
    if handler == "hash_to_G2":
        return _g2_compressed(output["x"], output["y"])
    return _hex(output)


def _backend(name: str) -> bls.BlsBackend:
    try:
        return bls.get_backend(name)
    except ImportError:
        missing_component(f"BLS backend {name} (its Python package does not import)")
        raise


@pytest.fixture(scope="module", params=bls.backend_names())
def backend(request: pytest.FixtureRequest) -> bls.BlsBackend:
    return _backend(request.param)


def test_every_handler_has_cases(vectors: Path) -> None:
    found = {p.parent.name for p in CASES}
    assert found == set(HANDLERS), f"missing handlers: {set(HANDLERS) - found}"
    assert len(CASES) == 98


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_vector(vectors: Path, backend: bls.BlsBackend, case: Path) -> None:
    data = json.loads(case.read_text())
    handler = case.parent.name
    answer = _run(backend, handler, data)
    expected = _expected(handler, data["output"])
    if isinstance(answer, bool):
        # a refused verification is False; ``output: null`` never applies to a boolean call
        assert answer is (expected is True), f"{backend.name}: {handler} gave {answer}"
    else:
        assert answer == expected, f"{backend.name}: {handler} gave {answer!r}"
