"""Slashing-protection stores side by side: batched check-and-record on PostgreSQL and SQLite.

    python bench/protection_stores.py [--items 3000] [--repeats 3] [--dsn DSN]

For batch sizes 1, 10 and 100: attestations for 100 validators (each batch holds distinct
validators, every item new and VALID, so every item is recorded), durably committed per batch.
Prints items/s and per-batch latency (median and p95 of the batches), each the median of
``--repeats`` runs, for both stores in one run; writes JSON to bench/out/protection_stores.json.

PostgreSQL: a throwaway server (tests/postgres.py) with fsync ON (the tests run theirs with fsync
off), or ``--dsn`` / SIGNER_BENCH_POSTGRES_DSN. SQLite: WAL, synchronous=FULL, in a temp dir.
Each run starts from an empty database. Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signer.protection.postgres import PostgresStore
from signer.protection.sqlite import SqliteStore
from signer.protection.store import ProtectionStore
from signer.types import ZERO_ROOT, AttestationCheck
from tests.postgres import PostgresServer

OUT = Path(__file__).resolve().parent / "out" / "protection_stores.json"
VALIDATORS = 100
BATCH_SIZES = (1, 10, 100)


def run_once(store: ProtectionStore, batch_size: int, items: int) -> tuple[float, list[float]]:
    """(items/s, per-batch latencies in s) for ``items`` attestations in batches of ``batch_size``."""
    keys = [i.to_bytes(2, "big") * 24 for i in range(VALIDATORS)]
    epoch = [0] * VALIDATORS
    latencies: list[float] = []
    cursor = 0
    done = 0
    started = time.perf_counter()
    while done < items:
        batch = []
        for _ in range(batch_size):
            v = cursor % VALIDATORS
            cursor += 1
            epoch[v] += 1
            batch.append(AttestationCheck(keys[v], epoch[v], epoch[v] + 1, epoch[v].to_bytes(32, "big")))
        t0 = time.perf_counter()
        verdicts = store.check_and_record(batch)
        latencies.append(time.perf_counter() - t0)
        if not all(v.ok for v in verdicts):
            raise SystemExit("benchmark invariant broken: a new attestation was refused")
        done += batch_size
    return done / (time.perf_counter() - started), latencies


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def measure(open_store: Callable[[int], ProtectionStore], items: int, repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for batch_size in BATCH_SIZES:
        rates, medians, tails = [], [], []
        for run in range(repeats):
            store = open_store(batch_size * 100 + run)
            try:
                rate, latencies = run_once(store, batch_size, items)
            finally:
                store.close()
            rates.append(rate)
            medians.append(statistics.median(latencies))
            tails.append(p95(latencies))
        results[str(batch_size)] = {
            "items_per_s": statistics.median(rates),
            "batch_median_ms": statistics.median(medians) * 1000,
            "batch_p95_ms": statistics.median(tails) * 1000,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3000, help="attestations per run (default 3000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dsn", default=os.environ.get("SIGNER_BENCH_POSTGRES_DSN"))
    args = parser.parse_args()

    server = PostgresServer(args.dsn) if args.dsn else PostgresServer.throwaway(fsync=True)
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
            sqlite = measure(lambda n: SqliteStore(Path(tmp) / f"p{n}.sqlite", ZERO_ROOT), args.items, args.repeats)
            postgres = measure(
                lambda n: PostgresStore(server.new_database(f"bench{n}", empty=True), ZERO_ROOT, pool_size=1),
                args.items,
                args.repeats,
            )
    finally:
        server.destroy()

    print(
        f"protection stores: {args.items} attestations per run, median of {args.repeats} runs, "
        f"load average {load_before:.1f}"
    )
    print(
        f"{'batch':>5} | {'sqlite items/s':>14} {'batch ms (p95)':>16} | {'postgres items/s':>16} "
        f"{'batch ms (p95)':>16} | pg/sqlite"
    )
    for size in map(str, BATCH_SIZES):
        s, p = sqlite[size], postgres[size]
        print(
            f"{size:>5} | {s['items_per_s']:>14,.0f} {s['batch_median_ms']:>8.2f} ({s['batch_p95_ms']:.2f})"
            f" | {p['items_per_s']:>16,.0f} {p['batch_median_ms']:>8.2f} ({p['batch_p95_ms']:.2f})"
            f" | {p['items_per_s'] / s['items_per_s']:.2f}x"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "items": args.items,
                "repeats": args.repeats,
                "load_average_at_start": load_before,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "postgres_fsync": not args.dsn,
                "sqlite": sqlite,
                "postgres": postgres,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
