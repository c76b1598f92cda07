"""The REST front: the ASGI app (Starlette routing, orjson bodies) and what every route group shares.

``build_rest_app(rest, route_groups)`` is THE seam where route groups are mounted: ``signer/app.py``
builds the list (``Web3SignerApi(...).routes()`` for the remote-signing API; the Keymanager API's
``/eth/v1/keystores`` routes go beside it) and passes it here. A route group is a list of
Starlette routes made with ``RestContext.route``, so every route of every group gets the same
pipeline, the REST counterpart of the gRPC interceptor:

1. who is calling: the identity the HTTP server put in the scope (``signer.api.http_server``): the
   client certificate's CN and SANs under TLS, ``local`` on a plaintext loopback listener, none for
   a TLS caller without a certificate (refused with 403 unless the route says ``needs_client=False``,
   as a bearer-token route would);
2. a request id (the caller's ``x-request-id`` if short and plain, else a new one);
3. the rate limiter's permit (429 with ``Retry-After`` when refused, counted and audited as on gRPC),
   held until the answer is ready;
4. the body, bounded by ``server.max_message_bytes``;
5. the handler, on a bounded thread pool (``server.http_workers``): the event loop never waits for
   the core, and concurrent requests reach the batcher concurrently, so they coalesce;
6. a SignerError from the handler becomes its HTTP status from the one error -> wire table
   (``signer.api.status.http_status``) and a JSON body ``{"message": ...}`` naming the problem;
   anything else is a bug: 500, logged with the request id. Every request gets an answer;
7. ``monitor.request_done(method, outcome, duration)``: the same metrics as gRPC, ``method`` being
   the route's label (``Web3Signer/ATTESTATION`` ...).

HTTP-specific code stays here (and in the route groups): they translate, the core decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from signer import errors
from signer.api import status
from signer.api.http_server import PEER_ERROR_KEY, PEER_KEY
from signer.api.interceptors import request_id_of
from signer.api.ratelimit import Permit, RateLimiter
from signer.types import AuditEvent, AuditSink, ClientIdentity, Monitor, NullAudit, RequestOutcome

log = logging.getLogger(__name__)

JSON = "application/json"
TEXT = "text/plain"

RouteGroup = Sequence[BaseRoute]
"""One group of routes (the Web3Signer API, the Keymanager API), made with ``RestContext.route``."""


@dataclass(slots=True)
class RestCall:
    """One request as a handler sees it (plain data: handlers run on the worker pool)."""

    client: ClientIdentity | None
    """None only on ``needs_client=False`` routes, for a TLS caller without a certificate."""
    request_id: str
    method: str
    """The metrics and audit label; a handler may refine it (the sign type, once parsed)."""
    path_params: dict[str, Any]
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    outcome: RequestOutcome | None = field(default=None)
    """The outcome label, when the handler answers a refusal itself (else derived)."""

    @property
    def wants_json(self) -> bool:
        return accepts_json(self.headers.get("accept"))


Handler = Callable[[RestCall], Response]


def accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header allows a JSON answer: it names application/json, application/*
    or */* (without q=0). No header: False (Teku and Prysm send none and read text/plain)."""
    if not accept:
        return False
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() not in (JSON, "application/*", "*/*"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            return True
    return False


def json_response(content: object, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type=JSON, headers=headers)


def error_response(error: errors.SignerError, request_id: str | None = None) -> Response:
    """The HTTP answer to a refusal: status from the one table, JSON body naming the problem."""
    headers = {"Retry-After": status.retry_after_header(error)} if isinstance(error, errors.RateLimited) else None
    body: dict[str, object] = {"message": status.describe(error)}
    if isinstance(error, errors.NotSafeToSign):
        body["offence"] = error.offence
    if request_id is not None:
        body["request_id"] = request_id
    return json_response(body, status.http_status(error), headers)


class RestContext:
    """What every REST route group shares: identity, rate limits, worker pool, metrics and audit."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        monitor: Monitor,
        *,
        audit: AuditSink | None = None,
        workers: int = 64,
        max_body_bytes: int = 4 * 1024 * 1024,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.limiter = limiter
        self.monitor = monitor
        self.audit: AuditSink = audit or NullAudit()
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rest")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def route(
        self,
        path: str,
        handler: Handler,
        *,
        methods: Sequence[str],
        label: str,
        needs_client: bool = True,
        rated: bool = True,
        blocking: bool = True,
    ) -> Route:
        """A route whose requests go through the pipeline of the module doc. ``label`` names it in
        metrics and the audit log; ``rated=False`` takes the in-flight slot but no tokens (health
        and liveness); ``blocking=False`` runs the handler on the event loop (only for handlers that
        do no I/O and wait for nothing)."""

        async def endpoint(request: Request) -> Response:
            return await self._serve(
                request, handler, label=label, needs_client=needs_client, rated=rated, blocking=blocking
            )

        return Route(path, endpoint, methods=list(methods), name=label)

    async def _serve(
        self, request: Request, handler: Handler, *, label: str, needs_client: bool, rated: bool, blocking: bool
    ) -> Response:
        started = self._clock()
        scope = request.scope
        headers = request.headers
        call = RestCall(
            client=scope.get(PEER_KEY),
            request_id=request_id_of(headers.get("x-request-id")),
            method=label,
            path_params=dict(request.path_params),
            query=dict(request.query_params),
            headers=dict(headers),
        )
        permit: Permit | None = None
        try:
            try:
                if call.client is None and needs_client:
                    peer_error = scope.get(PEER_ERROR_KEY)
                    raise (
                        peer_error
                        if isinstance(peer_error, errors.AccessDenied)
                        else errors.AccessDenied(
                            "this call needs a client certificate (the TLS handshake carried none)"
                        )
                    )
                if self.limiter is not None:
                    who = call.client if call.client is not None else ClientIdentity(name="anonymous")
                    permit = self.limiter.acquire(who, 1, rate=rated)
                call.body = await self._body(request)
                if blocking:
                    loop = asyncio.get_running_loop()
                    response = await loop.run_in_executor(self.pool, handler, call)
                else:
                    response = handler(call)
            except errors.RateLimited as exc:
                self._rate_limited(call, exc, started)
                call.outcome = RequestOutcome.RATE_LIMITED
                response = error_response(exc, call.request_id)
            except errors.SignerError as exc:
                call.outcome = call.outcome or status.outcome_label(exc)
                response = error_response(exc, call.request_id)
            except ClientDisconnect:  # the caller left while sending its body: nothing was done
                call.outcome = RequestOutcome.INVALID
                response = error_response(errors.MalformedRequest("the client closed the connection mid-request"))
            except Exception:
                log.exception("unexpected error in %s (request %s)", call.method, call.request_id)
                call.outcome = RequestOutcome.FAILED
                response = error_response(
                    errors.InternalError(f"internal error (request {call.request_id})"), call.request_id
                )
        finally:
            if permit is not None:
                permit.release()
        outcome = call.outcome or (RequestOutcome.SUCCEEDED if response.status_code < 400 else RequestOutcome.FAILED)
        self.monitor.request_done(call.method, outcome, self._clock() - started)
        return response

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise errors.MalformedRequest(
                f"request body of {declared} bytes is over the limit of {self.max_body_bytes} bytes"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise errors.MalformedRequest(f"request body is over the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _rate_limited(self, call: RestCall, exc: errors.RateLimited, started: float) -> None:
        name = call.client.name if call.client is not None else "anonymous"
        self.monitor.rate_limited(name)
        self.audit.record(
            AuditEvent(
                client=name,
                method=call.method,
                outcome=RequestOutcome.RATE_LIMITED,
                reason=exc.message,
                duration_ms=(self._clock() - started) * 1000.0,
                request_id=call.request_id,
            )
        )


async def _not_found(request: Request, exc: Exception) -> Response:
    return json_response({"message": f"no such endpoint: {request.method} {request.url.path}"}, 404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return json_response({"message": f"method {request.method} is not allowed on {request.url.path}"}, 405)


def build_rest_app(route_groups: Sequence[RouteGroup]) -> Starlette:
    """THE seam: the ASGI app serving every route group given (signer/app.py builds the list)."""
    routes: list[BaseRoute] = [route for group in route_groups for route in group]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {404: _not_found, 405: _not_allowed}
    return Starlette(routes=routes, exception_handlers=handlers)
