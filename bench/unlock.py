"""Emulated key module start-up with many keys: unlock time, median of N runs.

Usage: python bench/unlock.py [--keys 10000] [--repeats 3] [--scrypt-n 131072]

Builds a throwaway module with ``--keys`` random BLS keys (default scrypt cost), then times
``EmulatedKeyModule(...).unlock()`` (read the file, one scrypt, AES-GCM open every entry, file MAC)
``--repeats`` times and prints the median. For contrast it also times what unlock does NOT do:
deriving every BLS public key from its secret (the stored public key is authenticated as AAD).
Not run by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from signer.crypto import bls
from signer.keys.emulated import DEFAULT_SCRYPT_N, MODULE_FILE, EmulatedKeyModule
from signer.types import Scheme

PIN = "bench-unlock-module-pin"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scrypt-n", type=int, default=DEFAULT_SCRYPT_N)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="unlock-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        started = time.perf_counter()
        module = EmulatedKeyModule(data_dir, PIN, create=True, scrypt_n=args.scrypt_n)
        module.generate_many([f"bench/{i}" for i in range(args.keys)], Scheme.BLS)
        build_s = time.perf_counter() - started
        size_mb = (data_dir / MODULE_FILE).stat().st_size / 1e6
        secrets = list(module._secrets.values())[:1000]
        module.close()

        times = []
        for _ in range(args.repeats):
            fresh = EmulatedKeyModule(data_dir, PIN)
            started = time.perf_counter()
            fresh.unlock()
            times.append(time.perf_counter() - started)
            assert len(fresh.list_keys()) == args.keys
            fresh.close()

        started = time.perf_counter()
        n = args.scrypt_n
        hashlib.scrypt(PIN.encode(), salt=b"\x00" * 32, n=n, r=8, p=1, maxmem=128 * 8 * (n + 3) + 2**20, dklen=32)
        scrypt_s = time.perf_counter() - started

        started = time.perf_counter()
        for secret in secrets:
            bls.secret_to_public(secret)
        per_pubkey_s = (time.perf_counter() - started) / len(secrets)

    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    print(f"module: {args.keys} BLS keys, {size_mb:.1f} MB file, scrypt n={args.scrypt_n}, built in {build_s:.1f} s")
    print(f"unlock runs: {', '.join(f'{t:.3f} s' for t in times)}")
    print(f"unlock median of {args.repeats}: {statistics.median(times):.3f} s for {args.keys} keys")
    print(f"of which the one scrypt: {scrypt_s:.3f} s")
    print(
        f"not done at unlock: deriving every public key would add ~{per_pubkey_s * args.keys:.1f} s "
        f"({per_pubkey_s * 1e3:.2f} ms each)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
