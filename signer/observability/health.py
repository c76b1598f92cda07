"""The HTTP side port: ``/metrics``, ``/healthz`` and ``/readyz``.

A stdlib ``ThreadingHTTPServer`` in a daemon thread, on its own listen address (``server.metrics_listen``),
separate from gRPC. ``/healthz`` answers 200 as long as the process can answer at all (liveness);
``/readyz`` asks a readiness callable and answers 200 with its reason when ready, 503 with the reason
otherwise (a callable that raises counts as not ready). The exposition comes from the monitor; this
module never imports prometheus_client itself.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from signer.errors import ConfigError
from signer.observability.metrics import CONTENT_TYPE_LATEST, PrometheusMonitor

Readiness = Callable[[], tuple[bool, str]]

_TEXT = "text/plain; charset=utf-8"


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port). Port 0 asks the OS for a free port."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"listen address {listen!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port_text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    monitor: PrometheusMonitor
    readiness: Readiness


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10
    protocol_version = "HTTP/1.1"
    server_version = "validator-signer"
    sys_version = ""
    routes: ClassVar[dict[str, str]] = {"/metrics": "metrics", "/healthz": "healthz", "/readyz": "readyz"}

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        route = self.routes.get(self.path.split("?", 1)[0])
        if route == "metrics":
            status, content_type, body = HTTPStatus.OK, CONTENT_TYPE_LATEST, self.server.monitor.render()
        elif route == "healthz":
            status, content_type, body = HTTPStatus.OK, _TEXT, b"ok\n"
        elif route == "readyz":
            is_ready, reason = self._readiness()
            status = HTTPStatus.OK if is_ready else HTTPStatus.SERVICE_UNAVAILABLE
            content_type, body = _TEXT, (reason + "\n").encode("utf-8")
        else:
            status, content_type, body = HTTPStatus.NOT_FOUND, _TEXT, b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _readiness(self) -> tuple[bool, str]:
        try:
            is_ready, reason = self.server.readiness()
        except Exception as exc:  # a failing check means not ready, never a crashed endpoint
            return False, f"readiness check failed: {type(exc).__name__}"
        return bool(is_ready), reason or ("ready" if is_ready else "not ready")

    def log_message(self, format: str, *args: object) -> None:
        """Probes and scrapes every few seconds: no access log."""


class MetricsServer:
    """Serves /metrics, /healthz and /readyz on ``listen`` from a daemon thread."""

    def __init__(self, listen: str, monitor: PrometheusMonitor, readiness: Readiness) -> None:
        self.listen = listen
        self._host, self._requested_port = parse_listen(listen)
        self._monitor = monitor
        self._readiness = readiness
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when ``listen`` asked for port 0). Only after start()."""
        if self._server is None:
            raise RuntimeError("MetricsServer is not started")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return self._host

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._server is not None:
            return
        server_class = _V6Server if ":" in self._host else _Server
        try:
            server = server_class((self._host, self._requested_port), _Handler)
        except OSError as exc:
            raise ConfigError(f"metrics server cannot listen on {self.listen}: {exc.strerror}") from exc
        server.monitor = self._monitor
        server.readiness = self._readiness
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
