"""Distributed accounts in production form (issue 17.1): three ``signer serve --config`` processes
over mTLS, each with ``[distributed]`` peers named by their client certificates and the ``dkg``
permission. The DKG runs between them; a client that is not a configured peer is refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    dkg_pb2,
    dkg_pb2_grpc,
    lister_pb2,
    lister_pb2_grpc,
    responsestate_pb2,
)
from signer.crypto import threshold as th
from signer.keys.dev import DEV_PIN
from tests.certs import Pki, make_pki
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_distributed_e2e import free_port
from tests.e2e.test_security_e2e import credentials, keys_toml, signer_cli

pytestmark = pytest.mark.e2e

PEERS = ("signer-1", "signer-2", "signer-3")


def config_toml(pki: Pki, data_dir: Path, pin_file: Path, peer_id: int, ports: dict[int, int]) -> str:
    peers = "".join(
        f'\n[[distributed.peers]]\nid = {i}\naddress = "127.0.0.1:{port}"\nidentity = "signer-{i}"\n'
        for i, port in sorted(ports.items())
    )
    client = pki.clients[f"signer-{peer_id}"]
    return f"""
[server]
grpc_listen = "127.0.0.1:{ports[peer_id]}"
shutdown_grace_s = 2.0

[server.tls]
cert_file = "{pki.server.cert}"
key_file = "{pki.server.key}"
client_ca_file = "{pki.ca.cert}"
reload_interval_s = 3600.0
{keys_toml(data_dir, pin_file)}
[distributed]
id = {peer_id}
client_cert_file = "{client.cert}"
client_key_file = "{client.key}"
{peers}
[[clients]]
name = "vc"
allow_accounts = ["*"]
operations = ["account_management", "sign_attestation", "sign_generic"]

[[clients]]
name = "intruder"
operations = ["dkg"]
{"".join(f'{chr(10)}[[clients]]{chr(10)}name = "{p}"{chr(10)}operations = ["dkg"]{chr(10)}' for p in PEERS)}
"""


@dataclass
class Cluster:
    pki: Pki
    signers: dict[int, SignerProcess]

    def channel(self, peer_id: int, client: str = "vc") -> grpc.Channel:
        return self.signers[peer_id].channel(credentials(self.pki.ca, self.pki.clients[client]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("distributed-mtls")
    pki = make_pki(base, clients=(*PEERS, "vc", "intruder"))
    ports = {i: free_port() for i in (1, 2, 3)}
    signers: dict[int, SignerProcess] = {}
    try:
        for i, port in ports.items():
            data_dir = base / f"data{i}"
            signer_cli("keys", "dev", "--data-dir", data_dir, "--count", "1")
            pin_file = base / f"data{i}.pin"
            pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
            pin_file.chmod(0o600)
            config = base / f"signer{i}.toml"
            config.write_text(config_toml(pki, data_dir, pin_file, i, ports), encoding="utf-8")
            init_protection(config)
            signers[i] = SignerProcess.from_config(config, extra_args=["--grpc-listen", f"127.0.0.1:{port}"])
            signers[i].start()
        yield Cluster(pki, signers)
    finally:
        for proc in signers.values():
            proc.stop()


def test_a_dkg_over_mtls_gives_every_participant_a_share_of_one_key(cluster: Cluster) -> None:
    stub = accountmanager_pb2_grpc.AccountManagerStub(cluster.channel(1))
    response = stub.Generate(
        accountmanager_pb2.GenerateRequest(
            account="dist/tls", passphrase=DEV_PIN.encode(), participants=3, signing_threshold=2
        ),
        timeout=60,
    )
    assert response.state == responsestate_pb2.SUCCEEDED, response.message
    shares = {}
    for i in cluster.signers:
        listed = lister_pb2_grpc.ListerStub(cluster.channel(i)).ListAccounts(
            lister_pb2.ListAccountsRequest(paths=["dist"]), timeout=10
        )
        (account,) = listed.DistributedAccounts
        assert account.composite_public_key == response.public_key
        shares[i] = bytes(account.public_key)
    assert th.combine_public_keys({1: shares[1], 3: shares[3]}, 2) == response.public_key


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ("intruder", "'intruder' is not a configured peer"),  # may call the DKG, but is no peer
        ("vc", "dkg"),  # a client of the signer, without the dkg permission
    ],
)
def test_a_caller_that_is_not_a_configured_peer_is_refused_by_name(cluster: Cluster, client: str, message: str) -> None:
    stub = dkg_pb2_grpc.DKGStub(cluster.channel(2, client))
    with pytest.raises(grpc.RpcError) as refused:
        stub.Abort(dkg_pb2.AbortRequest(account="dist/tls"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert message in (refused.value.details() or "")
