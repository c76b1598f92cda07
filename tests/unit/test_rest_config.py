"""Where the REST front listens (server.http_listen): off unless configured, on in ``serve --dev`` at
127.0.0.1:9000, moved by ``--http-listen``, and held to the same plaintext rule as gRPC."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from signer.app import validate_config
from signer.cli import DEV_HTTP_LISTEN, build_parser, serve_config_from_args
from signer.config import Config, parse_config
from signer.errors import ConfigError
from tests.certs import make_pki

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


KEYS = {"module": "emulated", "data_dir": "/tmp/unused", "pin": {"env": "UNUSED_PIN"}}


def config_of(server: dict[str, object]) -> Config:
    return parse_config({"keys": KEYS, "server": server})


def dev_config(tmp_path: Path, *extra: str) -> Config:
    args = build_parser().parse_args(["serve", "--dev", "--data-dir", str(tmp_path / "data"), *extra])
    return serve_config_from_args(args)


def test_rest_front_is_off_unless_configured() -> None:
    assert config_of({}).server.http_listen is None


def test_dev_serves_rest_on_loopback_9000_and_the_flag_moves_it(tmp_path: Path) -> None:
    assert DEV_HTTP_LISTEN == "127.0.0.1:9000"
    assert dev_config(tmp_path).server.http_listen == "127.0.0.1:9000"
    moved = dev_config(tmp_path, "--http-listen", "127.0.0.1:19000")
    assert moved.server.http_listen == "127.0.0.1:19000"


def test_dev_refuses_rest_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--dev serves on loopback only; 0\.0\.0\.0:9000"):
        dev_config(tmp_path, "--http-listen", "0.0.0.0:9000")


def test_plaintext_rest_off_loopback_is_refused_naming_the_key() -> None:
    config = config_of({"http_listen": "0.0.0.0:9000"})
    with pytest.raises(ConfigError, match=r"server.http_listen: '0.0.0.0' is not a loopback address"):
        validate_config(config)
    allowed = config_of({"http_listen": "0.0.0.0:9000", "allow_insecure_plaintext": True})
    assert validate_config(allowed).http_tls is False


def test_rest_serves_tls_with_the_grpc_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki.server.cert), "key_file": str(pki.server.key), "client_ca_file": str(pki.ca.cert)}
    checked = validate_config(config_of({"http_listen": "0.0.0.0:9000", "tls": tls}))
    assert checked.http_tls is True
    assert validate_config(config_of({"tls": tls})).http_tls is False  # REST off


def test_bad_http_listen_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server\.http_listen"):
        validate_config(config_of({"http_listen": "nowhere"}))
    with pytest.raises(Exception, match="http_client_certs"):
        config_of({"http_client_certs": "sometimes"})


def test_slot_burst_bodies_are_valid_web3signer_requests() -> None:
    """Smoke test of bench/slot_burst.py: what it sends parses and prepares on its network."""
    import slot_burst  # type: ignore[import-not-found]  # noqa: PLC0415 -- bench/ is put on sys.path above

    from signer.api.rest_models import parse_sign_request  # noqa: PLC0415
    from signer.eth2.remote_signing import prepare  # noqa: PLC0415

    for body in (slot_burst.attestation(200, 7), slot_burst.aggregation_slot(200)):
        request = parse_sign_request(body)
        assert prepare(slot_burst.NETWORK, request).signing_root
    assert json.loads(slot_burst.attestation(200, 7))["attestation"]["target"]["epoch"] == "200"
