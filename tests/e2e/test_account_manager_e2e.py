"""End to end: ``v1.AccountManager/Generate`` on a real ``signer serve --dev`` process (issue 3).

A generated account is listed by ``v1.Lister``, signs (py_ecc verifies over an independently
computed signing root), is slashing-protected like any other, and is still there after a restart.
Generate refuses without the module PIN, for a name already taken, and for distributed accounts,
and then creates nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    lister_pb2,
    lister_pb2_grpc,
    responsestate_pb2,
    signer_pb2_grpc,
)
from signer.keys.dev import DEV_PIN
from tests.e2e.harness import SignerProcess
from tests.e2e.test_eth2_e2e import att, py_ecc_verifies_key

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # its own server, started twice

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
TIMEOUT_S = 30


def _accounts(proc: SignerProcess) -> dict[str, bytes]:
    lister = lister_pb2_grpc.ListerStub(proc.channel())
    listed = lister.ListAccounts(lister_pb2.ListAccountsRequest(), timeout=TIMEOUT_S)
    assert listed.state == SUCCEEDED
    return {a.name: bytes(a.public_key) for a in listed.Accounts}


def _generate(
    proc: SignerProcess, account: str, passphrase: bytes, **extra: int
) -> accountmanager_pb2.GenerateResponse:
    manager = accountmanager_pb2_grpc.AccountManagerStub(proc.channel())
    request = accountmanager_pb2.GenerateRequest(account=account, passphrase=passphrase, **extra)
    response: accountmanager_pb2.GenerateResponse = manager.Generate(request, timeout=TIMEOUT_S)
    return response


def test_generated_account_is_listed_signs_is_protected_and_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with SignerProcess.dev(data_dir, dev_keys=1) as proc:
        before = _accounts(proc)
        assert set(before) == {"dev/0"}

        made = _generate(proc, "ops/0", DEV_PIN.encode())
        assert made.state == SUCCEEDED, made.message
        public_key = bytes(made.public_key)
        assert len(public_key) == 48 and public_key not in before.values()
        assert _accounts(proc) == {**before, "ops/0": public_key}

        # Refusals create nothing.
        wrong_pin = _generate(proc, "ops/1", b"not the module pin")
        assert wrong_pin.state == DENIED and not wrong_pin.public_key
        taken = _generate(proc, "ops/0", DEV_PIN.encode())
        assert taken.state == DENIED and not taken.public_key
        distributed = _generate(proc, "ops/2", DEV_PIN.encode(), participants=3, signing_threshold=2)
        assert distributed.state == DENIED and "distributed" in distributed.message
        assert _accounts(proc) == {**before, "ops/0": public_key}

        signer = signer_pb2_grpc.SignerStub(proc.channel())
        first = att(0, 1, 2, block="generated", account="ops/0")
        signed = signer.SignBeaconAttestation(first.request(), timeout=TIMEOUT_S)
        assert signed.state == SUCCEEDED
        assert py_ecc_verifies_key(public_key, first.signing_root(), bytes(signed.signature))
        double = att(0, 1, 2, block="other block", account="ops/0")
        assert signer.SignBeaconAttestation(double.request(), timeout=TIMEOUT_S).state == DENIED

    with SignerProcess.dev(data_dir, dev_keys=1) as proc:
        assert _accounts(proc) == {**before, "ops/0": public_key}
        signer = signer_pb2_grpc.SignerStub(proc.channel())
        assert signer.SignBeaconAttestation(double.request(), timeout=TIMEOUT_S).state == DENIED
        again = signer.SignBeaconAttestation(first.request(), timeout=TIMEOUT_S)
        assert again.state == SUCCEEDED and bytes(again.signature) == bytes(signed.signature)
