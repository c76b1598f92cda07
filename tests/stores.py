"""Slashing-protection backends under test: every contract, conformance and property test of the
protection store takes its store from here, once per backend.

A backend that needs a server (PostgreSQL) carries the ``integration`` marker, so ``make test-fast``
leaves it to the full suite. To add a backend, append its name to BACKENDS and open it in
``make_store``. ``make_store`` called again with the same ``tmp_path`` must open the SAME database
(the tests use that to restart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from signer.protection.postgres import PostgresStore
from signer.protection.sqlite import SqliteStore
from signer.protection.store import InitializedBy, ProtectionStore
from signer.types import ZERO_ROOT
from tests.postgres import shared_server

BACKENDS = ["sqlite", "postgres"]

StoreFactory = Callable[..., ProtectionStore]


def make_store(backend: str, tmp_path: Path, gvr: bytes = ZERO_ROOT) -> ProtectionStore:
    """Open (or reopen) the store of ``backend`` that lives in ``tmp_path``, bound to ``gvr``."""
    if backend == "sqlite":
        return SqliteStore(tmp_path / "protection.sqlite", gvr)
    if backend == "postgres":
        # one database per test directory on the session's throwaway server (tests/postgres.py)
        return PostgresStore(shared_server().database_for(tmp_path), gvr, timeout_s=10.0, pool_size=4)
    raise ValueError(f"unknown protection backend {backend!r}")


def keys_never_signed(store: ProtectionStore) -> ProtectionStore:
    """Initialize ``store`` as ``signer protection init --keys-never-signed`` does (a no-op when it is
    initialized already): the tests' keys are made beside their store and have never signed
    elsewhere. The SigningService refuses to sign with a store that is not initialized."""
    store.initialize(InitializedBy.KEYS_NEVER_SIGNED, "tests: keys made with this store")
    return store


# The one named warning exception (pyproject.toml turns every other warning into an error):
# psycopg_pool's background workers draw each new connection's expiry jitter from the global
# ``random`` (psycopg_pool/base.py ``_jitter``); when that happens while hypothesis generates an
# example, hypothesis reports "Do not use the `random` module inside strategies" -- about the pool's
# thread, not about our strategies. Scoped to the PostgreSQL parameter.
_POOL_USES_GLOBAL_RANDOM = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning"
)


@pytest.fixture(
    params=[
        pytest.param(b, marks=[pytest.mark.integration, _POOL_USES_GLOBAL_RANDOM]) if b == "postgres" else b
        for b in BACKENDS
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """``open_store(gvr=ZERO_ROOT, where=tmp_path)``: open or reopen a store; all closed at teardown."""
    opened: list[ProtectionStore] = []

    def open_store(gvr: bytes = ZERO_ROOT, where: Path | None = None) -> ProtectionStore:
        store = make_store(backend, where or tmp_path, gvr)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> ProtectionStore:
    """A fresh store bound to the all-zero genesis_validators_root."""
    return store_factory()
