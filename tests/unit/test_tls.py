"""mTLS, client identity, certificate reload and the interceptor, over a real in-process gRPC server.

The server runs on 127.0.0.1:0 with certificates from tests/certs.py and a stub v1.Lister servicer
that answers with the identity the interceptor determined. The served certificate and the TLS
version are read with Python's ssl module (a real handshake with a client certificate and ALPN h2).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from signer.api import tls as tls_module
from signer.api._proto.v1 import lister_pb2, lister_pb2_grpc, responsestate_pb2
from signer.api.interceptors import (
    CallGuard,
    GuardedServer,
    call_client,
    call_request_id,
    count_items,
    method_name,
    outcome_for_code,
    set_outcome,
)
from signer.api.ratelimit import RateLimiter
from signer.api.status import RETRY_AFTER_KEY
from signer.api.tls import (
    ReloadingServerCredentials,
    client_identity,
    is_loopback,
    reload_on_sighup,
    require_tls,
)
from signer.config import LimitsConfig, RateConfig
from signer.errors import ConfigError, DoubleVote, MalformedRequest
from signer.types import LOCAL_CLIENT, ClientIdentity
from tests.certs import CertPair, Pki, make_pki
from tests.fakes import RecordingAudit, RecordingMonitor
from tests.support import trailers, wait_for

CALL_TIMEOUT_S = 10.0
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


# --- a stub servicer and a recording monitor ----------------------------------------------------


class StubLister(lister_pb2_grpc.ListerServicer):
    """Echoes the caller's identity; ``paths[0]`` picks a misbehaviour for the interceptor tests."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def ListAccounts(
        self, request: lister_pb2.ListAccountsRequest, context: grpc.ServicerContext
    ) -> lister_pb2.ListAccountsResponse:
        command = request.paths[0] if request.paths else ""
        if command == "signer-error":
            raise DoubleVote("a different attestation for target epoch 7 was signed")
        if command == "malformed":
            raise MalformedRequest("path 'x' is not wallet/account")
        if command == "bug":
            raise RuntimeError("secret-looking internals that must not reach the client")
        if command == "abort":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such wallet")
        if command == "outcome-denied":
            set_outcome(context, "denied")
        if command == "block":
            self.entered.set()
            self.release.wait(CALL_TIMEOUT_S)
        client = call_client(context)
        accounts = [lister_pb2.Account(name=client.name, uuid=(call_request_id(context) or "").encode())]
        accounts += [lister_pb2.Account(name=alt) for alt in client.alt_names]
        return lister_pb2.ListAccountsResponse(state=responsestate_pb2.SUCCEEDED, Accounts=accounts)


@dataclass
class Running:
    port: int
    servicer: StubLister
    monitor: RecordingMonitor
    audit: RecordingAudit
    credentials: ReloadingServerCredentials | None
    interceptor: CallGuard


@contextmanager
def serve(
    credentials: ReloadingServerCredentials | None,
    limiter: RateLimiter | None = None,
) -> Iterator[Running]:
    monitor, audit = RecordingMonitor(), RecordingAudit()
    interceptor = CallGuard(limiter, monitor, audit=audit)
    server = GuardedServer(grpc.server(futures.ThreadPoolExecutor(max_workers=4)), interceptor)
    servicer = StubLister()
    lister_pb2_grpc.add_ListerServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials.credentials)
    server.start()
    try:
        yield Running(port, servicer, monitor, audit, credentials, interceptor)
    finally:
        servicer.release.set()
        server.stop(0).wait(5)


def channel_for(pki: Pki, port: int, client: CertPair | None, *, roots: bytes | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=roots or pki.ca.cert_pem,
        private_key=client.key_pem if client else None,
        certificate_chain=client.cert_pem if client else None,
    )
    return grpc.secure_channel(f"localhost:{port}", creds, options=CHANNEL_OPTIONS)


def list_accounts(
    channel: grpc.Channel, *paths: str, metadata: tuple[tuple[str, str], ...] = ()
) -> lister_pb2.ListAccountsResponse:
    stub = lister_pb2_grpc.ListerStub(channel)
    return stub.ListAccounts(
        lister_pb2.ListAccountsRequest(paths=list(paths)), timeout=CALL_TIMEOUT_S, metadata=metadata
    )


def served_certificate(pki: Pki, port: int, client: CertPair) -> tuple[str, str]:
    """(CN of the certificate the server presents, negotiated TLS version), by a raw handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
    context.load_cert_chain(client.cert, client.key)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=CALL_TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        version = tls.version() or ""
    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value), version


def replace_file(target: Path, source: Path, bump_s: float = 5.0) -> None:
    """Atomically replace ``target`` with ``source``'s bytes and move its mtime forward."""
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(source.read_bytes())
    os.replace(tmp, target)
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + int(bump_s * 1e9)))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, clients=("vc-1", "vc-2"), client_sans={"vc-2": ("vc-2.example", "ops")})


@pytest.fixture
def mtls(pki: Pki) -> Iterator[Running]:
    with serve(ReloadingServerCredentials(pki.tls_config())) as running:
        yield running


# --- mTLS handshake and identity ----------------------------------------------------------------


def test_known_client_is_identified_by_its_certificate_cn(pki: Pki, mtls: Running) -> None:
    with channel_for(pki, mtls.port, pki.clients["vc-1"]) as channel:
        response = list_accounts(channel)
    assert [a.name for a in response.Accounts] == ["vc-1"]


def test_sans_are_part_of_the_identity(pki: Pki, mtls: Running) -> None:
    with channel_for(pki, mtls.port, pki.clients["vc-2"]) as channel:
        response = list_accounts(channel)
    assert [a.name for a in response.Accounts] == ["vc-2", "dns:vc-2.example", "dns:ops"]


def test_a_certificate_without_a_cn_is_named_by_its_typed_sans(pki: Pki, mtls: Running) -> None:
    no_cn = pki.issue_client("x", ("Host.Example",), uris=("spiffe://example.org/vc",), with_cn=False)
    with channel_for(pki, mtls.port, no_cn) as channel:
        response = list_accounts(channel)
    names = ["dns:host.example", "uri:spiffe://example.org/vc"]
    assert [a.name for a in response.Accounts] == [names[0], *names]


def test_no_client_certificate_fails_the_handshake(pki: Pki, mtls: Running) -> None:
    with channel_for(pki, mtls.port, None) as channel, pytest.raises(grpc.RpcError) as info:
        list_accounts(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert mtls.monitor.done == []


def test_client_certificate_from_an_unknown_ca_fails(pki: Pki, mtls: Running) -> None:
    for client in (pki.stranger, pki.impostor):  # the impostor copies vc-1's CN
        with channel_for(pki, mtls.port, client) as channel, pytest.raises(grpc.RpcError) as info:
            list_accounts(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert mtls.monitor.done == []


def test_raw_tls_without_a_client_certificate_is_refused(pki: Pki, mtls: Running) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pki.ca.cert_pem.decode())
    context.set_alpn_protocols(["h2"])

    def talk() -> None:
        with (
            socket.create_connection(("127.0.0.1", mtls.port), timeout=CALL_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            # TLS 1.3: the server's refusal of the missing certificate arrives after the handshake
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            if not tls.recv(1):
                raise ConnectionError("closed by the server")

    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        talk()


def test_a_current_client_negotiates_tls_1_3(pki: Pki, mtls: Running) -> None:
    cn, version = served_certificate(pki, mtls.port, pki.clients["vc-1"])
    assert cn == "signer"
    assert version == "TLSv1.3"


def test_plaintext_port_gives_the_local_client() -> None:
    with serve(None) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        response = list_accounts(channel)
    assert [a.name for a in response.Accounts] == [LOCAL_CLIENT.name]


def test_client_identity_from_auth_context() -> None:
    class Context:
        def __init__(self, auth: dict[str, list[bytes]]) -> None:
            self.auth = auth

        def auth_context(self) -> dict[str, list[bytes]]:
            return self.auth

    tls = {"transport_security_type": [b"ssl"]}
    assert client_identity(Context({})) == LOCAL_CLIENT  # type: ignore[arg-type]
    assert client_identity(Context({"transport_security_type": [b"insecure"]})) == LOCAL_CLIENT  # type: ignore[arg-type]
    named = Context({**tls, "x509_common_name": [b"vc-1"], "peer_dns": [b"A.example", b"vc-1"], "peer_uri": [b"u:x"]})
    assert client_identity(named) == ClientIdentity("vc-1", ("dns:a.example", "dns:vc-1", "uri:u:x"))  # type: ignore[arg-type]
    san_only = Context({**tls, "x509_common_name": [b""], "peer_dns": [b"host.example"]})
    assert client_identity(san_only) == ClientIdentity(  # type: ignore[arg-type]
        "dns:host.example", ("dns:host.example",), has_cn=False
    )
    from signer.errors import AccessDenied  # noqa: PLC0415

    with pytest.raises(AccessDenied, match="no CN and no DNS or URI SAN"):
        client_identity(Context({**tls, "x509_subject_alternative_name": [b"10.0.0.1"]}))  # type: ignore[arg-type]


# --- reload without restart ---------------------------------------------------------------------


def test_replaced_certificate_is_served_after_reload(pki: Pki, mtls: Running) -> None:
    client = pki.clients["vc-1"]
    assert served_certificate(pki, mtls.port, client)[0] == "signer"
    new = pki.issue_server("server-2", cn="signer-2")
    replace_file(pki.server.cert, new.cert)
    replace_file(pki.server.key, new.key)
    assert mtls.credentials is not None
    mtls.credentials.reload()
    assert served_certificate(pki, mtls.port, client)[0] == "signer-2"
    with channel_for(pki, mtls.port, client) as channel:  # gRPC still works on the new certificate
        assert [a.name for a in list_accounts(channel).Accounts] == ["vc-1"]
    assert mtls.credentials.reloads == 1


def test_sighup_reloads(pki: Pki, mtls: Running, caplog: pytest.LogCaptureFixture) -> None:
    assert mtls.credentials is not None
    before = signal.getsignal(signal.SIGHUP)
    restore = reload_on_sighup(mtls.credentials)
    try:
        new = pki.issue_server("server-hup", cn="signer-hup")
        replace_file(pki.server.cert, new.cert)
        os.kill(os.getpid(), signal.SIGHUP)  # half-replaced: refused, logged, old set still served
        assert served_certificate(pki, mtls.port, pki.clients["vc-1"])[0] == "signer"
        assert any("SIGHUP: TLS files not reloaded" in r.getMessage() for r in caplog.records)
        replace_file(pki.server.key, new.key)
        os.kill(os.getpid(), signal.SIGHUP)
        assert served_certificate(pki, mtls.port, pki.clients["vc-1"])[0] == "signer-hup"
    finally:
        restore()
    assert signal.getsignal(signal.SIGHUP) == before


def test_changed_mtime_is_noticed_without_reload(pki: Pki) -> None:
    with serve(ReloadingServerCredentials(pki.tls_config(reload_interval_s=0))) as running:
        client = pki.clients["vc-1"]
        assert served_certificate(pki, running.port, client)[0] == "signer"
        new = pki.issue_server("server-3", cn="signer-3")
        replace_file(pki.server.key, new.key)
        replace_file(pki.server.cert, new.cert)
        assert served_certificate(pki, running.port, client)[0] == "signer-3"


def test_reload_interval_limits_the_mtime_checks(pki: Pki) -> None:
    now = [0.0]
    credentials = ReloadingServerCredentials(pki.tls_config(reload_interval_s=30), clock=lambda: now[0])
    with serve(credentials) as running:
        client = pki.clients["vc-1"]
        new = pki.issue_server("server-4", cn="signer-4")
        replace_file(pki.server.key, new.key)
        replace_file(pki.server.cert, new.cert)
        assert served_certificate(pki, running.port, client)[0] == "signer"
        now[0] = 31.0
        assert served_certificate(pki, running.port, client)[0] == "signer-4"


def test_an_identity_is_remembered_per_exact_certificate(pki: Pki, mtls: Running) -> None:
    """Two certificates with one CN and different SANs are two identities: the memory is keyed on
    the certificate's bytes, not on its name."""
    first = pki.issue_client("vc-3", ("first.example",), stem="vc-3-first")
    second = pki.issue_client("vc-3", ("second.example",), stem="vc-3-second")
    for _ in range(2):  # the second round answers from the memory
        with channel_for(pki, mtls.port, first) as channel:
            assert [a.name for a in list_accounts(channel).Accounts] == ["vc-3", "dns:first.example"]
        with channel_for(pki, mtls.port, second) as channel:
            assert [a.name for a in list_accounts(channel).Accounts] == ["vc-3", "dns:second.example"]
    assert tls_module._identities[first.cert_pem] == ClientIdentity("vc-3", ("dns:first.example",))


def test_a_reload_forgets_the_remembered_identities(pki: Pki, mtls: Running) -> None:
    """Nothing learnt under the old client CA outlives a reload: the memory is emptied, a client of
    the old CA no longer connects, and one of the new CA is identified afresh."""
    with channel_for(pki, mtls.port, pki.clients["vc-1"]) as channel:
        list_accounts(channel)
    assert pki.clients["vc-1"].cert_pem in tls_module._identities
    server_ca = pki.ca.cert_pem
    replace_file(pki.ca.cert, pki.other_ca.cert)
    assert mtls.credentials is not None
    mtls.credentials.reload()
    assert tls_module._identities == {}
    with (
        channel_for(pki, mtls.port, pki.clients["vc-1"], roots=server_ca) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        list_accounts(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with channel_for(pki, mtls.port, pki.stranger, roots=server_ca) as channel:
        assert [a.name for a in list_accounts(channel).Accounts] == ["stranger"]
    assert list(tls_module._identities.values()) == [ClientIdentity("stranger")]


def test_replaced_client_ca_is_trusted_after_reload(pki: Pki, mtls: Running) -> None:
    server_ca = pki.ca.cert_pem  # the server certificate stays from this CA: clients keep trusting it
    replace_file(pki.ca.cert, pki.other_ca.cert)
    assert mtls.credentials is not None
    mtls.credentials.reload()
    with channel_for(pki, mtls.port, pki.stranger, roots=server_ca) as channel:
        assert [a.name for a in list_accounts(channel).Accounts] == ["stranger"]
    with (
        channel_for(pki, mtls.port, pki.clients["vc-1"], roots=server_ca) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        list_accounts(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_broken_replacement_is_refused_and_the_old_set_keeps_serving(
    pki: Pki, mtls: Running, caplog: pytest.LogCaptureFixture
) -> None:
    other = pki.issue_server("server-5", cn="signer-5")
    replace_file(pki.server.cert, other.cert)  # certificate replaced, key not (yet)
    assert mtls.credentials is not None
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        mtls.credentials.reload()
    assert served_certificate(pki, mtls.port, pki.clients["vc-1"])[0] == "signer"
    key_text = pki.server.key_pem.decode()
    assert all(key_text not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("key-garbage", "is not an unencrypted PEM private key"),
        ("cert-garbage", "holds no PEM certificate"),
        ("ca-garbage", "client_ca_file"),
        ("cert-missing", "cannot stat"),
    ],
    ids=["key-garbage", "cert-garbage", "ca-garbage", "cert-missing"],
)
def test_bad_tls_files_are_config_errors(pki: Pki, change: str, message: str) -> None:
    if change == "key-garbage":
        pki.server.key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    elif change == "cert-garbage":
        pki.server.cert.write_text("nothing\n")
    elif change == "ca-garbage":
        pki.ca.cert.write_text("nothing\n")
    else:
        pki.server.cert.unlink()
    with pytest.raises(ConfigError, match=message) as info:
        ReloadingServerCredentials(pki.tls_config())
    assert "not a key" not in info.value.message


# --- the plaintext policy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("[::]", False),
        ("", False),
        ("10.0.0.5", False),
        ("signer.example", False),
    ],
    ids=[
        "v4",
        "v4-net",
        "v6",
        "v6-brackets",
        "localhost",
        "any-v4",
        "any-v6",
        "any-v6-brackets",
        "empty",
        "private",
        "name",
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_require_tls(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    tls = pki.tls_config()
    assert require_tls("0.0.0.0", tls, allow_insecure_plaintext=False) is True
    assert require_tls("127.0.0.1", tls, allow_insecure_plaintext=False) is True
    assert require_tls("127.0.0.1", None, allow_insecure_plaintext=False) is False
    with pytest.raises(ConfigError, match=r"'0\.0\.0\.0' is not a loopback address, so \[server\.tls\] is required"):
        require_tls("0.0.0.0", None, allow_insecure_plaintext=False)
    with caplog.at_level(logging.WARNING, logger="signer.api.tls"):
        assert require_tls("0.0.0.0", None, allow_insecure_plaintext=True) is False
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "INSECURE" in record.getMessage()


# --- the interceptor ----------------------------------------------------------------------------


def test_interceptor_reports_method_and_outcome(pki: Pki, mtls: Running) -> None:
    with channel_for(pki, mtls.port, pki.clients["vc-1"]) as channel:
        list_accounts(channel)
        list_accounts(channel, "outcome-denied")
        for command, code in [
            ("signer-error", grpc.StatusCode.FAILED_PRECONDITION),
            ("malformed", grpc.StatusCode.INVALID_ARGUMENT),
            ("abort", grpc.StatusCode.NOT_FOUND),
            ("bug", grpc.StatusCode.INTERNAL),
        ]:
            with pytest.raises(grpc.RpcError) as info:
                list_accounts(channel, command)
            assert info.value.code() == code, command
            if command == "signer-error":
                assert "target epoch 7" in (info.value.details() or "")
            if command == "bug":
                assert "secret-looking" not in (info.value.details() or "")
    assert mtls.monitor.done == [
        ("ListAccounts", "succeeded"),
        ("ListAccounts", "denied"),
        ("ListAccounts", "denied"),
        ("ListAccounts", "invalid"),
        ("ListAccounts", "denied"),
        ("ListAccounts", "failed"),
    ]


def test_request_id_is_taken_from_metadata_or_made(pki: Pki, mtls: Running) -> None:
    with channel_for(pki, mtls.port, pki.clients["vc-1"]) as channel:
        given = list_accounts(channel, metadata=(("x-request-id", "abc-123"),))
        made = list_accounts(channel, metadata=(("x-request-id", "bad id with spaces"),))
    assert given.Accounts[0].uuid == b"abc-123"
    assert len(made.Accounts[0].uuid) == 16
    assert b" " not in made.Accounts[0].uuid


def test_rate_limited_call_is_refused_with_retry_after(pki: Pki) -> None:
    now = [0.0]
    limits = LimitsConfig(default_rate=RateConfig(per_second=2, burst=2))
    limiter = RateLimiter(limits, (), clock=lambda: now[0])
    with serve(ReloadingServerCredentials(pki.tls_config()), limiter) as running:
        with channel_for(pki, running.port, pki.clients["vc-1"]) as vc1:
            list_accounts(vc1)
            list_accounts(vc1)
            with pytest.raises(grpc.RpcError) as info:
                list_accounts(vc1)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "client 'vc-1' is over its rate limit" in (info.value.details() or "")
            trailing = trailers(info.value)
            assert trailing[RETRY_AFTER_KEY] == "500"
            # health checks take no tokens: a client over its rate still sees the status (they are
            # identified and counted like every call, issue 13.4)
            health_stub = health_pb2_grpc.HealthStub(vc1)
            reply = health_stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with channel_for(pki, running.port, pki.clients["vc-2"]) as vc2:  # another client is unaffected
            list_accounts(vc2)
        now[0] = 0.5
        with channel_for(pki, running.port, pki.clients["vc-1"]) as vc1:
            list_accounts(vc1)
            # a batch of three items costs three tokens: refused on an (almost) empty bucket
            with pytest.raises(grpc.RpcError) as info:
                list_accounts(vc1, "a", "b", "c")
            assert trailers(info.value)[RETRY_AFTER_KEY] == "1000"
    assert running.monitor.limited == ["vc-1", "vc-1"]
    assert running.monitor.done == [
        ("ListAccounts", "succeeded"),
        ("ListAccounts", "succeeded"),
        ("ListAccounts", "rate_limited"),
        ("Check", "succeeded"),
        ("ListAccounts", "succeeded"),
        ("ListAccounts", "succeeded"),
        ("ListAccounts", "rate_limited"),
    ]
    [first, _] = running.audit.events
    assert (first.client, first.method, first.outcome) == ("vc-1", "ListAccounts", "rate_limited")
    assert first.request_id


def test_in_flight_permit_is_held_for_the_whole_call(pki: Pki) -> None:
    limiter = RateLimiter(LimitsConfig(max_in_flight=1), ())
    with (
        serve(ReloadingServerCredentials(pki.tls_config()), limiter) as running,
        channel_for(pki, running.port, pki.clients["vc-1"]) as vc1,
        channel_for(pki, running.port, pki.clients["vc-2"]) as vc2,
    ):
        stub = lister_pb2_grpc.ListerStub(vc1)
        blocked = stub.ListAccounts.future(lister_pb2.ListAccountsRequest(paths=["block"]), timeout=CALL_TIMEOUT_S)
        assert running.servicer.entered.wait(CALL_TIMEOUT_S)
        assert limiter.in_flight == 1
        with pytest.raises(grpc.RpcError) as info:
            list_accounts(vc2)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "requests in flight" in (info.value.details() or "")
        running.servicer.release.set()
        assert blocked.result(timeout=CALL_TIMEOUT_S).Accounts[0].name == "vc-1"
        list_accounts(vc2)
    assert limiter.in_flight == 0
    assert running.monitor.limited == ["vc-2"]


def test_batch_over_the_cap_is_invalid_argument(pki: Pki) -> None:
    limiter = RateLimiter(LimitsConfig(max_batch_items=2), ())
    with (
        serve(ReloadingServerCredentials(pki.tls_config()), limiter) as running,
        channel_for(pki, running.port, pki.clients["vc-1"]) as channel,
    ):
        list_accounts(channel, "a", "b")
        with pytest.raises(grpc.RpcError) as info:
            list_accounts(channel, "a", "b", "c")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert running.monitor.done[-1] == ("ListAccounts", "invalid")
    assert limiter.in_flight == 0


def test_small_helpers() -> None:
    assert method_name("/v1.Signer/SignBeaconAttestations") == "SignBeaconAttestations"
    assert count_items(lister_pb2.ListAccountsRequest()) == 1
    assert count_items(lister_pb2.ListAccountsRequest(paths=["a", "b", "c"])) == 3
    assert count_items(object()) == 1
    assert outcome_for_code(None) == "succeeded"
    assert outcome_for_code(grpc.StatusCode.OK) == "succeeded"
    assert outcome_for_code(grpc.StatusCode.UNAVAILABLE) == "unavailable"
    assert outcome_for_code(grpc.StatusCode.DATA_LOSS) == "failed"


# --- streaming calls and busy workers (issue 13.4) ------------------------------------------------


def _watch(channel: grpc.Channel) -> tuple[grpc.Call, grpc.StatusCode | None]:
    """Open a health Watch; (the stream, None) once the server answered, or (stream, refusal code)."""
    stream = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    try:
        next(stream)
    except grpc.RpcError as exc:
        return stream, exc.code()
    return stream, None


def test_streams_are_identified_and_capped_per_client_and_overall(pki: Pki) -> None:
    limiter = RateLimiter(LimitsConfig(max_streams_per_client=1), (), max_streams=2)
    with (
        serve(ReloadingServerCredentials(pki.tls_config()), limiter) as running,
        channel_for(pki, running.port, pki.clients["vc-1"]) as vc1,
        channel_for(pki, running.port, pki.clients["vc-2"]) as vc2,
    ):
        first, refused = _watch(vc1)
        assert refused is None
        second, refused = _watch(vc1)  # the client's one stream is open
        assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = second  # the refusal carries the retry hint and names the cap
        assert "client 'vc-1' is at its cap of 1 open streams" in (info.details() or "")
        assert trailers(info)[RETRY_AFTER_KEY] == "1000"
        other, refused = _watch(vc2)
        assert refused is None
        first.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves cancel unannotated
        wait_for(lambda: running.interceptor.running == 1, "one call on a worker", CALL_TIMEOUT_S)
        again, refused = _watch(vc1)  # a closed stream gives its slot back
        assert refused is None
        with channel_for(pki, running.port, pki.clients["vc-2"]) as vc2b:
            _, refused = _watch(vc2b)  # vc-2 has its one stream open
        assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
        other.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves cancel unannotated
        again.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves cancel unannotated
    assert running.monitor.limited == ["vc-1", "vc-2"]
    assert ("Watch", "rate_limited") in running.monitor.done


def test_overall_stream_cap_holds_across_clients(pki: Pki) -> None:
    limiter = RateLimiter(LimitsConfig(max_streams_per_client=4), (), max_streams=1)
    with (
        serve(ReloadingServerCredentials(pki.tls_config()), limiter) as running,
        channel_for(pki, running.port, pki.clients["vc-1"]) as vc1,
        channel_for(pki, running.port, pki.clients["vc-2"]) as vc2,
    ):
        stream, refused = _watch(vc1)
        assert refused is None
        refusal, refused = _watch(vc2)
        assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at its cap of 1 open streams (limits.max_streams)" in (refusal.details() or "")
        stream.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs leaves cancel unannotated


def test_stalled_says_how_long_every_worker_has_been_busy() -> None:
    workers = 4  # serve() runs 4 worker threads
    with serve(None) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = lister_pb2_grpc.ListerStub(channel)
        assert running.interceptor.stalled_s(workers) == 0.0
        blocked = [
            stub.ListAccounts.future(lister_pb2.ListAccountsRequest(paths=["block"]), timeout=CALL_TIMEOUT_S)
            for _ in range(workers)
        ]
        wait_for(lambda: running.interceptor.running == workers, "every worker busy", CALL_TIMEOUT_S)
        time.sleep(0.2)
        assert running.interceptor.stalled_s(workers) >= 0.2
        assert running.interceptor.stalled_s(workers + 1) == 0.0  # a free worker: not stalled
        running.servicer.release.set()
        for call in blocked:
            call.result(timeout=CALL_TIMEOUT_S)
        wait_for(lambda: running.interceptor.running == 0, "every call off the workers", CALL_TIMEOUT_S)
        assert running.interceptor.stalled_s(workers) == 0.0
