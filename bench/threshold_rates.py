"""Cost of the threshold-BLS operations (signer.crypto.threshold), measured in one run.

    python bench/threshold_rates.py [--repeats 5] [--quick]

Prints medians (microseconds per operation) of: combining t partial signatures (what a Vouch-style
combiner does per request) for 2-of-3, 3-of-5 and 7-of-10; checking one share against its
verification vector (what each participant does per contribution in a DKG); and the initiator's
check of the Commit answers (every t-subset). Writes JSON to bench/out/threshold_rates.json.
Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signer.crypto import threshold as th
from signer.distributed import dkg

OUT = Path(__file__).resolve().parent / "out" / "threshold_rates.json"
MESSAGE = bytes(range(32))
SHAPES = [(2, 3), (3, 5), (7, 10)]


def median_us(work: Callable[[], object], iterations: int, repeats: int) -> float:
    """Microseconds per call, median over repeats."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            work()
        times.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="few iterations (smoke run)")
    args = parser.parse_args()
    iterations = 2 if args.quick else 50
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus (shared machine)")

    results: dict[str, float] = {}
    for t, n in SHAPES:
        polynomial = th.Polynomial.random(t)
        shares = th.deal(polynomial, range(1, n + 1))
        partials = {i: shares[i].sign(MESSAGE) for i in range(1, t + 1)}
        vector = polynomial.verification_vector()
        share = shares[n]
        results[f"combine_{t}_of_{n}"] = median_us(
            lambda p=partials, t=t: th.combine_signatures(p, t), iterations, args.repeats
        )  # type: ignore[misc]
        results[f"verify_share_{t}_of_{n}"] = median_us(
            lambda v=vector, s=share: v.verify_share(s), iterations, args.repeats
        )  # type: ignore[misc]
        parameters = dkg.SessionParameters(
            "bench/account", t, tuple(dkg.Endpoint(i, f"signer-{i}", 9000 + i) for i in range(1, n + 1))
        )
        responses = {i: dkg.CommitResponse(vector.public_key, shares[i].sign(MESSAGE)) for i in range(1, n + 1)}
        results[f"verify_commit_{t}_of_{n}"] = median_us(
            lambda p=parameters, r=responses: dkg.verify_commit(p, MESSAGE, r),  # type: ignore[misc]
            max(1, iterations // 10),
            args.repeats,
        )
    for label, us in results.items():
        print(f"{label:22s}: {us:12.1f} us")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "repeats": args.repeats,
        "unit": "microseconds per operation (median)",
        "results": results,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
