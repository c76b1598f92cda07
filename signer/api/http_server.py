"""The REST front's HTTP server: uvicorn (httptools, uvloop) on a thread of its own in the signer
process.

Chosen by measurement (bench/http_servers.py, bench/RESULTS.md): uvicorn with httptools and uvloop
cost the least server CPU per request of the servers tried. It runs its own event loop on its own
thread and installs no signal handlers (the signer's main thread owns SIGTERM/SIGINT/SIGHUP);
``stop()`` asks it to finish: the listener closes at once, requests in flight get up to the grace
period to be answered, idle keep-alive connections are closed.

The socket is bound in ``bind()`` on the caller's thread, so a port in use fails start-up with a
named error before "signer ready", and port 0 reports the port the OS chose.

Who is calling: under TLS the client certificate is read once per connection, right after the
handshake (``connection_made``), and put into each request's ASGI scope as ``PEER_KEY``:
a ``ClientIdentity``, None for a TLS caller without a certificate (client certificates optional),
or ``LOCAL_CLIENT`` on a plaintext listener (loopback only, as on gRPC).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from signer.api.tls import ReloadingSslContext, identity_from_peercert
from signer.errors import AccessDenied, ConfigError
from signer.types import LOCAL_CLIENT, ClientIdentity

log = logging.getLogger(__name__)
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # its start/stop chatter; errors still show

PEER_KEY = "signer.peer"
"""ASGI scope key: the caller's ClientIdentity (None: a TLS caller without a certificate)."""
PEER_ERROR_KEY = "signer.peer_error"
"""ASGI scope key: why the caller's certificate names no client (AccessDenied), if it does not."""

START_TIMEOUT_S = 10.0


class _SignerHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the caller's identity in every request's scope."""

    _peer: ClientIdentity | None = LOCAL_CLIENT
    _peer_error: AccessDenied | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None:
            try:
                self._peer = identity_from_peercert(transport.get_extra_info("peercert"))
            except AccessDenied as exc:
                self._peer, self._peer_error = None, exc

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[PEER_KEY] = self._peer  # type: ignore[literal-required]
        if self._peer_error is not None:
            self.scope[PEER_ERROR_KEY] = self._peer_error  # type: ignore[literal-required]


class HttpServer:
    """Serves one ASGI app on ``listen`` (host, port: ``parse_listen`` of server.http_listen), plaintext
    or TLS (``ssl_context``), from its own thread."""

    def __init__(
        self,
        app: Any,
        listen: tuple[str, int],
        *,
        ssl_context: ReloadingSslContext | None = None,
        shutdown_grace_s: float = 10.0,
        max_body_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.host, self.listen_port = listen
        self.listen = f"{self.host}:{self.listen_port}"
        self.ssl_context = ssl_context
        self.max_body_bytes = max_body_bytes
        tls = ssl_context.context if ssl_context is not None else None
        self.config = uvicorn.Config(
            app,
            http=_SignerHttpProtocol,
            ws="none",
            loop="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=max(1, round(shutdown_grace_s)),
            ssl_context_factory=(lambda _config, _default: tls) if tls is not None else None,
        )
        self.server = uvicorn.Server(self.config)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.port = 0

    def bind(self) -> int:
        host, port = self.host, self.listen_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"server.http_listen: cannot listen on {self.listen}: {exc.strerror}") from exc
        sock.set_inheritable(False)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        return self.port

    def start(self) -> None:
        """Serve on the bound socket from a new thread; returns once it accepts connections."""
        if self._sock is None:
            self.bind()
        sock = self._sock
        assert sock is not None

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    runner.run(self.server.serve(sockets=[sock]))
            except BaseException as exc:  # reported to start() / the log, never lost
                self._failure = exc
                log.exception("the REST server stopped with an error")

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if self._failure is not None or not self._thread.is_alive():
                raise ConfigError(
                    f"server.http_listen: the REST server on {self.listen} did not start: {self._failure}"
                )
            if time.monotonic() > deadline:
                raise ConfigError(f"server.http_listen: the REST server on {self.listen} did not start in time")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop accepting, answer what is in flight (up to the grace period), close, join."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join((self.config.timeout_graceful_shutdown or 0) + 5.0)
        if self._sock is not None:
            self._sock.close()
