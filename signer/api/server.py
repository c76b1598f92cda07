"""The gRPC server: every servicer and gRPC health checking (and, when asked, reflection) on one port.

``maximum_concurrent_rpcs`` bounds the calls the server holds, running or waiting for a worker
thread: beyond it gRPC refuses a call at once with RESOURCE_EXHAUSTED instead of queueing it
without limit. Reflection lists every service, so it is off unless the config turns it on
(``serve --dev`` does).

With a ``guard`` (signer.api.interceptors.CallGuard; the app always passes one), the grpc.Server
is a GuardedServer: every method handler of every service added here (the servicers, health,
reflection, the extra servicers) is wrapped once, as it is added, with identity, limits and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection

from signer.api._proto.tendermint.privval import service_pb2 as privval_service_pb2
from signer.api._proto.tendermint.privval import service_pb2_grpc as privval_grpc
from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    lister_pb2,
    lister_pb2_grpc,
    signer_pb2,
    signer_pb2_grpc,
)
from signer.api.cometbft import PrivValidatorServicer
from signer.api.context import CallContext
from signer.api.eth2 import AccountManagerServicer, DistributedFront, ListerServicer, SignerServicer
from signer.api.interceptors import CallGuard, GuardedServer
from signer.service import SigningService

SERVICE_NAMES: tuple[str, ...] = (
    signer_pb2.DESCRIPTOR.services_by_name["Signer"].full_name,
    lister_pb2.DESCRIPTOR.services_by_name["Lister"].full_name,
    accountmanager_pb2.DESCRIPTOR.services_by_name["AccountManager"].full_name,
    privval_service_pb2.DESCRIPTOR.services_by_name["PrivValidatorAPI"].full_name,
)


class GrpcServer:
    """Owns the grpc.Server, its health servicer and the bound port."""

    def __init__(
        self,
        service: SigningService,
        calls: CallContext,
        *,
        workers: int = 8,
        max_message_bytes: int = 4 * 1024 * 1024,
        max_concurrent_rpcs: int | None = None,
        reflection: bool = False,
        guard: CallGuard | None = None,
        extra_servicers: Sequence[tuple[object, object, str]] = (),
        distributed: DistributedFront | None = None,
    ) -> None:
        self.workers = workers
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=max_concurrent_rpcs if max_concurrent_rpcs is not None else 4 * workers,
        )
        self.server: grpc.Server = GuardedServer(server, guard) if guard is not None else server
        signer_pb2_grpc.add_SignerServicer_to_server(SignerServicer(service, calls), self.server)
        lister_pb2_grpc.add_ListerServicer_to_server(ListerServicer(service, calls, distributed), self.server)
        accountmanager_pb2_grpc.add_AccountManagerServicer_to_server(
            AccountManagerServicer(service, calls, distributed), self.server
        )
        privval_grpc.add_PrivValidatorAPIServicer_to_server(PrivValidatorServicer(service, calls), self.server)
        names = list(SERVICE_NAMES)
        for add, servicer, name in extra_servicers:
            add(servicer, self.server)  # type: ignore[operator]
            names.append(name)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = tuple(names)
        self.reflection = reflection
        if reflection:
            grpc_reflection.enable_server_reflection(
                (
                    *self.service_names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    grpc_reflection.SERVICE_NAME,
                ),
                self.server,
            )
        self.set_serving(False)
        self.port = 0

    def bind(self, listen: str, credentials: grpc.ServerCredentials | None) -> int:
        if credentials is None:
            self.port = self.server.add_insecure_port(listen)
        else:
            self.port = self.server.add_secure_port(listen, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")
        return self.port

    def set_serving(self, serving: bool) -> None:
        state = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", state)
        for name in self.service_names:
            self.health.set(name, state)

    def start(self) -> None:
        self.server.start()

    def stop(self, grace_s: float) -> None:
        """Refuse new calls at once, let in-flight calls finish for up to ``grace_s``."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()
