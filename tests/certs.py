"""A throwaway PKI for mTLS tests: a CA, a server certificate, client certificates, and a stranger.

``make_pki(tmp_path)`` writes PEM files under ``tmp_path`` and returns a ``Pki`` naming them. Keys are
EC P-256 (fast to generate). The server certificate has SANs ``localhost`` and ``127.0.0.1``; each
client certificate has its CN (and, if asked, extra DNS SANs; ``issue_client`` also makes URI SANs
and certificates without a CN). ``other_ca`` is a second CA the
server does not trust, with a client ``stranger`` (and a client whose CN copies a known client).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signer.config import TlsConfig

_VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, as PEM files and bytes."""

    cert: Path
    key: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key.read_bytes()

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: CertPair
    server: CertPair
    clients: dict[str, CertPair]
    other_ca: CertPair
    stranger: CertPair
    """CN 'stranger', issued by other_ca."""
    impostor: CertPair
    """CN of the first client, issued by other_ca: the CA decides, not the name."""

    def tls_config(self, **overrides: object) -> TlsConfig:
        values: dict[str, object] = {
            "cert_file": self.server.cert,
            "key_file": self.server.key,
            "client_ca_file": self.ca.cert,
        }
        values.update(overrides)
        return TlsConfig.model_validate(values)

    def issue_client(
        self,
        name: str,
        sans: Iterable[str] = (),
        *,
        uris: Iterable[str] = (),
        stem: str | None = None,
        with_cn: bool = True,
    ) -> CertPair:
        """A further client certificate from the trusted CA: CN ``name`` (none with ``with_cn=False``),
        DNS SANs ``sans`` and URI SANs ``uris``."""
        return _issue(
            self.directory,
            stem or f"client-{name}",
            self.ca,
            name if with_cn else None,
            dns=tuple(sans),
            uris=tuple(uris),
            server=False,
        )

    def issue_server(self, stem: str, cn: str = "signer-2") -> CertPair:
        """A further server certificate (SANs localhost, 127.0.0.1) from the trusted CA."""
        return _issue(self.directory, stem, self.ca, cn, dns=("localhost",), ips=("127.0.0.1",), server=True)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> CertPair:
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return CertPair(cert=cert_path, key=key_path)


def _make_ca(directory: Path, stem: str, cn: str) -> CertPair:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, stem, cert, key)


def _issue(
    directory: Path,
    stem: str,
    ca: CertPair,
    cn: str | None,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    server: bool,
) -> CertPair:
    ca_cert = ca.certificate()
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(ec.EllipticCurvePublicKey, ca_cert.public_key())),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    sans += [x509.UniformResourceIdentifier(u) for u in uris]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return _write(directory, stem, cert, key)


def make_pki(
    tmp_path: Path,
    clients: Iterable[str] = ("vc-1", "vc-2"),
    client_sans: Mapping[str, Iterable[str]] | None = None,
) -> Pki:
    """Write a CA, a server certificate (localhost, 127.0.0.1), the named clients, and a foreign CA."""
    directory = tmp_path / "pki"
    directory.mkdir(parents=True, exist_ok=True)
    sans = dict(client_sans or {})
    ca = _make_ca(directory, "ca", "validator-signer test CA")
    server = _issue(directory, "server", ca, "signer", dns=("localhost",), ips=("127.0.0.1",), server=True)
    names = list(clients)
    issued = {
        name: _issue(directory, f"client-{name}", ca, name, dns=tuple(sans.get(name, ())), server=False)
        for name in names
    }
    other_ca = _make_ca(directory, "other-ca", "someone else's CA")
    stranger = _issue(directory, "stranger", other_ca, "stranger", server=False)
    impostor = _issue(directory, "impostor", other_ca, names[0] if names else "vc-1", server=False)
    return Pki(
        directory=directory,
        ca=ca,
        server=server,
        clients=issued,
        other_ca=other_ca,
        stranger=stranger,
        impostor=impostor,
    )
