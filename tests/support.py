"""Shared test plumbing: where the vectors are, and how a missing component is treated."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def vectors_dir() -> Path:
    """The third-party conformance vectors: $SIGNER_VECTORS_DIR or ../shared/vectors."""
    override = os.environ.get("SIGNER_VECTORS_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "vectors"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing_component(what: str) -> None:
    """A real component this test needs is missing: fail in CI, skip elsewhere."""
    message = f"required component missing: {what}"
    if in_ci():
        pytest.fail(message + " (CI=true: integration tests must not skip)")
    pytest.skip(message)
