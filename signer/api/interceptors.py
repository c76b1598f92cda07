"""The CallGuard: identity, rate limit, in-flight permit, stream caps, duration and outcome of every
gRPC call, and how busy the worker threads are.

Wrapped once, at registration, not intercepted per call. A grpc.ServerInterceptor's
``intercept_service`` runs for every call and builds closures and a new RpcMethodHandler each time
(~3% of the server's GIL time under load). Instead, ``GuardedServer`` stands in for the grpc.Server
while servicers are added: the generated ``add_*Servicer_to_server`` functions (Signer, Lister,
AccountManager, privval, admin, DKG, gRPC health, reflection: everything GrpcServer registers) hand
it each service's method table, ``add_registered_method_handlers`` wraps every handler once
(``CallGuard.wrap``), and the real server gets the wrapped handlers both as registered methods (which
gRPC matches first, by exact path) and as the service's generic handler. The generated code also
passes its own generic handler of the unwrapped methods; that one is held back, and ``start()``
refuses to run while any is still waiting for its method table, so no handler reaches the server
unguarded. A generic handler that is not a service's table cannot be wrapped and is refused when
added. Unknown methods find no handler and gRPC answers UNIMPLEMENTED, as before.

Per call, ONE wrapper runs: ``unary_response`` for unary-unary and stream-unary methods,
``stream_response`` (a generator, which holds everything until the stream ends) for unary-stream
and stream-stream. Inline, it:

1. counts the call as running on a worker thread (``running``, ``stalled_s``: readiness);
2. determines the client identity (``tls.client_identity``: certificate CN and SANs, or
   LOCAL_CLIENT on a plaintext port) and a request id (the caller's ``x-request-id`` if it is short
   and plain, otherwise a new one);
3. for a streaming call (either side streams: it holds a worker thread for as long as it is open),
   takes a stream slot (``limits.max_streams`` overall, ``max_streams_per_client``);
4. takes a permit (``RateLimiter.admit``: items = the longest repeated field of the request, so a
   batch of 100 costs 100 tokens; gRPC health and reflection take the in-flight slot but no tokens,
   so a client over its rate still sees the health status); a refusal ends the call with its status
   (RESOURCE_EXHAUSTED with trailing metadata ``retry-after-ms``, ``monitor.rate_limited(client)``
   and an audit line for a rate limit);
5. leaves a ``CallState`` (client, request id, outcome) on the ServicerContext for the servicer;
6. runs the servicer; an escaping SignerError becomes its status (signer.api.status), any other
   exception INTERNAL without details, logged with the request id;
7. gives the permit and slot back and reports ``monitor.request_done(method, outcome, duration_s)``,
   method being the short gRPC method name, outcome what the servicer set (``CallState.outcome``),
   else what the status code says.

``call_client`` / ``call_request_id`` / ``set_outcome`` read and write the CallState for servicers
that do not hold it; ``request_id_of`` is the request-id rule for the REST front's header.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import grpc

from signer.api import status
from signer.api.context import CALL_STATE, CallState
from signer.api.ratelimit import RateLimiter, StreamPermit
from signer.api.tls import client_identity
from signer.errors import RateLimited, SignerError
from signer.types import AuditEvent, AuditSink, ClientIdentity, Monitor, NullAudit, NullMonitor, RequestOutcome

log = logging.getLogger(__name__)

UNRATED_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Services whose calls take no rate-limit tokens (still identified, in-flight and stream capped)."""

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

_CODE_OUTCOMES: dict[grpc.StatusCode, RequestOutcome] = {
    grpc.StatusCode.OK: RequestOutcome.SUCCEEDED,
    grpc.StatusCode.INVALID_ARGUMENT: RequestOutcome.INVALID,
    grpc.StatusCode.OUT_OF_RANGE: RequestOutcome.INVALID,
    grpc.StatusCode.NOT_FOUND: RequestOutcome.DENIED,
    grpc.StatusCode.PERMISSION_DENIED: RequestOutcome.DENIED,
    grpc.StatusCode.UNAUTHENTICATED: RequestOutcome.DENIED,
    grpc.StatusCode.FAILED_PRECONDITION: RequestOutcome.DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RequestOutcome.RATE_LIMITED,
    grpc.StatusCode.UNAVAILABLE: RequestOutcome.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: RequestOutcome.UNAVAILABLE,
}


# --- what servicers call ----------------------------------------------------------------------


def _state(context: grpc.ServicerContext) -> CallState | None:
    found = getattr(context, CALL_STATE, None)
    return found if isinstance(found, CallState) else None


def set_outcome(context: grpc.ServicerContext, outcome: str) -> None:
    """Record the outcome label of this call (e.g. ``status.worst_outcome`` of a batch)."""
    state = _state(context)
    if state is not None:
        state.outcome = outcome


def call_client(context: grpc.ServicerContext) -> ClientIdentity:
    """The identity the guard determined (computed afresh when no guard ran)."""
    state = _state(context)
    return state.client if state is not None else client_identity(context)


def call_request_id(context: grpc.ServicerContext) -> str | None:
    state = _state(context)
    return state.request_id if state is not None else None


# --- helpers ----------------------------------------------------------------------------------


def method_name(full_method: str) -> str:
    """``/v1.Signer/SignBeaconAttestations`` -> ``SignBeaconAttestations``."""
    return full_method.rsplit("/", 1)[-1] or full_method


def repeated_fields(descriptor: object) -> tuple[str, ...]:
    """Names of the repeated fields of a message descriptor (none for anything else)."""
    return tuple(
        field.name
        for field in getattr(descriptor, "fields", ())
        if getattr(field, "is_repeated", False) or getattr(field, "label", None) == 3
    )


def count_items(request: object) -> int:
    """Items in a request: the length of its longest repeated field, at least 1."""
    longest = 1
    for name in repeated_fields(getattr(request, "DESCRIPTOR", None)):
        longest = max(longest, len(getattr(request, name)))
    return longest


def outcome_for_code(code: grpc.StatusCode | None) -> RequestOutcome:
    if code is None:
        return RequestOutcome.SUCCEEDED
    return _CODE_OUTCOMES.get(code, RequestOutcome.FAILED)


def request_id_of(value: str | None) -> str:
    """The caller's request id (gRPC metadata or HTTP header ``x-request-id``) if it is short and
    plain, else a new one."""
    if value is not None and _REQUEST_ID_RE.fullmatch(value):
        return value
    return os.urandom(8).hex()  # 16 random hex digits, as uuid4().hex[:16] gave, at a fifth of the cost


def _context_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    getter = getattr(context, "code", None)
    if getter is None:
        return None
    code = getter()
    return code if isinstance(code, grpc.StatusCode) else None


# --- the guard --------------------------------------------------------------------------------


class CallGuard:
    """Identity, rate limits, in-flight and stream caps, duration and outcome for every call, by
    wrapping each method handler once (``wrap``, through ``GuardedServer``)."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        monitor: Monitor | None = None,
        *,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.perf_counter,
        unrated_prefixes: tuple[str, ...] = UNRATED_PREFIXES,
    ) -> None:
        self.limiter = limiter
        self.monitor: Monitor = monitor or NullMonitor()
        self.audit: AuditSink = audit or NullAudit()
        self.clock = clock
        self._unrated = unrated_prefixes
        self.wrapped = 0
        """Method handlers wrapped so far: one per registered method, never per call."""
        self.busy_lock = threading.Lock()
        self.busy = 0
        """Calls running on worker threads now (guarded by ``busy_lock``)."""
        self.progress = time.monotonic()
        """When a call last finished on a worker (or every worker became busy)."""

    # --- how busy the worker threads are ------------------------------------------------------

    @property
    def running(self) -> int:
        """Calls running on worker threads now (streams included)."""
        return self.busy

    def stalled_s(self, workers: int) -> float:
        """How long every one of ``workers`` threads has been busy with no call finishing; 0 if a
        worker is free. A server stalled for long cannot take calls (not ready)."""
        with self.busy_lock:
            if self.busy < workers:
                return 0.0
            return time.monotonic() - self.progress

    # --- wrapping, once per method ------------------------------------------------------------

    def wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:  # type: ignore[type-arg]
        """The guarded handler of ``full_method`` (``/package.Service/Method``)."""
        guarded = _GuardedMethod(self, full_method, handler)
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.request_streaming and handler.response_streaming:
            wrapped = grpc.stream_stream_rpc_method_handler(guarded.stream_response, **kwargs)
        elif handler.response_streaming:
            wrapped = grpc.unary_stream_rpc_method_handler(guarded.stream_response, **kwargs)
        elif handler.request_streaming:
            wrapped = grpc.stream_unary_rpc_method_handler(guarded.unary_response, **kwargs)
        else:
            wrapped = grpc.unary_unary_rpc_method_handler(guarded.unary_response, **kwargs)
        self.wrapped += 1
        return wrapped

    # --- the rare paths of a call (refused, failed) -------------------------------------------

    def refuse(
        self,
        context: grpc.ServicerContext,
        method: str,
        exc: SignerError,
        *,
        client: ClientIdentity | None,
        request_id: str,
        started: float,
    ) -> NoReturn:
        """End a call that was not admitted: report it and abort with the refusal's status (a rate
        limit: also ``monitor.rate_limited``, an audit line and the retry-after trailer)."""
        duration_s = self.clock() - started
        if isinstance(exc, RateLimited) and client is not None:
            self.monitor.rate_limited(client.name)
            self.audit.record(
                AuditEvent(
                    client=client.name,
                    method=method,
                    outcome=RequestOutcome.RATE_LIMITED,
                    reason=exc.message,
                    duration_ms=duration_s * 1000.0,
                    request_id=request_id,
                )
            )
        self.monitor.request_done(method, status.outcome_label(exc), duration_s)
        status.abort(context, exc)
        raise exc  # context.abort has raised already; this is for the reader and the type checker

    def failed(self, context: grpc.ServicerContext, method: str, state: CallState, exc: BaseException) -> None:
        """A servicer raised ``exc``: abort with the status it stands for, or return to re-raise it
        as it is (the servicer aborted itself, or it is not an Exception). Sets the outcome label
        unless the servicer did."""
        code = _context_code(context)
        if not isinstance(exc, Exception) or code not in (None, grpc.StatusCode.OK):
            if state.outcome is None:
                state.outcome = outcome_for_code(code) if code is not None else RequestOutcome.FAILED
            return
        if isinstance(exc, SignerError):
            if state.outcome is None:
                state.outcome = status.outcome_label(exc)
            context.abort(status.grpc_code(exc), exc.message)
        if state.outcome is None:
            state.outcome = RequestOutcome.FAILED
        log.exception("unexpected error in %s (request %s)", method, state.request_id, exc_info=exc)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error (request {state.request_id})")


class _GuardedMethod:
    """One registered method under the guard: what its wrapper needs, fixed at registration; its
    ``unary_response`` / ``stream_response`` is the handler gRPC calls."""

    __slots__ = ("behaviour", "guard", "method", "rated", "repeated", "streaming")

    def __init__(self, guard: CallGuard, full_method: str, handler: grpc.RpcMethodHandler) -> None:  # type: ignore[type-arg]
        behaviour = {
            (False, False): handler.unary_unary,
            (False, True): handler.unary_stream,
            (True, False): handler.stream_unary,
            (True, True): handler.stream_stream,
        }[(bool(handler.request_streaming), bool(handler.response_streaming))]
        if not callable(behaviour):
            raise TypeError(f"gRPC method handler of {full_method} without a behaviour for its streaming kind")
        self.guard = guard
        self.behaviour: Callable[[Any, grpc.ServicerContext], Any] = behaviour
        self.method = method_name(full_method)
        self.rated = not full_method.startswith(guard._unrated)
        self.streaming = bool(handler.request_streaming or handler.response_streaming)
        empty = handler.request_deserializer(b"") if handler.request_deserializer is not None else None
        self.repeated = () if handler.request_streaming else repeated_fields(getattr(empty, "DESCRIPTOR", None))
        """The request's repeated fields (read from an empty request): the longest is the number of
        items; a streamed request is 1 item."""

    def unary_response(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The wrapper of a unary-unary or stream-unary method (``request`` is then an iterator)."""
        state, stream, started = self._enter(request, context)
        try:
            return self.behaviour(request, context)
        except BaseException as exc:
            self.guard.failed(context, self.method, state, exc)
            raise
        finally:
            self._leave(context, state, stream, started)

    def stream_response(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """The wrapper of a unary-stream or stream-stream method: ``unary_response`` with
        ``yield from``, so the permit, the slot and the busy count are held until the stream ends."""
        state, stream, started = self._enter(request, context)
        try:
            yield from self.behaviour(request, context)
        except BaseException as exc:
            self.guard.failed(context, self.method, state, exc)
            raise
        finally:
            self._leave(context, state, stream, started)

    def _enter(self, request: Any, context: grpc.ServicerContext) -> tuple[CallState, StreamPermit | None, float]:
        """Count the call as busy, identify it and take its permits; a refusal aborts the call
        (``guard.refuse`` reports it) and leaves nothing held."""
        guard, limiter = self.guard, self.guard.limiter
        started = guard.clock()
        with guard.busy_lock:
            guard.busy += 1
        client, stream = None, None
        try:
            items = 1
            for name in self.repeated:
                items = max(items, len(getattr(request, name)))
            request_id = None
            for key, value in context.invocation_metadata():
                if key == REQUEST_ID_KEY:
                    request_id = value if isinstance(value, str) and _REQUEST_ID_RE.fullmatch(value) else None
                    break
            request_id = request_id or os.urandom(8).hex()  # as request_id_of, without a call per request
            try:
                client = client_identity(context)
                if limiter is not None:
                    stream = limiter.acquire_stream(client) if self.streaming else None
                    limiter.admit(client, items, rate=self.rated)
            except SignerError as exc:
                if stream is not None:
                    stream.release()
                guard.refuse(context, self.method, exc, client=client, request_id=request_id, started=started)
        except BaseException:
            with guard.busy_lock:
                guard.busy -= 1
                guard.progress = time.monotonic()
            raise
        state = CallState(client, request_id)
        setattr(context, CALL_STATE, state)
        return state, stream, started

    def _leave(
        self, context: grpc.ServicerContext, state: CallState, stream: StreamPermit | None, started: float
    ) -> None:
        """Release the permits, report the call's outcome and duration, and count it as done."""
        guard, limiter = self.guard, self.guard.limiter
        try:
            if limiter is not None:
                limiter.release()
                if stream is not None:
                    stream.release()
            outcome = state.outcome if state.outcome is not None else outcome_for_code(_context_code(context))
            guard.monitor.request_done(self.method, outcome, guard.clock() - started)
        finally:
            with guard.busy_lock:
                guard.busy -= 1
                guard.progress = time.monotonic()


# --- the server that wraps what is added to it --------------------------------------------------


class GuardedServer(grpc.Server):
    """A grpc.Server whose every method handler is wrapped by ``guard`` once, as it is added."""

    def __init__(self, server: grpc.Server, guard: CallGuard) -> None:
        self.server = server
        self.guard = guard
        self._waiting: dict[str, grpc.GenericRpcHandler] = {}  # type: ignore[type-arg]
        """Generic handlers of the generated code, held back until their method table arrives."""

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:  # type: ignore[type-arg]
        for handler in generic_rpc_handlers:
            if not isinstance(handler, grpc.ServiceRpcHandler):
                raise TypeError(
                    f"{handler!r} is not a service's method table: the call guard cannot wrap it, and "
                    "an unwrapped handler would skip identity, limits and metrics"
                )
            self._waiting[handler.service_name()] = handler

    def add_registered_method_handlers(
        self,
        service_name: str,
        method_handlers: dict[str, grpc.RpcMethodHandler],  # type: ignore[type-arg]
    ) -> None:
        wrapped = {name: self.guard.wrap(f"/{service_name}/{name}", h) for name, h in method_handlers.items()}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service_name, wrapped),))
        self.server.add_registered_method_handlers(service_name, wrapped)  # type: ignore[attr-defined]
        self._waiting.pop(service_name, None)

    def add_insecure_port(self, address: str) -> int:
        return self.server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self.server.add_secure_port(address, server_credentials)

    def start(self) -> None:
        if self._waiting:
            raise TypeError(
                f"services {sorted(self._waiting)} were added without their method tables: the call guard "
                "could not wrap them"
            )
        self.server.start()

    def stop(self, grace: float | None = None) -> threading.Event:
        return self.server.stop(grace)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)
