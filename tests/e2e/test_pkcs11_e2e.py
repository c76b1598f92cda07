"""End to end with PKCS#11: ``signer serve --config`` on a SoftHSM2 token (keys.module = "pkcs11").

The server process gets a token of its own (a private SOFTHSM2_CONF and token directory made with
softhsm2-util, the library found by tests.softhsm), so it never shares SoftHSM state with the test
process. Keys are put into the token with ``signer keys generate --module pkcs11``. With CI=true a
missing SoftHSM fails (tests.support.missing_component).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import coincurve
import pytest

from signer.api._proto.tendermint.privval import service_pb2_grpc, types_pb2
from signer.api._proto.v1 import lister_pb2, lister_pb2_grpc, responsestate_pb2, signer_pb2, signer_pb2_grpc
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_cometbft_e2e import PREVOTE, secp_verifies, vote, vote_sign_bytes
from tests.e2e.test_eth2_e2e import att, py_ecc_verifies_key
from tests.softhsm import SO_PIN, USER_PIN, find_library
from tests.support import missing_component

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]  # ~6 s of token set-up

LABEL = "e2e"
BLS_KEYS = 8
CHAIN = "hsm-chain"
SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED


@dataclass(frozen=True)
class HsmSigner:
    proc: SignerProcess
    keys: dict[str, tuple[bytes, str]]
    """account -> (public key, scheme), as ``signer keys list`` prints them."""


def _signer_cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "signer", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"signer {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def hsm_signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HsmSigner]:
    util = shutil.which("softhsm2-util")
    library = find_library()
    if util is None or library is None:
        missing_component("SoftHSM2 (apt: softhsm2): softhsm2-util and libsofthsm2.so")
    assert util is not None and library is not None
    root = tmp_path_factory.mktemp("pkcs11-e2e")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), "E2E_TOKEN_PIN": USER_PIN}
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--so-pin", SO_PIN, "--pin", USER_PIN],
        env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pin_file = root / "pin"
    pin_file.write_text(USER_PIN + "\n")
    data_dir = root / "data"
    module_args = ["--module", "pkcs11", "--pkcs11-library", str(library), "--token-label", LABEL,
                   "--data-dir", str(data_dir), "--pin-file", str(pin_file)]  # fmt: skip
    _signer_cli("keys", "generate", *module_args, "--count", str(BLS_KEYS), "--wallet", "val", env=env)
    _signer_cli("keys", "generate", *module_args, "--count", "1", "--wallet", "comet", "--scheme", "secp256k1", env=env)
    keys: dict[str, tuple[bytes, str]] = {}
    for line in _signer_cli("keys", "list", *module_args, env=env).splitlines():
        public_key, name, scheme = line.split()
        keys[name] = (bytes.fromhex(public_key.removeprefix("0x")), scheme)
    config = root / "signer.toml"
    config.write_text(
        f"""
[network]
name = "mainnet"

[keys]
module = "pkcs11"
data_dir = "{data_dir}"

[keys.pkcs11]
library_path = "{library}"
token_label = "{LABEL}"
pin = {{ env = "E2E_TOKEN_PIN" }}

[[cometbft.chains]]
chain_id = "{CHAIN}"
account = "comet/0"

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation", "sign_proposal", "sign_generic", "cometbft_vote", "cometbft_proposal"]
""",
        encoding="utf-8",
    )
    init_protection(config)  # keys generated in the token for this test: never signed
    proc = SignerProcess.from_config(config, env={"SOFTHSM2_CONF": str(conf), "E2E_TOKEN_PIN": USER_PIN}).start()
    try:
        yield HsmSigner(proc, keys)
    finally:
        assert proc.terminate() == 0, proc.logs


def test_keys_were_generated_in_the_token(hsm_signer: HsmSigner) -> None:
    assert sorted(hsm_signer.keys) == sorted([f"val/{i}" for i in range(BLS_KEYS)] + ["comet/0"])
    assert hsm_signer.keys["comet/0"][1] == "secp256k1"
    assert {s for n, (_, s) in hsm_signer.keys.items() if n.startswith("val/")} == {"bls"}


def test_eth2_flow_on_pkcs11(hsm_signer: HsmSigner) -> None:
    channel = hsm_signer.proc.channel()
    listed = lister_pb2_grpc.ListerStub(channel).ListAccounts(lister_pb2.ListAccountsRequest(paths=["val"]), timeout=30)
    assert listed.state == SUCCEEDED
    accounts = {a.name: bytes(a.public_key) for a in listed.Accounts}
    assert accounts == {n: pk for n, (pk, s) in hsm_signer.keys.items() if s == "bls"}

    stub = signer_pb2_grpc.SignerStub(channel)
    a = att(0, 1, 2, block="hsm", account="val/0")
    resp = stub.SignBeaconAttestation(a.request(), timeout=30)
    assert resp.state == SUCCEEDED
    assert py_ecc_verifies_key(accounts["val/0"], a.signing_root(), bytes(resp.signature))
    double = att(0, 1, 2, block="hsm-other", account="val/0")
    assert stub.SignBeaconAttestation(double.request(), timeout=30).state == DENIED

    batch = [att(i, 3, 4, block=i, account=f"val/{i}") for i in range(BLS_KEYS)]
    answers = stub.SignBeaconAttestations(
        signer_pb2.SignBeaconAttestationsRequest(requests=[b.request() for b in batch]), timeout=60
    )
    assert [r.state for r in answers.responses] == [SUCCEEDED] * BLS_KEYS
    last = BLS_KEYS - 1
    signature = bytes(answers.responses[last].signature)
    assert py_ecc_verifies_key(accounts[f"val/{last}"], batch[last].signing_root(), signature)


def test_cometbft_vote_with_token_secp256k1_key(hsm_signer: HsmSigner) -> None:
    stub = service_pb2_grpc.PrivValidatorAPIStub(hsm_signer.proc.channel())
    pub = stub.GetPubKey(types_pb2.PubKeyRequest(chain_id=CHAIN), timeout=30)
    assert bytes(pub.pub_key.secp256k1) == hsm_signer.keys["comet/0"][0]
    coincurve.PublicKey(bytes(pub.pub_key.secp256k1))  # a valid compressed point
    v = vote(PREVOTE, 7, 0, "block-hsm")
    resp = stub.SignVote(types_pb2.SignVoteRequest(vote=v, chain_id=CHAIN), timeout=30)
    assert not resp.HasField("error"), resp.error
    assert secp_verifies(hsm_signer.keys["comet/0"][0], vote_sign_bytes(CHAIN, v), bytes(resp.vote.signature))
    conflicting = stub.SignVote(types_pb2.SignVoteRequest(vote=vote(PREVOTE, 7, 0, "block-x"), chain_id=CHAIN))
    assert conflicting.HasField("error")
