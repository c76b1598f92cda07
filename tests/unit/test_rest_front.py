"""The REST front in process (signer.api.rest, signer.api.web3signer): the pipeline and the translation,
over a real SigningService (emulated module, SQLite store) and the real Starlette app, without the
HTTP server (the e2e tests run a real ``signer serve``).

Every answer's status comes from signer/api/status.py; every refusal has a JSON body naming it.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from signer import errors
from signer.api.auth import PermissionAuthorizer
from signer.api.context import CallContext
from signer.api.http_server import PEER_KEY
from signer.api.ratelimit import RateLimiter
from signer.api.rest import RestCall, RestContext, accepts_json, build_rest_app
from signer.api.rest_models import parse_sign_request
from signer.api.web3signer import Web3SignerApi, public_key_of
from signer.batching import Batcher
from signer.config import ClientConfig, LimitsConfig, NetworkConfig, RateConfig
from signer.crypto import bls
from signer.eth2 import network_from_config
from signer.eth2.remote_signing import prepare
from signer.keys.emulated import MIN_SCRYPT_N, EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import SigningService
from signer.types import LOCAL_CLIENT, AuditEvent, ClientIdentity, NullMonitor, Scheme
from tests.stores import keys_never_signed

PIN = "rest-front-unit-test-pin"
SECRETS = [bytes([0] * 31 + [i + 1]) for i in range(3)]
NETWORK = network_from_config(NetworkConfig(name="mainnet"))
ZERO = "0x" + "00" * 32


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


PUBLIC_KEYS = [bls.secret_to_public(s) for s in SECRETS]


def fork_info(epoch: int) -> dict[str, Any]:
    version = _hex(NETWORK.fork_version_at(epoch))
    return {
        "fork": {"previous_version": version, "current_version": version, "epoch": str(epoch)},
        "genesis_validators_root": _hex(NETWORK.genesis_validators_root),
    }


def attestation_body(source: int, target: int, root: str = ZERO) -> dict[str, Any]:
    return {
        "type": "ATTESTATION",
        "fork_info": fork_info(target),
        "attestation": {
            "slot": str(target * 32),
            "index": "0",
            "beacon_block_root": root,
            "source": {"epoch": str(source), "root": ZERO},
            "target": {"epoch": str(target), "root": ZERO},
        },
    }


BLOCK_SLOT = 13_000_000
"""A slot whose fork sends the block header (BLOCK_V2 from bellatrix on)."""


def block_body(slot: int = BLOCK_SLOT, state_root: str = ZERO) -> dict[str, Any]:
    return {
        "type": "BLOCK_V2",
        "fork_info": fork_info(slot // 32),
        "beacon_block": {
            "version": NETWORK.fork_name_at(slot // 32).upper(),  # type: ignore[union-attr]
            "block_header": {
                "slot": str(slot),
                "proposer_index": "5",
                "parent_root": ZERO,
                "state_root": state_root,
                "body_root": ZERO,
            },
        },
    }


def deposit_body() -> dict[str, Any]:
    return {
        "type": "DEPOSIT",
        "deposit": {
            "pubkey": _hex(PUBLIC_KEYS[0]),
            "withdrawal_credentials": ZERO,
            "amount": "32000000000",
            "genesis_fork_version": _hex(NETWORK.genesis_fork_version),
        },
    }


@dataclass
class Recorder:
    requests: list[tuple[str, str]] = field(default_factory=list)
    limited: list[str] = field(default_factory=list)
    events: list[AuditEvent] = field(default_factory=list)

    def request_done(self, method: str, outcome: str, duration_s: float) -> None:
        self.requests.append((method, outcome))

    def rate_limited(self, client: str) -> None:
        self.limited.append(client)

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def __getattr__(self, name: str) -> Any:  # every other Monitor method: ignored
        return getattr(NullMonitor(), name)


class _Peer:
    """Stands in for the HTTP server's per-connection identity (signer.api.http_server)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.peer: ClientIdentity | None = LOCAL_CLIENT

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope[PEER_KEY] = self.peer
        await self.app(scope, receive, send)


@dataclass
class Front:
    client: TestClient
    peer: _Peer
    recorder: Recorder
    service: SigningService
    ready: list[bool]


def _front(
    tmp_path: Path,
    *,
    clients: tuple[ClientConfig, ...] | None = None,
    limits: LimitsConfig | None = None,
    max_body_bytes: int = 64 * 1024,
) -> Generator[Front]:
    module = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    module.import_secrets([(f"w/{i}", Scheme.BLS, s) for i, s in enumerate(SECRETS)])
    store = keys_never_signed(SqliteStore(tmp_path / "p.sqlite", NETWORK.genesis_validators_root))
    recorder = Recorder()
    authorizer = PermissionAuthorizer(clients) if clients is not None else None
    service = SigningService(NETWORK, KeyRing(module), store, authorizer=authorizer)
    batcher = Batcher(service)
    limiter = RateLimiter(limits or LimitsConfig(), clients or ())
    rest = RestContext(limiter, recorder, audit=recorder, workers=4, max_body_bytes=max_body_bytes)
    ready = [True]

    def boom(call: RestCall) -> Any:
        raise ValueError("a bug")

    api = Web3SignerApi(
        rest,
        service,
        CallContext(service, signer=batcher, audit=recorder),
        NETWORK,
        readiness=lambda: (ready[0], "ready" if ready[0] else "protection store unreachable"),
        health_checks=lambda: [{"id": "keys-check", "status": "UP", "keys_loaded": 3}],
        reload_keys=lambda client, code: service.keyring.reload_keys(),
    )
    peer = _Peer(build_rest_app([api.routes(), [rest.route("/bug", boom, methods=["GET"], label="bug")]]))
    try:
        with TestClient(peer, raise_server_exceptions=False) as client:
            client.headers.pop("accept", None)  # as Teku and Prysm: no Accept unless a test sends one
            yield Front(client, peer, recorder, service, ready)
    finally:  # also on gen.close(): a batcher thread left running stops the signing pool forking later
        batcher.close()
        rest.close()
        store.close()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    yield from _front(tmp_path)


def sign(
    front: Front, body: dict[str, Any], key: bytes = PUBLIC_KEYS[0], accept: str | None = "application/json"
) -> Any:
    headers = {"accept": accept} if accept else {}
    return front.client.post(f"/api/v1/eth2/sign/{_hex(key)}", content=json.dumps(body), headers=headers)


# --- translation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "json_wanted"),
    [
        (None, False),
        ("", False),
        ("text/plain", False),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("text/plain, application/json;q=0.5", True),
        ("application/json;q=0", False),
        ("*/*", True),
        ("application/*", True),
        ("TEXT/PLAIN;q=1, APPLICATION/JSON", True),
    ],
)
def test_accept_header_decides_json_or_text(accept: str | None, json_wanted: bool) -> None:
    assert accepts_json(accept) is json_wanted


def test_path_public_key_must_be_48_bytes_of_0x_hex() -> None:
    assert public_key_of(_hex(PUBLIC_KEYS[0])) == PUBLIC_KEYS[0]
    for bad in ("0x12", PUBLIC_KEYS[0].hex(), "0x" + "zz" * 48, _hex(PUBLIC_KEYS[0]) + "00"):
        with pytest.raises(errors.MalformedRequest, match="no BLS public key"):
            public_key_of(bad)


# --- answers -------------------------------------------------------------------------------------


def test_attestation_is_signed_as_json_when_accept_allows_it(front: Front) -> None:
    body = attestation_body(1, 2)
    response = sign(front, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    root = prepare(NETWORK, parse_sign_request(json.dumps(body))).signing_root
    assert response.json() == {"signature": _hex(bls.sign(SECRETS[0], root))}
    assert ("Web3Signer/ATTESTATION", "succeeded") in front.recorder.requests
    (event,) = [e for e in front.recorder.events if e.method == "Web3Signer/ATTESTATION"]
    assert (event.client, event.outcome, event.source_epoch, event.target_epoch) == ("local", "succeeded", 1, 2)
    assert event.public_key == PUBLIC_KEYS[0]


def test_signature_is_bare_text_without_accept(front: Front) -> None:
    response = sign(front, block_body(), accept=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("0x") and len(response.text) == 2 + 192


def test_identical_repeat_is_signed_again_and_a_double_vote_is_412_naming_the_offence(front: Front) -> None:
    first = sign(front, attestation_body(1, 2))
    assert sign(front, attestation_body(1, 2)).json() == first.json()  # a client retry is safe
    refused = sign(front, attestation_body(1, 2, root="0x" + "11" * 32))
    assert refused.status_code == 412
    assert refused.json()["offence"] == "double_vote"
    assert refused.json()["message"].startswith("double_vote: ")
    assert ("Web3Signer/ATTESTATION", "denied") in front.recorder.requests
    assert any(e.offence == "double_vote" for e in front.recorder.events)


def test_double_block_is_412(front: Front) -> None:
    assert sign(front, block_body()).status_code == 200
    refused = sign(front, block_body(state_root="0x" + "22" * 32))
    assert refused.status_code == 412
    assert refused.json()["offence"] == "double_block_proposal"


def test_malformed_body_is_400_naming_the_field(front: Front) -> None:
    body = attestation_body(1, 2)
    body["attestation"]["slot"] = "-1"
    response = sign(front, body)
    assert response.status_code == 400
    assert "attestation.slot" in response.json()["message"]
    assert sign(front, {"type": "NOT_A_TYPE"}).status_code == 400
    bad_json = front.client.post(f"/api/v1/eth2/sign/{_hex(PUBLIC_KEYS[0])}", content=b"{not json")
    assert bad_json.status_code == 400
    assert ("Web3Signer/sign", "invalid") in front.recorder.requests


def test_signing_root_mismatch_and_wrong_network_are_400(front: Front) -> None:
    mismatch = attestation_body(1, 2) | {"signingRoot": "0x" + "33" * 32}
    response = sign(front, mismatch)
    assert response.status_code == 400
    assert "signingRoot" in response.json()["message"]
    other = attestation_body(1, 2)
    other["fork_info"]["genesis_validators_root"] = "0x" + "44" * 32
    response = sign(front, other)
    assert response.status_code == 400
    assert "genesis_validators_root" in response.json()["message"]


def test_unknown_key_is_404(front: Front) -> None:
    response = sign(front, attestation_body(1, 2), key=bls.secret_to_public(bytes([0] * 31 + [99])))
    assert response.status_code == 404
    assert "no key loaded" in response.json()["message"]


def test_caller_without_a_certificate_may_not_sign(front: Front) -> None:
    front.peer.peer = None
    response = sign(front, attestation_body(1, 2))
    assert response.status_code == 403
    assert "client certificate" in response.json()["message"]
    assert front.client.get("/api/v1/eth2/publicKeys").status_code == 403
    assert front.client.get("/healthcheck").status_code == 403
    assert front.client.get("/upcheck").status_code == 200  # liveness only


def test_a_bug_is_500_with_the_request_id_and_the_server_keeps_serving(front: Front) -> None:
    response = front.client.get("/bug", headers={"x-request-id": "req-7"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "req-7"
    assert "a bug" not in response.text
    assert front.client.get("/upcheck").status_code == 200


def test_unknown_route_and_method_are_json_404_and_405(front: Front) -> None:
    assert front.client.get("/nope").status_code == 404
    assert "no such endpoint" in front.client.get("/nope").json()["message"]
    assert front.client.get(f"/api/v1/eth2/sign/{_hex(PUBLIC_KEYS[0])}").status_code == 405


def test_body_over_the_limit_is_refused(tmp_path: Path) -> None:
    gen = _front(tmp_path, max_body_bytes=256)
    front = next(gen)
    try:
        response = sign(front, attestation_body(1, 2))
        assert response.status_code == 400
        assert "over the limit of 256 bytes" in response.json()["message"]
    finally:
        gen.close()


def test_rate_limited_client_gets_429_with_retry_after(tmp_path: Path) -> None:
    limits = LimitsConfig(default_rate=RateConfig(per_second=0.01, burst=1))
    gen = _front(tmp_path, limits=limits)
    front = next(gen)
    try:
        assert sign(front, attestation_body(1, 2)).status_code == 200
        response = sign(front, attestation_body(2, 3))
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) >= 1
        assert "rate limit" in response.json()["message"]
        assert front.recorder.limited == ["local"]
        assert any(e.outcome == "rate_limited" for e in front.recorder.events)
    finally:
        gen.close()


def test_deposit_needs_its_own_permission(tmp_path: Path) -> None:
    clients = (ClientConfig(name="local", allow_accounts=("*",), operations=("sign_generic", "sign_attestation")),)
    gen = _front(tmp_path, clients=clients)
    front = next(gen)
    try:
        response = sign(front, deposit_body())
        assert response.status_code == 403
        assert "sign_deposit" in response.json()["message"]
        assert sign(front, attestation_body(1, 2)).status_code == 200
    finally:
        gen.close()


def test_public_keys_lists_what_the_client_may_sign_with(tmp_path: Path) -> None:
    clients = (ClientConfig(name="local", allow_accounts=("w/1",), operations=("sign_attestation",)),)
    gen = _front(tmp_path, clients=clients)
    front = next(gen)
    try:
        assert front.client.get("/api/v1/eth2/publicKeys").json() == [_hex(PUBLIC_KEYS[1])]
        assert sign(front, attestation_body(1, 2), key=PUBLIC_KEYS[0]).status_code == 403
        front.peer.peer = ClientIdentity(name="stranger")
        assert front.client.get("/api/v1/eth2/publicKeys").status_code == 403
    finally:
        gen.close()


def test_upcheck_healthcheck_reload_and_high_watermark(front: Front) -> None:
    assert front.client.get("/upcheck", headers={"accept": "text/plain"}).text == "OK"
    assert front.client.get("/upcheck", headers={"accept": "application/json"}).json() == {"status": "OK"}
    health = front.client.get("/healthcheck")
    assert health.status_code == 200
    assert health.json()["status"] == "UP"
    front.ready[0] = False
    down = front.client.get("/healthcheck")
    assert down.status_code == 503
    assert down.json()["status"] == "DOWN"
    assert down.json()["reason"] == "protection store unreachable"
    assert front.client.get("/reload").json() == {"status": "not_started"}
    reloaded = front.client.post("/reload")
    assert reloaded.status_code == 200
    assert reloaded.json()["keys"] == 3
    status = front.client.get("/reload").json()
    assert status["status"] == "completed"
    assert status["keys"] == 3
    assert front.client.get("/api/v1/eth2/highWatermark").json() == {}
