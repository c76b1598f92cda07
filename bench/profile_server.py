"""Profile the server's main process under one loadgen scenario: python bench/profile_server.py SCENARIO JSON

Starts ``signer serve --config`` exactly as bench/run.py does (cached dev keys, SQLite, the permission
authorizer, ``--grpc-workers N``), runs bench/loadgen.py once for warm-up and once under
``py-spy record --idle=false --format raw`` (collapsed stacks of the server's main process, all
threads), and prints the result line of the loadgen and the top self/inclusive frames. Never run by
pytest; needs py-spy.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import OUT, ensure_data, write_config  # noqa: E402

from tests.e2e.harness import SignerProcess  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("args", help="loadgen JSON arguments")
    parser.add_argument("--grpc-workers", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-spy", action="store_true")
    parser.add_argument("--gil", action="store_true", help="only samples of the thread holding the GIL")
    a = parser.parse_args()
    data = ensure_data(10_000)
    run_dir = OUT / time.strftime(f"profile-%H%M%S-gw{a.grpc_workers}")
    run_dir.mkdir()
    proc = SignerProcess.from_config(write_config(data, run_dir, a.grpc_workers)).start()
    try:
        args = json.loads(a.args)
        cmd = [sys.executable, str(ROOT / "bench" / "loadgen.py"), proc.address, a.scenario]
        subprocess.run([*cmd, json.dumps({**args, "epoch": 10})], check=True, capture_output=True)
        spy = None
        raw = run_dir / "stacks.txt"
        if not a.no_spy:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(proc.pid),
                    *(["--gil"] if a.gil else []),
                    "--format",
                    "raw",
                    "-o",
                    str(raw),
                    "--duration",
                    str(a.seconds),
                    "--rate",
                    "500",
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        out = subprocess.run([*cmd, json.dumps({**args, "epoch": 100})], check=True, capture_output=True, text=True)
        print(out.stdout.strip().splitlines()[-1])
        if spy is not None:
            spy.wait()
            report(raw, a.top)
    finally:
        proc.terminate()
    return 0


def report(raw: Path, top: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    print(f"samples {total}")
    print("-- self")
    for f, n in own.most_common(top):
        print(f"{n / total * 100:5.1f}% {f[:150]}")
    print("-- inclusive")
    for f, n in incl.most_common(top):
        print(f"{n / total * 100:5.1f}% {f[:150]}")


if __name__ == "__main__":
    raise SystemExit(main())
