"""Network binding: built-in schedules, fork_version_at, domain(), check_domain, network_from_config."""

from __future__ import annotations

import itertools

import pytest

from signer.config import ForkEntry, NetworkConfig
from signer.errors import ConfigError, MalformedRequest, WrongNetwork
from signer.eth2 import BUILTIN_NETWORKS, DomainType, Network, compute_domain, network_from_config
from signer.eth2.networks import MAINNET
from signer.eth2.signing import compute_fork_data_root

ZERO = bytes(32)
GENESIS_ONLY = {DomainType.DEPOSIT, DomainType.APPLICATION_BUILDER}
FORK_TYPES = [t for t in DomainType if t not in GENESIS_ONLY]


def _own_domains(net: Network) -> list[tuple[DomainType, bytes, bytes]]:
    """(type, version, domain) for every domain a client of ``net`` may present."""
    out = []
    for dtype in DomainType:
        if dtype in GENESIS_ONLY:
            gfv = net.genesis_fork_version
            out.append((dtype, gfv, compute_domain(dtype, gfv, ZERO)))
        else:
            gvr = net.genesis_validators_root
            out.extend((dtype, v, compute_domain(dtype, v, gvr)) for v in net.versions)
    return out


def test_builtin_names() -> None:
    assert set(BUILTIN_NETWORKS) == {"mainnet", "hoodi", "sepolia", "holesky"}
    for name, net in BUILTIN_NETWORKS.items():
        assert net.name == name
        assert len(net.forks) == 6  # altair, bellatrix, capella, deneb, electra, fulu


def test_mainnet_fork_digests_are_the_public_ones() -> None:
    # fork digest = compute_fork_data_root(version, genesis_validators_root)[:4]; these are the
    # well-known mainnet digests (phase0..electra), so they check the root and versions together.
    expected = ["b5303f2a", "afcaaba0", "4a26c58b", "bba4da96", "6a95a1a9", "ad532ceb"]
    digests = [compute_fork_data_root(v, MAINNET.genesis_validators_root)[:4].hex() for v in MAINNET.versions]
    assert digests[:6] == expected


def test_mainnet_genesis_domains_are_the_public_ones() -> None:
    suffix = "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a9"
    assert MAINNET.domain(DomainType.DEPOSIT, 0).hex() == "03000000" + suffix
    assert MAINNET.domain(DomainType.APPLICATION_BUILDER, 10**6).hex() == "00000001" + suffix


@pytest.mark.parametrize("name", sorted(BUILTIN_NETWORKS))
def test_network_accepts_its_own_domains(name: str) -> None:
    net = BUILTIN_NETWORKS[name]
    for dtype, _, domain in _own_domains(net):
        assert net.check_domain(domain) is dtype


@pytest.mark.parametrize(
    ("own", "other"), [p for p in itertools.permutations(sorted(BUILTIN_NETWORKS), 2)], ids="-on-".join
)
def test_network_refuses_other_networks_domains(own: str, other: str) -> None:
    foreign = BUILTIN_NETWORKS[other]
    net = BUILTIN_NETWORKS[own]
    for _, _, domain in _own_domains(foreign):
        with pytest.raises(WrongNetwork, match=repr(own)):
            net.check_domain(domain)
        with pytest.raises(WrongNetwork, match=repr(own)):
            net.check_domain(domain, epoch=0)


def test_mainnet_attester_domain_on_holesky() -> None:
    domain = BUILTIN_NETWORKS["mainnet"].domain(DomainType.BEACON_ATTESTER, 400_000)
    with pytest.raises(WrongNetwork, match="'holesky'"):
        BUILTIN_NETWORKS["holesky"].check_domain(domain)


def test_fork_version_at_boundaries() -> None:
    m = MAINNET
    assert m.fork_version_at(0) == bytes.fromhex("00000000")
    assert m.fork_version_at(74239) == bytes.fromhex("00000000")
    assert m.fork_version_at(74240) == bytes.fromhex("01000000")
    assert m.fork_version_at(364031) == bytes.fromhex("04000000")
    assert m.fork_version_at(364032) == bytes.fromhex("05000000")
    assert m.fork_version_at(2**64 - 1) == bytes.fromhex("06000000")
    hoodi = BUILTIN_NETWORKS["hoodi"]
    assert hoodi.fork_version_at(0) == bytes.fromhex("50000910")  # four forks at epoch 0: deneb wins
    assert hoodi.fork_version_at(2048) == bytes.fromhex("60000910")
    with pytest.raises(MalformedRequest):
        m.fork_version_at(-1)


@pytest.mark.parametrize("name", sorted(BUILTIN_NETWORKS))
def test_epoch_check_is_strict_at_every_fork(name: str) -> None:
    net = BUILTIN_NETWORKS[name]
    schedule = [(0, net.genesis_fork_version), *net.forks]
    for (epoch, version), (_, previous) in zip(schedule[1:], schedule, strict=False):
        for dtype in FORK_TYPES:
            if dtype is DomainType.VOLUNTARY_EXIT:
                continue
            if net.fork_version_at(epoch) != version:  # superseded at the same epoch (hoodi, holesky)
                continue
            current = compute_domain(dtype, version, net.genesis_validators_root)
            assert net.domain(dtype, epoch) == current
            assert net.check_domain(current, epoch) is dtype
            old = compute_domain(dtype, previous, net.genesis_validators_root)
            with pytest.raises(WrongNetwork, match=f"epoch {epoch}"):
                net.check_domain(old, epoch)  # no grace: the old version at the fork epoch
            if epoch > 0:
                with pytest.raises(WrongNetwork):
                    net.check_domain(current, epoch - 1)  # the new version before its fork
                assert net.check_domain(old, epoch - 1) is dtype


@pytest.mark.parametrize("name", sorted(BUILTIN_NETWORKS))
def test_check_domain_accepts_exactly_the_version_in_force(name: str) -> None:
    """check_domain answers from a table built at load; it must agree with fork_version_at for every
    version at every fork boundary (forks superseded at their own epoch included) and the ends of
    the uint64 range, and a bad epoch is refused as malformed."""
    net = BUILTIN_NETWORKS[name]
    edges = {0, 1, 2**64 - 1, *(e + d for e, _ in net.forks for d in (-1, 0, 1) if 0 <= e + d < 2**64)}
    for version, epoch in itertools.product(net.versions, sorted(edges)):
        domain = compute_domain(DomainType.BEACON_ATTESTER, version, net.genesis_validators_root)
        if version == net.fork_version_at(epoch):
            assert net.check_domain(domain, epoch) is DomainType.BEACON_ATTESTER
        else:
            with pytest.raises(WrongNetwork, match=f"at epoch {epoch}"):
                net.check_domain(domain, epoch)
    current = net.domain(DomainType.BEACON_ATTESTER, 0)
    for bad in (-1, 2**64, True, "0"):
        with pytest.raises(MalformedRequest, match="uint64"):
            net.check_domain(current, bad)  # type: ignore[arg-type]


def test_genesis_only_domains_ignore_epoch() -> None:
    for dtype in GENESIS_ONLY:
        domain = compute_domain(dtype, MAINNET.genesis_fork_version, ZERO)
        assert MAINNET.check_domain(domain, epoch=400_000) is dtype
        # the same type with the network's root (not zero), or a later version, is not accepted
        with pytest.raises(WrongNetwork):
            gvr = MAINNET.genesis_validators_root
            MAINNET.check_domain(compute_domain(dtype, MAINNET.genesis_fork_version, gvr))
        with pytest.raises(WrongNetwork):
            MAINNET.check_domain(compute_domain(dtype, bytes.fromhex("05000000"), ZERO))


def _exit(version: str, net: Network = MAINNET) -> bytes:
    return compute_domain(DomainType.VOLUNTARY_EXIT, bytes.fromhex(version), net.genesis_validators_root)


def test_voluntary_exit_eip7044() -> None:
    capella = _exit("03000000")
    # from deneb on, exits use the capella version whatever the epoch
    assert MAINNET.domain(DomainType.VOLUNTARY_EXIT, 400_000) == capella
    assert MAINNET.domain(DomainType.VOLUNTARY_EXIT, 269_568) == capella
    assert MAINNET.check_domain(capella, epoch=400_000) is DomainType.VOLUNTARY_EXIT
    for version in ("04000000", "05000000", "06000000"):
        with pytest.raises(WrongNetwork):
            MAINNET.check_domain(_exit(version), epoch=420_000)
        assert MAINNET.check_domain(_exit(version)) is DomainType.VOLUNTARY_EXIT  # no epoch: any version
    # before deneb: the version at the epoch, or capella (verified with capella after deneb)
    assert MAINNET.domain(DomainType.VOLUNTARY_EXIT, 100_000) == _exit("01000000")
    assert MAINNET.check_domain(_exit("01000000"), epoch=100_000) is DomainType.VOLUNTARY_EXIT
    assert MAINNET.check_domain(capella, epoch=100_000) is DomainType.VOLUNTARY_EXIT
    with pytest.raises(WrongNetwork):
        MAINNET.check_domain(_exit("00000000"), epoch=100_000)
    hoodi = BUILTIN_NETWORKS["hoodi"]
    assert hoodi.domain(DomainType.VOLUNTARY_EXIT, 60_000) == _exit("40000910", hoodi)


def test_malformed_domains() -> None:
    good = MAINNET.domain(DomainType.RANDAO, 1)
    with pytest.raises(MalformedRequest, match="32 bytes"):
        MAINNET.check_domain(good[:31])
    with pytest.raises(MalformedRequest, match="unknown domain type 0x0a000000"):
        MAINNET.check_domain(bytes.fromhex("0a000000") + good[4:])


# --- network_from_config ----------------------------------------------------------------------


def test_builtin_from_config() -> None:
    assert network_from_config(NetworkConfig()) is MAINNET
    assert network_from_config(NetworkConfig(name="hoodi")) is BUILTIN_NETWORKS["hoodi"]
    same = NetworkConfig(
        name="mainnet",
        genesis_validators_root="0x" + MAINNET.genesis_validators_root.hex(),
        genesis_fork_version="0x00000000",
    )
    assert network_from_config(same) is MAINNET


def test_builtin_with_other_genesis_is_refused() -> None:
    with pytest.raises(ConfigError, match="genesis_validators_root"):
        network_from_config(NetworkConfig(name="mainnet", genesis_validators_root="0x" + "11" * 32))
    with pytest.raises(ConfigError, match="genesis_fork_version"):
        network_from_config(NetworkConfig(name="sepolia", genesis_fork_version="0x00000000"))


def test_builtin_schedule_can_be_extended_not_changed() -> None:
    gloas = ForkEntry(epoch=500_000, version="0x07000000")
    net = network_from_config(NetworkConfig(name="mainnet", forks=(gloas,)))
    assert net.fork_version_at(500_000) == bytes.fromhex("07000000")
    proposer = net.domain(DomainType.BEACON_PROPOSER, 500_001)
    assert net.check_domain(proposer, 500_001) is DomainType.BEACON_PROPOSER
    with pytest.raises(WrongNetwork):
        MAINNET.check_domain(net.domain(DomainType.BEACON_PROPOSER, 500_001))
    # repeating a known fork is fine; moving one or reusing a version is not
    known = ForkEntry(epoch=74240, version="0x01000000")
    assert network_from_config(NetworkConfig(name="mainnet", forks=(known,))) is MAINNET
    for bad in (ForkEntry(epoch=74241, version="0x01000000"), ForkEntry(epoch=300_000, version="0x07000000")):
        with pytest.raises(ConfigError, match=r"network\.forks"):
            network_from_config(NetworkConfig(name="mainnet", forks=(bad,)))


def test_custom_network() -> None:
    gvr = "0x" + "ab" * 32
    cfg = NetworkConfig(
        name="custom",
        genesis_validators_root=gvr,
        genesis_fork_version="0x10000000",
        forks=(
            ForkEntry(epoch=0, version="0x10000000"),  # a genesis entry is tolerated
            ForkEntry(epoch=0, version="0x20000000"),
            ForkEntry(epoch=10, version="0x30000000"),
            ForkEntry(epoch=2**64 - 1, version="0x40000000"),  # unscheduled: dropped
        ),
    )
    net = network_from_config(cfg)
    assert net.name == "custom"
    assert net.forks == ((0, bytes.fromhex("20000000")), (10, bytes.fromhex("30000000")))
    assert net.fork_version_at(9) == bytes.fromhex("20000000")
    attester = net.domain(DomainType.BEACON_ATTESTER, 10)
    assert net.check_domain(attester, 10) is DomainType.BEACON_ATTESTER
    for other in BUILTIN_NETWORKS.values():
        with pytest.raises(WrongNetwork):
            other.check_domain(attester)
    # exits on a custom network: any version of it in force at or before the epoch
    exit_20 = compute_domain(DomainType.VOLUNTARY_EXIT, bytes.fromhex("20000000"), bytes.fromhex("ab" * 32))
    exit_30 = compute_domain(DomainType.VOLUNTARY_EXIT, bytes.fromhex("30000000"), bytes.fromhex("ab" * 32))
    assert net.check_domain(exit_20, 50) is DomainType.VOLUNTARY_EXIT
    assert net.check_domain(exit_30, 50) is DomainType.VOLUNTARY_EXIT
    with pytest.raises(WrongNetwork):
        net.check_domain(exit_30, 9)


def test_custom_network_errors() -> None:
    with pytest.raises(ConfigError, match="not built in"):
        network_from_config(NetworkConfig(name="devnet-7"))
    unsorted = NetworkConfig(
        name="devnet-7",
        genesis_validators_root="0x" + "01" * 32,
        genesis_fork_version="0x10000000",
        forks=(ForkEntry(epoch=5, version="0x20000000"), ForkEntry(epoch=4, version="0x30000000")),
    )
    with pytest.raises(ConfigError, match="never decrease"):
        network_from_config(unsorted)
    repeated = unsorted.model_copy(
        update={"forks": (ForkEntry(epoch=4, version="0x20000000"), ForkEntry(epoch=5, version="0x20000000"))}
    )
    with pytest.raises(ConfigError, match="twice"):
        network_from_config(repeated)
