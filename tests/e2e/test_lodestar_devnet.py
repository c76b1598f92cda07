"""Proof with a real client (issue 15): a Lodestar 1.5.1 dev chain whose validator client signs every
message through ``signer serve``'s Web3Signer REST front, keys imported through the Keymanager API.

NOT COLLECTED YET: tests/e2e/conftest.py lists this file in ``collect_ignore`` until the REST front
exists. The front's engineer turns it on by deleting that entry, after checking the three
assumptions marked FRONT below (config key of the HTTP listener, where the Keymanager bearer token
lives, the audit ``operation`` names) against what the front really does.

Scenario 1: the chain (8 interop validators, altair@0, bellatrix@1, capella@2, 1 s slots, 8 slots
per epoch) finalizes an epoch >= 3; every canonical block and every validator's attestation of the
finalized epochs is in the signer's audit log, and the signer refused nothing.
Scenario 2: after a validator-client restart the chain keeps finalizing, and a conflicting
attestation (same target, other block root) for a key that already attested is refused with 412
naming the offence. A fresh Lodestar validator client never re-requests duties its predecessor
signed (measured), so the conflicting request is sent directly.

Wall clock (measured with the harness and a stand-in signer on a loaded 2-core machine): beacon
start ~14 s, validator start -> finalized 3 ~40 s, stop < 1 s; budget here: 180 s to finality.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signer.keys.eip2335 import KdfParams, encrypt_keystore
from tests.e2e.harness import SignerProcess
from tests.e2e.lodestar import (
    LodestarDevnet,
    free_port,
    interop_public_keys,
    interop_secrets,
    network_toml,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

VALIDATORS = 8
PIN = "lodestar-devnet-pin"
KEYSTORE_PASSWORD = "interop"  # noqa: S105 - test keystores of public interop keys

# FRONT: the config key of the REST listener (issue 15: server.http_listen).
HTTP_LISTEN_KEY = "http_listen"
# FRONT: the Keymanager bearer token file, created on first start when absent (issue 15).
TOKEN_FILE = "keymanager-token"  # noqa: S105 - a file name, not a secret
# FRONT: the audit log's operation names for blocks and attestations (signer.config.Operation).
BLOCK_OPERATION = "sign_proposal"
ATTESTATION_OPERATION = "sign_attestation"


def _request(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback URL
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _signer_config(path: Path, data_dir: Path, chain: LodestarDevnet, http_port: int) -> Path:
    path.write_text(
        f'[server]\n{HTTP_LISTEN_KEY} = "127.0.0.1:{http_port}"\n\n'
        + network_toml(chain.network_config())
        + f'\n[keys]\nmodule = "emulated"\ndata_dir = "{data_dir}"\npin = {{ env = "SIGNER_MODULE_PIN" }}\n'
        + f'\n[audit]\npath = "{data_dir / "audit.jsonl"}"\n'
    )
    return path


def _import_interop_keys(base_url: str, token: str, genesis_validators_root: str) -> None:
    """POST /eth/v1/keystores: the interop keys as EIP-2335 keystores (cheap pbkdf2), with an
    EIP-3076 interchange that says they have never signed."""
    cheap = KdfParams("pbkdf2", b"\x07" * 32, 32, c=2**10)
    keystores = [
        json.dumps(encrypt_keystore(secret, KEYSTORE_PASSWORD, kdf=cheap, pubkey=pk))
        for secret, pk in zip(interop_secrets(VALIDATORS), interop_public_keys(VALIDATORS), strict=True)
    ]
    interchange = {
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": genesis_validators_root},
        "data": [
            {"pubkey": "0x" + pk.hex(), "signed_blocks": [], "signed_attestations": []}
            for pk in interop_public_keys(VALIDATORS)
        ],
    }
    status, answer = _request(
        "POST",
        f"{base_url}/eth/v1/keystores",
        {
            "keystores": keystores,
            "passwords": [KEYSTORE_PASSWORD] * VALIDATORS,
            "slashing_protection": json.dumps(interchange),
        },
        token,
    )
    assert status == 200, answer
    assert [item["status"] for item in answer["data"]] == ["imported"] * VALIDATORS, answer


def _audit(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "audit.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if "record" not in r]  # the decisions, not the hash chain's own records


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[tuple[LodestarDevnet, SignerProcess, str, Path]]:
    chain = LodestarDevnet(tmp_path / "chain", validators=VALIDATORS, seconds_per_slot=1)
    signer: SignerProcess | None = None
    try:
        chain.start_beacon()
        data_dir = tmp_path / "signer"
        data_dir.mkdir()
        http_port = free_port()
        config = _signer_config(tmp_path / "signer.toml", data_dir, chain, http_port)
        signer = SignerProcess.from_config(config, env={"SIGNER_MODULE_PIN": PIN}).start()
        base_url = f"http://127.0.0.1:{http_port}"
        token = (data_dir / TOKEN_FILE).read_text().strip()
        _import_interop_keys(base_url, token, chain.genesis_validators_root())
        chain.start_validator(base_url)
        yield chain, signer, base_url, data_dir
    finally:
        chain.stop()
        if signer is not None:
            signer.stop()


def test_lodestar_chain_finalizes_on_our_signatures(devnet: tuple[LodestarDevnet, SignerProcess, str, Path]) -> None:
    chain, _, _, data_dir = devnet
    finality = chain.wait_finalized(3, timeout_s=180)
    slots_per_epoch = int(chain.spec()["SLOTS_PER_EPOCH"])
    audit = _audit(data_dir)
    refused = [line for line in audit if line["outcome"] != "succeeded"]
    assert not refused, refused[:5]
    keys = ["0x" + pk.hex() for pk in interop_public_keys(VALIDATORS)]
    blocks = {(line["key"], line["slot"]) for line in audit if line.get("operation") == BLOCK_OPERATION}
    finalized_slots = range(1, finality.finalized_epoch * slots_per_epoch)
    canonical = [(slot, chain.block_header(slot)) for slot in finalized_slots]
    proposed = [(slot, h) for slot, h in canonical if h is not None]
    assert len(proposed) >= len(finalized_slots) // 2, "too few blocks to judge"
    for slot, header in proposed:
        assert (keys[int(header["proposer_index"])], slot) in blocks, f"block at slot {slot} not signed by us"
    attested = {(line["key"], line["target_epoch"]) for line in audit if line.get("operation") == ATTESTATION_OPERATION}
    for epoch in range(1, finality.finalized_epoch + 1):
        for key in keys:
            assert (key, epoch) in attested, f"{key} has no attestation for epoch {epoch}"


def test_conflicting_attestation_after_restart_is_refused_with_412(
    devnet: tuple[LodestarDevnet, SignerProcess, str, Path],
) -> None:
    chain, _, base_url, data_dir = devnet
    first = chain.wait_finalized(2, timeout_s=150)
    chain.stop_validator()
    chain.start_validator(base_url)
    chain.wait_finalized(first.finalized_epoch + 1, timeout_s=120)
    assert not [line for line in _audit(data_dir) if line["outcome"] != "succeeded"]

    network = chain.network_config()
    target = first.finalized_epoch
    key = "0x" + interop_public_keys(VALIDATORS)[0].hex()
    version = next(f["version"] for f in reversed(network["forks"]) if f["epoch"] <= target)
    body = {
        "type": "ATTESTATION",
        "fork_info": {
            "fork": {"previous_version": version, "current_version": version, "epoch": str(target)},
            "genesis_validators_root": network["genesis_validators_root"],
        },
        "attestation": {
            "slot": str(target * network["slots_per_epoch"]),
            "index": "0",
            "beacon_block_root": "0x" + "ee" * 32,  # not the block it attested to
            "source": {"epoch": str(target - 1), "root": "0x" + "00" * 32},
            "target": {"epoch": str(target), "root": "0x" + "ee" * 32},
        },
    }
    status, answer = _request("POST", f"{base_url}/api/v1/eth2/sign/{key}", body)
    assert status == 412, answer
    assert "double_vote" in json.dumps(answer) or "surround" in json.dumps(answer), answer
