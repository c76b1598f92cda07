"""MetricsServer on a real socket: /metrics, /healthz, /readyz (200 and 503)."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from signer.errors import ConfigError
from signer.observability.health import MetricsServer, parse_listen
from signer.observability.metrics import PrometheusMonitor


class Switch:
    def __init__(self) -> None:
        self.state: tuple[bool, str] = (False, "keys locked")

    def __call__(self) -> tuple[bool, str]:
        return self.state


@pytest.fixture
def monitor() -> PrometheusMonitor:
    return PrometheusMonitor()


@pytest.fixture
def switch() -> Switch:
    return Switch()


@pytest.fixture
def server(monitor: PrometheusMonitor, switch: Switch) -> Iterator[MetricsServer]:
    srv = MetricsServer("127.0.0.1:0", monitor, switch)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def get(server: MetricsServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=5) as resp:  # noqa: S310 (http://127.0.0.1)
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_binds_a_free_port_when_asked_for_port_zero(server: MetricsServer) -> None:
    assert server.port > 0


def test_metrics_serves_the_monitor_registry(server: MetricsServer, monitor: PrometheusMonitor) -> None:
    monitor.request_done("SignBeaconAttestation", "succeeded", 0.002)
    status, content_type, body = get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'signer_requests_total{method="SignBeaconAttestation",outcome="succeeded"} 1.0' in body
    assert "signer_build_info{" in body


def test_healthz_is_200_while_alive_even_when_not_ready(server: MetricsServer) -> None:
    assert get(server, "/healthz")[0] == 200


def test_readyz_follows_the_readiness_callable(server: MetricsServer, switch: Switch) -> None:
    status, _, body = get(server, "/readyz")
    assert (status, body.strip()) == (503, "keys locked")
    switch.state = (True, "keys unlocked, store reachable")
    status, _, body = get(server, "/readyz")
    assert (status, body.strip()) == (200, "keys unlocked, store reachable")
    switch.state = (False, "protection store unreachable")
    status, _, body = get(server, "/readyz")
    assert (status, body.strip()) == (503, "protection store unreachable")


def test_readyz_is_503_when_the_check_raises(monitor: PrometheusMonitor) -> None:
    def broken() -> tuple[bool, str]:
        raise TimeoutError("database host db.internal did not answer")

    with MetricsServer("127.0.0.1:0", monitor, broken) as srv:
        status, _, body = get(srv, "/readyz")
    assert status == 503
    assert body.strip() == "readiness check failed: TimeoutError"


def test_unknown_path_is_404(server: MetricsServer) -> None:
    assert get(server, "/admin")[0] == 404


def test_head_has_no_body(server: MetricsServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("HEAD", "/healthz")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == b""
    finally:
        conn.close()


def test_stop_releases_the_port(monitor: PrometheusMonitor, switch: Switch) -> None:
    first = MetricsServer("127.0.0.1:0", monitor, switch)
    first.start()
    port = first.port
    first.stop()
    second = MetricsServer(f"127.0.0.1:{port}", monitor, switch)
    second.start()
    try:
        assert get(second, "/healthz")[0] == 200
    finally:
        second.stop()


def test_a_busy_port_is_a_config_error(server: MetricsServer, monitor: PrometheusMonitor) -> None:
    with pytest.raises(ConfigError, match="cannot listen on"):
        MetricsServer(f"127.0.0.1:{server.port}", monitor, lambda: (True, "ok")).start()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9090", ("127.0.0.1", 9090)), ("[::1]:0", ("::1", 0)), (":9090", ("0.0.0.0", 9090))],
    ids=["ipv4", "ipv6", "all-interfaces"],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9090", "host:port", "host:70000"], ids=["no-host", "no-port", "too-big"])
def test_parse_listen_refuses_garbage(listen: str) -> None:
    with pytest.raises(ConfigError, match="not host:port"):
        parse_listen(listen)
