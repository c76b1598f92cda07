from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, VECTORS_ENV, vector_path, vectors_dir


@pytest.fixture(scope="session", autouse=True)
def _vectors_inside_the_repository() -> None:
    """The suite reads the vendored vectors unless SIGNER_VECTORS_DIR says otherwise, on purpose."""
    if not os.environ.get(VECTORS_ENV):
        assert vectors_dir().resolve().is_relative_to(REPO_ROOT), f"vectors outside the repository: {vectors_dir()}"


@pytest.fixture(scope="session")
def vectors() -> Path:
    return vector_path()
