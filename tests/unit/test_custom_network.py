"""Custom networks shaped like a Lodestar dev chain: slots_per_epoch, a named fork schedule ending at
capella, the genesis fork version and genesis_validators_root, from the TOML config to a signature."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer.config import ForkEntry, NetworkConfig, parse_config
from signer.crypto import bls
from signer.errors import ConfigError, WrongNetwork
from signer.eth2 import DomainType, compute_domain, compute_signing_root, network_from_config
from signer.eth2.containers import BeaconBlockHeader
from signer.eth2.networks import MAINNET, Network
from signer.keys.dev import dev_bls_secret
from signer.keys.emulated import MIN_SCRYPT_N, EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.service import KeyRef, ProposalRequest, SigningService
from signer.types import LOCAL_CLIENT, Scheme
from tests.stores import keys_never_signed

PIN = "unit-test-module-pin"
GVR = "0x270d43e74ce340de4bca2b1936beca0f4f5408d9e78aec4850920baf659d5b69"
"""Lodestar's minimal-preset dev chain with 8 interop validators (notes/lodestar.md)."""

LODESTAR_DEV_TOML = f"""
[network]
name = "lodestar-dev"
genesis_validators_root = "{GVR}"
genesis_fork_version = "0x00000001"
slots_per_epoch = 8
forks = [
  {{ name = "altair", epoch = 0, version = "0x01000001" }},
  {{ name = "bellatrix", epoch = 1, version = "0x02000001" }},
  {{ name = "capella", epoch = 2, version = "0x03000001" }},
]

[keys]
module = "emulated"
pin = {{ env = "SIGNER_TEST_PIN" }}
"""

V = bytes.fromhex
ALTAIR, BELLATRIX, CAPELLA = V("01000001"), V("02000001"), V("03000001")


def lodestar_dev() -> Network:
    return network_from_config(parse_config(tomllib.loads(LODESTAR_DEV_TOML)).network)


def test_lodestar_dev_chain_config() -> None:
    net = lodestar_dev()
    assert net.name == "lodestar-dev"
    assert net.slots_per_epoch == 8
    assert net.genesis_fork_version == V("00000001")
    assert net.genesis_validators_root == V(GVR[2:])
    assert net.forks == ((0, ALTAIR), (1, BELLATRIX), (2, CAPELLA))
    assert net.fork_names == ("altair", "bellatrix", "capella")
    assert [net.fork_name_at(e) for e in (0, 1, 2, 99)] == ["altair", "bellatrix", "capella", "capella"]
    # the builder and deposit domains use the genesis fork version (not the genesis state's altair)
    assert net.domain(DomainType.APPLICATION_BUILDER, 5) == compute_domain(
        DomainType.APPLICATION_BUILDER, V("00000001"), bytes(32)
    )


def test_block_at_slot_17_on_an_8_slot_network_takes_the_fork_version_of_epoch_2() -> None:
    net = lodestar_dev()
    assert net.epoch_at_slot(17) == 2
    assert net.epoch_at_slot(15) == 1
    gvr = net.genesis_validators_root
    assert net.domain(DomainType.BEACON_PROPOSER, net.epoch_at_slot(17)) == compute_domain(
        DomainType.BEACON_PROPOSER, CAPELLA, gvr
    )
    assert net.domain(DomainType.BEACON_PROPOSER, net.epoch_at_slot(15)) == compute_domain(
        DomainType.BEACON_PROPOSER, BELLATRIX, gvr
    )


@pytest.fixture
def service(tmp_path: Path) -> Iterator[SigningService]:
    module = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    module.import_secrets([("v/0", Scheme.BLS, dev_bls_secret(0))])
    net = lodestar_dev()
    store = keys_never_signed(SqliteStore(tmp_path / "protection.sqlite", net.genesis_validators_root))
    yield SigningService(net, KeyRing(module), store)
    store.close()


def test_service_signs_a_slot_17_block_with_the_capella_domain_and_refuses_the_altair_one(
    service: SigningService,
) -> None:
    """Through the real core: with 32 slots per epoch slot 17 would be epoch 0 (altair), and the
    capella domain a client of the dev chain uses would be refused as the wrong fork."""
    gvr = service.network.genesis_validators_root
    header = BeaconBlockHeader(17, 3, b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    capella = compute_domain(DomainType.BEACON_PROPOSER, CAPELLA, gvr)
    altair = compute_domain(DomainType.BEACON_PROPOSER, ALTAIR, gvr)
    key = KeyRef(account="v/0")
    (refused,) = service.sign(LOCAL_CLIENT, [ProposalRequest(key, altair, header)])
    assert isinstance(refused.error, WrongNetwork), refused.error
    (signed,) = service.sign(LOCAL_CLIENT, [ProposalRequest(key, capella, header)])
    assert signed.error is None
    root = compute_signing_root(header.hash_tree_root(), capella)
    assert signed.signature == bls.sign(dev_bls_secret(0), root)


def test_slots_per_epoch_defaults_to_32_and_builtins_refuse_another() -> None:
    custom = NetworkConfig(name="custom", genesis_validators_root=GVR, genesis_fork_version="0x00000001")
    assert network_from_config(custom).slots_per_epoch == 32
    assert network_from_config(NetworkConfig(name="mainnet", slots_per_epoch=32)) is MAINNET
    with pytest.raises(ConfigError, match="slots_per_epoch"):
        network_from_config(NetworkConfig(name="hoodi", slots_per_epoch=8))
    with pytest.raises(ConfigError, match="slots_per_epoch"):
        parse_config({"network": {"name": "x", "slots_per_epoch": 0}, "keys": {"pin": {"env": "X"}}})


def _named(*forks: tuple[str | None, int, str]) -> NetworkConfig:
    return NetworkConfig(
        name="devnet",
        genesis_validators_root=GVR,
        genesis_fork_version="0x00000001",
        forks=tuple(ForkEntry(name=n, epoch=e, version=v) for n, e, v in forks),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("newest", range(0, 7))
def test_any_prefix_of_the_fork_list_is_a_schedule(newest: int) -> None:
    names = ["altair", "bellatrix", "capella", "deneb", "electra", "fulu"][:newest]
    cfg = _named(*[(n, i + 1, f"0x0{i + 1}000001") for i, n in enumerate(names)])
    net = network_from_config(cfg)
    assert net.fork_names == tuple(names)
    if not names:  # nothing named: the signer does not claim to know the forks
        assert net.fork_name_at(0) is None
        return
    assert net.fork_name_at(0) == "phase0"
    assert net.fork_name_at(10**6) == names[-1]


def test_named_capella_and_deneb_give_the_eip7044_exit_domain() -> None:
    cfg = _named(
        ("altair", 0, "0x01000001"),
        ("bellatrix", 1, "0x02000001"),
        ("capella", 2, "0x03000001"),
        ("deneb", 3, "0x04000001"),
    )
    net = network_from_config(cfg)
    gvr = net.genesis_validators_root
    assert (net.exit_fork_version, net.exit_fork_epoch) == (CAPELLA, 3)
    assert net.domain(DomainType.VOLUNTARY_EXIT, 50) == compute_domain(DomainType.VOLUNTARY_EXIT, CAPELLA, gvr)
    deneb_exit = compute_domain(DomainType.VOLUNTARY_EXIT, V("04000001"), gvr)
    with pytest.raises(WrongNetwork):
        net.check_domain(deneb_exit, 50)
    # capella newest (the Lodestar dev chain): exits keep the fork version of their epoch
    dev = lodestar_dev()
    assert dev.exit_fork_version is None
    assert dev.domain(DomainType.VOLUNTARY_EXIT, 1) == compute_domain(DomainType.VOLUNTARY_EXIT, BELLATRIX, gvr)


@pytest.mark.parametrize(
    ("forks", "message"),
    [
        ((("bellatrix", 1, "0x02000001"),), "named altair"),
        ((("altair", 0, "0x01000001"), ("capella", 2, "0x03000001")), "altair, bellatrix in this order"),
        ((("altair", 0, "0x01000001"), (None, 2, "0x03000001")), "name every scheduled fork or none"),
        ((("phase0", 3, "0x00000001"),), "phase0 is the genesis fork"),
    ],
)
def test_badly_named_schedules_are_refused(forks: tuple[tuple[str | None, int, str], ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        network_from_config(_named(*forks))


def test_unscheduled_and_genesis_entries_are_dropped_before_names_are_judged() -> None:
    net = network_from_config(
        _named(
            ("phase0", 0, "0x00000001"),
            ("altair", 0, "0x01000001"),
            ("bellatrix", 2**64 - 1, "0x02000001"),
        )
    )
    assert net.forks == ((0, ALTAIR),)
    assert net.fork_names == ("altair",)


def test_builtin_schedules_are_named_and_extensions_are_not() -> None:
    assert MAINNET.fork_name_at(74239) == "phase0"
    assert MAINNET.fork_name_at(74240) == "altair"
    assert MAINNET.fork_name_at(411392) == "fulu"
    extended = network_from_config(
        NetworkConfig(name="mainnet", forks=(ForkEntry(epoch=500_000, version="0x07000000"),))
    )
    assert extended.fork_name_at(500_000) is None
    assert extended.fork_name_at(411392) == "fulu"
    with pytest.raises(ConfigError, match="is altair"):
        network_from_config(
            NetworkConfig(name="mainnet", forks=(ForkEntry(name="bellatrix", epoch=74240, version="0x01000000"),))
        )
    with pytest.raises(ConfigError, match="has no name"):
        network_from_config(
            NetworkConfig(name="mainnet", forks=(ForkEntry(name="fulu", epoch=500_000, version="0x07000000"),))
        )
