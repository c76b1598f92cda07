"""The floor under single requests: server CPU per unary call of a trivial Signer handler.

Runs a server process with a handler that does nothing but answer (no service, no store, no
signing), once as a sync grpc server (thread pool, as the signer runs) and once as a grpc.aio
server, and drives each with a grpc.aio client process at a fixed number of calls in flight.
Prints calls/s and the server's CPU microseconds per call (from /proc/PID/stat), median of
``--repeats`` runs. Whatever the signer adds per single request comes on top of this floor.

    python bench/grpc_floor.py [--in-flight 16] [--seconds 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIGNATURE = b"\x01" * 96
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _serve(mode: str, port: int) -> None:
    import grpc  # noqa: PLC0415

    from signer.api._proto.v1 import signer_pb2, signer_pb2_grpc  # noqa: PLC0415

    class SyncSigner(signer_pb2_grpc.SignerServicer):
        def SignBeaconAttestation(self, request, context):  # type: ignore[no-untyped-def]
            return signer_pb2.SignResponse(state=1, signature=SIGNATURE)

    class AioSigner(signer_pb2_grpc.SignerServicer):
        async def SignBeaconAttestation(self, request, context):  # type: ignore[no-untyped-def]
            return signer_pb2.SignResponse(state=1, signature=SIGNATURE)

    if mode == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        signer_pb2_grpc.add_SignerServicer_to_server(SyncSigner(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()
        return

    async def main() -> None:
        server = grpc.aio.server()
        signer_pb2_grpc.add_SignerServicer_to_server(AioSigner(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def _drive(port: int, in_flight: int, seconds: float) -> None:
    import grpc  # noqa: PLC0415

    from signer.api._proto.v1 import eth2_pb2, signer_pb2, signer_pb2_grpc  # noqa: PLC0415

    checkpoint = eth2_pb2.Checkpoint(epoch=1, root=b"\x03" * 32)
    request = signer_pb2.SignBeaconAttestationRequest(
        account="dev/0",
        domain=b"\x01" * 32,
        data=eth2_pb2.AttestationData(slot=1, beacon_block_root=b"\x02" * 32, source=checkpoint, target=checkpoint),
    )

    async def main() -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = signer_pb2_grpc.SignerStub(channel)
            await stub.SignBeaconAttestation(request)
            calls = 0
            stop = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal calls
                while time.perf_counter() < stop:
                    await stub.SignBeaconAttestation(request)
                    calls += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            print(json.dumps({"calls": calls, "elapsed_s": time.perf_counter() - started}))

    asyncio.run(main())


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(mode: str, in_flight: int, seconds: float) -> dict[str, float]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", mode, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        server.stdout.readline()
        before = _cpu_s(server.pid)
        out = subprocess.run(
            [sys.executable, __file__, "--drive", str(port), str(in_flight), str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = _cpu_s(server.pid) - before
    finally:
        server.terminate()
        server.wait(10)
    result = json.loads(out)
    rate = result["calls"] / result["elapsed_s"]
    return {"calls_per_s": rate, "server_cpu_us_per_call": cpu / result["calls"] * 1e6}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], int(sys.argv[3]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        _drive(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.in_flight} calls in flight")
    print("| server | calls/s (median) | server CPU us per call (median) |")
    print("|---|---|---|")
    for mode in ("sync", "aio"):
        runs = [measure(mode, args.in_flight, args.seconds) for _ in range(args.repeats)]
        rate = statistics.median(r["calls_per_s"] for r in runs)
        cpu = statistics.median(r["server_cpu_us_per_call"] for r in runs)
        print(f"| {mode} | {rate:,.0f} | {cpu:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
