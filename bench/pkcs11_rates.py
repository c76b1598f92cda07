"""ECDSA (secp256k1) and EdDSA (ed25519) signing throughput through SoftHSM2, 1 and 2 threads.

Creates a throwaway token under its own SOFTHSM2_CONF, signs through Pkcs11KeyModule for
``--seconds`` per run, three runs per case, and prints the medians (signatures per second).
Never run by pytest. Usage::

    python bench/pkcs11_rates.py [--seconds 3] [--library /usr/lib/softhsm/libsofthsm2.so]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PIN = "bench-pin-1234"


def setup_token(root: Path) -> None:
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n", encoding="utf-8")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench", "--so-pin", "so-" + PIN, "--pin", PIN],
        check=True,
        capture_output=True,
    )


def rate(module: object, public_key: bytes, message: bytes, threads: int, seconds: float) -> float:
    sign = module.sign  # type: ignore[attr-defined]
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            sign(public_key, message)
            n += 1
        counts[i] = n

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--library", default="/usr/lib/softhsm/libsofthsm2.so")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pkcs11-bench-") as tmp:
        root = Path(tmp)
        setup_token(root)
        from signer.keys.pkcs11 import Pkcs11KeyModule  # noqa: PLC0415 - after SOFTHSM2_CONF is set
        from signer.types import Scheme  # noqa: PLC0415

        module = Pkcs11KeyModule(Path(args.library), "bench", PIN, root / "data", pool_size=2)
        module.unlock()
        try:
            cases = [
                ("ECDSA secp256k1 (CKM_ECDSA + low-S)", Scheme.SECP256K1, hashlib.sha256(b"bench").digest()),
                ("EdDSA ed25519 (CKM_EDDSA)", Scheme.ED25519, b"x" * 120),
            ]
            print(f"SoftHSM2 via Pkcs11KeyModule, {args.seconds:.0f} s per run, median of 3, signatures/s")
            for title, scheme, message in cases:
                info = module.generate(f"bench/{scheme}", scheme)
                medians = {}
                for threads in (1, 2):
                    runs = [rate(module, info.public_key, message, threads, args.seconds) for _ in range(3)]
                    medians[threads] = statistics.median(runs)
                print(
                    f"  {title:40s} 1 thread {medians[1]:8.0f}/s   2 threads {medians[2]:8.0f}/s"
                    f"   ratio {medians[2] / medians[1]:.2f}x"
                )
        finally:
            module.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
