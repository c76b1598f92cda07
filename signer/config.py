"""One typed, frozen configuration object, read from TOML.

Unknown keys are refused with their path named. Secrets (module PIN, PostgreSQL password) are
never in the file: only the name of a file or environment variable that holds them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signer.errors import ConfigError, MalformedRequest
from signer.types import check_chain_id


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Frozen):
    """Where a secret lives: a file (first line, stripped) or an environment variable."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of 'file' or 'env'")
        return self

    def read(self) -> str:
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise ConfigError(f"cannot read secret file {self.file}: {type(exc).__name__}") from exc
        assert self.env is not None
        value = os.environ.get(self.env)
        if value is None:
            raise ConfigError(f"environment variable {self.env} is not set")
        return value


class TlsConfig(_Frozen):
    cert_file: Path
    key_file: Path
    client_ca_file: Path
    reload_interval_s: float = 30.0


DEFAULT_CONCURRENT_RPCS = 4096
"""The default of server.max_concurrent_rpcs: limits.max_in_flight's default."""


class ServerConfig(_Frozen):
    grpc_listen: str = "127.0.0.1:9091"
    metrics_listen: str = "127.0.0.1:9090"
    tls: TlsConfig | None = None
    allow_insecure_plaintext: bool = False
    """Plaintext gRPC on a non-loopback address. Development only; logged loudly."""
    grpc_workers: int = Field(default=64, ge=1, le=256)
    """Threads of the sync gRPC server: the requests held at once, so the most that can coalesce into
    one batch (bench/RESULTS.md: 8 workers gave 692-797/s single requests, 64 gave 944-1,157/s)."""
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_concurrent_rpcs: int | None = Field(default=None, ge=1)
    """Calls the gRPC server holds at once, running or waiting for a worker thread; beyond it a call
    is refused at once with RESOURCE_EXHAUSTED instead of queueing. Default: 4,096, limits.max_in_flight's
    default (a slot's burst of single requests from a large validator client waits for a worker; at
    the former 4 x grpc_workers = 256 a burst of 1,024 lost three calls in four)."""
    reflection: bool = False
    """gRPC server reflection (lists every service). Off in production; ``serve --dev`` turns it on."""
    http_listen: str | None = None
    """HOST:PORT of the REST front (the Web3Signer remote-signing API, and the Keymanager API): off
    unless set (``serve --dev`` turns it on at 127.0.0.1:9000). Served with the same [server.tls]
    certificates as gRPC; plaintext only on loopback unless allow_insecure_plaintext."""
    http_client_certs: Literal["required", "optional"] = "required"
    """Under TLS, whether the REST front requires a client certificate in the handshake. "optional"
    lets a caller without one connect (for the Keymanager API's bearer token); such a caller is no
    client and may not sign (403)."""
    http_workers: int = Field(default=64, ge=1, le=256)
    """Threads that run the REST front's calls into the signing core: the requests held at once,
    so the most that can coalesce into one batch (as grpc_workers)."""

    @property
    def concurrent_rpcs(self) -> int:
        return self.max_concurrent_rpcs if self.max_concurrent_rpcs is not None else DEFAULT_CONCURRENT_RPCS


ForkName = Literal["phase0", "altair", "bellatrix", "capella", "deneb", "electra", "fulu"]
FORK_NAMES: tuple[str, ...] = ForkName.__args__  # type: ignore[attr-defined]
"""The consensus forks in order; a named custom schedule is a prefix of them."""


class ForkEntry(_Frozen):
    epoch: int = Field(ge=0)
    version: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{8}$")]
    name: ForkName | None = None
    """Which fork this is. Naming them (every fork, in order) lets the signer apply fork rules on a
    custom network: the EIP-7044 exit domain, and a block or aggregate shaped for the wrong fork."""


class NetworkConfig(_Frozen):
    name: str = "mainnet"
    """mainnet, hoodi, sepolia, holesky, or custom (then the two fields below are required)."""
    genesis_validators_root: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")] | None = None
    genesis_fork_version: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{8}$")] | None = None
    forks: tuple[ForkEntry, ...] = ()
    slots_per_epoch: int | None = Field(default=None, ge=1, le=2**32)
    """SLOTS_PER_EPOCH of the network's preset: 32 (mainnet preset, the default) or 8 (minimal preset,
    e.g. a Lodestar or Kurtosis dev chain). Built-in networks use 32 and refuse any other value."""

    @model_validator(mode="after")
    def _custom_complete(self) -> NetworkConfig:
        if self.name == "custom" and (self.genesis_validators_root is None or self.genesis_fork_version is None):
            raise ValueError("network 'custom' needs genesis_validators_root and genesis_fork_version")
        return self


class Pkcs11Config(_Frozen):
    library_path: Path
    token_label: str
    pin: SecretRef


DEFAULT_MIN_PIN_LENGTH = 16
"""keys.min_pin_length by default (signer.keys.pin_policy)."""
MIN_PIN_LENGTH_FLOOR = 8
"""The lowest keys.min_pin_length a configuration may set."""


class KeysConfig(_Frozen):
    module: Literal["emulated", "pkcs11"] = "emulated"
    data_dir: Path = Path("./signer-data")
    pin: SecretRef | None = None
    """Emulated module PIN (pkcs11 uses pkcs11.pin)."""
    pkcs11: Pkcs11Config | None = None
    min_pin_length: int = Field(default=DEFAULT_MIN_PIN_LENGTH, ge=MIN_PIN_LENGTH_FLOOR, le=1024)
    """The emulated module's PIN policy: the shortest PIN a new module or a PIN change accepts (common
    PINs are refused at any length). A PIN set before that still opens the module, with a warning.
    PKCS#11 tokens apply their own rules."""

    @model_validator(mode="after")
    def _module_complete(self) -> KeysConfig:
        if self.module == "pkcs11" and self.pkcs11 is None:
            raise ValueError("keys.module = 'pkcs11' needs a [keys.pkcs11] section")
        if self.module == "emulated" and self.pin is None:
            raise ValueError("keys.module = 'emulated' needs keys.pin (file or env)")
        return self


class ProtectionConfig(_Frozen):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path | None = None
    """Default: <keys.data_dir>/protection.sqlite."""
    dsn: str | None = None
    """PostgreSQL DSN without the password."""
    password: SecretRef | None = None
    timeout_s: float = Field(default=2.0, gt=0)
    pool_size: int = Field(default=8, ge=1, le=256)
    prune_keep_epochs: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _backend_complete(self) -> ProtectionConfig:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("protection.backend = 'postgres' needs protection.dsn")
        return self


class CometChain(_Frozen):
    chain_id: str
    """CometBFT's rule (signer.types.check_chain_id): non-empty, at most 50 bytes, printable."""
    account: str
    """The key (account name ``wallet/account``) that signs for this chain."""

    @field_validator("chain_id")
    @classmethod
    def _chain_id_rule(cls, chain_id: str) -> str:
        try:
            check_chain_id(chain_id)
        except MalformedRequest as exc:
            raise ValueError(exc.message) from None
        return chain_id


class CometbftConfig(_Frozen):
    chains: tuple[CometChain, ...] = ()

    @model_validator(mode="after")
    def _one_entry_per_chain(self) -> CometbftConfig:
        twice = _listed_twice(c.chain_id for c in self.chains)
        if twice:
            raise ValueError(f"chain_id {twice!r} is listed twice (one key signs for a chain)")
        return self


Operation = Literal[
    "sign_attestation",
    "sign_proposal",
    "sign_generic",
    "sign_voluntary_exit",
    "sign_deposit",
    "cometbft_vote",
    "cometbft_proposal",
    "account_management",
    "protection_import",
    "protection_export",
    "key_admin",
    "dkg",
]
ALL_OPERATIONS: tuple[str, ...] = Operation.__args__  # type: ignore[attr-defined]


class RateConfig(_Frozen):
    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


_SAN_KINDS = ("dns", "uri")


def _listed_twice(names: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def account_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid ``allow_accounts``/``deny_accounts`` entry, or None.

    An entry is ``*``, a ``0x`` public key (32, 33, 48 or 65 bytes of hex), or an fnmatch pattern on
    the account name. A ``0x`` entry that is not a public key would silently match nothing."""
    if not pattern.strip():
        return "empty pattern"
    if pattern[:2].lower() == "0x":
        digits = pattern[2:]
        if len(digits) not in (64, 66, 96, 130) or any(c not in "0123456789abcdefABCDEF" for c in digits):
            return f"{pattern!r} is not a 0x public key (32, 33, 48 or 65 bytes of hex)"
    return None


def duplicate_client(clients: Iterable[ClientConfig]) -> str | None:
    """The first client name listed twice, or None (a name must pick exactly one entry)."""
    return _listed_twice(c.name for c in clients)


def duplicate_san(clients: Iterable[ClientConfig]) -> tuple[str, str, str] | None:
    """(SAN, first entry, second entry) for a SAN in the ``sans`` of two entries, or None (a SAN
    must name exactly one client)."""
    owner: dict[str, str] = {}
    for entry in clients:
        for san in entry.sans:
            if san in owner:
                return san, owner[san], entry.name
            owner[san] = entry.name
    return None


OPERATOR_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class OperatorConfig(_Frozen):
    """A person who may act through a client: admin calls carry its name and its current one-time
    code (TOTP, RFC 6238). ``secret`` names the file holding its base32 TOTP secret (``signer admin
    enroll-operator`` writes one); never inline, never an environment variable."""

    name: Annotated[str, Field(pattern=OPERATOR_NAME_PATTERN)]
    secret: SecretRef

    @field_validator("secret")
    @classmethod
    def _from_a_file(cls, secret: SecretRef) -> SecretRef:
        if secret.file is None:
            raise ValueError('an operator\'s secret comes from a file: secret = { file = "..." }')
        return secret


def operator_secret_conflict(clients: Iterable[ClientConfig]) -> str | None:
    """Why the clients' operators do not name one person each, or None: an operator listed twice
    in one client, or under one name with two different secret files in two clients."""
    files: dict[str, Path | None] = {}
    for entry in clients:
        twice = _listed_twice(op.name for op in entry.operators)
        if twice is not None:
            return f"clients '{entry.name}'.operators: '{twice}' is listed twice"
        for op in entry.operators:
            if op.name in files and files[op.name] != op.secret.file:
                return f"clients '{entry.name}'.operators: '{op.name}' names another secret file than before"
            files[op.name] = op.secret.file
    return None


class ClientConfig(_Frozen):
    """Permissions of one client identity: the certificate CN ``name``, or, for a certificate without
    a CN, one of the SANs this entry opts in to (``sans``)."""

    name: str
    sans: tuple[str, ...] = ()
    """Typed SANs (``dns:NAME``, ``uri:NAME``) that name this client on a certificate WITHOUT a CN.
    A certificate with a CN is named by its CN alone."""
    allow_accounts: tuple[str, ...] = ()
    """Account names, ``wallet/*`` patterns, or 0x public keys; ``*`` for all."""
    deny_accounts: tuple[str, ...] = ()
    operations: tuple[Operation, ...] = ()
    deny_operations: tuple[Operation, ...] = ()
    rate: RateConfig | None = None
    operators: tuple[OperatorConfig, ...] = ()
    """The persons who may make admin calls (signer.admin.v1 KeyAdmin, ProtectionAdmin, Approvals)
    through this client, each with its one-time-code secret (``[admin]``)."""

    @field_validator("sans")
    @classmethod
    def _typed_sans(cls, sans: tuple[str, ...]) -> tuple[str, ...]:
        typed: list[str] = []
        for san in sans:
            kind, sep, value = san.partition(":")
            if not sep or kind not in _SAN_KINDS or not value.strip() or value != value.strip():
                raise ValueError(f"{san!r} is not a typed SAN: write dns:NAME or uri:NAME")
            typed.append(f"dns:{value.lower()}" if kind == "dns" else san)
        return tuple(typed)

    @field_validator("allow_accounts", "deny_accounts")
    @classmethod
    def _patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            problem = account_pattern_problem(pattern)
            if problem is not None:
                raise ValueError(problem)
        return patterns


class LimitsConfig(_Frozen):
    default_rate: RateConfig | None = None
    per_key_rate: RateConfig | None = None
    max_in_flight: int = Field(default=4096, ge=1)
    """Requests being handled at once, all clients and both fronts; beyond it 429 / RESOURCE_EXHAUSTED.
    A slot's burst from the validator clients behind this signer is about N/16 REST requests for N
    validators in all (attestations and aggregation-slot proofs): 4096 holds ~65,000 validators."""
    max_batch_items: int = Field(default=1000, ge=1)
    max_streams: int | None = Field(default=None, ge=1)
    """Streaming calls open at once, all clients (gRPC health Watch, reflection, admin streams). Each
    holds a worker thread while open, so this must stay below server.grpc_workers. Default: a quarter
    of server.grpc_workers (at least 1)."""
    max_streams_per_client: int = Field(default=4, ge=1)
    """Streaming calls one client may have open at once."""


class BatchingConfig(_Frozen):
    window_ms: float = Field(default=1.0, ge=0, le=100)
    max_batch: int = Field(default=256, ge=1)
    queue_size: int = Field(default=20000, ge=1)
    sign_workers: int = Field(default=0, ge=0)
    """Processes (or threads) that sign; 0 means one per core."""


ApprovalOperation = Literal["delete_keys", "import_interchange", "import_keystores", "import_cometbft_state"]
APPROVAL_OPERATIONS: tuple[str, ...] = ApprovalOperation.__args__  # type: ignore[attr-defined]


class AdminConfig(_Frozen):
    """The admin API's second factor and two-person approval (signer.totp, signer.approval)."""

    second_factor: bool = True
    """Admin calls need an operator's one-time code besides the client certificate. ``false``: the
    certificate alone (logged as a warning at every start); then ``require_approval`` must be empty."""
    require_approval: tuple[ApprovalOperation, ...] = (
        "delete_keys",
        "import_interchange",
        "import_keystores",
        "import_cometbft_state",
    )
    """Operations that wait for a second, different operator's approval. ``import_keystores``: only
    an import that carries slashing-protection history."""
    approval_expiry_s: float = Field(default=900.0, gt=0, le=86400)
    """How long a pending operation waits for its approval; then it is refused and forgotten."""
    max_pending: int = Field(default=16, ge=1, le=1024)
    """Operations pending at once (each holds its request in memory)."""
    otp_max_failures: int = Field(default=5, ge=1, le=100)
    """Failed codes in a row, per operator and client, before that pair is locked out."""
    otp_lockout_s: float = Field(default=300.0, gt=0, le=86400)
    """How long a locked-out operator and client are refused, code unchecked."""

    @model_validator(mode="after")
    def _approval_needs_operators(self) -> AdminConfig:
        if not self.second_factor and self.require_approval:
            raise ValueError(
                "two-person approval tells operators apart by their one-time codes: with "
                "admin.second_factor = false set admin.require_approval = [] as well"
            )
        return self


class AuditConfig(_Frozen):
    """The audit log: one JSON line per decision, in a hash chain (signer.observability.audit_chain)."""

    path: str = "-"
    """'-' for stdout, otherwise a file path (appended; one signer per file)."""
    hmac_key: SecretRef | None = None
    """A secret (a file's first line, at least 32 characters: ``openssl rand -hex 32``) that keys the
    chain's link hashes (HMAC-SHA256): without it, whoever can write the log cannot rebuild the chain."""
    checkpoint_interval_s: float = Field(default=60.0, gt=0, le=86400)
    """How often the chain head is written to the audit log, logged and exported, while lines are
    being written."""
    rotate_bytes: int | None = Field(default=None, ge=1024)
    """Rotate the audit file once it reaches this size: it is renamed to ``<path>.<seq>`` and a new file
    begins whose first line links to its last. Unset: never rotate (a file only)."""

    @model_validator(mode="after")
    def _rotation_needs_a_file(self) -> AuditConfig:
        if self.rotate_bytes is not None and self.path == "-":
            raise ValueError("audit.rotate_bytes needs audit.path to be a file, not stdout ('-')")
        return self


class KeymanagerConfig(_Frozen):
    """The Keymanager API (``/eth/v1/keystores``) on the REST listener (signer.api.keymanager)."""

    enabled: bool = True
    """Serve it wherever the REST listener (``server.http_listen``) is on."""
    token_file: Path | None = None
    """The bearer token every Keymanager call must carry. Default: ``<keys.data_dir>/keymanager-token``.
    Created (0600, 256 random bits as 64 hex characters) on first start when absent; an existing file
    must hold at least 256 bits' worth of token (signer.api.bearer)."""


class LoggingConfig(_Frozen):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json_format: bool = True


class PeerConfig(_Frozen):
    """One participant of distributed accounts (``[[distributed.peers]]``): its id (the x its
    shares are evaluated at, 1 or more), where its signer listens, and the name its certificate
    carries (CN, or a DNS SAN) when it calls this signer's DKG service over mTLS."""

    id: int = Field(ge=1, le=2**64 - 1)
    address: str
    """HOST:PORT of the peer's gRPC port (the DKG service shares the port)."""
    identity: str | None = None
    """The peer's certificate name; required when the server serves mTLS."""

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str) -> str:
        host, sep, port = address.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{address!r} is not HOST:PORT")
        return address


class DistributedConfig(_Frozen):
    """Distributed (threshold) accounts: this signer's participant id and every participant,
    itself included, the same list on every signer of the cluster (docs/distributed.md)."""

    id: int = Field(ge=1, le=2**64 - 1)
    peers: tuple[PeerConfig, ...]
    generation_timeout_s: float = Field(default=70.0, gt=0, le=3600)
    """A key generation's session lives this long after Prepare (Dirk's default: 70 s)."""
    call_timeout_s: float = Field(default=20.0, gt=0, le=600)
    """Deadline of one call to a peer (Prepare, Execute, Contribute, Commit, Abort)."""
    client_cert_file: Path | None = None
    """Certificate this signer presents to its peers (default: server.tls.cert_file)."""
    client_key_file: Path | None = None
    """Its private key (default: server.tls.key_file)."""
    peers_ca_file: Path | None = None
    """CA that issued the peers' server certificates (default: server.tls.client_ca_file)."""

    @model_validator(mode="after")
    def _consistent(self) -> DistributedConfig:
        ids = [p.id for p in self.peers]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"distributed.peers: id {twice[0]} is listed twice")
        if self.id not in ids:
            raise ValueError(f"distributed.id {self.id} is not among distributed.peers")
        names = [p.identity for p in self.peers if p.identity is not None]
        shared = sorted({n for n in names if names.count(n) > 1})
        if shared:
            raise ValueError(f"distributed.peers: identity {shared[0]!r} is given to two peers")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("distributed: give both client_cert_file and client_key_file, or neither")
        return self

    def peer(self, peer_id: int) -> PeerConfig:
        return next(p for p in self.peers if p.id == peer_id)


class Config(_Frozen):
    server: ServerConfig = ServerConfig()
    network: NetworkConfig = NetworkConfig()
    keys: KeysConfig
    protection: ProtectionConfig = ProtectionConfig()
    cometbft: CometbftConfig = CometbftConfig()
    clients: tuple[ClientConfig, ...] = ()
    limits: LimitsConfig = LimitsConfig()
    batching: BatchingConfig = BatchingConfig()
    audit: AuditConfig = AuditConfig()
    logging: LoggingConfig = LoggingConfig()
    admin: AdminConfig = AdminConfig()
    keymanager: KeymanagerConfig = KeymanagerConfig()
    distributed: DistributedConfig | None = None

    @model_validator(mode="after")
    def _one_entry_per_client(self) -> Config:
        twice = duplicate_client(self.clients)
        if twice is not None:
            raise ValueError(f"clients: '{twice}' is listed twice")
        conflict = operator_secret_conflict(self.clients)
        if conflict is not None:
            raise ValueError(conflict)
        shared = duplicate_san(self.clients)
        if shared is not None:
            san, first, second = shared
            raise ValueError(f"clients '{second}'.sans: {san!r} is already in the sans of '{first}'")
        return self

    @model_validator(mode="after")
    def _streams_below_workers(self) -> Config:
        if self.limits.max_streams is not None and self.limits.max_streams >= self.server.grpc_workers:
            raise ValueError(
                f"limits.max_streams ({self.limits.max_streams}) must be below server.grpc_workers "
                f"({self.server.grpc_workers}): open streams hold worker threads, signing needs the rest"
            )
        return self

    @model_validator(mode="after")
    def _peers_named_under_tls(self) -> Config:
        if self.distributed is not None and self.server.tls is not None:
            nameless = [p.id for p in self.distributed.peers if p.identity is None]
            if nameless:
                raise ValueError(
                    f"distributed.peers: peer {nameless[0]} has no identity; with server.tls every peer "
                    "is recognised by its certificate name"
                )
        return self

    @property
    def keymanager_token_file(self) -> Path:
        """Where the Keymanager API's bearer token lives: ``keymanager.token_file``, else in the data dir."""
        return self.keymanager.token_file or (self.keys.data_dir / "keymanager-token")

    @property
    def max_streams(self) -> int:
        """limits.max_streams, or its default: a quarter of the gRPC workers (at least 1)."""
        if self.limits.max_streams is not None:
            return self.limits.max_streams
        return max(1, self.server.grpc_workers // 4)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        lines.append(f"{path}: {err['msg']}")
    return "; ".join(lines)


def parse_config(data: dict[str, object]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from exc


def load_config(path: Path) -> Config:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except RecursionError:  # tomllib recurses per nesting level; no config nests more than 4 deep
        raise ConfigError(f"config file {path} nests arrays or tables too deep to be a signer config") from None
    return parse_config(data)
