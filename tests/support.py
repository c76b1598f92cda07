"""Shared test plumbing: where the vectors are, and how a missing component is treated."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest

from signer.approval import PendingOperation

REPO_ROOT = Path(__file__).resolve().parent.parent
VENDORED_VECTORS = REPO_ROOT / "tests" / "vectors"
"""The third-party conformance vectors, vendored with their sources and checksums (README there)."""
VECTORS_ENV = "SIGNER_VECTORS_DIR"


def vectors_dir() -> Path:
    """The conformance vectors: tests/vectors, or $SIGNER_VECTORS_DIR when set (same layout)."""
    override = os.environ.get(VECTORS_ENV)
    return Path(override) if override else VENDORED_VECTORS


def vector_path(*parts: str) -> Path:
    """A file or folder of the vectors; missing is an error (never a skip): the data is in the repo."""
    path = vectors_dir().joinpath(*parts)
    if not path.exists():
        override = os.environ.get(VECTORS_ENV)
        where = f"{VECTORS_ENV}={override}" if override else "vendored in tests/vectors"
        raise FileNotFoundError(f"conformance vectors missing: {path} ({where})")
    return path


def markdown_anchors(path: Path) -> set[str]:
    """The link targets a Markdown page offers: its headings as GitHub slugs (lower case,
    punctuation dropped, spaces to hyphens; repeats numbered -1, -2, ...)."""
    anchors: set[str] = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
            candidate, n = slug, 0
            while candidate in anchors:
                n += 1
                candidate = f"{slug}-{n}"
            anchors.add(candidate)
    return anchors


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_component(what: str) -> None:
    """A real component this test needs is missing: fail in CI, skip elsewhere."""
    message = f"required component missing: {what}"
    if in_ci():
        pytest.fail(message + " (CI=true: integration tests must not skip)")
    pytest.skip(message)


def trailers(error: grpc.RpcError | grpc.Call) -> dict[str, str | bytes]:
    """The trailing metadata of a finished call or of the RpcError that ended it, as a dict.

    (grpc's RpcError is, at run time, also the Call that failed; its stub types the metadata apart.)"""
    return dict(cast(grpc.Call, error).trailing_metadata() or ())


_Done = TypeVar("_Done")


def done(answer: _Done | PendingOperation) -> _Done:
    """A key-admin answer that ran at once (no second operator's approval was needed)."""
    assert not isinstance(answer, PendingOperation), f"waits for approval: {answer}"
    return answer


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0, poll_s: float = 0.01) -> None:
    """Return as soon as ``condition()`` holds; fail naming ``what`` did not happen within ``timeout_s``.

    For a test that waits for something the code under test does where it offers no event to wait on
    (a line on disk, a metric): the wait ends when the thing happened, not after a guessed sleep."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(poll_s)


def py_ecc_slow(names: Iterable[str]) -> list[Any]:
    """Parameters for a test run once per BLS backend: the pure-Python reference (py_ecc) marked
    ``slow`` where it takes seconds, so ``make test-fast`` leaves it to the full suite."""
    return [pytest.param(name, marks=pytest.mark.slow) if name == "py_ecc" else name for name in names]
