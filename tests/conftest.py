from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, VECTORS_ENV, in_ci, vector_path, vectors_dir


@pytest.fixture(scope="session", autouse=True)
def _vectors_inside_the_repository() -> None:
    """The suite reads the vendored vectors unless SIGNER_VECTORS_DIR says otherwise, on purpose."""
    if not os.environ.get(VECTORS_ENV):
        assert vectors_dir().resolve().is_relative_to(REPO_ROOT), f"vectors outside the repository: {vectors_dir()}"


@pytest.fixture(scope="session")
def vectors() -> Path:
    return vector_path()


# --- on xdist workers, the longest file starts first ------------------------------------------------
#
# `make test` hands whole files to two workers in collection order (--dist loadfile
# --no-loadscope-reorder). The Lodestar devnet test takes ~4 minutes, most of it waiting for slots:
# started last it is the run's tail, started first it overlaps everything else. Only the order on the
# workers changes; a serial run keeps pytest's order.

FIRST_ON_WORKERS = ("tests/e2e/test_lodestar_devnet.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    for path in FIRST_ON_WORKERS:
        assert (REPO_ROOT / path).is_file(), f"FIRST_ON_WORKERS names a file that is gone: {path}"
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in FIRST_ON_WORKERS)  # stable: the rest keep order


# --- under CI=true a run that skipped anything fails ------------------------------------------------
#
# Integration tests fail rather than skip under CI=true (tests.support.missing_component), so a CI
# run skips nothing. This makes that a property of the run, not of each test: any skip (a test, a
# whole module at collection, a skip added later) turns a green CI run red, naming every skipped
# test and its reason. Without CI=true a skip stays a skip. An expected failure (xfail) is not a skip.

_SKIPPED: list[tuple[str, str]] = []


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _note_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append((report.nodeid, _skip_reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _SKIPPED and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if in_ci() and _SKIPPED:
        terminalreporter.section("skipped under CI=true", sep="=", red=True, bold=True)
        terminalreporter.line(f"CI=true: {len(_SKIPPED)} skipped; a CI run must skip nothing, so it fails:", red=True)
        for nodeid, reason in _SKIPPED:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}", red=True)
