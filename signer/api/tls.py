"""mTLS for the gRPC port: reloading server credentials, the plaintext policy, and client identity.

* ``ReloadingServerCredentials(tls)``: ``grpc.dynamic_ssl_server_credentials`` with client
  certificates required. gRPC asks the fetcher before every new handshake; the fetcher hands over a
  new certificate configuration when ``reload()`` was called (e.g. on SIGHUP) or when the mtime of
  the certificate, key or client-CA file changed (checked at most every ``tls.reload_interval_s``).
  A replaced set that does not load (half-written files, key not matching the certificate) is
  refused and the previous set keeps serving. Connections already open keep their session.
* ``reload_on_sighup(credentials)``: SIGHUP calls ``reload()``.
* ``require_tls(listen_host, tls, allow_insecure_plaintext)``: TLS is mandatory off loopback.
* ``client_identity(context)``: the certificate CN and typed SANs of the peer; plaintext -> LOCAL_CLIENT.
  Remembered per exact client certificate; a reload of the TLS files forgets them all.

TLS version: grpcio negotiates TLS 1.3 with every current client, but its Python API (1.85) has no
way to raise the server's floor above TLS 1.2 (gRPC core's default range is 1.2-1.3).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import ssl
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from signer.config import TlsConfig
from signer.errors import AccessDenied, ConfigError
from signer.types import LOCAL_CLIENT, ClientIdentity

log = logging.getLogger(__name__)

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


# --- the plaintext policy ---------------------------------------------------------------------


def is_loopback(listen_host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (brackets allowed). Wildcards and names are not."""
    host = listen_host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tls(
    listen_host: str, tls: TlsConfig | None, allow_insecure_plaintext: bool, *, where: str = "server.grpc_listen"
) -> bool:
    """Decide whether a port (gRPC, or the REST front: ``where`` names its config key) serves TLS;
    returns True for TLS, False for plaintext.

    With a ``[server.tls]`` section: TLS, always. Without one: plaintext is fine on loopback; on any
    other address it needs ``server.allow_insecure_plaintext = true`` (then a loud WARNING is logged),
    otherwise ConfigError.
    """
    if tls is not None:
        return True
    if is_loopback(listen_host):
        return False
    if not allow_insecure_plaintext:
        raise ConfigError(
            f"{where}: {listen_host!r} is not a loopback address, so [server.tls] is required "
            "(cert_file, key_file, client_ca_file); set server.allow_insecure_plaintext = true only "
            "for development"
        )
    log.warning(
        "INSECURE: %s on %s WITHOUT TLS (server.allow_insecure_plaintext = true). Anyone who can "
        "reach this address can ask for signatures as the 'local' client. Development only.",
        "gRPC" if where == "server.grpc_listen" else "REST",
        listen_host,
    )
    return False


# --- reloading server credentials -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Material:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes
    mtimes: tuple[int, int, int]
    not_valid_after: float

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.private_key, self.cert_chain)], root_certificates=self.client_ca
        )


def _mtimes(tls: TlsConfig) -> tuple[int, int, int]:
    try:
        return (
            os.stat(tls.cert_file).st_mtime_ns,
            os.stat(tls.key_file).st_mtime_ns,
            os.stat(tls.client_ca_file).st_mtime_ns,
        )
    except OSError as exc:
        raise ConfigError(f"server.tls: cannot stat {exc.filename}: {exc.strerror}") from exc


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"server.tls.{what}: cannot read {path}: {exc.strerror}") from exc


def load_material(tls: TlsConfig) -> _Material:
    """Read and check the three files: PEM certificates, a key that matches the first certificate."""
    mtimes = _mtimes(tls)
    cert_chain = _read(tls.cert_file, "cert_file")
    private_key = _read(tls.key_file, "key_file")
    client_ca = _read(tls.client_ca_file, "client_ca_file")
    try:
        certs = x509.load_pem_x509_certificates(cert_chain)
    except ValueError as exc:
        raise ConfigError(f"server.tls.cert_file: {tls.cert_file} holds no PEM certificate") from exc
    try:
        x509.load_pem_x509_certificates(client_ca)
    except ValueError as exc:
        raise ConfigError(f"server.tls.client_ca_file: {tls.client_ca_file} holds no PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError) as exc:
        # never echo the key or the parser's view of it
        raise ConfigError(f"server.tls.key_file: {tls.key_file} is not an unencrypted PEM private key") from exc
    if key.public_key() != certs[0].public_key():
        raise ConfigError(
            f"server.tls.key_file: the key in {tls.key_file} does not belong to the certificate in {tls.cert_file}"
        )
    mode = os.stat(tls.key_file).st_mode
    if mode & (stat.S_IRWXO):
        log.warning("server.tls.key_file %s is readable by other users (mode %o)", tls.key_file, mode & 0o777)
    return _Material(
        cert_chain=cert_chain,
        private_key=private_key,
        client_ca=client_ca,
        mtimes=mtimes,
        not_valid_after=certs[0].not_valid_after_utc.timestamp(),
    )


class ReloadingServerCredentials:
    """Server credentials whose certificate, key and client CA are re-read without a restart.

    Pass ``.credentials`` to ``server.add_secure_port``. Call ``.reload()`` on SIGHUP; file changes
    are also noticed by mtime, at most every ``tls.reload_interval_s`` seconds (0: at every handshake).
    """

    def __init__(self, tls: TlsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.tls = tls
        self._clock = clock
        self._lock = threading.Lock()
        self._current = load_material(tls)
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self._next_check = clock() + tls.reload_interval_s
        self.reloads = 0
        """How many times a new set was handed to gRPC (for tests and logs)."""
        self.credentials: grpc.ServerCredentials = grpc.dynamic_ssl_server_credentials(
            self._current.configuration(),
            self._fetch,  # type: ignore[arg-type]  # the stubs omit that None means "no change"
            require_client_authentication=True,
        )

    @property
    def not_valid_after(self) -> float:
        """Expiry (Unix seconds) of the server certificate now being served."""
        return self._current.not_valid_after

    def reload(self) -> None:
        """Re-read the files now; the new set serves the next handshakes.

        Raises ConfigError (and keeps the current set) when the files do not load.
        """
        material = load_material(self.tls)
        with self._lock:
            self._current = material
            self._pending = material.configuration()
            forget_identities()
            self._next_check = self._clock() + self.tls.reload_interval_s
        log.info("server TLS certificate, key and client CA re-read from %s", self.tls.cert_file)

    def _maybe_reload_on_mtime(self) -> None:
        now = self._clock()
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self.tls.reload_interval_s
            known = self._current.mtimes
        try:
            if _mtimes(self.tls) == known:
                return
            self.reload()
        except ConfigError as exc:
            log.error("server TLS files changed but do not load; still serving the previous set: %s", exc)

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before every handshake: None keeps the current configuration."""
        try:
            self._maybe_reload_on_mtime()
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is not None:
                self.reloads += 1
            return pending
        except Exception:  # an exception here would break every handshake; keep serving
            log.exception("TLS certificate fetcher failed; keeping the current certificate")
            return None


class _Reloadable(Protocol):
    def reload(self) -> None: ...


def reload_on_sighup(*credentials: _Reloadable) -> Callable[[], None]:
    """Install a SIGHUP handler (main thread only) that calls ``reload()`` on each of ``credentials``
    (gRPC's ReloadingServerCredentials, the REST front's ReloadingSslContext).

    A reload that fails is logged and the previous set keeps serving. Returns a function that
    puts the previous handler back.
    """

    def on_sighup(signum: int, frame: object) -> None:
        for each in credentials:
            try:
                each.reload()
            except ConfigError as exc:
                log.error("SIGHUP: TLS files not reloaded, still serving the previous set: %s", exc)

    previous = signal.signal(signal.SIGHUP, on_sighup)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


# --- the same reloading material for the REST front (ssl, not grpc) ---------------------------


class ReloadingSslContext:
    """An ``ssl.SSLContext`` for the REST front whose certificate, key and client CA follow the same
    files as gRPC's, re-read without a restart.

    ``.context`` is what the HTTP server listens with. Before each handshake its SNI callback (which
    OpenSSL runs for every ClientHello, with or without a server name) checks the files' mtimes (at
    most every ``tls.reload_interval_s``) and hands the connection the newest good context; a set
    that does not load is refused and the previous one keeps serving. ``reload()`` (SIGHUP) re-reads
    now. ``client_certs``: "required" (the handshake fails without a certificate of the client CA)
    or "optional" (a caller without one connects, and is no client).
    """

    def __init__(
        self, tls: TlsConfig, *, client_certs: str = "required", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tls = tls
        self._verify = ssl.CERT_REQUIRED if client_certs == "required" else ssl.CERT_OPTIONAL
        self._clock = clock
        self._lock = threading.Lock()
        material = load_material(tls)
        self._mtimes = material.mtimes
        self._current = self._build()
        self._next_check = clock() + tls.reload_interval_s
        self.reloads = 0
        self.context = self._build()
        self.context.sni_callback = self._on_hello

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.verify_mode = self._verify
        try:
            ctx.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            ctx.load_verify_locations(cafile=str(self.tls.client_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"server.tls: the certificate, key or client CA does not load: {exc}") from exc
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def reload(self) -> None:
        """Re-read the files now (ConfigError, and the current set keeps serving, if they do not load)."""
        material = load_material(self.tls)
        ctx = self._build()
        with self._lock:
            self._current = ctx
            self._mtimes = material.mtimes
            self._next_check = self._clock() + self.tls.reload_interval_s
            self.reloads += 1
        log.info("REST TLS certificate, key and client CA re-read from %s", self.tls.cert_file)

    def _maybe_reload_on_mtime(self) -> None:
        now = self._clock()
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self.tls.reload_interval_s
            known = self._mtimes
        try:
            if _mtimes(self.tls) != known:
                self.reload()
        except ConfigError as exc:
            log.error("server TLS files changed but do not load; REST still serves the previous set: %s", exc)

    def _on_hello(self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: object) -> None:
        try:
            self._maybe_reload_on_mtime()
            with self._lock:
                connection.context = self._current
        except Exception:  # an exception here would fail the handshake; keep serving
            log.exception("REST TLS context switch failed; keeping the current certificate")


# --- who is calling ---------------------------------------------------------------------------


def _decode(values: object) -> list[str]:
    """auth_context values are lists of bytes at run time (the stubs say bytes)."""
    if values is None:
        return []
    items = [values] if isinstance(values, bytes | str) else list(values)  # type: ignore[call-overload]
    out: list[str] = []
    for value in items:
        text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        if text and text not in out:
            out.append(text)
    return out


MAX_REMEMBERED_CERTIFICATES = 4096
"""Bound on the client certificates whose identity is remembered; beyond it the memory starts over."""

_identities: dict[bytes, ClientIdentity] = {}
"""Identity per exact client certificate (PEM bytes as gRPC hands them over); emptied on every
reload of the TLS files (``forget_identities``)."""


def forget_identities() -> None:
    """Drop every remembered certificate identity (the TLS files were re-read)."""
    _identities.clear()


def client_identity(context: grpc.ServicerContext) -> ClientIdentity:
    """The peer of a call: certificate CN and typed SANs under TLS; LOCAL_CLIENT on a plaintext port.

    gRPC has already verified the chain against ``client_ca_file`` (require_client_auth), so a
    TLS peer always has a certificate. Its DNS and URI SANs become ``dns:NAME`` (lower case) and
    ``uri:NAME``; a certificate without a CN is named by the first of them (``has_cn`` False).

    The identity is a function of the certificate alone, so it is remembered per exact certificate
    (its PEM bytes): the next call on it is one dictionary lookup. The memory is emptied whenever the
    TLS files are reloaded, so nothing learnt under an old client CA outlives it.
    """
    auth: Mapping[str, Sequence[bytes]] = context.auth_context() or {}  # type: ignore[assignment]  # lists of bytes at run time (the stubs say bytes)
    security = auth.get("transport_security_type") or ()
    if b"ssl" not in security and b"tls" not in security:
        return LOCAL_CLIENT
    pem = auth.get("x509_pem_cert")
    certificate = pem[0] if pem else None
    if certificate is not None:
        known = _identities.get(certificate)
        if known is not None:
            return known
    identity = _identity_of(auth)
    if certificate is not None:
        if len(_identities) >= MAX_REMEMBERED_CERTIFICATES:
            _identities.clear()
        _identities[certificate] = identity
    return identity


def _identity_of(auth: Mapping[str, Sequence[bytes]]) -> ClientIdentity:
    common_names = _decode(auth.get("x509_common_name"))
    alt_names = [f"dns:{name.lower()}" for name in _decode(auth.get("peer_dns"))]
    alt_names += [f"uri:{uri}" for uri in _decode(auth.get("peer_uri"))]
    if common_names:
        return ClientIdentity(name=common_names[0], alt_names=tuple(alt_names))
    if alt_names:
        return ClientIdentity(name=alt_names[0], alt_names=tuple(alt_names), has_cn=False)
    raise AccessDenied("the client certificate has no CN and no DNS or URI SAN to name the client")


def identity_from_peercert(peercert: Mapping[str, Any] | None) -> ClientIdentity | None:
    """The REST front's caller under TLS, named as ``client_identity`` names a gRPC peer: the
    certificate's CN and typed SANs (``dns:NAME`` lower case, ``uri:NAME``). None when the caller
    sent no certificate (``server.http_client_certs = "optional"``): no client, may not sign."""
    if not peercert:
        return None
    common_names: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value not in common_names:
                common_names.append(str(value))
    alt_names: list[str] = []
    for kind, value in peercert.get("subjectAltName", ()):
        name = f"dns:{str(value).lower()}" if kind == "DNS" else f"uri:{value}" if kind == "URI" else None
        if name is not None and name not in alt_names:
            alt_names.append(name)
    if common_names:
        return ClientIdentity(name=common_names[0], alt_names=tuple(alt_names))
    if alt_names:
        return ClientIdentity(name=alt_names[0], alt_names=tuple(alt_names), has_cn=False)
    raise AccessDenied("the client certificate has no CN and no DNS or URI SAN to name the client")
