"""Under CI=true a run that skipped any test fails, naming what it skipped (tests/conftest.py).

Each case runs ``python -m pytest`` in a process of its own on a small suite in a temporary folder
whose conftest.py is a copy of the repository's tests/conftest.py (so the real hooks run, and the
repository's pytest settings do not), with CI=true or without CI. ``make test`` runs the suite on two
pytest-xdist workers: the skips happen in the workers, and the controller, which only sees their
reports, must still fail the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

pytestmark = pytest.mark.slow  # runs pytest in subprocesses: the full suite runs it, not make test-fast

SKIPPING_TEST = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="marked away")
def test_marked():
    pass
"""
MODULE_SKIP = """
import pytest

pytest.skip("the whole module is away", allow_module_level=True)

def test_never_collected():
    pass
"""
CLEAN = """
import pytest

def test_runs():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
"""


def run_suite(tmp_path: Path, test_body: str, *, ci: bool, workers: int = 0) -> subprocess.CompletedProcess[str]:
    """``workers`` > 0 runs the suite on that many xdist workers (``-n N``), as ``make test`` does. As in
    pyproject.toml's addopts, a pytest-benchmark plugin installed on the machine is kept out."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text((REPO_ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    (suite / "test_sample.py").write_text(test_body, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p", "no:benchmark",
         "-n", str(workers), str(suite)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-xdist-workers"])
def test_a_skip_under_ci_fails_the_run_and_names_every_skipped_test(tmp_path: Path, workers: int) -> None:
    """On xdist workers too: the controller sees the workers' skips."""
    done = run_suite(tmp_path, SKIPPING_TEST, ci=True, workers=workers)
    if workers:
        assert "bringing up nodes" in done.stdout, done.stdout + done.stderr  # it really ran on xdist workers
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout
    assert "CI=true: 2 skipped; a CI run must skip nothing" in done.stdout
    assert "SKIPPED suite/test_sample.py::test_skips: no frobnicator here" in done.stdout
    assert "SKIPPED suite/test_sample.py::test_marked: marked away" in done.stdout


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-xdist-workers"])
def test_a_module_skipped_at_collection_under_ci_fails_the_run(tmp_path: Path, workers: int) -> None:
    done = run_suite(tmp_path, MODULE_SKIP, ci=True, workers=workers)
    if workers:
        assert "bringing up nodes" in done.stdout, done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "SKIPPED suite/test_sample.py: the whole module is away" in done.stdout


def test_without_ci_a_skip_stays_a_skip(tmp_path: Path) -> None:
    done = run_suite(tmp_path, SKIPPING_TEST, ci=False)
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "1 passed, 2 skipped" in done.stdout and "skipped under CI=true" not in done.stdout


@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-xdist-workers"])
def test_a_ci_run_without_skips_passes_and_an_xfail_is_not_a_skip(tmp_path: Path, workers: int) -> None:
    """The skip checks above fail for a reason: the same run without a skip passes."""
    done = run_suite(tmp_path, CLEAN, ci=True, workers=workers)
    if workers:
        assert "bringing up nodes" in done.stdout, done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "1 passed, 1 xfailed" in done.stdout and "skipped under CI=true" not in done.stdout
