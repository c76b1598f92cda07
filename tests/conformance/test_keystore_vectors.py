"""EIP-2335 keystores and EIP-2333 derivation against the pinned third-party vectors.

Sets (see the vectors README): keystore/eip (transcribed from the EIPs), keystore/staking-deposit-cli
(its test keystores: the same password and secret as the EIP-2335 test cases, which is why the EIP
file supplies them), keystore/chainsafe-bls-keystore (each file carries password and secret).
Every case is its own test id. The scrypt ones run the real KDF (n = 2**18, about a second each).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.crypto import bls
from signer.errors import MalformedKeystore, MalformedRequest, WrongPassword
from signer.keys import eip2333, eip2335
from tests.support import vector_path

KEYSTORE_DIR = "keystore"


def _load(rel: str) -> Any:
    return json.loads(vector_path(KEYSTORE_DIR, rel).read_text(encoding="utf-8"))


# --- keystore cases: (id, keystore dict, password, secret hex) ------------------------------


def _keystore_cases() -> list[Any]:
    cases: list[Any] = []
    eip = _load("eip/eip2335_test_vectors.json")
    for case in eip["cases"]:
        params = (case["keystore"], case["password"], case["secret"])
        cases.append(pytest.param(params, id=f"eip-{case['name']}"))
    # staking-deposit-cli's test keystores carry neither password nor secret: the EIP's test cases
    # are those very keystores (same crypto), so their password and secret apply.
    eip_password = eip["cases"][0]["password"]
    eip_secret = eip["cases"][0]["secret"]
    sdc_dir = vector_path(KEYSTORE_DIR, "staking-deposit-cli/keystore_test_vectors")
    for path in sorted(sdc_dir.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        cases.append(pytest.param((body, eip_password, eip_secret), id=f"staking-deposit-cli-{path.stem}"))
    for path in sorted(vector_path(KEYSTORE_DIR, "chainsafe-bls-keystore").glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        cases.append(pytest.param((body, body["password"], body["secret"]), id=f"chainsafe-{path.stem}"))
    return cases


KEYSTORE_CASES = _keystore_cases()


@pytest.mark.parametrize("case", KEYSTORE_CASES)
def test_decrypt_gives_secret(vectors: Path, case: tuple[dict[str, Any], str, str]) -> None:
    body, password, secret_hex = case
    keystore = eip2335.parse_keystore(body)
    secret = eip2335.decrypt_keystore(keystore, password)
    assert secret == bytes.fromhex(secret_hex.removeprefix("0x"))
    assert keystore.pubkey is not None and bls.secret_to_public(secret) == keystore.pubkey


@pytest.mark.parametrize("case", KEYSTORE_CASES)
def test_encrypt_with_vector_salt_and_iv_gives_crypto(vectors: Path, case: tuple[dict[str, Any], str, str]) -> None:
    body, password, secret_hex = case
    keystore = eip2335.parse_keystore(body)
    produced = eip2335.encrypt_keystore(
        bytes.fromhex(secret_hex.removeprefix("0x")), password, kdf=keystore.kdf, iv=keystore.iv
    )
    assert produced["crypto"] == body["crypto"]


def _password_cases() -> list[Any]:
    return [
        pytest.param((c["password"], c["encoded_password"]), id=f"eip-{c['name']}")
        for c in _load("eip/eip2335_test_vectors.json")["cases"]
    ]


@pytest.mark.parametrize("case", _password_cases())
def test_password_processing(vectors: Path, case: tuple[str, str]) -> None:
    password, encoded = case
    assert eip2335.normalize_password(password) == bytes.fromhex(encoded.removeprefix("0x"))


def test_control_codes_are_stripped_and_nfkd_applied() -> None:
    # C0, DEL and C1 removed; NFKD turns the ligature "ﬁ" into "fi" and "é" into e + U+0301.
    assert eip2335.normalize_password("a\x00b\x1fc\x7fd\x80e\x9ff") == b"abcdef"
    assert eip2335.normalize_password("\ufb01") == b"fi"
    assert eip2335.normalize_password("\u00e9") == "e\u0301".encode()


def test_wrong_password_is_refused(vectors: Path) -> None:
    case = next(c for c in _load("eip/eip2335_test_vectors.json")["cases"] if c["name"] == "eip2335_pbkdf2")
    keystore = eip2335.parse_keystore(case["keystore"])
    with pytest.raises(WrongPassword, match="checksum mismatch"):
        eip2335.decrypt_keystore(keystore, "testpassword")


def test_malformed_keystore_names_the_field(vectors: Path) -> None:
    body = json.loads(json.dumps(_load("eip/eip2335_test_vectors.json")["cases"][0]["keystore"]))
    body["crypto"]["cipher"]["function"] = "aes-256-gcm"
    with pytest.raises(MalformedKeystore, match=r"crypto\.cipher\.function"):
        eip2335.parse_keystore(body)
    with pytest.raises(MalformedKeystore, match="not valid JSON"):
        eip2335.parse_keystore("{not json")


# --- EIP-2333 ---------------------------------------------------------------------------------


def _derivation_cases() -> list[Any]:
    cases: list[Any] = []
    for c in _load("eip/eip2333_test_vectors.json")["cases"]:
        cases.append(
            pytest.param((c["seed"], int(c["master_SK"]), c["child_index"], int(c["child_SK"])), id=f"eip-{c['name']}")
        )
    for i, c in enumerate(_load("staking-deposit-cli/test_key_derivation/tree_kdf.json")["kdf_tests"]):
        cases.append(
            pytest.param(
                (c["seed"], int(c["master_SK"]), c["child_index"], int(c["child_SK"])),
                id=f"staking-deposit-cli-tree_kdf-{i}",
            )
        )
    return cases


@pytest.mark.parametrize("case", _derivation_cases())
def test_master_and_child_derivation(vectors: Path, case: tuple[str, int, int, int]) -> None:
    seed_hex, master_sk, child_index, child_sk = case
    master = eip2333.derive_master_SK(bytes.fromhex(seed_hex.removeprefix("0x")))
    assert master == master_sk
    assert eip2333.derive_child_SK(master, child_index) == child_sk


def _intermediate() -> dict[str, Any]:
    data: dict[str, Any] = _load("staking-deposit-cli/test_key_derivation/tree_kdf_intermediate.json")
    return data


def test_intermediate_lamport_keys(vectors: Path) -> None:
    data = _intermediate()
    parent = data["master_SK"]
    assert eip2333.derive_master_SK(bytes.fromhex(data["seed"])) == parent
    salt = data["child_index"].to_bytes(4, "big")
    ikm = parent.to_bytes(32, "big")
    assert [c.hex() for c in eip2333.ikm_to_lamport_sk(ikm, salt)] == data["lamport_0"]
    not_ikm = bytes(b ^ 0xFF for b in ikm)
    assert [c.hex() for c in eip2333.ikm_to_lamport_sk(not_ikm, salt)] == data["lamport_1"]
    assert eip2333.parent_sk_to_lamport_pk(parent, data["child_index"]).hex() == data["compressed_lamport_PK"]
    assert eip2333.derive_child_SK(parent, data["child_index"]) == data["child_SK"]


def test_intermediate_path_derivation(vectors: Path) -> None:
    data = _intermediate()
    assert eip2333.parse_path(data["path"]) == [data["child_index"]]
    assert eip2333.derive_path_SK(bytes.fromhex(data["seed"]), data["path"]) == data["child_SK"]


def test_path_derivation_is_the_chain_of_children() -> None:
    seed = bytes(range(32))
    expected = eip2333.derive_master_SK(seed)
    for index in (12381, 3600, 7, 0, 0):
        expected = eip2333.derive_child_SK(expected, index)
    assert eip2333.derive_path_SK(seed, eip2333.validator_signing_path(7)) == expected
    assert eip2333.validator_signing_path(7) == "m/12381/3600/7/0/0"


@pytest.mark.parametrize("path", ["12381/3600", "m/x", "m/4294967296", "m/-1"], ids=str)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(MalformedRequest):
        eip2333.parse_path(path)


def test_short_seed_is_refused() -> None:
    with pytest.raises(MalformedRequest, match="at least 32 bytes"):
        eip2333.derive_master_SK(b"\x01" * 31)
