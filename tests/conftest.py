from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import missing_component, vectors_dir


@pytest.fixture(scope="session")
def vectors() -> Path:
    path = vectors_dir()
    if not path.is_dir():
        missing_component(f"conformance vectors at {path} (set SIGNER_VECTORS_DIR)")
    return path
