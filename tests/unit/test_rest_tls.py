"""The REST front's listener (signer.api.http_server, real uvicorn in this process) and its TLS
(signer.api.tls.ReloadingSslContext): who the caller is, client certificates required or optional,
the same reloading certificate files as gRPC, a clean stop that answers what is in flight.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from signer.api.http_server import PEER_KEY, HttpServer
from signer.api.tls import ReloadingSslContext, identity_from_peercert
from signer.errors import AccessDenied, ConfigError
from signer.types import ClientIdentity
from tests.certs import CertPair, Pki, make_pki
from tests.unit.test_tls import replace_file

TIMEOUT_S = 10.0


async def whoami(request: Request) -> JSONResponse:
    peer = request.scope.get(PEER_KEY)
    return JSONResponse({"client": None if peer is None else peer.name, "alt": list(peer.alt_names) if peer else []})


release = threading.Event()
entered = threading.Event()


async def slow(request: Request) -> JSONResponse:
    import asyncio  # noqa: PLC0415

    entered.set()
    while not release.is_set():
        await asyncio.sleep(0.01)
    return JSONResponse({"done": True})


APP = Starlette(routes=[Route("/whoami", whoami), Route("/slow", slow)])


@contextmanager
def serving(ssl_context: ReloadingSslContext | None) -> Iterator[HttpServer]:
    server = HttpServer(APP, ("127.0.0.1", 0), ssl_context=ssl_context, shutdown_grace_s=5)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def client_context(pki: Pki, client: CertPair | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


def whoami_over(pki: Pki, port: int, client: CertPair | None) -> dict[str, object]:
    with httpx.Client(verify=client_context(pki, client), timeout=TIMEOUT_S) as http:
        response = http.get(f"https://127.0.0.1:{port}/whoami")
    assert response.status_code == 200
    result: dict[str, object] = response.json()
    return result


def served_cn(pki: Pki, port: int, client: CertPair) -> str:
    ctx = client_context(pki, client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):  # an IP: no SNI sent
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, clients=("vc-1", "vc-2"), client_sans={"vc-2": ("VC-2.example",)})


def test_client_certificate_names_the_caller_as_on_grpc(pki: Pki) -> None:
    with serving(ReloadingSslContext(pki.tls_config())) as server:
        assert whoami_over(pki, server.port, pki.clients["vc-1"]) == {"client": "vc-1", "alt": []}
        assert whoami_over(pki, server.port, pki.clients["vc-2"]) == {"client": "vc-2", "alt": ["dns:vc-2.example"]}


def test_required_client_certificate_fails_the_handshake_without_one(pki: Pki) -> None:
    with serving(ReloadingSslContext(pki.tls_config())) as server:
        with pytest.raises(httpx.HTTPError):
            whoami_over(pki, server.port, None)
        with pytest.raises(httpx.HTTPError):
            whoami_over(pki, server.port, pki.stranger)  # another CA's certificate
        assert whoami_over(pki, server.port, pki.clients["vc-1"])["client"] == "vc-1"  # still serving


def test_optional_client_certificate_lets_a_caller_without_one_in_as_no_client(pki: Pki) -> None:
    with serving(ReloadingSslContext(pki.tls_config(), client_certs="optional")) as server:
        assert whoami_over(pki, server.port, None) == {"client": None, "alt": []}
        assert whoami_over(pki, server.port, pki.clients["vc-1"])["client"] == "vc-1"
        with pytest.raises(httpx.HTTPError):
            whoami_over(pki, server.port, pki.stranger)  # a certificate it sends must still verify


def test_plaintext_listener_gives_the_local_client() -> None:
    with serving(None) as server:
        response = httpx.get(f"http://127.0.0.1:{server.port}/whoami", timeout=TIMEOUT_S)
    assert response.json() == {"client": "local", "alt": []}


def test_changed_certificate_files_are_served_without_restart(pki: Pki) -> None:
    with serving(ReloadingSslContext(pki.tls_config(reload_interval_s=0))) as server:
        client = pki.clients["vc-1"]
        assert served_cn(pki, server.port, client) == "signer"
        new = pki.issue_server("server-rest", cn="signer-rest")
        replace_file(pki.server.key, new.key)
        replace_file(pki.server.cert, new.cert)
        assert served_cn(pki, server.port, client) == "signer-rest"
        assert whoami_over(pki, server.port, client)["client"] == "vc-1"


def test_replaced_client_ca_is_the_only_one_trusted_after_reload(pki: Pki) -> None:
    ssl_context = ReloadingSslContext(pki.tls_config())
    with serving(ssl_context) as server:
        server_ca = pki.ca.cert_pem
        replace_file(pki.ca.cert, pki.other_ca.cert)
        ssl_context.reload()
        trusting_server = ssl.create_default_context(cadata=server_ca.decode())
        trusting_server.load_cert_chain(str(pki.stranger.cert), str(pki.stranger.key))
        with httpx.Client(verify=trusting_server, timeout=TIMEOUT_S) as http:
            assert http.get(f"https://127.0.0.1:{server.port}/whoami").json()["client"] == "stranger"
        old_client = ssl.create_default_context(cadata=server_ca.decode())
        old_client.load_cert_chain(str(pki.clients["vc-1"].cert), str(pki.clients["vc-1"].key))
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=old_client, timeout=TIMEOUT_S) as http:
            http.get(f"https://127.0.0.1:{server.port}/whoami")


def test_a_broken_replacement_is_refused_and_the_old_set_keeps_serving(pki: Pki) -> None:
    ssl_context = ReloadingSslContext(pki.tls_config())
    with serving(ssl_context) as server:
        other = pki.issue_server("server-broken", cn="signer-broken")
        replace_file(pki.server.cert, other.cert)  # certificate replaced, key not
        with pytest.raises(ConfigError, match="does not belong to the certificate"):
            ssl_context.reload()
        assert served_cn(pki, server.port, pki.clients["vc-1"]) == "signer"


def test_port_in_use_is_a_named_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"server.http_listen: cannot listen on 127.0.0.1:{port}"):
            HttpServer(APP, ("127.0.0.1", port)).bind()


def test_stop_answers_the_request_in_flight() -> None:
    release.clear()
    entered.clear()
    server = HttpServer(APP, ("127.0.0.1", 0), shutdown_grace_s=5)
    server.start()
    result: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: result.append(httpx.get(f"http://127.0.0.1:{server.port}/slow", timeout=TIMEOUT_S))
    )
    caller.start()
    assert entered.wait(TIMEOUT_S), "the request never reached the handler"
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    time.sleep(0.2)  # the server is stopping: the listener is closed, the request still in flight
    assert stopper.is_alive()
    release.set()
    caller.join(TIMEOUT_S)
    stopper.join(TIMEOUT_S)
    assert [r.status_code for r in result] == [200]
    assert not stopper.is_alive()


def test_identity_from_peercert() -> None:
    assert identity_from_peercert(None) is None
    assert identity_from_peercert({}) is None
    cert = {
        "subject": ((("organizationName", "x"),), (("commonName", "vc-9"),)),
        "subjectAltName": (("DNS", "VC.example"), ("URI", "spiffe://e/vc"), ("IP Address", "10.0.0.1")),
    }
    assert identity_from_peercert(cert) == ClientIdentity(
        name="vc-9", alt_names=("dns:vc.example", "uri:spiffe://e/vc")
    )
    no_cn = {"subject": ((("organizationName", "x"),),), "subjectAltName": (("URI", "spiffe://e/vc"),)}
    assert identity_from_peercert(no_cn) == ClientIdentity(
        name="uri:spiffe://e/vc", alt_names=("uri:spiffe://e/vc",), has_cn=False
    )
    with pytest.raises(AccessDenied, match="no CN"):
        identity_from_peercert({"subject": ((("organizationName", "x"),),)})
