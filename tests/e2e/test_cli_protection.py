"""``signer protection export | import`` on the data dir of a real server, after real signing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from signer.api._proto.v1 import responsestate_pb2, signer_pb2_grpc
from tests.e2e.harness import MAINNET_GENESIS_VALIDATORS_ROOT, SEPOLIA_GENESIS_VALIDATORS_ROOT, SignerProcess
from tests.e2e.test_eth2_e2e import att, proposal, public_key

pytestmark = pytest.mark.e2e

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED


def protection(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signer", "protection", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


Records = dict[str, tuple[set[tuple[str, str | None]], set[tuple[str, str, str | None]]]]


def records(document: dict[str, Any]) -> Records:
    """public key -> (blocks {(slot, root)}, attestations {(source, target, root)})."""
    out = {}
    for entry in document["data"]:
        blocks = {(b["slot"], b.get("signing_root")) for b in entry["signed_blocks"]}
        atts = {(a["source_epoch"], a["target_epoch"], a.get("signing_root")) for a in entry["signed_attestations"]}
        out[entry["pubkey"]] = (blocks, atts)
    return out


@pytest.fixture(scope="module")
def signed_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dev data dir in which a real server signed attestations for dev/0 and dev/1 and a block for dev/0."""
    data_dir = tmp_path_factory.mktemp("cli-protection") / "data"
    with SignerProcess.dev(data_dir) as proc:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        for index in (0, 1):
            for source, target in ((1, 2), (2, 3), (3, 5)):
                assert stub.SignBeaconAttestation(att(index, source, target).request(), timeout=30).state == SUCCEEDED
        request, _ = proposal(0, 200, "body")
        assert stub.SignBeaconProposal(request, timeout=30).state == SUCCEEDED
        assert proc.terminate() == 0
    return data_dir


def test_export_import_round_trip(signed_data_dir: Path, tmp_path: Path) -> None:
    exported = tmp_path / "export.json"
    done = protection("export", "--data-dir", signed_data_dir, "--output", exported)
    assert done.returncode == 0, done.stderr
    document = json.loads(exported.read_text())
    assert document["metadata"]["genesis_validators_root"] == "0x" + MAINNET_GENESIS_VALIDATORS_ROOT.hex()
    got = records(document)
    key0, key1 = "0x" + public_key(0).hex(), "0x" + public_key(1).hex()
    assert set(got) == {key0, key1}
    assert {(s, t) for s, t, _ in got[key0][1]} == {("1", "2"), ("2", "3"), ("3", "5")}
    assert {slot for slot, _ in got[key0][0]} == {"200"}
    assert got[key1][0] == set()

    fresh = tmp_path / "fresh"
    done = protection("import", "--data-dir", fresh, exported)
    assert done.returncode == 0, done.stderr
    again = tmp_path / "again.json"
    assert protection("export", "--data-dir", fresh, "-o", again).returncode == 0
    assert records(json.loads(again.read_text())) == got


def test_export_replaces_its_output_whole_and_an_unwritable_output_is_a_named_error(
    signed_data_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "export.json"
    target.write_text("an older export, much longer than the new document " * 10_000)
    assert protection("export", "--data-dir", signed_data_dir, "-o", target).returncode == 0
    assert set(records(json.loads(target.read_text()))) == {"0x" + public_key(n).hex() for n in (0, 1)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json"]
    missing = tmp_path / "no-such-dir" / "export.json"
    done = protection("export", "--data-dir", signed_data_dir, "-o", missing)
    assert done.returncode == 2, done.stderr
    assert f"error: cannot write {missing}" in done.stderr and "Traceback" not in done.stderr


def test_import_for_another_network_fails_clearly(signed_data_dir: Path, tmp_path: Path) -> None:
    done = protection("export", "--data-dir", signed_data_dir)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    document["metadata"]["genesis_validators_root"] = "0x" + SEPOLIA_GENESIS_VALIDATORS_ROOT.hex()
    foreign = tmp_path / "sepolia.json"
    foreign.write_text(json.dumps(document))
    target = tmp_path / "target"
    refused = protection("import", "--data-dir", target, foreign)
    assert refused.returncode != 0
    assert "genesis_validators_root" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    # Nothing was written: the store exports no record.
    empty = protection("export", "--data-dir", target)
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["data"] == []


def test_imported_record_is_enforced_by_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    interchange = {
        "metadata": {
            "interchange_format_version": "5",
            "genesis_validators_root": "0x" + MAINNET_GENESIS_VALIDATORS_ROOT.hex(),
        },
        "data": [
            {
                "pubkey": "0x" + public_key(2).hex(),
                "signed_blocks": [],
                "signed_attestations": [{"source_epoch": "100", "target_epoch": "200"}],
            }
        ],
    }
    path = tmp_path / "interchange.json"
    path.write_text(json.dumps(interchange))
    done = protection("import", "--data-dir", data_dir, path)
    assert done.returncode == 0, done.stderr
    with SignerProcess.dev(data_dir) as proc:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        assert stub.SignBeaconAttestation(att(2, 100, 150).request(), timeout=30).state == DENIED  # lower target
        assert stub.SignBeaconAttestation(att(2, 100, 200).request(), timeout=30).state == DENIED  # unknown root
        assert stub.SignBeaconAttestation(att(2, 99, 201).request(), timeout=30).state == DENIED  # lower source
        assert stub.SignBeaconAttestation(att(2, 100, 201).request(), timeout=30).state == SUCCEEDED
        assert stub.SignBeaconAttestation(att(3, 1, 2).request(), timeout=30).state == SUCCEEDED  # other keys free
