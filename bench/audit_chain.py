"""The cost of the audit log's hash chain: python bench/audit_chain.py [--lines 200000] [--repeats 3]

In one run, to an audit FILE in a temporary directory, the same decision lines (~300 bytes, as a
signing call writes them) through:

* the plain LineWriter (what the audit log was before the chain: no seq, no prev), the baseline;
* the AuditLog with the SHA-256 chain;
* the AuditLog with the HMAC-SHA256 chain (audit.hmac_key);

each as lines/s from the first record() to the flush, and as a ratio to the baseline (median of
``--repeats``). Then ``signer audit verify``'s rate over the chained file (lines/s). record() itself
only queues a line: the chain is computed on the writer thread, so this is the writer's capacity,
not a cost on the signing path. Never run by pytest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signer.config import AuditConfig, SecretRef  # noqa: E402
from signer.observability.audit import AuditLog  # noqa: E402
from signer.observability.audit_chain import ChainKey, verify  # noqa: E402
from signer.observability.logging import LineWriter  # noqa: E402
from signer.types import AuditEvent  # noqa: E402

KEY = "5a" * 32


def events(count: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            client="vouch-1",
            method="SignBeaconAttestations",
            outcome="succeeded",
            operation="sign_attestation",
            public_key=bytes([n % 256]) * 48,
            account=f"validators/{n}",
            slot=9_000_000 + n,
            source_epoch=281_000,
            target_epoch=281_001,
            duration_ms=1.234,
            request_id=f"req-{n:08d}",
        )
        for n in range(count)
    ]


def decision_lines(path: Path, batch: list[AuditEvent]) -> list[str]:
    """The lines AuditLog.record writes for ``batch``, without the chain's seq and prev."""
    with AuditLog(AuditConfig(path=str(path)), capacity=len(batch) + 1) as audit:
        for event in batch:
            audit.record(event)
    lines = path.read_text().splitlines(keepends=True)
    path.unlink()
    return ["{" + line.split(",", 2)[2] for line in lines if '"record":' not in line]


def plain_rate(path: Path, lines: list[str]) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    writer = LineWriter(fd, name="bench", capacity=len(lines) + 1)
    started = time.perf_counter()
    for line in lines:
        writer.write(line)
    assert writer.flush(timeout_s=600)
    elapsed = time.perf_counter() - started
    writer.close()
    return len(lines) / elapsed


def chained_rate(path: Path, batch: list[AuditEvent], key_file: Path | None) -> float:
    config = AuditConfig(path=str(path), hmac_key=SecretRef(file=key_file) if key_file else None)
    audit = AuditLog(config, capacity=len(batch) + 1)
    started = time.perf_counter()
    for event in batch:
        audit.record(event)
    assert audit.flush(timeout_s=600)
    elapsed = time.perf_counter() - started
    audit.close()
    assert audit.dropped == 0
    return len(batch) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    batch = events(args.lines)
    rates: dict[str, list[float]] = {"plain": [], "sha256": [], "hmac-sha256": []}
    verify_rates: list[float] = []
    with tempfile.TemporaryDirectory(prefix="audit-chain-bench-") as tmp:
        base = Path(tmp)
        key_file = base / "key"
        key_file.write_text(KEY + "\n")
        lines = decision_lines(base / "lines.jsonl", batch)
        for repeat in range(args.repeats):
            rates["plain"].append(plain_rate(base / f"plain-{repeat}.jsonl", lines))
            rates["sha256"].append(chained_rate(base / f"sha-{repeat}.jsonl", batch, None))
            keyed = base / f"hmac-{repeat}.jsonl"
            rates["hmac-sha256"].append(chained_rate(keyed, batch, key_file))
            started = time.perf_counter()
            result = verify([keyed], [ChainKey.from_text(KEY)])
            assert result.ok, result.problem
            verify_rates.append(result.lines / (time.perf_counter() - started))
    baseline = statistics.median(rates["plain"])
    print(f"{args.lines} lines, median of {args.repeats}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  write {name:<12} {rate:>12,.0f} lines/s   {rate / baseline:5.2f} x plain")
    print(f"  verify hmac-sha256 {statistics.median(verify_rates):>12,.0f} lines/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
