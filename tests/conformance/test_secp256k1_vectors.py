"""secp256k1 against tiny-secp256k1 (RFC 6979 signing with recovery ids) and Wycheproof "bitcoin"
(verification with low S required)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.crypto import secp256k1
from signer.errors import MalformedRequest
from tests.support import vector_path

TINY = Path("secp256k1") / "tiny-secp256k1" / "ecdsa.json"
WYCHEPROOF_BITCOIN = Path("secp256k1") / "wycheproof" / "testvectors_v1" / "ecdsa_secp256k1_sha256_bitcoin_test.json"


def _load(relative: Path) -> Any:
    return json.loads(vector_path(*relative.parts).read_text())


def _tiny_cases() -> list[Any]:
    return [pytest.param(c, id=f"valid-{i}") for i, c in enumerate(_load(TINY)["valid"])]


def _tiny_invalid_sign() -> list[Any]:
    data = _load(TINY)
    return [pytest.param(c, id=f"invalid-sign-{i}") for i, c in enumerate(data["invalid"]["sign"])]


def _wycheproof_cases() -> list[Any]:
    data = _load(WYCHEPROOF_BITCOIN)
    return [
        pytest.param(group["publicKey"]["uncompressed"], test, id=f"tc{test['tcId']}-{test['result']}")
        for group in data["testGroups"]
        for test in group["tests"]
    ]


def test_vector_files_present(vectors: Path) -> None:
    tiny = _load(TINY)
    wycheproof = _load(WYCHEPROOF_BITCOIN)
    assert len(tiny["valid"]) > 1000
    assert sum(len(g["tests"]) for g in wycheproof["testGroups"]) == wycheproof["numberOfTests"]


@pytest.mark.parametrize("case", _tiny_cases())
def test_tiny_secp256k1_sign(vectors: Path, case: dict[str, Any]) -> None:
    secret, digest = bytes.fromhex(case["d"]), bytes.fromhex(case["m"])
    signature, recovery_id = secp256k1.sign_digest(secret, digest)
    assert signature.hex() == case["signature"]
    assert recovery_id == case["recoveryId"]
    public_key = secp256k1.public_key(secret)
    assert secp256k1.verify_digest(public_key, digest, signature)
    assert secp256k1.recovery_id(public_key, digest, signature) == case["recoveryId"]


@pytest.mark.parametrize("case", _tiny_invalid_sign())
def test_tiny_secp256k1_refuses_bad_secret(vectors: Path, case: dict[str, Any]) -> None:
    with pytest.raises(MalformedRequest):
        secp256k1.sign_digest(bytes.fromhex(case["d"]), bytes.fromhex(case["m"]))


@pytest.mark.parametrize(("public_key", "test"), _wycheproof_cases())
def test_wycheproof_bitcoin(vectors: Path, public_key: str, test: dict[str, Any]) -> None:
    digest = secp256k1.sha256(bytes.fromhex(test["msg"]))
    try:
        signature = secp256k1.signature_from_der(bytes.fromhex(test["sig"]))
    except MalformedRequest:
        accepted = False
    else:
        accepted = secp256k1.verify_digest(bytes.fromhex(public_key), digest, signature)
    assert accepted is (test["result"] == "valid"), f"{test['comment']} ({test['flags']})"
