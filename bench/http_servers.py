"""Which HTTP server for the REST front: server CPU per request and requests/s of a trivial handler.

Each candidate serves one ASGI-style handler shaped like a Web3Signer sign request (POST
/api/v1/eth2/sign/0x<pubkey>, a ~600-byte ATTESTATION JSON body parsed with orjson, a JSON
``{"signature": "0x..."}`` answer): no signing, no core, so the figure is the server's own floor.

    uvicorn   uvicorn + httptools (+ uvloop when installed), one process, raw ASGI app
    granian   granian (Rust HTTP) with the ASGI interface, one worker
    aiohttp   aiohttp.web, one process

A separate load-generator process (asyncio raw sockets, so the client costs little) keeps
``--in-flight`` requests going for ``--seconds``, first over keep-alive connections, then with
``Connection: close`` and a new connection per request (as Lodestar 1.5.1 sends them). Server CPU is
utime+stime from /proc/<pid>/stat of the server process and its live descendants (granian's worker),
children's waited-for time excluded, read before and after. Printed per server and mode: requests/s,
server CPU us per request, client-side p50/p99 latency; median of ``--repeats`` runs.

Before the load, each server is checked the way Lodestar needs: a request with ``Connection:
close`` must get a 200 JSON answer carrying ``Connection: close`` and then see the socket closed.

    python bench/http_servers.py [--servers uvicorn,granian,aiohttp] [--in-flight 16] [--seconds 6]
                                 [--repeats 3]

Candidates come from the ``bench`` extra (pip install -e '.[bench]'); a missing one is reported and
skipped. Run it on a quiet machine: the numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PUBKEY = "0x" + "a9" * 48
PATH = f"/api/v1/eth2/sign/{PUBKEY}"
SIGNATURE = "0x" + "b3" * 96
BODY = json.dumps(
    {
        "type": "ATTESTATION",
        "signingRoot": "0x" + "1b" * 32,
        "fork_info": {
            "fork": {"previous_version": "0x00000001", "current_version": "0x01000001", "epoch": "0"},
            "genesis_validators_root": "0x" + "27" * 32,
        },
        "attestation": {
            "slot": "123456",
            "index": "7",
            "beacon_block_root": "0x" + "8a" * 32,
            "source": {"epoch": "3857", "root": "0x" + "00" * 32},
            "target": {"epoch": "3858", "root": "0x" + "8a" * 32},
        },
    }
).encode()
SERVERS = ("uvicorn", "granian", "aiohttp")


# --- the handler, per server ---------------------------------------------------------------------


def _answer(body: bytes) -> bytes:
    import orjson  # noqa: PLC0415

    request = orjson.loads(body)
    if request.get("type") != "ATTESTATION":
        raise ValueError("unexpected body")
    return orjson.dumps({"signature": SIGNATURE})


async def asgi_app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[..., Any]) -> None:
    """A raw ASGI app: read the body, answer JSON; echo ``Connection: close`` when asked."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    payload = _answer(b"".join(chunks))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if any(k == b"connection" and v.lower() == b"close" for k, v in scope["headers"]):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _serve(server: str, port: int) -> None:
    if server == "uvicorn":
        import uvicorn  # noqa: PLC0415

        try:
            import uvloop  # noqa: F401, PLC0415

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
        uvicorn.run(
            "bench.http_servers:asgi_app",
            host="127.0.0.1",
            port=port,
            http="httptools",
            loop=loop,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
    elif server == "granian":
        from granian import Granian  # noqa: PLC0415
        from granian.constants import Interfaces  # noqa: PLC0415

        Granian(
            "bench.http_servers:asgi_app",
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGI,
            workers=1,
            log_enabled=False,
        ).serve()
    elif server == "aiohttp":
        from aiohttp import web  # noqa: PLC0415

        async def sign(request: web.Request) -> web.Response:
            payload = _answer(await request.read())
            headers = {"Connection": "close"} if request.headers.get("Connection", "").lower() == "close" else None
            return web.Response(body=payload, content_type="application/json", headers=headers)

        app = web.Application()
        app.router.add_post("/api/v1/eth2/sign/{pubkey}", sign)
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    else:
        raise SystemExit(f"unknown server {server}")


# --- measuring ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_cpu_s(root: int) -> float:
    """utime+stime (s) of ``root`` and its live descendants; children's cutime/cstime excluded."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo += [p for p, (ppid, _) in stats.items() if ppid == pid]
    return total


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not listen in time")


def _request_bytes(close: bool) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: */*\r\n"
        f"Content-Length: {len(BODY)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode() + BODY


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _check_connection_close(port: int) -> str:
    """'ok', or what is wrong with the server's handling of ``Connection: close``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request_bytes(close=True))
        await writer.drain()
        status, headers, body = await asyncio.wait_for(_read_response(reader), 10)
        if status != 200 or json.loads(body).get("signature") != SIGNATURE:
            return f"bad answer {status} {body[:80]!r}"
        if headers.get("connection", "").lower() != "close":
            return "no 'Connection: close' in the response"
        rest = await asyncio.wait_for(reader.read(), 5)
        return "ok" if rest == b"" else "socket not closed after the answer"
    except TimeoutError:
        return "socket not closed after the answer (timeout)"
    finally:
        writer.close()


async def _load(port: int, in_flight: int, seconds: float, close: bool) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    request = _request_bytes(close)

    async def worker() -> None:
        nonlocal errors
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", port)
                reader, writer = conn
                writer.write(request)
                status, _, _ = await _read_response(reader)
                if status != 200:
                    errors += 1
                if close:
                    writer.close()
                    conn = None
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                conn = None
                continue
            latencies.append(time.perf_counter() - started)
        if conn is not None:
            conn[1].close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }


def _loadgen_main(port: int, in_flight: int, seconds: float, close: bool) -> None:
    print(json.dumps(asyncio.run(_load(port, in_flight, seconds, close))))


def _check_main(port: int) -> None:
    print(json.dumps({"connection_close": asyncio.run(_check_connection_close(port))}))


def _run_child(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT, timeout=600
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(server: str, in_flight: int, seconds: float, repeats: int) -> dict[str, Any]:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", server, str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(port, proc)
        result: dict[str, Any] = {"server": server}
        result["connection_close"] = _run_child("check", str(port))["connection_close"]
        for mode, close in (("keep-alive", False), ("close", True)):
            runs = []
            for _ in range(repeats):
                before = _tree_cpu_s(proc.pid)
                load = _run_child("load", str(port), str(in_flight), str(seconds), "1" if close else "0")
                cpu = _tree_cpu_s(proc.pid) - before
                n = max(load["requests"], 1)
                runs.append({**load, "rps": load["requests"] / load["elapsed_s"], "cpu_us": 1e6 * cpu / n})
            best = sorted(runs, key=lambda r: r["cpu_us"])[len(runs) // 2]
            result[mode] = best
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _available(server: str) -> bool:
    module = {"uvicorn": "httptools", "granian": "granian", "aiohttp": "aiohttp"}[server]
    try:
        __import__(module)
        __import__("orjson")
        if server == "uvicorn":
            __import__("uvicorn")
    except ImportError:
        return False
    return True


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        sys.path.insert(0, str(ROOT))
        _serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        _loadgen_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "check":
        _check_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"in flight {args.in_flight}, {args.seconds} s per run, median of {args.repeats}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    columns = ("req/s", "cpu us/req", "p50 ms", "p99 ms", "errors")
    print(f"{'server':<9} {'Connection: close':<22} {'mode':<11} " + " ".join(f"{c:>11}" for c in columns))
    for server in args.servers.split(","):
        if not _available(server):
            print(f"{server:<9} not installed (pip install -e '.[bench]')")
            continue
        result = measure(server, args.in_flight, args.seconds, args.repeats)
        for mode in ("keep-alive", "close"):
            r = result[mode]
            print(
                f"{server:<9} {result['connection_close']:<22} {mode:<11} {r['rps']:>11.0f} {r['cpu_us']:>11.0f} "
                f"{r['p50_ms']:>11.2f} {r['p99_ms']:>11.2f} {r['errors']:>11}"
            )


if __name__ == "__main__":
    main()
