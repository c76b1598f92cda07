"""Peers of distributed accounts (issue 17.1): who may call the DKG service, and the configuration."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import grpc
import pytest

from signer import errors
from signer.api.auth import PermissionAuthorizer
from signer.api.dkg import PEER_ID_KEY, DistributedNode, PeerChannels, PeerCredentials
from signer.app import peer_credentials
from signer.cli import build_parser, serve_config_from_args
from signer.config import ClientConfig, DistributedConfig, TlsConfig, parse_config
from signer.types import LOCAL_CLIENT, ClientIdentity

PEERS = [
    {"id": 1, "address": "signer-1.example:9091", "identity": "signer-1.example"},
    {"id": 2, "address": "signer-2.example:9091", "identity": "signer-2.example"},
    {"id": 3, "address": "signer-3.example:9091", "identity": "signer-3.example"},
]


def node(*, dev: bool, clients: list[ClientConfig] | None = None) -> DistributedNode:
    config = DistributedConfig.model_validate({"id": 1, "peers": PEERS})
    service: Any = SimpleNamespace(authorizer=PermissionAuthorizer(clients or []))
    channels = PeerChannels(config, PeerCredentials(1))
    accounts: Any = SimpleNamespace()
    return DistributedNode(config, accounts, service, channels, trust_peer_metadata=dev)


class Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata


def context(metadata: tuple[tuple[str, str], ...] = ()) -> grpc.ServicerContext:
    """The one thing sender_id reads of a gRPC context: its invocation metadata."""
    return cast(grpc.ServicerContext, Context(metadata))


PEER_CLIENTS = [
    ClientConfig(name="signer-2.example", operations=("dkg",)),
    ClientConfig(name="vouch", operations=("dkg", "sign_attestation")),
    ClientConfig(name="signer-3.example", operations=("sign_attestation",)),
]


def test_a_peer_is_recognised_by_its_certificate_name_and_needs_the_dkg_permission() -> None:
    n = node(dev=False, clients=PEER_CLIENTS)
    assert n.sender_id(context(), ClientIdentity("signer-2.example")) == 2
    # A SAN names it as well (a certificate may carry the host name only there).
    caller = ClientIdentity("signer-2.example", alt_names=("dns:signer-2.example",))
    assert n.sender_id(context(), caller) == 2


def test_a_caller_that_is_not_a_configured_peer_is_refused_by_name() -> None:
    n = node(dev=False, clients=PEER_CLIENTS)
    with pytest.raises(errors.AccessDenied, match="'vouch' is not a configured peer"):
        n.sender_id(context(), ClientIdentity("vouch"))


def test_a_peer_without_the_dkg_permission_is_refused() -> None:
    n = node(dev=False, clients=PEER_CLIENTS)
    with pytest.raises(errors.AccessDenied):
        n.sender_id(context(), ClientIdentity("signer-3.example"))


def test_the_peer_id_metadata_is_not_believed_outside_dev() -> None:
    n = node(dev=False, clients=PEER_CLIENTS)
    with pytest.raises(errors.AccessDenied, match="mTLS only"):
        n.sender_id(context(((PEER_ID_KEY, "2"),)), LOCAL_CLIENT)


def test_in_dev_on_loopback_the_caller_names_its_peer_id() -> None:
    n = node(dev=True)
    assert n.sender_id(context(((PEER_ID_KEY, "3"),)), LOCAL_CLIENT) == 3
    with pytest.raises(errors.AccessDenied, match="must name its peer id"):
        n.sender_id(context(), LOCAL_CLIENT)
    with pytest.raises(errors.AccessDenied, match=r"\(participant 9\) is not a configured peer"):
        n.sender_id(context(((PEER_ID_KEY, "9"),)), LOCAL_CLIENT)


# --- configuration -----------------------------------------------------------------------------


def config_with(distributed: dict[str, Any], *, tls: bool = False) -> Any:
    data: dict[str, Any] = {"keys": {"pin": {"env": "PIN"}}, "distributed": distributed}
    if tls:
        data["server"] = {"tls": {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"}}
    return parse_config(data)


@pytest.mark.parametrize(
    ("distributed", "message"),
    [
        ({"id": 4, "peers": PEERS}, "distributed.id 4 is not among distributed.peers"),
        ({"id": 1, "peers": [*PEERS, {"id": 2, "address": "x:1"}]}, "id 2 is listed twice"),
        ({"id": 1, "peers": [{"id": 1, "address": "no-port"}]}, "is not HOST:PORT"),
        ({"id": 0, "peers": PEERS}, "greater than or equal to 1"),
        (
            {"id": 1, "peers": [PEERS[0], {**PEERS[1], "identity": "signer-1.example"}]},
            "identity 'signer-1.example' is given to two peers",
        ),
    ],
)
def test_a_bad_distributed_section_is_refused_naming_it(distributed: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        config_with(distributed)


def test_under_tls_every_peer_needs_an_identity() -> None:
    peers = [{"id": 1, "address": "a:1"}, {"id": 2, "address": "b:1", "identity": "b"}, {"id": 3, "address": "c:1"}]
    with pytest.raises(errors.ConfigError, match="peer 1 has no identity"):
        config_with({"id": 2, "peers": peers}, tls=True)


def test_plaintext_between_peers_only_in_dev_on_loopback(tmp_path: Path) -> None:
    config = DistributedConfig.model_validate({"id": 1, "peers": PEERS})
    with pytest.raises(errors.ConfigError, match="needs mTLS"):
        peer_credentials(config, None, dev_plaintext=False)
    assert not peer_credentials(config, None, dev_plaintext=True).tls
    for name in ("cert", "key", "ca"):
        (tmp_path / name).write_bytes(f"{name}-material".encode())
    tls = TlsConfig(cert_file=tmp_path / "cert", key_file=tmp_path / "key", client_ca_file=tmp_path / "ca")
    credentials = peer_credentials(config, tls, dev_plaintext=False)
    assert (credentials.cert, credentials.key, credentials.ca) == (b"cert-material", b"key-material", b"ca-material")
    assert "key-material" not in repr(credentials)  # the private key is never shown


def serve(*args: str) -> Any:
    return serve_config_from_args(build_parser().parse_args(["serve", *args]))


def test_serve_dev_takes_its_peers_from_the_command_line(tmp_path: Path) -> None:
    config = serve(
        "--dev", "--data-dir", str(tmp_path), "--peer-id", "2", "--peers", "1=127.0.0.1:9501,2=127.0.0.1:9502"
    )
    assert config.distributed is not None
    assert config.distributed.id == 2
    assert [(p.id, p.address) for p in config.distributed.peers] == [(1, "127.0.0.1:9501"), (2, "127.0.0.1:9502")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peer-id", "2"], "needs both --peer-id N and --peers"),
        (["--peers", "1=127.0.0.1:1"], "needs both --peer-id N and --peers"),
        (["--peer-id", "3", "--peers", "1=127.0.0.1:1,2=127.0.0.1:2"], "distributed.id 3 is not among"),
        (["--peer-id", "1", "--peers", "1:127.0.0.1:1"], "is not ID=HOST:PORT"),
    ],
)
def test_serve_dev_refuses_incomplete_peers(tmp_path: Path, args: list[str], message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message):
        serve("--dev", "--data-dir", str(tmp_path), *args)


def test_check_config_refuses_distributed_accounts_without_mtls(tmp_path: Path) -> None:
    from signer.cli import check_config  # noqa: PLC0415

    pin = tmp_path / "pin"
    pin.write_text("a-long-enough-module-pin\n")
    config = tmp_path / "signer.toml"
    config.write_text(
        f'[keys]\ndata_dir = "{tmp_path}"\npin = {{ file = "{pin}" }}\n'
        '[distributed]\nid = 1\n[[distributed.peers]]\nid = 1\naddress = "127.0.0.1:9091"\n'
        '[[distributed.peers]]\nid = 2\naddress = "127.0.0.1:9092"\n'
    )
    with pytest.raises(errors.ConfigError, match="needs mTLS"):
        check_config(config)
