"""Network binding: the one Ethereum network this signer signs for, and the domain check.

A 32-byte domain is ``domain_type || compute_fork_data_root(fork_version, genesis_validators_root)[:28]``,
so its last 28 bytes commit to the network (genesis_validators_root) and to one fork version.
``Network.check_domain`` accepts a domain only if those bytes belong to this network:

* most domain types: ``fork_version`` is one of the network's fork versions (genesis or a scheduled
  fork) and the root is its ``genesis_validators_root``;
* ``DOMAIN_DEPOSIT`` and ``DOMAIN_APPLICATION_BUILDER``: ``compute_domain(type, genesis_fork_version,
  ZERO root)`` exactly (deposits and builder registrations are valid before genesis and across forks);
* ``DOMAIN_VOLUNTARY_EXIT``: EIP-7044 (deneb): from the deneb fork on, exits are verified with the
  capella fork version whatever their epoch; capella's version is one of the network's versions, so it
  passes the plain check.

When the caller passes the message's ``epoch`` the check is strict: the fork version must be the one
in force at that epoch (``fork_version_at``), with no grace for the previous fork around a transition.
A message signed for an epoch at or after a fork with the old version is invalid on chain anyway
(``get_domain`` uses ``previous_version`` only for epochs before ``fork.epoch``), so refusing it loses
nothing and keeps the rule simple. For ``DOMAIN_VOLUNTARY_EXIT`` with an epoch: at or after the deneb
epoch only the capella version is accepted; before it, the version at that epoch or the capella
version (an exit pre-signed today for an old epoch is verified with capella's version after deneb).
For a custom network whose forks are not named we do not know which fork is capella, so an exit may
use any of the network's versions in force at or before its epoch; when they are named (config
``forks[].name``) capella and deneb give EIP-7044's version and epoch as on the built-in networks.

``slots_per_epoch`` (32 in the mainnet preset, 8 in the minimal preset that dev chains use) turns a
slot into the epoch whose fork version applies (``epoch_at_slot``): a block at slot 17 on an 8-slot
network is in epoch 2.

Sources of the built-in values (fork versions and epochs, genesis_validators_root):
* mainnet: ethereum/consensus-specs ``configs/mainnet.yaml`` (Fulu: FULU_FORK_EPOCH 411392, Dec 3 2025);
  genesis_validators_root as in the eth-clients/mainnet metadata and every client's built-in config.
* sepolia, holesky, hoodi: sigp/lighthouse ``common/eth2_network_config/built_in_network_configs/
  <name>/config.yaml`` (mirrors eth-clients/<name> ``metadata/config.yaml``); genesis_validators_root
  from eth-clients/<name> README / genesis state (also in Prysm's and Lighthouse's built-in configs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from signer.config import FORK_NAMES, ForkEntry, NetworkConfig
from signer.errors import ConfigError, MalformedRequest, WrongNetwork
from signer.eth2.signing import DomainType, compute_domain, compute_fork_data_root
from signer.eth2.ssz import UINT64_MAX, ZERO_CHUNK

FAR_FUTURE_EPOCH = UINT64_MAX
"""An unscheduled fork in a consensus config; such entries are dropped from a schedule."""

_GENESIS_ONLY = (DomainType.DEPOSIT, DomainType.APPLICATION_BUILDER)
_DOMAIN_TYPES: dict[bytes, DomainType] = {bytes(t.value): t for t in DomainType}


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass(frozen=True, slots=True)
class Network:
    """One consensus network: its genesis_validators_root and complete fork schedule.

    ``forks`` holds the forks after genesis as ``(epoch, version)``, in fork order (epochs never
    decrease; several forks may share an epoch, the last one listed wins). ``fork_names`` names the
    first ``len(fork_names)`` of them: always altair, bellatrix, ... in order (a prefix of
    ``FORK_NAMES[1:]``); forks beyond it (an operator's extension of a built-in schedule) are
    unnamed. ``exit_fork_version`` and ``exit_fork_epoch`` are EIP-7044's capella version and deneb
    epoch, when known.
    """

    name: str
    genesis_validators_root: bytes
    genesis_fork_version: bytes
    forks: tuple[tuple[int, bytes], ...] = ()
    exit_fork_version: bytes | None = None
    exit_fork_epoch: int | None = None
    slots_per_epoch: int = 32
    fork_names: tuple[str, ...] = ()
    _by_suffix: dict[bytes, tuple[bytes, int, int]] = field(init=False, repr=False, compare=False, hash=False)
    """The last 28 bytes of a domain -> (its fork version, the epochs [first, end) it is in force)."""
    _genesis_domains: dict[DomainType, bytes] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:  # noqa: C901 -- one flat list of the network's invariants, each with its own error
        where = f"network {self.name!r}"
        if len(self.genesis_validators_root) != 32:
            raise ConfigError(f"{where}: genesis_validators_root must be 32 bytes")
        if len(self.genesis_fork_version) != 4:
            raise ConfigError(f"{where}: genesis_fork_version must be 4 bytes")
        last = 0
        for epoch, version in self.forks:
            if len(version) != 4:
                raise ConfigError(f"{where}: fork version {_hex(version)} must be 4 bytes")
            if not 0 <= epoch <= UINT64_MAX or epoch < last:
                raise ConfigError(f"{where}: fork epochs must be uint64 and never decrease (at {epoch})")
            last = epoch
        versions = self.versions
        if len(set(versions)) != len(versions):
            raise ConfigError(f"{where}: a fork version appears twice in the schedule")
        if (self.exit_fork_version is None) != (self.exit_fork_epoch is None):
            raise ConfigError(f"{where}: exit_fork_version and exit_fork_epoch go together")
        if self.exit_fork_version is not None and self.exit_fork_version not in versions:
            raise ConfigError(f"{where}: exit_fork_version is not one of the network's fork versions")
        if type(self.slots_per_epoch) is not int or self.slots_per_epoch < 1:
            raise ConfigError(f"{where}: slots_per_epoch must be a positive integer")
        if len(self.fork_names) > len(self.forks) or self.fork_names != FORK_NAMES[1 : 1 + len(self.fork_names)]:
            raise ConfigError(
                f"{where}: named forks must be {', '.join(FORK_NAMES[1:])} in this order, each once, "
                f"without gaps (got {', '.join(self.fork_names)})"
            )
        # When each version is in force: from its fork's epoch to the next fork's (a fork superseded at
        # its own epoch, as on holesky and hoodi, never is: first == end), the last one to the end.
        starts = (0, *(e for e, _ in self.forks))
        ends = (*(e for e, _ in self.forks), UINT64_MAX + 1)
        by_suffix = {
            compute_fork_data_root(v, self.genesis_validators_root)[:28]: (v, first, end)
            for v, first, end in zip(versions, starts, ends, strict=True)
        }
        genesis_domains = {t: compute_domain(t, self.genesis_fork_version, ZERO_CHUNK) for t in _GENESIS_ONLY}
        object.__setattr__(self, "_by_suffix", by_suffix)
        object.__setattr__(self, "_genesis_domains", genesis_domains)

    @property
    def versions(self) -> tuple[bytes, ...]:
        """Every fork version of the network, genesis first."""
        return (self.genesis_fork_version, *(v for _, v in self.forks))

    def fork_version_at(self, epoch: int) -> bytes:
        """The fork version in force at ``epoch``."""
        if type(epoch) is not int or not 0 <= epoch <= UINT64_MAX:
            raise MalformedRequest(f"epoch must be a uint64, got {epoch}")
        version = self.genesis_fork_version
        for fork_epoch, fork_version in self.forks:
            if fork_epoch > epoch:
                break
            version = fork_version
        return version

    def fork_name_at(self, epoch: int) -> str | None:
        """The name of the fork in force at ``epoch`` (``phase0`` before the first fork), or None when
        that fork is not named (an unnamed custom schedule or an extension of a built-in one)."""
        self.fork_version_at(epoch)  # validates epoch
        if not self.fork_names:
            return None
        active = sum(1 for fork_epoch, _ in self.forks if fork_epoch <= epoch)
        if active == 0:
            return FORK_NAMES[0]
        return self.fork_names[active - 1] if active <= len(self.fork_names) else None

    def epoch_at_slot(self, slot: int) -> int:
        """compute_epoch_at_slot with this network's SLOTS_PER_EPOCH."""
        if type(slot) is not int or not 0 <= slot <= UINT64_MAX:
            raise MalformedRequest(f"slot must be a uint64, got {slot}")
        return slot // self.slots_per_epoch

    def domain(self, domain_type: bytes, epoch: int) -> bytes:
        """The domain this network expects for ``domain_type`` at ``epoch`` (what a client computes)."""
        dtype = DomainType(bytes(domain_type))
        if dtype in _GENESIS_ONLY:
            return self._genesis_domains[dtype]
        if (
            dtype is DomainType.VOLUNTARY_EXIT
            and self.exit_fork_version is not None
            and self.exit_fork_epoch is not None
            and epoch >= self.exit_fork_epoch
        ):
            return compute_domain(dtype, self.exit_fork_version, self.genesis_validators_root)
        return compute_domain(dtype, self.fork_version_at(epoch), self.genesis_validators_root)

    def _allowed_versions(self, dtype: DomainType, epoch: int) -> tuple[bytes, ...]:
        at_epoch = self.fork_version_at(epoch)
        if dtype is not DomainType.VOLUNTARY_EXIT:
            return (at_epoch,)
        if self.exit_fork_version is None or self.exit_fork_epoch is None:
            return tuple(v for v in self.versions if self._version_epoch(v) <= epoch)
        if epoch >= self.exit_fork_epoch:
            return (self.exit_fork_version,)
        return (at_epoch, self.exit_fork_version)

    def _version_epoch(self, version: bytes) -> int:
        if version == self.genesis_fork_version:
            return 0
        return next(e for e, v in self.forks if v == version)

    def check_domain(self, domain: bytes, epoch: int | None = None) -> DomainType:
        """Accept a request's 32-byte domain only if it belongs to this network (see module doc).

        Raises ``WrongNetwork`` (naming the network) if it does not, ``MalformedRequest`` if it is
        not 32 bytes or its domain type is unknown. Returns the domain type.
        """
        if len(domain) != 32:
            raise MalformedRequest(f"domain must be 32 bytes, got {len(domain)}")
        dtype = _DOMAIN_TYPES.get(bytes(domain[:4]))
        if dtype is None:
            raise MalformedRequest(f"unknown domain type {_hex(domain[:4])}")
        if dtype in _GENESIS_ONLY:
            if domain != self._genesis_domains[dtype]:
                raise WrongNetwork(
                    f"{dtype.name} domain {_hex(domain)} does not belong to network {self.name!r} "
                    f"(expected genesis fork version {_hex(self.genesis_fork_version)} and a zero root)"
                )
            return dtype
        in_force = self._by_suffix.get(bytes(domain[4:]))
        if in_force is None:
            raise WrongNetwork(
                f"{dtype.name} domain {_hex(domain)} does not belong to network {self.name!r}: "
                "no fork version of it with its genesis_validators_root gives this domain"
            )
        version, first, end = in_force
        # The common case is the table's answer: the version in force at ``epoch``. Exits (EIP-7044),
        # a bad epoch and a refusal take the full rule, which validates the epoch and names the versions.
        if epoch is not None and (
            type(epoch) is not int or dtype is DomainType.VOLUNTARY_EXIT or not first <= epoch < end
        ):
            allowed = self._allowed_versions(dtype, epoch)
            if version not in allowed:
                raise WrongNetwork(
                    f"{dtype.name} domain uses fork version {_hex(version)}, but at epoch {epoch} "
                    f"network {self.name!r} expects {' or '.join(_hex(v) for v in allowed)}"
                )
        return dtype


def _v(hex_version: str) -> bytes:
    return bytes.fromhex(hex_version.removeprefix("0x"))


# Values: see the module docstring for sources. Fork order: altair, bellatrix, capella, deneb,
# electra, fulu.
_AFTER_GENESIS = FORK_NAMES[1:]
MAINNET = Network(
    name="mainnet",
    genesis_validators_root=_v("0x4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"),
    genesis_fork_version=_v("0x00000000"),
    forks=(
        (74240, _v("0x01000000")),
        (144896, _v("0x02000000")),
        (194048, _v("0x03000000")),
        (269568, _v("0x04000000")),
        (364032, _v("0x05000000")),
        (411392, _v("0x06000000")),
    ),
    exit_fork_version=_v("0x03000000"),
    exit_fork_epoch=269568,
    fork_names=_AFTER_GENESIS,
)

SEPOLIA = Network(
    name="sepolia",
    genesis_validators_root=_v("0xd8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078"),
    genesis_fork_version=_v("0x90000069"),
    forks=(
        (50, _v("0x90000070")),
        (100, _v("0x90000071")),
        (56832, _v("0x90000072")),
        (132608, _v("0x90000073")),
        (222464, _v("0x90000074")),
        (272640, _v("0x90000075")),
    ),
    exit_fork_version=_v("0x90000072"),
    exit_fork_epoch=132608,
    fork_names=_AFTER_GENESIS,
)

HOLESKY = Network(
    name="holesky",
    genesis_validators_root=_v("0x9143aa7c615a7f7115e2b6aac319c03529df8242ae705fba9df39b79c59fa8b1"),
    genesis_fork_version=_v("0x01017000"),
    forks=(
        (0, _v("0x02017000")),
        (0, _v("0x03017000")),
        (256, _v("0x04017000")),
        (29696, _v("0x05017000")),
        (115968, _v("0x06017000")),
        (165120, _v("0x07017000")),
    ),
    exit_fork_version=_v("0x04017000"),
    exit_fork_epoch=29696,
    fork_names=_AFTER_GENESIS,
)

HOODI = Network(
    name="hoodi",
    genesis_validators_root=_v("0x212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f"),
    genesis_fork_version=_v("0x10000910"),
    forks=(
        (0, _v("0x20000910")),
        (0, _v("0x30000910")),
        (0, _v("0x40000910")),
        (0, _v("0x50000910")),
        (2048, _v("0x60000910")),
        (50688, _v("0x70000910")),
    ),
    exit_fork_version=_v("0x40000910"),
    exit_fork_epoch=0,
    fork_names=_AFTER_GENESIS,
)

BUILTIN_NETWORKS: dict[str, Network] = {n.name: n for n in (MAINNET, HOODI, SEPOLIA, HOLESKY)}


def _scheduled(cfg: NetworkConfig) -> list[ForkEntry]:
    """``[network].forks`` without entries at FAR_FUTURE_EPOCH (unscheduled) and without a genesis
    entry (epoch 0 with the genesis version, or named phase0)."""
    genesis = _v(cfg.genesis_fork_version) if cfg.genesis_fork_version else None
    if any(f.name == FORK_NAMES[0] and f.epoch != 0 for f in cfg.forks):
        raise ConfigError("network.forks: phase0 is the genesis fork, at epoch 0")
    return [
        f
        for f in cfg.forks
        if f.epoch != FAR_FUTURE_EPOCH and f.name != FORK_NAMES[0] and not (f.epoch == 0 and _v(f.version) == genesis)
    ]


def _named_schedule(kept: list[ForkEntry]) -> tuple[tuple[tuple[int, bytes], ...], tuple[str, ...]]:
    """A custom schedule and its names: all or none named, and then altair, bellatrix, ... in order."""
    named = [f.name for f in kept if f.name is not None]
    if named and len(named) != len(kept):
        raise ConfigError("network.forks: name every scheduled fork or none")
    expected = FORK_NAMES[1 : 1 + len(named)]
    if tuple(named) != expected:
        raise ConfigError(
            f"network.forks: scheduled forks must be named {', '.join(expected)} in this order "
            f"(got {', '.join(str(n) for n in named)})"
        )
    return tuple((f.epoch, _v(f.version)) for f in kept), tuple(str(n) for n in named)


def _exit_fork(forks: tuple[tuple[int, bytes], ...], names: tuple[str, ...]) -> tuple[bytes | None, int | None]:
    """EIP-7044: (capella version, deneb epoch) when both are scheduled and named, else (None, None)."""
    by_name = dict(zip(names, forks, strict=False))
    if "capella" in by_name and "deneb" in by_name:
        return by_name["capella"][1], by_name["deneb"][0]
    return None, None


def network_from_config(cfg: NetworkConfig) -> Network:  # noqa: C901 -- the built-in vs. custom network rules, each with its own error
    """The network named by ``[network]``.

    A built-in name gives the built-in network; ``genesis_validators_root``/``genesis_fork_version``
    may be repeated but must then agree, ``slots_per_epoch`` may only be 32, and ``forks`` may only
    append unnamed forks scheduled after the last built-in one (so a newly scheduled fork can be
    configured before a release knows it). Any other name (``custom`` or e.g. a devnet's) needs both
    genesis fields and takes ``forks`` as its schedule (named or not; see ``_config_forks``) and
    ``slots_per_epoch`` (default 32).
    """
    kept = _scheduled(cfg)
    builtin = BUILTIN_NETWORKS.get(cfg.name)
    if builtin is not None:
        if cfg.genesis_validators_root is not None and _v(cfg.genesis_validators_root) != (
            builtin.genesis_validators_root
        ):
            raise ConfigError(
                f"network.genesis_validators_root does not match built-in network {cfg.name!r} "
                f"({_hex(builtin.genesis_validators_root)})"
            )
        gfv = cfg.genesis_fork_version
        if gfv is not None and _v(gfv) != builtin.genesis_fork_version:
            raise ConfigError(
                f"network.genesis_fork_version does not match built-in network {cfg.name!r} "
                f"({_hex(builtin.genesis_fork_version)})"
            )
        if cfg.slots_per_epoch is not None and cfg.slots_per_epoch != builtin.slots_per_epoch:
            raise ConfigError(
                f"network.slots_per_epoch: built-in network {cfg.name!r} has {builtin.slots_per_epoch} "
                f"slots per epoch (a custom network may set another value)"
            )
        known = dict(zip(builtin.forks, builtin.fork_names, strict=False))
        for entry in cfg.forks:
            fork = (entry.epoch, _v(entry.version))
            if entry.name is not None and fork in known and known[fork] != entry.name:
                raise ConfigError(
                    f"network.forks: ({entry.epoch}, {entry.version}) is {known[fork]} on {cfg.name!r}, "
                    f"not {entry.name}"
                )
            if entry.name is not None and fork not in known:
                raise ConfigError(
                    f"network.forks: {entry.name} is already scheduled on {cfg.name!r}; a fork added "
                    "after the built-in schedule has no name"
                )
        last_epoch = builtin.forks[-1][0] if builtin.forks else 0
        forks = tuple((f.epoch, _v(f.version)) for f in kept)
        extra = tuple(f for f in forks if f not in set(builtin.forks))
        for epoch, version in extra:
            if epoch <= last_epoch or version in builtin.versions:
                raise ConfigError(
                    f"network.forks: ({epoch}, {_hex(version)}) conflicts with the built-in schedule of "
                    f"{cfg.name!r}; only forks after epoch {last_epoch} with new versions may be added"
                )
        if not extra:
            return builtin
        return Network(
            name=builtin.name,
            genesis_validators_root=builtin.genesis_validators_root,
            genesis_fork_version=builtin.genesis_fork_version,
            forks=builtin.forks + extra,
            exit_fork_version=builtin.exit_fork_version,
            exit_fork_epoch=builtin.exit_fork_epoch,
            slots_per_epoch=builtin.slots_per_epoch,
            fork_names=builtin.fork_names,
        )
    if cfg.genesis_validators_root is None or cfg.genesis_fork_version is None:
        raise ConfigError(
            f"network.name {cfg.name!r} is not built in ({', '.join(sorted(BUILTIN_NETWORKS))}); "
            "a custom network needs network.genesis_validators_root and network.genesis_fork_version"
        )
    forks, names = _named_schedule(kept)
    exit_version, exit_epoch = _exit_fork(forks, names)
    return Network(
        name=cfg.name,
        genesis_validators_root=_v(cfg.genesis_validators_root),
        genesis_fork_version=_v(cfg.genesis_fork_version),
        forks=forks,
        exit_fork_version=exit_version,
        exit_fork_epoch=exit_epoch,
        slots_per_epoch=cfg.slots_per_epoch or 32,
        fork_names=names,
    )
