"""The Lodestar devnet harness (tests/e2e/lodestar.py) while the REST front does not exist: its pure
parts, and a real beacon node (installed by scripts/install-lodestar.sh) started, read and stopped."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from signer.config import NetworkConfig
from signer.eth2 import network_from_config
from tests.e2e.lodestar import LodestarDevnet, interop_public_keys, network_from_spec, network_toml

GVR_8 = "0x270d43e74ce340de4bca2b1936beca0f4f5408d9e78aec4850920baf659d5b69"
"""genesis_validators_root of 8 interop validators, minimal preset (measured; independent of time)."""

SPEC = {
    "SLOTS_PER_EPOCH": "8",
    "GENESIS_FORK_VERSION": "0x00000001",
    "ALTAIR_FORK_VERSION": "0x01000001",
    "ALTAIR_FORK_EPOCH": "0",
    "BELLATRIX_FORK_VERSION": "0x02000001",
    "BELLATRIX_FORK_EPOCH": "1",
    "CAPELLA_FORK_VERSION": "0x03000001",
    "CAPELLA_FORK_EPOCH": "2",
    "EIP4844_FORK_VERSION": "0x04000001",
    "EIP4844_FORK_EPOCH": "18446744073709551615",
}


def test_interop_keys_are_lodestars() -> None:
    keys = ["0x" + k.hex() for k in interop_public_keys(3)]
    assert keys == [
        "0xa99a76ed7796f7be22d5b7e85deeb7c5677e88e511e0b337618f8c4eb61349b4bf2d153f649f7b53359fe8b94a38e44c",
        "0xb89bebc699769726a318c8e9971bd3171297c61aea4a6578a7a4f94b547dcba5bac16a89108b6b6a1fe3695d1a874a0b",
        "0xa3a32b0f8b4ddb83f1a0a853d81dd725dfe577d4f4c3db8ece52ce2b026eca84815c1a7e8e92a4de3d755733bf7e4a9b",
    ]


def test_spec_becomes_a_signer_network() -> None:
    table = network_from_spec(SPEC, GVR_8)
    assert table["slots_per_epoch"] == 8
    assert [f["name"] for f in table["forks"]] == ["altair", "bellatrix", "capella"]
    assert tomllib.loads(network_toml(table))["network"] == table
    network = network_from_config(NetworkConfig(**table))
    assert network.epoch_at_slot(17) == 2
    assert network.fork_version_at(2) == bytes.fromhex("03000001")
    # a schedule that stops early (altair only) stays a prefix
    short = network_from_spec(SPEC | {"BELLATRIX_FORK_EPOCH": "18446744073709551615"}, GVR_8)
    assert [f["name"] for f in short["forks"]] == ["altair"]


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.slow
def test_beacon_node_starts_and_describes_its_chain(tmp_path: Path) -> None:
    with LodestarDevnet(tmp_path / "chain", seconds_per_slot=1) as chain:
        chain.start_beacon()
        table = chain.network_config()
        assert table == network_from_spec(SPEC, GVR_8)
        assert (tmp_path / "chain" / "genesis.ssz").is_file()  # written to the work dir, not the repo
        schedule = chain.fork_schedule()
        assert schedule[-1]["current_version"] == "0x03000001" or schedule[-1]["epoch"] == "18446744073709551615"
        assert chain.finality().finalized_epoch == 0
    assert chain.beacon is None
