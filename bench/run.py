"""The whole benchmark suite, one command: python bench/run.py [--quick] [--keys 10000]

Every figure is measured in the same run as its baseline and reported as a ratio:

* raw single-core BLS signing rate (the default backend, in this process, before and after the
  gRPC runs; the baseline is their mean);
* start-up: ``signer serve --config`` with the cached 10,000 dev keys, seconds to "signer ready";
* BLS attestations over gRPC, SignBeaconAttestations of 100 distinct keys: signatures/s / raw;
* single SignBeaconAttestation at 1, 16 and 64 in flight: throughput / raw, p50 and p99;
* a 10,000-validator burst (one single request per validator, all sent at once; and the same
  as 100 batches of 100): seconds from the first request to the last signature;
* CometBFT SignVote over 32 chains (one secp256k1 key each), each chain signing heights in order:
  votes/s and p99;
* protection overhead: an in-process server (same gRPC server, service, pool and batcher) with
  the SQLite store and with bench/protection_off.RecordsNothing, batched e2e time ratio.

The signer is a real ``signer serve`` process (the dev keys, the dev PIN, and a config file for
the 32 chains, the permission authorizer and ``server.grpc_workers``); the load generator is a
separate process using grpc.aio (bench/loadgen.py). The dev module with 10,000 EIP-2333 keys
(~35 s to derive) is cached in bench/out/dev-<keys>/. Results: a table on stdout, JSON in
bench/out/run-<timestamp>.json and bench/out/latest.json. Never run by pytest.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from protection_off import RecordsNothing  # noqa: E402

from signer.api.context import CallContext  # noqa: E402
from signer.api.server import GrpcServer  # noqa: E402
from signer.batching import Batcher  # noqa: E402
from signer.config import ALL_OPERATIONS, NetworkConfig  # noqa: E402
from signer.crypto import bls  # noqa: E402
from signer.eth2.networks import network_from_config  # noqa: E402
from signer.keys.dev import (  # noqa: E402
    DEV_ED25519_ACCOUNT,
    DEV_PIN,
    DEV_SECP256K1_ACCOUNT,
    dev_account,
    dev_bls_secret,
    dev_ed25519_secret,
    dev_secp256k1_secret,
)
from signer.keys.emulated import MODULE_FILE, EmulatedKeyModule  # noqa: E402
from signer.keys.keyring import KeyRing  # noqa: E402
from signer.keys.pin_policy import PUBLIC_KEYS_ONLY  # noqa: E402
from signer.keys.pool import ParallelSigner  # noqa: E402
from signer.protection.sqlite import SqliteStore  # noqa: E402
from signer.service import SigningService  # noqa: E402
from signer.types import AllowAll, Scheme  # noqa: E402
from tests.e2e.harness import SignerProcess, init_protection  # noqa: E402
from tests.stores import keys_never_signed  # noqa: E402

OUT = ROOT / "bench" / "out"
CHAINS = 32
GRPC_WORKERS = 64

TARGETS = {
    "batched_grpc_vs_raw": (">=", 1.5),
    "single_64_vs_raw": (">=", 1.0),
    "single_16_p99_ms": ("<", 10.0),
    "burst_10k_single_s": ("<", 4.0),
    "startup_10k_s": ("<", 5.0),
    "protection_overhead": ("<", 0.15),
}


# --- the cached dev module ------------------------------------------------------------------


def ensure_data(keys: int) -> Path:
    """bench/out/dev-<keys>: the dev module (dev/0..keys-1, the 2 dev CometBFT keys, 32 chain keys)."""
    data = OUT / f"dev-{keys}"
    if (data / MODULE_FILE).exists():
        return data
    print(f"deriving {keys} dev keys (EIP-2333; once, cached in {data}) ...", flush=True)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool() as pool:
        secrets = pool.map(dev_bls_secret, range(keys), chunksize=100)
    tmp = Path(tempfile.mkdtemp(prefix=f"dev-{keys}-", dir=OUT))
    # The dev PIN (published) on throwaway keys: exempt from the PIN policy, as the dev module is.
    module = EmulatedKeyModule(tmp, DEV_PIN, create=True, pin_policy=PUBLIC_KEYS_ONLY)
    items: list[tuple[str, Scheme, bytes]] = [(dev_account(i), Scheme.BLS, s) for i, s in enumerate(secrets)]
    items.append((DEV_SECP256K1_ACCOUNT, Scheme.SECP256K1, dev_secp256k1_secret()))
    items.append((DEV_ED25519_ACCOUNT, Scheme.ED25519, dev_ed25519_secret()))
    for c in range(CHAINS):  # chain keys: random, but fixed once cached
        items.append((f"bench/chain-{c}", Scheme.SECP256K1, os.urandom(31).rjust(32, b"\x01")))
    module.import_secrets(items)
    module.close()
    (tmp / "dev.pin").write_text(DEV_PIN + "\n", encoding="utf-8")
    tmp.rename(data)
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    return data


def write_config(data: Path, run_dir: Path, grpc_workers: int = GRPC_WORKERS) -> Path:
    chains = "\n".join(
        f'[[cometbft.chains]]\nchain_id = "bench-{c}"\naccount = "bench/chain-{c}"\n' for c in range(CHAINS)
    )
    ops = ", ".join(f'"{op}"' for op in ALL_OPERATIONS)
    text = f"""
[server]
grpc_listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
grpc_workers = {grpc_workers}

[keys]
module = "emulated"
data_dir = "{data}"
pin = {{ file = "{data / "dev.pin"}" }}

[protection]
backend = "sqlite"
sqlite_path = "{run_dir / "protection.sqlite"}"

[logging]
level = "info"

{chains}
[[clients]]
name = "local"
allow_accounts = ["*"]
operations = [{ops}]
"""
    path = run_dir / "signer.toml"
    path.write_text(text, encoding="utf-8")
    init_protection(path)  # the dev keys never signed into this run's store
    return path


# --- measurements -----------------------------------------------------------------------------


def raw_rate(module: EmulatedKeyModule, seconds: float) -> float:
    """BLS signatures/s on one core: the module signing in this process (same backend, same path)."""
    keys = [k.public_key for k in module.list_keys() if k.scheme is Scheme.BLS][:200]
    items = [(pk, os.urandom(32)) for pk in keys]
    module.sign_many(items[:20])
    rates = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        module.sign_many(items)
        rates.append(len(items) / (time.perf_counter() - started))
    return statistics.median(rates)


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and, recursively, its live children."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / tick
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return total + sum(_cpu_s(int(c)) for c in children)


def _cpu_s_self(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / tick


def loadgen(address: str, scenario: str, server_pid: int | None = None, **args: Any) -> dict[str, Any]:
    """Run one loadgen scenario; with ``server_pid``, also the CPU seconds each side spent."""
    main_before = workers_before = 0.0
    if server_pid is not None:
        total_before = _cpu_s(server_pid)
        main_before = _cpu_s_self(server_pid)
        workers_before = total_before - main_before
    children_before = os.times().children_user + os.times().children_system
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "loadgen.py"), address, scenario, json.dumps(args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["cpu_s_loadgen"] = os.times().children_user + os.times().children_system - children_before
    if server_pid is not None:
        total_after, main_after = _cpu_s(server_pid), _cpu_s_self(server_pid)
        main = main_after - main_before
        result["cpu_s_server_main"] = main
        result["cpu_s_server_workers"] = (total_after - main_after) - workers_before
        signed = max(1, result.get("signed", 0))
        result["cpu_us_per_item"] = {
            "loadgen": result["cpu_s_loadgen"] / signed * 1e6,
            "server_main": main / signed * 1e6,
            "sign_workers": result["cpu_s_server_workers"] / signed * 1e6,
        }
    if result.get("failed"):
        print(f"  !! {scenario} {args}: {result['failed']} requests failed", flush=True)
    return result


class EpochCounter:
    """Each scenario gets epochs above every earlier one: nothing is ever slashable or a repeat."""

    def __init__(self) -> None:
        self.next = 1000

    def take(self, rounds: int) -> int:
        epoch = self.next
        self.next += rounds + 2
        return epoch


def in_process_server(module_dir: Path, store: Any, workers: int) -> tuple[GrpcServer, Batcher, ParallelSigner]:
    module = EmulatedKeyModule(module_dir, DEV_PIN, pin_policy=PUBLIC_KEYS_ONLY)
    module.unlock()
    keys = ParallelSigner(module, workers)
    keys.start()
    network = network_from_config(NetworkConfig())
    service = SigningService(network, KeyRing(keys), store, authorizer=AllowAll())
    batcher = Batcher(service)
    calls = CallContext(service, signer=batcher)
    server = GrpcServer(service, calls, workers=GRPC_WORKERS)
    server.bind("127.0.0.1:0", None)
    server.set_serving(True)
    server.start()
    return server, batcher, keys


def protection_overhead(data: Path, run_dir: Path, epochs: EpochCounter, keys: int, calls: int) -> dict[str, Any]:
    """Batched e2e time with the SQLite store / with RecordsNothing; alternated, median of 3 each."""
    network = network_from_config(NetworkConfig())
    times: dict[str, list[float]] = {"sqlite": [], "off": []}
    cpu: dict[str, list[float]] = {"sqlite": [], "off": []}
    """CPU of the server's main process (this process) per signed item, us."""
    for rep in range(3):
        for name in ("sqlite", "off"):
            store: Any = (
                keys_never_signed(SqliteStore(run_dir / f"inproc-{rep}.sqlite", network.genesis_validators_root))
                if name == "sqlite"
                else RecordsNothing()
            )
            server, batcher, signer = in_process_server(data, store, 0)
            cpu_before = time.process_time()
            try:
                rounds = calls * 100 // keys + 1
                r = loadgen(
                    f"127.0.0.1:{server.port}",
                    "batch",
                    keys=keys,
                    batch=100,
                    calls=calls,
                    concurrency=4,
                    epoch=epochs.take(rounds),
                )
                times[name].append(r["elapsed_s"])
                cpu[name].append((time.process_time() - cpu_before) / max(1, r["signed"]) * 1e6)
            finally:
                server.stop(1)
                batcher.close()
                signer.close()
                store.close()
    sqlite_s, off_s = statistics.median(times["sqlite"]), statistics.median(times["off"])
    return {
        "sqlite_s": times["sqlite"],
        "off_s": times["off"],
        "overhead": sqlite_s / off_s - 1,
        "main_cpu_us_per_item_sqlite": cpu["sqlite"],
        "main_cpu_us_per_item_off": cpu["off"],
    }


# --- the run ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="validator-signer benchmark suite")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    args = parser.parse_args()
    duration = 2.0 if args.quick else 4.0
    batch_calls = 30 if args.quick else 60
    OUT.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args.keys)
    run_dir = OUT / time.strftime("run-%Y%m%dT%H%M%S")
    run_dir.mkdir()
    config = write_config(data, run_dir)
    epochs = EpochCounter()
    result: dict[str, Any] = {
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "bls_backend": bls.get_backend().name,
        "keys": args.keys,
        "grpc_workers": GRPC_WORKERS,
    }

    module = EmulatedKeyModule(data, DEV_PIN, pin_policy=PUBLIC_KEYS_ONLY)
    module.unlock()
    raw_before = raw_rate(module, duration / 2)
    print(f"raw single-core BLS: {raw_before:,.0f}/s", flush=True)

    started = time.perf_counter()
    proc = SignerProcess.from_config(config).start()
    result["startup_10k_s"] = time.perf_counter() - started
    print(f"start-up with {args.keys} keys: {result['startup_10k_s']:.2f} s", flush=True)
    address = proc.address
    try:
        k = args.keys
        result["batched"] = loadgen(
            address,
            "batch",
            proc.pid,
            keys=k,
            batch=100,
            calls=batch_calls,
            concurrency=4,
            epoch=epochs.take(batch_calls * 100 // k + 1),
        )
        print(f"batched x100: {result['batched']['per_s']:,.0f}/s", flush=True)
        for n in (1, 16, 64):
            est = int(duration * 5000) + 200
            result[f"single_{n}"] = loadgen(
                address,
                "single",
                proc.pid,
                keys=k,
                in_flight=n,
                duration_s=duration,
                warmup=max(50, 2 * n),
                epoch=epochs.take(est // k + 1),
            )
            r = result[f"single_{n}"]
            print(f"single @{n}: {r['per_s']:,.0f}/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms", flush=True)
        result["burst_single"] = loadgen(address, "burst", proc.pid, keys=k, count=k, epoch=epochs.take(2))
        print(f"burst {k} singles: {result['burst_single']['elapsed_s']:.2f} s", flush=True)
        result["burst_batched"] = loadgen(address, "burst", proc.pid, keys=k, count=k, batch=100, epoch=epochs.take(2))
        print(f"burst {k} as batches of 100: {result['burst_batched']['elapsed_s']:.2f} s", flush=True)
        result["votes"] = loadgen(
            address, "votes", proc.pid, chains=[f"bench-{c}" for c in range(CHAINS)], duration_s=duration
        )
        print(
            f"votes over {CHAINS} chains: {result['votes']['per_s']:,.0f}/s p99 {result['votes']['p99_ms']:.2f} ms",
            flush=True,
        )
    finally:
        proc.terminate()

    result["protection"] = protection_overhead(data, run_dir, epochs, args.keys, batch_calls)
    prot = result["protection"]
    print(
        f"protection overhead: {prot['overhead'] * 100:.1f}% of e2e time; main-process CPU per item "
        f"{statistics.median(prot['main_cpu_us_per_item_sqlite']):.0f} us with SQLite, "
        f"{statistics.median(prot['main_cpu_us_per_item_off']):.0f} us without",
        flush=True,
    )
    raw_after = raw_rate(module, duration / 2)
    module.close()
    raw = (raw_before + raw_after) / 2
    result["raw_bls_per_s"] = {"before": raw_before, "after": raw_after, "baseline": raw}
    result["load_after"] = os.getloadavg()

    figures = {
        "batched_grpc_vs_raw": result["batched"]["per_s"] / raw,
        "single_1_vs_raw": result["single_1"]["per_s"] / raw,
        "single_16_vs_raw": result["single_16"]["per_s"] / raw,
        "single_64_vs_raw": result["single_64"]["per_s"] / raw,
        "single_1_p50_ms": result["single_1"]["p50_ms"],
        "single_16_p99_ms": result["single_16"]["p99_ms"],
        "single_64_p99_ms": result["single_64"]["p99_ms"],
        "burst_10k_single_s": result["burst_single"]["elapsed_s"],
        "burst_10k_batched_s": result["burst_batched"]["elapsed_s"],
        "votes_per_s": result["votes"]["per_s"],
        "votes_p99_ms": result["votes"]["p99_ms"],
        "startup_10k_s": result["startup_10k_s"],
        "protection_overhead": result["protection"]["overhead"],
    }
    result["figures"] = figures
    print()
    print(
        f"| figure | value | target | raw single-core BLS baseline {raw:,.0f}/s, load {result['load_before'][0]:.1f} |"
    )
    print("|---|---|---|---|")
    for name, value in figures.items():
        target = TARGETS.get(name)
        if target is None:
            verdict, want = "", ""
        else:
            op, bound = target
            ok = value >= bound if op == ">=" else value < bound
            verdict, want = ("met" if ok else "MISSED"), f"{op} {bound}"
        print(f"| {name} | {value:,.3f} | {want} | {verdict} |")
    print("\nCPU per signed item (us): loadgen / server main process / signing workers")
    for name in ("batched", "single_1", "single_16", "single_64", "burst_single", "burst_batched", "votes"):
        cpu = result[name].get("cpu_us_per_item", {})
        if cpu:
            print(f"  {name:14} {cpu['loadgen']:7.0f} / {cpu['server_main']:7.0f} / {cpu['sign_workers']:7.0f}")
    text = json.dumps(result, indent=1)
    (run_dir / "result.json").write_text(text)
    (OUT / f"{run_dir.name}.json").write_text(text)
    (OUT / "latest.json").write_text(text)
    print(f"\nJSON: {OUT / (run_dir.name + '.json')}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
