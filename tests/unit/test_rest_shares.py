"""A share of a distributed account on the Web3Signer REST front: never listed, never signed.

The clients of this API (Lighthouse, Teku, Prysm, Nimbus, Lodestar) take the signature they get as
the validator's; a share's signature is partial and only a combining client (Vouch, over Dirk's API)
can use it. So the front refuses a share, or the composite key it stands for, by name (400).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from signer.api.context import CallContext
from signer.api.ratelimit import RateLimiter
from signer.api.rest import RestContext, build_rest_app
from signer.api.web3signer import Web3SignerApi
from signer.batching import Batcher
from signer.config import LimitsConfig
from signer.crypto import bls
from signer.crypto import threshold as th
from signer.distributed.accounts import DistributedAccounts
from signer.distributed.dkg import Endpoint
from signer.keys.emulated import MIN_SCRYPT_N, EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import SigningService
from signer.types import Scheme
from tests.stores import keys_never_signed
from tests.unit.test_rest_front import NETWORK, PIN, Recorder, _Peer, attestation_body

PARTICIPANTS = tuple(Endpoint(i, "127.0.0.1", 9000 + i) for i in (1, 2, 3))
PLAIN_SECRET = bytes([0] * 31 + [7])


class Cluster:
    def __init__(self, client: TestClient, share: bytes, composite: bytes) -> None:
        self.client, self.share, self.composite = client, share, composite
        self.plain = bls.secret_to_public(PLAIN_SECRET)

    def sign(self, key: bytes) -> Any:
        body = json.dumps(attestation_body(5, 6))
        return self.client.post(
            f"/api/v1/eth2/sign/0x{key.hex()}", content=body, headers={"accept": "application/json"}
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    module = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    module.import_secrets([("w/plain", Scheme.BLS, PLAIN_SECRET)])
    polynomial = th.Polynomial.random(2)
    vector = polynomial.verification_vector()
    accounts = DistributedAccounts(module, tmp_path / "keys")
    accounts.add(
        "dist/a",
        polynomial.share(2),
        threshold=2,
        participants=PARTICIPANTS,
        composite_public_key=vector.public_key,
        verification_vector=vector.commitments,
    )
    store = keys_never_signed(SqliteStore(tmp_path / "p.sqlite", NETWORK.genesis_validators_root))
    service = SigningService(NETWORK, KeyRing(module, validator_keys=accounts), store)
    batcher = Batcher(service)
    recorder = Recorder()
    rest = RestContext(RateLimiter(LimitsConfig(), ()), recorder, audit=recorder, workers=2, max_body_bytes=65536)
    api = Web3SignerApi(
        rest,
        service,
        CallContext(service, signer=batcher, audit=recorder),
        NETWORK,
        readiness=lambda: (True, "ready"),
        health_checks=lambda: [],
        reload_keys=lambda client, code: service.keyring.reload_keys(),
    )
    with TestClient(_Peer(build_rest_app([api.routes()])), raise_server_exceptions=False) as client:
        yield Cluster(client, polynomial.share(2).public_key(), vector.public_key)
    batcher.close()
    rest.close()
    store.close()
    module.close()


def test_a_share_is_not_listed_as_a_public_key(cluster: Cluster) -> None:
    listed = cluster.client.get("/api/v1/eth2/publicKeys", headers={"accept": "application/json"}).json()
    assert listed == ["0x" + cluster.plain.hex()]


@pytest.mark.parametrize("which", ["share", "composite"])
def test_a_share_or_its_composite_key_is_refused_by_name_and_nothing_is_signed(cluster: Cluster, which: str) -> None:
    answer = cluster.sign(cluster.share if which == "share" else cluster.composite)
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "share of a distributed account" in message and "partial" in message
    assert cluster.sign(cluster.plain).status_code == 200
