"""The path of one request stays short: issue 14's goal of at most 40 of the signer's functions.

Runs ``bench/trace_path.py`` (the signer as ``serve --dev`` builds it, in its own process; one
SignBeaconAttestation traced with a profile hook over every thread) and reads its JSON. The count
is deterministic, so this is a structural gate, not a timing: a change that adds steps to the hot
path (a new wrapper, an accessor, a helper called once) fails here with the per-module counts, and
has to be paid for elsewhere on the path or argued in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTIONS = 40

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("trace") / "trace.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "trace_path.py"), "--json", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_one_attestation_runs_at_most_forty_of_the_signers_functions(trace: dict[str, object]) -> None:
    result = trace
    functions = result["functions"]
    assert isinstance(functions, int)
    listing = "\n".join(str(line) for line in result["list"])  # type: ignore[attr-defined]
    assert functions <= MAX_FUNCTIONS, f"{functions} functions on the path (goal <= {MAX_FUNCTIONS}):\n{listing}"


def test_the_tracer_sees_the_path_it_counts(trace: dict[str, object]) -> None:
    """The gate above cannot pass by the tracer seeing nothing: the steps every request must take
    (the servicer, the protection store's commit, the signing pool) are in what it saw."""
    per_module = trace["per_module"]
    assert isinstance(per_module, dict)
    for module in ("signer/api/eth2.py", "signer/protection/sqlite.py", "signer/keys/pool.py", "signer/service.py"):
        assert per_module.get(module, 0) >= 1, f"{module} not on the traced path: {per_module}"
