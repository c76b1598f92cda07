"""Issue 13 against real ``signer serve`` processes: a lost protection database (13.2), an import
that raises the lower bounds above local history (13.1, through ``signer protection import`` on a
live data dir), and one signer per data directory (13.14).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api._proto.v1 import responsestate_pb2, signer_pb2_grpc
from tests.e2e.harness import MAINNET_GENESIS_VALIDATORS_ROOT, SignerProcess, SignerProcessError
from tests.e2e.test_eth2_e2e import att, proposal, public_key
from tests.e2e.test_metrics_e2e import http_get, scrape

pytestmark = pytest.mark.e2e

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
TIMEOUT_S = 30


def protection(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signer", "protection", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def minimal_interchange(index: int, slot: int, source_epoch: int, target_epoch: int) -> dict[str, Any]:
    return {
        "metadata": {
            "interchange_format_version": "5",
            "genesis_validators_root": "0x" + MAINNET_GENESIS_VALIDATORS_ROOT.hex(),
        },
        "data": [
            {
                "pubkey": "0x" + public_key(index).hex(),
                "signed_blocks": [{"slot": str(slot)}],
                "signed_attestations": [{"source_epoch": str(source_epoch), "target_epoch": str(target_epoch)}],
            }
        ],
    }


def audit_offences(proc: SignerProcess, *expected: str, timeout_s: float = 10.0) -> list[str]:
    """The offences in the audit log so far, once its last ones are ``expected`` (the audit lines
    reach the pipe after the answer; bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        offences = []
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                offence = json.loads(line).get("offence")
                if offence:
                    offences.append(str(offence))
        if offences[-len(expected) :] == list(expected) or time.monotonic() > deadline:
            return offences
        time.sleep(0.05)


def initialized_gauge(proc: SignerProcess) -> float:
    _, samples = scrape(proc)
    ((_, value),) = samples["signer_protection_initialized"]
    return value


def wait_ready(proc: SignerProcess, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while http_get(f"{proc.http_url}/readyz")[0] != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout_s} s:\n{proc.logs}"
        time.sleep(0.2)


def move_protection_away(data_dir: Path, where: Path) -> list[str]:
    where.mkdir()
    moved = sorted(p.name for p in data_dir.glob("protection.sqlite*"))
    for name in moved:
        shutil.move(str(data_dir / name), str(where / name))
    return moved


def assert_not_initialized(proc: SignerProcess) -> None:
    status, _, body = http_get(f"{proc.http_url}/readyz")
    assert status == 503 and "not initialized" in body, (status, body)
    health = health_pb2_grpc.HealthStub(proc.channel())
    answer = health.Check(health_pb2.HealthCheckRequest(service="v1.Signer"), timeout=TIMEOUT_S)
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert initialized_gauge(proc) == 0
    lines = [r for r in proc.log_records() if r.get("msg") == "slashing protection not initialized: signing refused"]
    assert len(lines) == 1, proc.logs
    assert "signer protection init --keys-never-signed" in lines[0]["reason"]


def test_lost_protection_database_refuses_until_history_is_imported(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    vote, (block, _) = att(0, 10, 11, "first"), proposal(0, 160, "first")
    with SignerProcess.dev(data_dir) as proc:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        assert stub.SignBeaconAttestation(vote.request(), timeout=TIMEOUT_S).state == SUCCEEDED
        assert stub.SignBeaconProposal(block, timeout=TIMEOUT_S).state == SUCCEEDED
        assert initialized_gauge(proc) == 1  # --dev made keys and store together
        exported = protection("export", "--data-dir", data_dir)  # live: the export does not stop it
        assert exported.returncode == 0, exported.stderr
        assert proc.terminate() == 0
    backup = tmp_path / "history.json"
    backup.write_text(exported.stdout, encoding="utf-8")

    # The volume is lost: the module is there, the protection database is not.
    assert move_protection_away(data_dir, tmp_path / "moved") == ["protection.sqlite"]
    with SignerProcess.dev(data_dir) as proc:
        assert_not_initialized(proc)
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        double_vote = att(0, 10, 11, "second")
        double_block, _ = proposal(0, 160, "second")
        assert stub.SignBeaconAttestation(double_vote.request(), timeout=TIMEOUT_S).state == DENIED
        assert stub.SignBeaconProposal(double_block, timeout=TIMEOUT_S).state == DENIED
        assert audit_offences(proc, *["protection_not_initialized"] * 2) == ["protection_not_initialized"] * 2

        # Import the history (the CLI, on the live data dir): ready, and the double vote stays refused.
        done = protection("import", "--data-dir", data_dir, backup)
        assert done.returncode == 0, done.stderr
        wait_ready(proc)
        assert initialized_gauge(proc) == 1
        assert stub.SignBeaconAttestation(double_vote.request(), timeout=TIMEOUT_S).state == DENIED
        assert stub.SignBeaconProposal(double_block, timeout=TIMEOUT_S).state == DENIED
        assert audit_offences(proc, "double_vote", "double_block_proposal")[-2:] == [
            "double_vote",
            "double_block_proposal",
        ]
        assert stub.SignBeaconAttestation(att(0, 11, 12).request(), timeout=TIMEOUT_S).state == SUCCEEDED


def test_declaring_the_keys_never_signed_initializes_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    SignerProcess.dev(data_dir).start().terminate()
    (data_dir / "protection.sqlite").write_bytes(b"")  # a 0-byte database after a storage incident
    with SignerProcess.dev(data_dir) as proc:
        assert_not_initialized(proc)
        refused = protection("init", "--data-dir", data_dir)  # the declaration must be explicit
        assert refused.returncode == 2 and "--keys-never-signed" in refused.stderr, refused.stderr
        done = protection("init", "--data-dir", data_dir, "--keys-never-signed")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("initialized: recorded that the keys have never signed (keys_never_signed by ")
        wait_ready(proc)
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        assert stub.SignBeaconAttestation(att(1, 1, 2).request(), timeout=TIMEOUT_S).state == SUCCEEDED
    again = protection("init", "--data-dir", data_dir, "--keys-never-signed")
    assert again.returncode == 0 and again.stdout.startswith("already initialized (keys_never_signed by "), again


def test_import_above_local_history_raises_the_lower_bounds_on_a_live_signer(tmp_path: Path) -> None:
    """Issue 13.1, end to end: local history (10,11) and slot 160, then a minimal file with (100,101)
    and slot 3200 (no roots): (50,60) and slot 2000 are refused; what lies above is signed."""
    data_dir = tmp_path / "data"
    document = tmp_path / "minimal.json"
    document.write_text(json.dumps(minimal_interchange(0, 3200, 100, 101)), encoding="utf-8")
    with SignerProcess.dev(data_dir) as proc:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        assert stub.SignBeaconAttestation(att(0, 10, 11).request(), timeout=TIMEOUT_S).state == SUCCEEDED
        assert stub.SignBeaconProposal(proposal(0, 160, "local")[0], timeout=TIMEOUT_S).state == SUCCEEDED
        done = protection("import", "--data-dir", data_dir, document)
        assert done.returncode == 0, done.stderr
        assert stub.SignBeaconAttestation(att(0, 50, 60).request(), timeout=TIMEOUT_S).state == DENIED
        assert stub.SignBeaconProposal(proposal(0, 2000, "gap")[0], timeout=TIMEOUT_S).state == DENIED
        expected = ["source_below_lower_bound", "slot_not_above_lower_bound"]
        assert audit_offences(proc, *expected)[-2:] == expected
        assert stub.SignBeaconAttestation(att(0, 100, 102).request(), timeout=TIMEOUT_S).state == SUCCEEDED
        assert stub.SignBeaconProposal(proposal(0, 3201, "next")[0], timeout=TIMEOUT_S).state == SUCCEEDED


def test_a_second_signer_on_one_data_dir_refuses_to_start_naming_the_holder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = SignerProcess.dev(data_dir).start()
    second = SignerProcess.dev(data_dir)
    try:
        with pytest.raises(SignerProcessError, match="before it was ready"):
            second.start()
        errors = [line for line in second.logs.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, second.logs
        assert f"another signer (pid {first.pid})" in errors[0] and "signer.lock" in errors[0], errors[0]
        stub = signer_pb2_grpc.SignerStub(first.channel())
        assert stub.SignBeaconAttestation(att(0, 1, 2).request(), timeout=TIMEOUT_S).state == SUCCEEDED
        # SIGKILL: no clean-up runs, yet the kernel drops the lock and the next signer starts.
        first.kill()
        second.start()
        stub = signer_pb2_grpc.SignerStub(second.channel())
        assert stub.SignBeaconAttestation(att(0, 2, 3).request(), timeout=TIMEOUT_S).state == SUCCEEDED
    finally:
        second.stop()
        first.stop()
