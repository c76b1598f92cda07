"""Signing rates of the crypto core, measured in one run on this machine.

    python bench/crypto_rates.py [--repeats 5] [--quick]

Prints, as medians of ``--repeats`` runs: BLS sign per backend (py_ecc with few iterations),
secp256k1 sign/verify, ed25519 sign, and, for the native BLS backends, the speed-up of 2 threads and
of 2 processes over one thread (same total work). Writes JSON to bench/out/crypto_rates.json.
Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signer.crypto import bls, ed25519, secp256k1

OUT = Path(__file__).resolve().parent / "out" / "crypto_rates.json"
SECRET = bls.secret_from_int(0x1234567890ABCDEF)
ROOT = bytes(range(32))


def median_rate(work: Callable[[], None], iterations: int, repeats: int) -> float:
    """Operations per second, median over repeats."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            work()
        rates.append(iterations / (time.perf_counter() - start))
    return statistics.median(rates)


def _bls_chunk(args: tuple[str, int]) -> int:
    name, count = args
    backend = bls.get_backend(name)
    secret = bls.secret_to_int(SECRET)
    for i in range(count):
        backend.sign(secret, i.to_bytes(32, "big"))
    return count


def bls_scaling(name: str, total: int, repeats: int) -> dict[str, float]:
    """Rate with 1 thread, 2 threads and 2 processes signing ``total`` roots in all."""

    def one_thread() -> float:
        start = time.perf_counter()
        _bls_chunk((name, total))
        return total / (time.perf_counter() - start)

    def two_threads() -> float:
        threads = [threading.Thread(target=_bls_chunk, args=((name, total // 2),)) for _ in range(2)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return total / (time.perf_counter() - start)

    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_bls_chunk, [(name, 4)] * 2))  # warm: import and backend set-up

        def two_processes() -> float:
            start = time.perf_counter()
            list(pool.map(_bls_chunk, [(name, total // 2)] * 2))
            return total / (time.perf_counter() - start)

        results = {
            label: statistics.median(run() for _ in range(repeats))
            for label, run in [
                ("1_thread", one_thread),
                ("2_threads", two_threads),
                ("2_processes", two_processes),
            ]
        }
    results["threads_speedup"] = results["2_threads"] / results["1_thread"]
    results["processes_speedup"] = results["2_processes"] / results["1_thread"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus (shared machine)")
    repeats = args.repeats
    n = max(10, int(1000 * scale))

    report: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "repeats": repeats,
        "unit": "operations per second (median)",
    }
    bls_rates: dict[str, float] = {}
    native = []
    for name in bls.backend_names():
        try:
            backend = bls.get_backend(name)
        except ImportError:
            print(f"bls {name}: not installed")
            continue
        secret = bls.secret_to_int(SECRET)
        iterations = 3 if name == "py_ecc" else n
        reps = min(repeats, 3) if name == "py_ecc" else repeats
        rate = median_rate(lambda b=backend, s=secret: b.sign(s, ROOT), iterations, reps)  # type: ignore[misc]
        bls_rates[name] = rate
        print(f"bls sign {name:7s}: {rate:10.1f}/s  ({1e6 / rate:9.1f} us)")
        if name != "py_ecc":
            native.append(name)
    report["bls_sign"] = bls_rates

    secp_secret = (0xC0FFEE).to_bytes(32, "big")
    secp_public = secp256k1.public_key(secp_secret)
    secp_signature, _ = secp256k1.sign_digest(secp_secret, ROOT)
    ed_secret = bytes(range(32))
    others = {
        "secp256k1_sign": median_rate(lambda: secp256k1.sign_digest(secp_secret, ROOT), n * 10, repeats),
        "secp256k1_verify": median_rate(
            lambda: secp256k1.verify_digest(secp_public, ROOT, secp_signature), n * 10, repeats
        ),
        "ed25519_sign": median_rate(lambda: ed25519.sign(ed_secret, ROOT), n * 10, repeats),
    }
    for label, rate in others.items():
        print(f"{label:17s}: {rate:10.1f}/s  ({1e6 / rate:9.1f} us)")
    report.update(others)

    scaling = {}
    for name in native:
        result = bls_scaling(name, max(40, int(2000 * scale)), repeats)
        scaling[name] = result
        print(
            f"bls {name:6s} scaling: 1 thread {result['1_thread']:.0f}/s, "
            f"2 threads {result['2_threads']:.0f}/s "
            f"(x{result['threads_speedup']:.2f}), 2 processes {result['2_processes']:.0f}/s "
            f"(x{result['processes_speedup']:.2f})"
        )
    report["bls_scaling"] = scaling

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
