"""What Starlette's routing costs per request over a tiny hand-written ASGI dispatch:

    python bench/rest_routing.py

Both apps answer a Web3Signer-shaped POST /api/v1/eth2/sign/0x<pubkey> (600-byte body read, a small
JSON answer) when called directly as ASGI apps in one event loop (no server, no sockets), so the
difference is the routing and request/response objects alone. CPU time (process_time) per request,
median of 3 runs of 5,000, printed twice. Result and decision in bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def ep(request: Request) -> Response:
    assert len(await request.body()) == len(BODY)
    return Response(b'{"signature":"0x00"}', media_type="application/json")


star = Starlette(
    routes=[
        Route("/api/v1/eth2/sign/{identifier}", ep, methods=["POST"]),
        Route("/upcheck", ep),
        Route("/api/v1/eth2/publicKeys", ep),
    ]
)


async def tiny(scope, receive, send):  # type: ignore[no-untyped-def]
    path = scope["path"]
    if scope["method"] == "POST" and path.startswith("/api/v1/eth2/sign/"):
        assert len(path) == 18 + 98  # the 0x-pubkey
        msg = await receive()
        assert len(msg.get("body", b"")) == len(BODY)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"20")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"signature":"0x00"}'})
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b""})


BODY = b"x" * 600


def scope():  # type: ignore[no-untyped-def]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/eth2/sign/0x" + "ab" * 48,
        "raw_path": b"",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }


async def run(app, n):  # type: ignore[no-untyped-def]
    async def receive():  # type: ignore[no-untyped-def]
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(m):  # type: ignore[no-untyped-def]
        pass

    t = time.process_time()
    for _ in range(n):
        await app(scope(), receive, send)
    return (time.process_time() - t) / n * 1e6


async def main() -> None:
    for _ in range(2):
        a = [await run(star, 5000) for _ in range(3)]
        b = [await run(tiny, 5000) for _ in range(3)]
        print(f"starlette {statistics.median(a):.1f} us/request   tiny dispatch {statistics.median(b):.1f} us/request")


if __name__ == "__main__":
    asyncio.run(main())
