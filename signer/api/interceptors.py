"""The gRPC server interceptor: identity, rate limit, in-flight permit, stream caps, duration and
outcome per call, and how busy the worker threads are.

For every call, ``SignerInterceptor``:

1. determines the client identity (``tls.client_identity``: certificate CN and SANs, or LOCAL_CLIENT
   on a plaintext port) and a request id (the caller's ``x-request-id`` if it is short and plain,
   otherwise a new one);
2. for a streaming call (either side streams: it holds a worker thread for as long as it is open),
   asks the RateLimiter for a stream slot (``limits.max_streams`` overall, ``max_streams_per_client``);
3. asks the RateLimiter for a permit (items = the longest repeated field of the request, so a batch
   of 100 costs 100 tokens; gRPC health and reflection take the in-flight slot but no tokens, so a
   client over its rate still sees the health status); on refusal it aborts with RESOURCE_EXHAUSTED
   and the trailing metadata ``retry-after-ms``, reports ``monitor.rate_limited(client)`` and writes
   an audit line;
4. holds the permits until the call ends, streaming responses included;
5. reports ``monitor.request_done(method, outcome, duration_s)``, method being the short gRPC
   method name. The outcome is what the servicer set with ``set_outcome(context, outcome)``, else
   it follows from the status code. A SignerError escaping a servicer is turned into its status
   (signer.api.status); any other exception into INTERNAL without details.

It also counts the calls running on worker threads: ``stalled_s(workers)`` says for how long every
worker has been busy with no call finishing (readiness turns false when the server cannot take calls).

Servicers read the identity and request id with ``call_client(context)`` / ``call_request_id(context)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from signer.api import status
from signer.api.ratelimit import Permit, RateLimiter, StreamPermit
from signer.api.status import RETRY_AFTER_KEY
from signer.api.tls import client_identity
from signer.errors import AccessDenied, RateLimited, SignerError
from signer.types import AuditEvent, AuditSink, ClientIdentity, Monitor, NullAudit, NullMonitor, RequestOutcome

log = logging.getLogger(__name__)

UNRATED_PREFIXES: tuple[str, ...] = ("/grpc.health.v1.Health/", "/grpc.reflection.")
"""Services whose calls take no rate-limit tokens (still identified, in-flight and stream capped)."""

REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_STATE_ATTR = "_signer_call_state"

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


@dataclass(slots=True)
class CallState:
    """What the interceptor knows about one call (stored on its ServicerContext)."""

    client: ClientIdentity
    request_id: str
    outcome: str | None = None


# --- what servicers call ----------------------------------------------------------------------


def _state(context: grpc.ServicerContext) -> CallState | None:
    found = getattr(context, _STATE_ATTR, None)
    return found if isinstance(found, CallState) else None


def set_outcome(context: grpc.ServicerContext, outcome: str) -> None:
    """Record the outcome label of this call (e.g. ``status.worst_outcome`` of a batch)."""
    state = _state(context)
    if state is not None:
        state.outcome = outcome


def call_client(context: grpc.ServicerContext) -> ClientIdentity:
    """The identity the interceptor determined (computed afresh when no interceptor ran)."""
    state = _state(context)
    return state.client if state is not None else client_identity(context)


def call_request_id(context: grpc.ServicerContext) -> str | None:
    state = _state(context)
    return state.request_id if state is not None else None


# --- helpers ----------------------------------------------------------------------------------


def method_name(full_method: str) -> str:
    """``/v1.Signer/SignBeaconAttestations`` -> ``SignBeaconAttestations``."""
    return full_method.rsplit("/", 1)[-1] or full_method


_REPEATED_FIELDS: dict[object, tuple[str, ...]] = {}
"""Names of the repeated fields per message descriptor (looked up once per message type)."""


def _repeated_fields(descriptor: object) -> tuple[str, ...]:
    names = _REPEATED_FIELDS.get(descriptor)
    if names is None:
        names = tuple(
            field.name
            for field in getattr(descriptor, "fields", ())
            if getattr(field, "is_repeated", False) or getattr(field, "label", None) == 3
        )
        if descriptor is not None:
            _REPEATED_FIELDS[descriptor] = names
    return names


def count_items(request: object) -> int:
    """Items in a request: the length of its longest repeated field, at least 1."""
    longest = 1
    for name in _repeated_fields(getattr(request, "DESCRIPTOR", None)):
        longest = max(longest, len(getattr(request, name)))
    return longest


def outcome_for_code(code: grpc.StatusCode | None) -> RequestOutcome:
    if code is None:
        return RequestOutcome.SUCCEEDED
    return _CODE_OUTCOMES.get(code, RequestOutcome.FAILED)


def _request_id(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            return request_id_of(value)
    return request_id_of(None)


def request_id_of(value: str | None) -> str:
    """The caller's request id (gRPC metadata or HTTP header ``x-request-id``) if it is short and
    plain, else a new one."""
    if value is not None and _REQUEST_ID_RE.fullmatch(value):
        return value
    return os.urandom(8).hex()  # 16 random hex digits, as uuid4().hex[:16] gave, at a fifth of the cost


def _behaviour(function: object) -> Callable[..., Any]:
    if not callable(function):
        raise TypeError("gRPC method handler without a behaviour for its streaming kind")
    return function


def _context_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    getter = getattr(context, "code", None)
    if getter is None:
        return None
    code = getter()
    return code if isinstance(code, grpc.StatusCode) else None


# --- the interceptor --------------------------------------------------------------------------


class SignerInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Identity, rate limits, in-flight and stream caps, duration and outcome for every call."""

    def __init__(
        self,
        limiter: RateLimiter | None,
        monitor: Monitor | None = None,
        *,
        audit: AuditSink | None = None,
        clock: Callable[[], float] = time.perf_counter,
        items_of: Callable[[object], int] = count_items,
        unrated_prefixes: tuple[str, ...] = UNRATED_PREFIXES,
    ) -> None:
        self.limiter = limiter
        self.monitor: Monitor = monitor or NullMonitor()
        self.audit: AuditSink = audit or NullAudit()
        self._clock = clock
        self._items_of = items_of
        self._unrated = unrated_prefixes
        self._busy_lock = threading.Lock()
        self._running = 0
        self._progress = time.monotonic()
        """When a call last finished on a worker (or every worker became busy)."""

    # --- how busy the worker threads are ------------------------------------------------------

    @property
    def running(self) -> int:
        """Calls running on worker threads now (streams included)."""
        return self._running

    def stalled_s(self, workers: int) -> float:
        """How long every one of ``workers`` threads has been busy with no call finishing; 0 if a
        worker is free. A server stalled for long cannot take calls (not ready)."""
        with self._busy_lock:
            if self._running < workers:
                return 0.0
            return time.monotonic() - self._progress

    @contextlib.contextmanager
    def _on_worker(self) -> Iterator[None]:
        with self._busy_lock:
            self._running += 1
        try:
            yield
        finally:
            with self._busy_lock:
                self._running -= 1
                self._progress = time.monotonic()

    # --- grpc.ServerInterceptor ---------------------------------------------------------------

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],  # type: ignore[type-arg]
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:  # type: ignore[type-arg]
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        full_method = handler_call_details.method
        method = method_name(full_method)
        rated = not full_method.startswith(self._unrated)

        def request_id_of() -> str:
            return _request_id(handler_call_details.invocation_metadata)

        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if not handler.request_streaming and not handler.response_streaming:
            inner_uu = _behaviour(handler.unary_unary)

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                with (
                    self._on_worker(),
                    self._admitted(method, request_id_of(), context, self._items_of(request), rated=rated) as call,
                ):
                    return call.run(lambda: inner_uu(request, context))

            return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
        if not handler.request_streaming:
            inner_us = _behaviour(handler.unary_stream)

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with (
                    self._on_worker(),
                    self._admitted(
                        method, request_id_of(), context, self._items_of(request), rated=rated, streaming=True
                    ) as call,
                ):
                    yield from call.run_stream(lambda: inner_us(request, context))

            return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
        if not handler.response_streaming:
            inner_su = _behaviour(handler.stream_unary)

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                with (
                    self._on_worker(),
                    self._admitted(method, request_id_of(), context, 1, rated=rated, streaming=True) as call,
                ):
                    return call.run(lambda: inner_su(requests, context))

            return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
        inner_ss = _behaviour(handler.stream_stream)

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            with (
                self._on_worker(),
                self._admitted(method, request_id_of(), context, 1, rated=rated, streaming=True) as call,
            ):
                yield from call.run_stream(lambda: inner_ss(requests, context))

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)

    def _admitted(
        self,
        method: str,
        request_id: str,
        context: grpc.ServicerContext,
        items: int,
        *,
        rated: bool,
        streaming: bool = False,
    ) -> _Call:
        """Identify and admit the call (aborting when refused); the result times and reports it."""
        started = self._clock()
        try:
            client = client_identity(context)
        except AccessDenied as exc:
            self.monitor.request_done(method, RequestOutcome.DENIED, self._clock() - started)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        state = CallState(client=client, request_id=request_id)
        setattr(context, _STATE_ATTR, state)
        permit: Permit | None = None
        stream: StreamPermit | None = None
        if self.limiter is not None:
            try:
                if streaming:
                    stream = self.limiter.acquire_stream(client)
                try:
                    permit = self.limiter.acquire(client, items, rate=rated)
                except BaseException:
                    if stream is not None:
                        stream.release()
                    raise
            except RateLimited as exc:
                self._refuse_rate_limited(method, state, context, exc, started)
            except SignerError as exc:
                self.monitor.request_done(method, status.outcome_label(exc), self._clock() - started)
                context.abort(status.grpc_code(exc), exc.message)
        return _Call(self, method=method, state=state, context=context, permit=permit, stream=stream, started=started)

    def _refuse_rate_limited(
        self,
        method: str,
        state: CallState,
        context: grpc.ServicerContext,
        exc: RateLimited,
        started: float,
    ) -> None:
        self.monitor.rate_limited(state.client.name)
        duration_s = self._clock() - started
        self.monitor.request_done(method, RequestOutcome.RATE_LIMITED, duration_s)
        self.audit.record(
            AuditEvent(
                client=state.client.name,
                method=method,
                outcome=RequestOutcome.RATE_LIMITED,
                reason=exc.message,
                duration_ms=duration_s * 1000.0,
                request_id=state.request_id,
            )
        )
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(status.retry_after_ms(exc))),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message)


class _Call:
    """One admitted call: runs the servicer, maps escaping errors, reports at exit."""

    __slots__ = ("_interceptor", "_permit", "_stream", "context", "method", "started", "state")

    def __init__(
        self,
        interceptor: SignerInterceptor,
        *,
        method: str,
        state: CallState,
        context: grpc.ServicerContext,
        permit: Permit | None,
        stream: StreamPermit | None,
        started: float,
    ) -> None:
        self._interceptor = interceptor
        self.method = method
        self.state = state
        self.context = context
        self._permit = permit
        self._stream = stream
        self.started = started

    def __enter__(self) -> _Call:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self._permit is not None:
            self._permit.release()
        if self._stream is not None:
            self._stream.release()
        outcome = self.state.outcome
        if outcome is None:
            code = _context_code(self.context)
            if code is None and exc is not None:
                code = grpc.StatusCode.UNKNOWN
            outcome = outcome_for_code(code)
        monitor = self._interceptor.monitor
        monitor.request_done(self.method, outcome, self._interceptor._clock() - self.started)

    def _translate(self, exc: Exception) -> None:
        """Abort the call with the status that ``exc`` stands for (re-raise aborts as they are)."""
        if _context_code(self.context) not in (None, grpc.StatusCode.OK):
            raise exc  # the servicer aborted (context.abort raises after setting the code)
        if isinstance(exc, SignerError):
            if self.state.outcome is None:
                self.state.outcome = status.outcome_label(exc)
            self.context.abort(status.grpc_code(exc), exc.message)
        log.exception("unexpected error in %s (request %s)", self.method, self.state.request_id)
        self.context.abort(grpc.StatusCode.INTERNAL, f"internal error (request {self.state.request_id})")

    def run(self, behaviour: Callable[[], Any]) -> Any:
        try:
            return behaviour()
        except Exception as exc:
            self._translate(exc)
            raise

    def run_stream(self, behaviour: Callable[[], Iterator[Any]]) -> Iterator[Any]:
        try:
            yield from behaviour()
        except Exception as exc:
            self._translate(exc)
            raise
