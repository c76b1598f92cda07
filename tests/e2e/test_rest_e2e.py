"""End to end, the REST front (the Web3Signer remote-signing API) of a real ``signer serve`` process:
every status code a validator client can see, the client-certificate identity and permissions under
TLS, the plaintext policy, and a concurrent burst coalesced into few protection transactions.

* ``dev``: one ``serve --dev`` process (module scope, 64 dev keys, plaintext on loopback, where the
  caller is ``local`` and may do everything): 200 JSON and text/plain, 400, 404, 412 (double vote,
  double block), the burst, the read-only routes;
* ``serve --dev --rate-limit``: 429 with Retry-After;
* a ``serve --dev`` whose SQLite store is held locked by the test: 503;
* ``serve --config`` with ``[server.tls]`` and ``[[clients]]``: the certificate's name decides
  (200 for a client that may, 403 for one that may not, DEPOSIT behind sign_deposit), a caller
  without a certificate fails the handshake; plaintext off loopback is refused at start.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from signer.crypto import bls
from signer.keys.dev import DEV_PIN
from tests.certs import Pki, make_pki
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_security_e2e import keys_toml, signer_cli
from tests.unit.test_rest_front import attestation_body, block_body, deposit_body

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BURST_KEYS = 64
TIMEOUT_S = 30.0


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def sign(
    base: str, key: str, body: dict[str, Any], *, accept: str | None = "application/json", **kw: Any
) -> httpx.Response:
    headers = {"accept": accept} if accept is not None else {}
    with httpx.Client(timeout=TIMEOUT_S, **kw) as client:
        client.headers.pop("accept", None)
        return client.post(f"{base}/api/v1/eth2/sign/{key}", content=json.dumps(body), headers=headers)


def metric(proc: SignerProcess, name: str, **labels: str) -> float:
    text = httpx.get(proc.metrics_url, timeout=TIMEOUT_S).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(part in (match.group(1) or "") for part in want.split(",") if part):
            total += float(match.group(2))
    return total


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SignerProcess, list[str]]]:
    proc = SignerProcess.dev(tmp_path_factory.mktemp("rest-dev") / "data", dev_keys=BURST_KEYS).start()
    try:
        keys = httpx.get(f"{proc.rest_url}/api/v1/eth2/publicKeys", timeout=TIMEOUT_S).json()
        assert len(keys) == BURST_KEYS
        yield proc, keys
    finally:
        assert proc.terminate() == 0, proc.logs


# --- plaintext loopback (--dev): every answer --------------------------------------------------------


def test_signature_is_json_when_accepted_and_text_otherwise(dev: tuple[SignerProcess, list[str]]) -> None:
    proc, keys = dev
    as_json = sign(proc.rest_url, keys[0], attestation_body(1, 2))
    assert as_json.status_code == 200, as_json.text
    assert as_json.headers["content-type"].startswith("application/json")
    signature = as_json.json()["signature"]
    as_text = sign(proc.rest_url, keys[0], attestation_body(1, 2), accept=None)  # a retry: same data
    assert as_text.status_code == 200
    assert as_text.headers["content-type"].startswith("text/plain")
    assert as_text.text == signature
    # Lodestar's way: Connection: close on every request, answered before the server closes
    closing = sign(proc.rest_url, keys[0], block_body(), headers={"connection": "close"})
    assert closing.status_code == 200
    assert closing.headers.get("connection") == "close"


def test_malformed_request_is_400(dev: tuple[SignerProcess, list[str]]) -> None:
    proc, keys = dev
    body = attestation_body(1, 2)
    del body["attestation"]["target"]
    response = sign(proc.rest_url, keys[1], body)
    assert response.status_code == 400
    assert "attestation.target" in response.json()["message"]
    mismatch = sign(proc.rest_url, keys[1], attestation_body(1, 2) | {"signingRoot": "0x" + "ab" * 32})
    assert mismatch.status_code == 400
    assert "signingRoot" in mismatch.json()["message"]


def test_unknown_key_is_404(dev: tuple[SignerProcess, list[str]]) -> None:
    proc, _ = dev
    stranger = _hex(bls.secret_to_public(bytes([0] * 31 + [77])))
    response = sign(proc.rest_url, stranger, attestation_body(1, 2))
    assert response.status_code == 404
    assert "no key loaded" in response.json()["message"]


def test_double_vote_and_double_block_are_412_naming_the_offence(dev: tuple[SignerProcess, list[str]]) -> None:
    proc, keys = dev
    assert sign(proc.rest_url, keys[2], attestation_body(3, 4)).status_code == 200
    vote = sign(proc.rest_url, keys[2], attestation_body(3, 4, root="0x" + "01" * 32))
    assert vote.status_code == 412
    assert vote.json()["offence"] == "double_vote"
    assert sign(proc.rest_url, keys[3], block_body()).status_code == 200
    block = sign(proc.rest_url, keys[3], block_body(state_root="0x" + "02" * 32))
    assert block.status_code == 412
    assert block.json()["offence"] == "double_block_proposal"
    assert metric(proc, "signer_requests_total", method="Web3Signer/ATTESTATION", outcome="denied") >= 1
    assert metric(proc, "signer_requests_total", method="Web3Signer/BLOCK_V2", outcome="denied") >= 1
    audit = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert any(r.get("method") == "Web3Signer/ATTESTATION" and r.get("offence") == "double_vote" for r in audit)


def test_concurrent_burst_is_coalesced_into_few_protection_transactions(dev: tuple[SignerProcess, list[str]]) -> None:
    proc, keys = dev
    before = metric(proc, "signer_protection_store_duration_seconds_count", operation="check_and_record")

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=len(keys))
        async with httpx.AsyncClient(timeout=TIMEOUT_S, limits=limits) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{proc.rest_url}/api/v1/eth2/sign/{key}",
                        content=json.dumps(attestation_body(10, 11)),
                        headers={"accept": "application/json"},
                    )
                    for key in keys
                )
            )

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * len(keys)
    transactions = metric(proc, "signer_protection_store_duration_seconds_count", operation="check_and_record") - before
    assert 1 <= transactions <= len(keys) // 2, transactions


def test_read_only_routes(dev: tuple[SignerProcess, list[str]]) -> None:
    proc, _ = dev
    assert httpx.get(f"{proc.rest_url}/upcheck", headers={"accept": "text/plain"}).text == "OK"
    health = httpx.get(f"{proc.rest_url}/healthcheck", timeout=TIMEOUT_S)
    assert health.status_code == 200
    assert {c["id"]: c["status"] for c in health.json()["checks"]} == {
        "keys-check": "UP",
        "slashing-protection-db-health-check": "UP",
    }
    assert httpx.get(f"{proc.rest_url}/api/v1/eth2/highWatermark").json() == {}
    assert httpx.post(f"{proc.rest_url}/reload", timeout=TIMEOUT_S).json()["status"] == "completed"
    assert httpx.get(f"{proc.rest_url}/reload").json()["status"] == "completed"


# --- 429 and 503 -----------------------------------------------------------------------------------


def test_client_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    proc = SignerProcess.dev(tmp_path / "data", dev_keys=1, extra_args=["--rate-limit", "0.05:2"]).start()
    try:
        (key,) = httpx.get(f"{proc.rest_url}/api/v1/eth2/publicKeys", timeout=TIMEOUT_S).json()
        assert sign(proc.rest_url, key, attestation_body(1, 2)).status_code == 200
        limited = sign(proc.rest_url, key, attestation_body(2, 3))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit" in limited.json()["message"]
        assert metric(proc, "signer_rate_limited_total") >= 1
    finally:
        assert proc.terminate() == 0, proc.logs


def test_protection_store_unavailable_is_503_and_nothing_is_signed(tmp_path: Path) -> None:
    proc = SignerProcess.dev(tmp_path / "data", dev_keys=1).start()
    try:
        (key,) = httpx.get(f"{proc.rest_url}/api/v1/eth2/publicKeys", timeout=TIMEOUT_S).json()
        holder = sqlite3.connect(tmp_path / "data" / "protection.sqlite", isolation_level=None, timeout=10)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # the signer's write waits its timeout_s, then refuses
            response = sign(proc.rest_url, key, attestation_body(5, 6))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert response.status_code == 503, response.text
        assert "unavailable" in response.json()["message"]
        assert sign(proc.rest_url, key, attestation_body(5, 6)).status_code == 200  # store back: signs
    finally:
        assert proc.terminate() == 0, proc.logs


# --- TLS: the certificate names the client -----------------------------------------------------------

TLS_CLIENTS = ("vc-rest", "vc-generic", "ops")


def tls_config(pki: Pki, data_dir: Path, pin_file: Path, http_listen: str = "127.0.0.1:0") -> str:
    return f"""
[server]
shutdown_grace_s = 2.0
http_listen = "{http_listen}"

[server.tls]
cert_file = "{pki.server.cert}"
key_file = "{pki.server.key}"
client_ca_file = "{pki.ca.cert}"
{keys_toml(data_dir, pin_file)}
[[clients]]
name = "vc-rest"
allow_accounts = ["dev/*"]
operations = ["sign_attestation", "sign_proposal", "sign_generic"]

[[clients]]
name = "vc-generic"
allow_accounts = ["dev/*"]
operations = ["sign_generic"]

[[clients]]
name = "ops"
allow_accounts = ["*"]
operations = ["sign_deposit"]
"""


def _tls(pki: Pki, client: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client is not None:
        ctx.load_cert_chain(str(pki.clients[client].cert), str(pki.clients[client].key))
    return ctx


@pytest.fixture(scope="module")
def tls_signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SignerProcess, Pki, str, Path]]:
    base = tmp_path_factory.mktemp("rest-tls")
    pki = make_pki(base, clients=TLS_CLIENTS)
    data_dir = base / "data"
    signer_cli("keys", "dev", "--data-dir", data_dir, "--count", "2")
    pin_file = base / "dev.pin"
    pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
    pin_file.chmod(0o600)
    config = base / "signer.toml"
    config.write_text(tls_config(pki, data_dir, pin_file), encoding="utf-8")
    init_protection(config)
    proc = SignerProcess.from_config(config).start()
    try:
        assert proc.rest_port
        with httpx.Client(verify=_tls(pki, "vc-rest"), timeout=TIMEOUT_S) as client:
            keys = client.get(f"https://127.0.0.1:{proc.rest_port}/api/v1/eth2/publicKeys").json()
        yield proc, pki, keys[0], base
    finally:
        assert proc.terminate() == 0, proc.logs


def test_tls_client_certificate_names_the_client_and_its_permissions_apply(
    tls_signer: tuple[SignerProcess, Pki, str, Path],
) -> None:
    proc, pki, key, _ = tls_signer
    base = f"https://127.0.0.1:{proc.rest_port}"
    allowed = sign(base, key, attestation_body(1, 2), verify=_tls(pki, "vc-rest"))
    assert allowed.status_code == 200, allowed.text
    denied = sign(base, key, attestation_body(2, 3), verify=_tls(pki, "vc-generic"))
    assert denied.status_code == 403
    assert "vc-generic" in denied.json()["message"]
    assert "sign_attestation" in denied.json()["message"]
    # DEPOSIT is behind its own permission: sign_generic does not cover it
    assert sign(base, key, deposit_body(), verify=_tls(pki, "vc-rest")).status_code == 403
    assert sign(base, key, deposit_body(), verify=_tls(pki, "ops")).status_code != 403
    assert metric(proc, "signer_requests_total", method="Web3Signer/ATTESTATION", outcome="denied") >= 1


def test_tls_without_a_client_certificate_fails_the_handshake(
    tls_signer: tuple[SignerProcess, Pki, str, Path],
) -> None:
    proc, pki, key, _ = tls_signer
    with pytest.raises(httpx.HTTPError):
        sign(f"https://127.0.0.1:{proc.rest_port}", key, attestation_body(1, 2), verify=_tls(pki, None))
    # plaintext to the TLS port gets no signature either
    with pytest.raises(httpx.HTTPError):
        sign(f"http://127.0.0.1:{proc.rest_port}", key, attestation_body(1, 2))


def test_plaintext_rest_off_loopback_refuses_to_start(tls_signer: tuple[SignerProcess, Pki, str, Path]) -> None:
    _, _, _, base = tls_signer
    config = base / "plaintext.toml"
    config.write_text(
        f"""
[server]
http_listen = "0.0.0.0:0"
{keys_toml(base / "data", base / "dev.pin")}
""",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "signer", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "server.http_listen" in done.stderr
    assert "not a loopback address" in done.stderr
    assert "Traceback" not in done.stderr
