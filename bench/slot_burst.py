"""A Lighthouse-like slot burst over the REST front (the Web3Signer API):

    python bench/slot_burst.py [--validators 10000 50000] [--sweep] [--seconds 3]

At the start of a slot a validator client with N validators asks for N/32 ATTESTATION and N/32
AGGREGATION_SLOT signatures, all at once (each on its own key: one attestation per validator per
epoch). This sends exactly that to a real ``signer serve --config`` (the cached dev keys of
bench/run.py, SQLite protection, REST on a port of its own) from a separate load-generator process
(aiohttp, up to 256 connections, keep-alive as Lighthouse's reqwest pool), and reports for each N:
seconds from the first request to the last signature, p50/p99 latency, and with ``--sweep`` the
largest N whose burst is signed within 1 s. Then the server CPU per single request, REST
(ATTESTATION, 16 in flight) against gRPC (SignBeaconAttestation, 16 in flight, bench/loadgen.py), in
the same run, from /proc: the signer's main process (both fronts, batcher, store) and its sign
workers separately.

Every burst uses target epochs above the previous ones, so nothing is a repeat or slashable. JSON in
bench/out/slot-burst-<timestamp>.json. Never run by pytest beyond a smoke test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import OUT, _cpu_s, _cpu_s_self, ensure_data, loadgen  # noqa: E402

from signer.config import ALL_OPERATIONS, NetworkConfig  # noqa: E402
from signer.crypto import bls  # noqa: E402
from signer.eth2.networks import network_from_config  # noqa: E402
from tests.e2e.harness import SignerProcess, init_protection  # noqa: E402

NETWORK = network_from_config(NetworkConfig())
BASE_EPOCH = 100
CONNECTIONS = 256
SLOTS_PER_EPOCH = 32


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def fork_info(epoch: int) -> dict[str, Any]:
    version = _hex(NETWORK.fork_version_at(epoch))
    return {
        "fork": {"previous_version": version, "current_version": version, "epoch": str(epoch)},
        "genesis_validators_root": _hex(NETWORK.genesis_validators_root),
    }


def attestation(epoch: int, seq: int) -> bytes:
    return json.dumps(
        {
            "type": "ATTESTATION",
            "fork_info": fork_info(epoch),
            "attestation": {
                "slot": str(epoch * SLOTS_PER_EPOCH),
                "index": "0",
                "beacon_block_root": _hex(seq.to_bytes(32, "big")),
                "source": {"epoch": str(epoch - 1), "root": _hex(b"\x01" * 32)},
                "target": {"epoch": str(epoch), "root": _hex(b"\x02" * 32)},
            },
        }
    ).encode()


def aggregation_slot(epoch: int) -> bytes:
    body = {"type": "AGGREGATION_SLOT", "fork_info": fork_info(epoch), "aggregation_slot": {"slot": str(epoch * 32)}}
    return json.dumps(body).encode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the load generator (a separate process) ------------------------------------------------------


async def _drive(args: dict[str, Any]) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415 - bench extra, load generator only

    base, keys = args["base"], args["keys"]
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    headers = {"content-type": "application/json", "accept": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(key: str, body: bytes) -> tuple[float, bool]:
            started = time.perf_counter()
            async with session.post(f"{base}/api/v1/eth2/sign/{key}", data=body) as response:
                await response.read()
                return time.perf_counter() - started, response.status == 200

        # warm the connection pool (as a running validator client's is)
        await asyncio.gather(*(session.get(f"{base}/upcheck") for _ in range(min(CONNECTIONS, len(keys)))))
        if args["mode"] == "burst":
            epoch, per_kind = args["epoch"], args["per_kind"]
            bodies = [(keys[i], attestation(epoch, i)) for i in range(per_kind)]
            bodies += [(keys[i], aggregation_slot(epoch)) for i in range(per_kind)]
            started = time.perf_counter()
            results = await asyncio.gather(*(one(k, b) for k, b in bodies))
            elapsed = time.perf_counter() - started
        else:  # single: `in_flight` workers, each its own key, new epochs, for `seconds`
            in_flight, seconds, epoch = args["in_flight"], args["seconds"], args["epoch"]
            results = []
            stop_at = time.perf_counter() + seconds

            async def worker(n: int) -> None:
                e = epoch
                while time.perf_counter() < stop_at:
                    results.append(await one(keys[n], attestation(e, n)))
                    e += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker(n) for n in range(in_flight)))
            elapsed = time.perf_counter() - started
    latencies = [r[0] for r in results]
    return {
        "requests": len(results),
        "failed": sum(1 for r in results if not r[1]),
        "elapsed_s": elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def drive(server_pid: int, **args: Any) -> dict[str, Any]:
    """Run the REST load generator in its own process; add the server's CPU seconds it caused."""
    total_before, main_before = _cpu_s(server_pid), _cpu_s_self(server_pid)
    out = subprocess.run(
        [sys.executable, __file__, "--drive", "-"],
        input=json.dumps(args),  # on stdin: thousands of keys do not fit an argument list
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    main = _cpu_s_self(server_pid) - main_before
    result["cpu_s_server_main"] = main
    result["cpu_s_server_workers"] = (_cpu_s(server_pid) - total_before) - main
    return result


# --- the run ----------------------------------------------------------------------------------------


def write_config(data: Path, run_dir: Path) -> Path:
    ops = ", ".join(f'"{op}"' for op in ALL_OPERATIONS)
    text = f"""
[server]
grpc_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[keys]
module = "emulated"
data_dir = "{data}"
pin = {{ file = "{data / "dev.pin"}" }}

[protection]
backend = "sqlite"
sqlite_path = "{run_dir / "protection.sqlite"}"

[limits]
max_in_flight = 100000

[batching]
queue_size = 100000

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = [{ops}]
"""
    path = run_dir / "signer.toml"
    path.write_text(text, encoding="utf-8")
    init_protection(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description="slot burst over the REST front")
    parser.add_argument("--drive", help=argparse.SUPPRESS)
    parser.add_argument("--validators", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--sweep", action="store_true", help="also find the largest N signed within 1 s")
    parser.add_argument("--seconds", type=float, default=3.0, help="per single-request CPU run")
    args = parser.parse_args()
    if args.drive:
        print(json.dumps(asyncio.run(_drive(json.loads(sys.stdin.read())))))
        return 0
    most = max(args.validators)
    keys_needed = 1 << max(10, math.ceil(math.log2(math.ceil(most / SLOTS_PER_EPOCH))))
    OUT.mkdir(parents=True, exist_ok=True)
    data = ensure_data(keys_needed)
    run_dir = OUT / time.strftime("slot-burst-%Y%m%dT%H%M%S")
    run_dir.mkdir()
    proc = SignerProcess.from_config(write_config(data, run_dir)).start()
    result: dict[str, Any] = {
        "command": " ".join(["python", "bench/slot_burst.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "bls_backend": bls.get_backend().name,
        "bursts": {},
    }
    epoch = BASE_EPOCH
    try:
        base = f"http://127.0.0.1:{proc.rest_port}"
        import httpx  # noqa: PLC0415

        keys = httpx.get(f"{base}/api/v1/eth2/publicKeys", timeout=60).json()

        def burst(n: int) -> dict[str, Any]:
            nonlocal epoch
            epoch += 2
            per_kind = math.ceil(n / SLOTS_PER_EPOCH)
            out = drive(proc.pid, mode="burst", base=base, keys=keys[:per_kind], per_kind=per_kind, epoch=epoch)
            print(
                f"N={n:>6}: {2 * per_kind} requests, last signature after {out['elapsed_s']:.3f} s, "
                f"p50 {out['p50_ms']:.0f} ms, p99 {out['p99_ms']:.0f} ms, failed {out['failed']}",
                flush=True,
            )
            return out

        for n in args.validators:
            result["bursts"][str(n)] = burst(n)
        if args.sweep:
            best = 0
            for n in (5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000):
                if n > len(keys) * SLOTS_PER_EPOCH:
                    break
                out = burst(n)
                result["bursts"].setdefault(str(n), out)
                if out["elapsed_s"] <= 1.0 and not out["failed"]:
                    best = n
            result["largest_n_within_1s"] = best
            print(f"largest N signed within 1 s: {best}", flush=True)
        epoch += 2
        rest = drive(proc.pid, mode="single", base=base, keys=keys, in_flight=16, seconds=args.seconds, epoch=epoch)
        grpc = loadgen(
            proc.address,
            "single",
            proc.pid,
            keys=16,
            in_flight=16,
            duration_s=args.seconds,
            warmup=32,
            epoch=epoch + 10_000,
        )
        signed_rest = max(1, rest["requests"] - rest["failed"])
        result["single_rest"] = rest | {
            "per_s": signed_rest / rest["elapsed_s"],
            "cpu_us_server_main": rest["cpu_s_server_main"] / signed_rest * 1e6,
            "cpu_us_sign_workers": rest["cpu_s_server_workers"] / signed_rest * 1e6,
        }
        result["single_grpc"] = grpc | {
            "cpu_us_server_main": grpc["cpu_us_per_item"]["server_main"],
            "cpu_us_sign_workers": grpc["cpu_us_per_item"]["sign_workers"],
        }
        for name in ("single_rest", "single_grpc"):
            r = result[name]
            print(
                f"{name}: {r['per_s']:,.0f}/s, server main process {r['cpu_us_server_main']:.0f} us/request, "
                f"sign workers {r['cpu_us_sign_workers']:.0f} us/request, p99 {r['p99_ms']:.1f} ms",
                flush=True,
            )
        ratio = result["single_rest"]["cpu_us_server_main"] / result["single_grpc"]["cpu_us_server_main"]
        result["rest_over_grpc_cpu_main"] = ratio
        print(f"REST / gRPC server main-process CPU per request: {ratio:.2f}", flush=True)
    finally:
        proc.stop()
    result["load_after"] = os.getloadavg()
    path = OUT / f"{run_dir.name}.json"
    path.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
