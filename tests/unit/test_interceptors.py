"""The CallGuard and GuardedServer: every method handler is wrapped once, at registration, and the one
wrapper per call does what the interceptor did (identity, limits, translation of errors, metrics).

Real in-process gRPC servers on 127.0.0.1:0 (plaintext: the client is LOCAL_CLIENT; mTLS identity
is tested in test_tls.py), with the real RateLimiter, and a recording monitor and audit sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from signer.api._proto.tendermint.privval import service_pb2 as privval_service_pb2
from signer.api._proto.v1 import accountmanager_pb2, lister_pb2, lister_pb2_grpc, signer_pb2
from signer.api.context import CallContext
from signer.api.interceptors import CallGuard, GuardedServer, call_request_id
from signer.api.ratelimit import RateLimiter
from signer.api.server import GrpcServer
from signer.api.status import RETRY_AFTER_KEY
from signer.config import LimitsConfig, RateConfig
from signer.errors import DoubleVote
from signer.service import SigningService
from signer.types import LOCAL_CLIENT
from tests.fakes import RecordingAudit, RecordingMonitor
from tests.support import trailers, wait_for
from tests.unit.test_tls import StubLister

CALL_TIMEOUT_S = 10.0
KINDS = ("UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream")


def _raise(kind: str, error: Exception) -> dict[str, grpc.RpcMethodHandler]:  # type: ignore[type-arg]
    """A raw-bytes service ``test.Boom`` whose method ``kind`` raises ``error`` (after reading its
    request stream, for the client-streaming kinds)."""

    def unary(request: Any, context: grpc.ServicerContext) -> bytes:
        if not isinstance(request, bytes):
            list(request)
        raise error

    def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[bytes]:
        if not isinstance(request, bytes):
            list(request)
        raise error
        yield b""  # a generator, as a streaming behaviour is

    makers: dict[str, Callable[..., grpc.RpcMethodHandler]] = {  # type: ignore[type-arg]
        "UnaryUnary": lambda: grpc.unary_unary_rpc_method_handler(unary),
        "UnaryStream": lambda: grpc.unary_stream_rpc_method_handler(streaming),
        "StreamUnary": lambda: grpc.stream_unary_rpc_method_handler(unary),
        "StreamStream": lambda: grpc.stream_stream_rpc_method_handler(streaming),
    }
    return {kind: makers[kind]()}


def _call(channel: grpc.Channel, kind: str, request_id: str) -> grpc.RpcError:
    """Call ``/test.Boom/<kind>`` (raw bytes) and return the error it ends with."""
    path, raw = f"/test.Boom/{kind}", {"request_serializer": None, "response_deserializer": None}
    options: dict[str, Any] = {"timeout": CALL_TIMEOUT_S, "metadata": (("x-request-id", request_id),)}
    with pytest.raises(grpc.RpcError) as info:
        if kind == "UnaryUnary":
            channel.unary_unary(path, **raw)(b"x", **options)
        elif kind == "UnaryStream":
            list(channel.unary_stream(path, **raw)(b"x", **options))
        elif kind == "StreamUnary":
            channel.stream_unary(path, **raw)(iter([b"x", b"y"]), **options)
        else:
            list(channel.stream_stream(path, **raw)(iter([b"x", b"y"]), **options))
    return info.value


@dataclass
class Running:
    port: int
    server: GuardedServer
    guard: CallGuard
    monitor: RecordingMonitor
    audit: RecordingAudit
    lister: StubLister


@contextmanager
def serve(
    limiter: RateLimiter | None = None,
    extra: dict[str, dict[str, grpc.RpcMethodHandler]] | None = None,  # type: ignore[type-arg]
) -> Iterator[Running]:
    """Lister and gRPC health (and ``extra`` services) on a GuardedServer with 4 workers."""
    monitor, audit = RecordingMonitor(), RecordingAudit()
    guard = CallGuard(limiter, monitor, audit=audit)
    server = GuardedServer(grpc.server(futures.ThreadPoolExecutor(max_workers=4)), guard)
    lister = StubLister()
    lister_pb2_grpc.add_ListerServicer_to_server(lister, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name, handlers in (extra or {}).items():
        server.add_registered_method_handlers(name, handlers)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Running(port, server, guard, monitor, audit, lister)
    finally:
        lister.release.set()
        server.stop(0).wait(5)


# --- wrapping happens once ----------------------------------------------------------------------


def test_each_method_handler_is_wrapped_once_at_registration_not_per_call() -> None:
    methods = 1 + len(health_pb2.DESCRIPTOR.services_by_name["Health"].methods)  # ListAccounts; Check, Watch...
    with serve() as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        assert running.guard.wrapped == methods
        lister = lister_pb2_grpc.ListerStub(channel)
        checker = health_pb2_grpc.HealthStub(channel)
        for _ in range(10):
            lister.ListAccounts(lister_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_S)
            checker.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        watch = checker.Watch(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        next(watch)
        watch.cancel()
        assert running.guard.wrapped == methods
    assert running.monitor.done.count(("ListAccounts", "succeeded")) == 10
    assert running.monitor.done.count(("Check", "succeeded")) == 10


class _Signs:
    """What CallContext needs of a signing service to be built (nothing is signed here)."""

    def sign(self, client: object, requests: object) -> list[object]:
        raise AssertionError("not called")


def test_every_method_of_every_service_the_grpc_server_registers_is_wrapped() -> None:
    service = cast(SigningService, _Signs())
    guard = CallGuard(None, RecordingMonitor())
    server = GrpcServer(service, CallContext(service), workers=2, reflection=True, guard=guard)
    descriptors = [
        signer_pb2.DESCRIPTOR.services_by_name["Signer"],
        lister_pb2.DESCRIPTOR.services_by_name["Lister"],
        accountmanager_pb2.DESCRIPTOR.services_by_name["AccountManager"],
        privval_service_pb2.DESCRIPTOR.services_by_name["PrivValidatorAPI"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
    ]
    reflection_methods = 1  # grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo
    assert guard.wrapped == sum(len(d.methods) for d in descriptors) + reflection_methods
    server.port = server.bind("127.0.0.1:0", None)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(0)
    assert cast(RecordingMonitor, guard.monitor).done == [("Check", "succeeded")]


def test_a_handler_the_guard_cannot_wrap_is_refused_when_added() -> None:
    class Anything(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # not a service's method table
        def service(self, handler_call_details: grpc.HandlerCallDetails) -> None:
            return None

    server = GuardedServer(grpc.server(futures.ThreadPoolExecutor(max_workers=1)), CallGuard(None))
    with pytest.raises(TypeError, match="not a service's method table"):
        server.add_generic_rpc_handlers([Anything()])


def test_a_service_added_without_its_method_table_does_not_start() -> None:
    server = GuardedServer(grpc.server(futures.ThreadPoolExecutor(max_workers=1)), CallGuard(None))
    unguarded = grpc.method_handlers_generic_handler(
        "test.Bare", {"Do": grpc.unary_unary_rpc_method_handler(lambda request, context: request)}
    )
    server.add_generic_rpc_handlers([unguarded])
    with pytest.raises(TypeError, match=r"services \['test.Bare'\] were added without their method tables"):
        server.start()


def test_an_unknown_method_answers_unimplemented() -> None:
    with (
        serve() as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary("/v1.Lister/NoSuchMethod", request_serializer=None, response_deserializer=None)(
            b"", timeout=CALL_TIMEOUT_S
        )
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert running.monitor.done == []


# --- health under the limits ---------------------------------------------------------------------


def test_a_health_check_refused_at_the_in_flight_cap_gets_its_status_and_retry_hint() -> None:
    limiter = RateLimiter(LimitsConfig(max_in_flight=1), ())
    with serve(limiter) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        lister = lister_pb2_grpc.ListerStub(channel)
        blocked = lister.ListAccounts.future(lister_pb2.ListAccountsRequest(paths=["block"]), timeout=CALL_TIMEOUT_S)
        assert running.lister.entered.wait(CALL_TIMEOUT_S)
        with pytest.raises(grpc.RpcError) as info:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        running.lister.release.set()
        blocked.result(timeout=CALL_TIMEOUT_S)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests in flight" in (info.value.details() or "")
    assert trailers(info.value)[RETRY_AFTER_KEY] == "50"
    assert ("Check", "rate_limited") in running.monitor.done
    assert running.monitor.limited == [LOCAL_CLIENT.name]
    [event] = running.audit.events
    assert (event.client, event.method, event.outcome) == (LOCAL_CLIENT.name, "Check", "rate_limited")
    assert limiter.in_flight == 0


def test_a_client_over_its_rate_still_watches_the_health_status() -> None:
    limiter = RateLimiter(LimitsConfig(default_rate=RateConfig(per_second=1, burst=1)), (), clock=lambda: 0.0)
    with serve(limiter) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        lister = lister_pb2_grpc.ListerStub(channel)
        lister.ListAccounts(lister_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_S)
        with pytest.raises(grpc.RpcError) as info:
            lister.ListAccounts(lister_pb2.ListAccountsRequest(), timeout=CALL_TIMEOUT_S)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        wait_for(lambda: running.guard.running == 0, "every call off the workers", CALL_TIMEOUT_S)
    assert limiter.in_flight == 0


# --- errors escaping a servicer, every streaming kind -----------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_in_a_servicer_of_every_streaming_kind_is_internal_with_the_request_id_logged(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RateLimiter(LimitsConfig(), ())
    boom = {"test.Boom": _raise(kind, RuntimeError("secret-looking internals"))}
    with (
        caplog.at_level(logging.ERROR, logger="signer.api.interceptors"),
        serve(limiter, boom) as running,
        grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        error = _call(channel, kind, f"req-{kind}")
        wait_for(lambda: running.guard.running == 0, "every call off the workers", CALL_TIMEOUT_S)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == f"internal error (request req-{kind})"
    [record] = [r for r in caplog.records if r.name == "signer.api.interceptors"]
    assert record.getMessage() == f"unexpected error in {kind} (request req-{kind})"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert running.monitor.done == [(kind, "failed")]
    assert limiter.in_flight == 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_signer_error_in_a_servicer_of_every_streaming_kind_becomes_its_status(kind: str) -> None:
    limiter = RateLimiter(LimitsConfig(), ())
    boom = {"test.Boom": _raise(kind, DoubleVote("a different attestation for target epoch 7 was signed"))}
    with serve(limiter, boom) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        error = _call(channel, kind, "req-1")
        wait_for(lambda: running.guard.running == 0, "every call off the workers", CALL_TIMEOUT_S)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "target epoch 7" in (error.details() or "")
    assert running.monitor.done == [(kind, "denied")]
    assert limiter.in_flight == 0


def test_the_servicer_reads_the_request_id_the_guard_took_from_the_metadata() -> None:
    seen: list[str | None] = []

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(call_request_id(context))
        return request

    handlers = {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    with serve(None, {"test.Echo": handlers}) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        method = channel.unary_unary("/test.Echo/Echo", request_serializer=None, response_deserializer=None)
        method(b"", timeout=CALL_TIMEOUT_S, metadata=(("x-request-id", "abc-123"),))
        method(b"", timeout=CALL_TIMEOUT_S, metadata=(("x-request-id", "bad id"),))
        method(b"", timeout=CALL_TIMEOUT_S)
    assert seen[0] == "abc-123"
    assert all(r is not None and len(r) == 16 and " " not in r for r in seen[1:])
    assert seen[1] != seen[2]
