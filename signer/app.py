"""Composition root: builds the signer's parts from the typed configuration.

Everything is built here and nowhere else: key module, protection store, signing service, gRPC
server, metrics/health server.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from signer.api.admin import admin_servicers
from signer.api.auth import DevAuthorizer, PermissionAuthorizer, match_client
from signer.api.bearer import load_or_create
from signer.api.context import CallContext
from signer.api.dkg import DistributedNode, PeerChannels, PeerCredentials, SharesOnly, dkg_servicers
from signer.api.http_server import HttpServer
from signer.api.interceptors import CallGuard
from signer.api.keymanager import KeymanagerApi
from signer.api.ratelimit import RateLimiter
from signer.api.rest import RestContext, RouteGroup, build_rest_app
from signer.api.server import GrpcServer
from signer.api.tls import (
    ReloadingServerCredentials,
    ReloadingSslContext,
    client_identity,
    is_loopback,
    load_material,
    reload_on_sighup,
    require_tls,
)
from signer.api.web3signer import Web3SignerApi
from signer.approval import AdminGate, ApprovalKind
from signer.batching import Batcher
from signer.config import Config, DistributedConfig, KeysConfig, ProtectionConfig, TlsConfig
from signer.distributed.accounts import DistributedAccounts
from signer.errors import ConfigError, SignerError
from signer.eth2.networks import Network, network_from_config
from signer.instance import InstanceLock
from signer.keyadmin import KeyAdmin, ProtectionAdmin
from signer.keys.dev import DEV_ED25519_ACCOUNT, DEV_SECP256K1_ACCOUNT
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.keys.module import KeyModule
from signer.keys.pin_policy import PinPolicy
from signer.keys.pool import ParallelSigner
from signer.observability.audit import AuditLog
from signer.observability.health import MetricsServer, parse_listen
from signer.observability.logging import attach_drop_counter
from signer.observability.metrics import PrometheusMonitor
from signer.protection.sqlite import SqliteStore
from signer.protection.store import InitializedBy, ProtectionStore
from signer.service import NOT_INITIALIZED, SigningService
from signer.totp import FailurePolicy, SecondFactor, check_secret
from signer.types import AllowAll, AuditSink, Authorizer, ClientIdentity, Monitor, Scheme


def build_key_module(keys: KeysConfig, *, create: bool = False) -> KeyModule:
    """The configured key module, unlocked (PIN read from the secret the config names).

    ``create``: an emulated module missing from ``keys.data_dir`` is created (PKCS#11 tokens are
    initialised outside the signer). Raises ConfigError for a configuration that cannot work,
    WrongPin / ModuleTampered / KeyModuleError from the module itself.
    """
    module: KeyModule
    if keys.module == "emulated":
        if keys.pin is None:
            raise ConfigError("keys.pin: the emulated module needs a PIN (file or env)")
        policy = PinPolicy(min_length=keys.min_pin_length)
        module = EmulatedKeyModule(keys.data_dir, keys.pin.read(), create=create, pin_policy=policy)
    elif keys.module == "pkcs11":
        if keys.pkcs11 is None:
            raise ConfigError("keys.pkcs11: keys.module = 'pkcs11' needs a [keys.pkcs11] section")
        try:
            from signer.keys.pkcs11 import Pkcs11KeyModule  # noqa: PLC0415 - python-pkcs11 only if used
        except ImportError as exc:
            raise ConfigError(f"keys.module = 'pkcs11' is not available: {exc}") from exc
        _check_pkcs11_library(keys)
        module = Pkcs11KeyModule(
            library_path=keys.pkcs11.library_path,
            token_label=keys.pkcs11.token_label,
            pin=keys.pkcs11.pin.read(),
            data_dir=keys.data_dir,
        )
    else:  # pragma: no cover - the config's Literal type rules this out
        raise ConfigError(f"keys.module: unknown module {keys.module!r}")
    if not module.unlocked:
        module.unlock()
    return module


def _check_pkcs11_library(keys: KeysConfig) -> None:
    if keys.pkcs11 is not None and not keys.pkcs11.library_path.is_file():
        raise ConfigError(f"keys.pkcs11.library_path: no such file {keys.pkcs11.library_path}")


def operator_secrets(config: Config) -> dict[str, dict[str, str]]:
    """``client -> {operator: base32 secret}``, read from the files the config names (ConfigError
    naming the client and operator, never the secret, for an unreadable or invalid one)."""
    secrets: dict[str, dict[str, str]] = {}
    for entry in config.clients:
        for op in entry.operators:
            where = f"clients '{entry.name}'.operators '{op.name}'"
            try:
                secret = op.secret.read()
                check_secret(secret)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc.message}") from None
            secrets.setdefault(entry.name, {})[op.name] = secret
    return secrets


def build_admin_gate(config: Config, *, dev_plaintext_loopback: bool, monitor: Monitor, audit: AuditSink) -> AdminGate:
    """The admin calls' second factor and two-person approval (signer.approval), as configured.

    ``serve --dev`` serving plaintext on loopback has no operators: its admin calls need no code
    and nothing waits for approval (anyone on the machine may administer the dev keys). Everywhere
    else the second factor is on unless ``admin.second_factor = false`` (logged as a warning); a
    client without operators then cannot make admin calls (SecondFactorNotConfigured)."""
    admin = config.admin
    if dev_plaintext_loopback:
        log.warning("--dev on plaintext loopback: admin calls need no one-time code and no second operator")
        return AdminGate(monitor=monitor, audit=audit)
    if not admin.second_factor:
        log.warning(
            "admin.second_factor = false: a client certificate alone may make admin calls (delete keys, "
            "import history); a copied certificate is all it takes"
        )
        return AdminGate(monitor=monitor, audit=audit)
    secrets = operator_secrets(config)
    clients = config.clients
    unguarded = [
        c.name
        for c in clients
        if not c.operators and {"key_admin", "protection_import", "protection_export"} & set(c.operations)
    ]
    if unguarded:
        log.warning(
            "clients with admin operations but no operators cannot make admin calls",
            extra={"clients": unguarded},
        )

    def operators_of(client: ClientIdentity) -> dict[str, str] | None:
        entry = match_client(clients, client)
        return None if entry is None else secrets.get(entry.name)

    factor = SecondFactor(
        operators_of,
        policy=FailurePolicy(max_failures=admin.otp_max_failures, lockout_s=admin.otp_lockout_s),
        monitor=monitor,
        audit=audit,
    )
    return AdminGate(
        factor,
        require_approval=[ApprovalKind(kind) for kind in admin.require_approval],
        expiry_s=admin.approval_expiry_s,
        max_pending=admin.max_pending,
        monitor=monitor,
        audit=audit,
    )


def peer_credentials(distributed: DistributedConfig, tls: TlsConfig | None, dev_plaintext: bool) -> PeerCredentials:
    """How this signer calls its peers: mTLS with its certificate (``distributed.client_cert_file``,
    else the server's) and the peers' CA (``distributed.peers_ca_file``, else the client CA), or
    plaintext, which only ``serve --dev`` on loopback may use. ConfigError otherwise."""
    if tls is None:
        if not dev_plaintext:
            raise ConfigError(
                "distributed: the DKG service between signers needs mTLS (server.tls); plaintext only "
                "with serve --dev on loopback"
            )
        return PeerCredentials(distributed.id)
    return PeerCredentials.from_files(
        distributed.id,
        distributed.client_cert_file or tls.cert_file,
        distributed.client_key_file or tls.key_file,
        distributed.peers_ca_file or tls.client_ca_file,
    )


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    """What ``validate_config`` worked out on the way: the network, and whether gRPC (and the REST
    front, which serves the same [server.tls] material) serve TLS."""

    network: Network
    use_tls: bool
    http_tls: bool = False


def validate_config(config: Config) -> CheckedConfig:
    """Every check ``serve`` makes of its configuration before it opens anything (key module,
    store, port): the listeners, the network, the plaintext-off-loopback rule, the TLS files and the
    PKCS#11 library. ``signer check-config`` runs the same function, so it refuses exactly what
    ``serve`` refuses, with the same message. (The model's own rules, e.g. duplicate client names,
    already ran when the config was parsed.) Raises ConfigError."""
    server = config.server
    listeners = [("server.grpc_listen", server.grpc_listen), ("server.metrics_listen", server.metrics_listen)]
    if server.http_listen is not None:
        listeners.append(("server.http_listen", server.http_listen))
    for where, listen in listeners:
        try:
            parse_listen(listen)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from exc
    network = network_from_config(config.network)
    # Refuses plaintext off loopback unless explicitly allowed (and then logs it loudly); the REST
    # front follows the same rule with the same certificates.
    use_tls = require_tls(listen_host(server.grpc_listen), server.tls, server.allow_insecure_plaintext)
    http_tls = server.http_listen is not None and require_tls(
        listen_host(server.http_listen), server.tls, server.allow_insecure_plaintext, where="server.http_listen"
    )
    if server.tls is not None:
        load_material(server.tls)
    if config.keys.module == "pkcs11":
        _check_pkcs11_library(config.keys)
    return CheckedConfig(network, use_tls, http_tls)


# --- the running signer ---------------------------------------------------------------------

log = logging.getLogger("signer")

STALLED_S = 2.0
"""Every gRPC worker busy this long with no call finishing: the server cannot take calls (not ready)."""

DEV_CHAINS: dict[str, str] = {"dev-chain": DEV_SECP256K1_ACCOUNT, "dev-chain-ed25519": DEV_ED25519_ACCOUNT}
"""``signer serve --dev`` serves these CometBFT chains with the dev keys."""


def build_store(
    protection: ProtectionConfig, data_dir: Path, genesis_validators_root: bytes, slots_per_epoch: int = 32
) -> ProtectionStore:
    """The configured slashing-protection store, migrated and bound to the network (``slots_per_epoch``
    turns ``prune_keep_epochs`` into slots for block history)."""
    if protection.backend == "postgres":
        from signer.protection.postgres import PostgresStore  # noqa: PLC0415 - psycopg only if used

        assert protection.dsn is not None
        password = protection.password.read() if protection.password is not None else None
        return PostgresStore(
            protection.dsn,
            genesis_validators_root,
            password=password,
            timeout_s=protection.timeout_s,
            pool_size=protection.pool_size,
            prune_keep_epochs=protection.prune_keep_epochs,
            slots_per_epoch=slots_per_epoch,
        )
    path = sqlite_path(protection, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, genesis_validators_root, timeout_s=protection.timeout_s)


def sqlite_path(protection: ProtectionConfig, data_dir: Path) -> Path:
    """Where the SQLite protection store lives: ``protection.sqlite_path``, else in the data dir."""
    return protection.sqlite_path or (data_dir / "protection.sqlite")


def instance_lock_dirs(config: Config) -> list[Path]:
    """The directories one signer holds a lock in (``signer.instance``). With SQLite: the data
    directory and the store's directory (one history, one signer). With PostgreSQL: none, since
    replicas share the history by design, and may share one data directory (a ReadWriteMany volume
    with the emulated module file)."""
    if config.protection.backend != "sqlite":
        return []
    return [config.keys.data_dir, sqlite_path(config.protection, config.keys.data_dir).parent]


def listen_host(listen: str) -> str:
    """The host part of HOST:PORT (IPv6 in brackets allowed)."""
    return parse_listen(listen)[0]


@dataclass
class ServeOptions:
    """What ``signer serve`` adds on top of the config file (or instead of it, with --dev)."""

    dev: bool = False
    key_module: KeyModule | None = None
    instance_lock: InstanceLock | None = None
    """Taken by ``serve`` before it creates the dev module; else taken here, first thing."""
    keys_created_by: str | None = None
    """``serve --dev`` created the key module now: a store that is new as well is initialized as
    created together with the keys (InitializedBy.DEV), and this is recorded as who."""


class SignerApp:
    """Builds every part from the config, starts them, reports readiness, stops them in order."""

    def __init__(self, config: Config, options: ServeOptions | None = None) -> None:
        checked = validate_config(config)
        self.config = config
        self.options = options or ServeOptions()
        # How this signer calls its peers, decided before anything is opened: refuses [distributed]
        # on plaintext unless serve --dev on loopback.
        dev_plaintext = not checked.use_tls and self.options.dev and is_loopback(listen_host(config.server.grpc_listen))
        peers = (
            peer_credentials(config.distributed, config.server.tls if checked.use_tls else None, dev_plaintext)
            if config.distributed is not None
            else None
        )
        # One signer per data directory (signer.instance); held until stop() or the process ends.
        self.instance_lock = self.options.instance_lock or InstanceLock.acquire(instance_lock_dirs(config))
        self.network = checked.network
        self.monitor = PrometheusMonitor()
        self.module = self.options.key_module or build_key_module(config.keys)
        # BLS over every core; forked now, before any thread of ours runs (signer.keys.pool).
        self.keys = ParallelSigner(self.module, config.batching.sign_workers)
        self.keys.start()
        for scheme in Scheme:
            count = sum(1 for k in self.keys.list_keys() if k.scheme == scheme)
            self.monitor.keys_loaded(self.keys.kind, scheme, count)
        self.store = build_store(
            config.protection, config.keys.data_dir, self.network.genesis_validators_root, self.network.slots_per_epoch
        )
        if self.options.keys_created_by is not None and self.store.initialization() is None:
            self.store.initialize(InitializedBy.DEV, self.options.keys_created_by)
        chains = {c.chain_id: c.account for c in config.cometbft.chains}
        self.audit = AuditLog(config.audit)
        self.audit.count_drops(self.monitor.lines_dropped)
        self.audit.report_head(self.monitor.audit_chain_head)
        attach_drop_counter(self.monitor.lines_dropped)
        server = config.server
        self.credentials = ReloadingServerCredentials(server.tls) if checked.use_tls and server.tls else None
        self.authorizer: Authorizer
        if self.options.dev:
            # --dev: anyone on loopback; with mTLS, any certificate of the CA, for the dev keys only.
            # (No audit sink here: every call writes its own audit line per item, refusals included.)
            dev = DevAuthorizer(monitor=self.monitor)
            self.authorizer = dev if self.credentials else AllowAll()
        else:
            self.authorizer = PermissionAuthorizer(config.clients, monitor=self.monitor)
        self.limiter = RateLimiter(config.limits, config.clients, max_streams=config.max_streams)
        # Shares of distributed accounts, always read (with or without [distributed]): a share's
        # slashing history is its composite key's, whatever the config says about peers.
        self.distributed_accounts = DistributedAccounts(self.keys, config.keys.data_dir, on_change=self._reload_keys)
        self.keyring = KeyRing(self.keys, chains=chains, validator_keys=self.distributed_accounts)
        self.service = SigningService(
            self.network,
            self.keyring,
            self.store,
            monitor=self.monitor,
            authorizer=self.authorizer,
            key_rate=self.limiter.check_key if config.limits.per_key_rate is not None else None,
        )
        self.batcher = Batcher(
            self.service,
            window_ms=config.batching.window_ms,
            max_batch=config.batching.max_batch,
            queue_size=config.batching.queue_size,
        )
        self.calls = CallContext(
            self.service,
            identify=client_identity,
            audit=self.audit,
            max_batch_items=config.limits.max_batch_items,
            signer=self.batcher,
        )
        # The key-admin core under the admin API: the key ring is its key index (retire/readmit/reload).
        self.gate = build_admin_gate(
            config,
            dev_plaintext_loopback=(
                self.options.dev and self.credentials is None and is_loopback(listen_host(server.grpc_listen))
            ),
            monitor=self.monitor,
            audit=self.audit,
        )
        self.admin = KeyAdmin(
            self.keys,
            self.keyring,
            ProtectionAdmin(
                self.store,
                loaded=self.keyring.list_keys,
                authorizer=self.authorizer,
                backend=config.protection.backend,
                gate=self.gate,
            ),
            authorizer=self.authorizer,
            monitor=self.monitor,
            readiness=self.readiness,
            max_items=config.limits.max_batch_items,
        )
        self.distributed: DistributedNode | None = None
        if config.distributed is not None and peers is not None:
            self.distributed = DistributedNode(
                config.distributed,
                self.distributed_accounts,
                self.service,
                PeerChannels(config.distributed, peers),
                trust_peer_metadata=not peers.tls,
            )
        self.guard = CallGuard(self.limiter, self.monitor, audit=self.audit)
        self.grpc = GrpcServer(
            self.service,
            self.calls,
            workers=config.server.grpc_workers,
            max_message_bytes=config.server.max_message_bytes,
            max_concurrent_rpcs=config.server.concurrent_rpcs,
            reflection=config.server.reflection,
            guard=self.guard,
            extra_servicers=[
                *admin_servicers(self.admin, self.calls, network=self.network.name),
                *(dkg_servicers(self.distributed, self.calls) if self.distributed is not None else []),
            ],
            distributed=self.distributed if self.distributed is not None else SharesOnly(self.distributed_accounts),
        )
        self.metrics = MetricsServer(config.server.metrics_listen, self.monitor, self.readiness)
        # The REST front (off unless server.http_listen is set): its route groups are mounted here.
        self.rest: RestContext | None = None
        self.http: HttpServer | None = None
        self.ssl_context: ReloadingSslContext | None = None
        if server.http_listen is not None:
            self.rest = RestContext(
                self.limiter,
                self.monitor,
                audit=self.audit,
                workers=server.http_workers,
                max_body_bytes=server.max_message_bytes,
            )
            self.web3signer = Web3SignerApi(
                self.rest,
                self.service,
                self.calls,
                self.network,
                readiness=self.readiness,
                health_checks=self.health_checks,
                reload_keys=lambda client, code: self.admin.reload(client, code=code),
            )
            route_groups: list[RouteGroup] = [self.web3signer.routes()]
            # More route groups are appended to route_groups here.
            if config.keymanager.enabled:
                token = load_or_create(config.keymanager_token_file)
                route_groups.append(KeymanagerApi(self.rest, self.calls, self.admin, token).routes())
            if checked.http_tls and server.tls is not None:
                self.ssl_context = ReloadingSslContext(server.tls, client_certs=server.http_client_certs)
            self.http = HttpServer(
                build_rest_app(route_groups),
                parse_listen(server.http_listen),
                ssl_context=self.ssl_context,
                shutdown_grace_s=server.shutdown_grace_s,
            )
        self._stop = threading.Event()
        self._ready_thread: threading.Thread | None = None
        self._last_ready: bool | None = None

    def _reload_keys(self) -> None:
        """A distributed account's share came or went: the key ring re-reads the module."""
        self.keyring.reload_keys()

    # --- readiness --------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason). The reason is served on the unauthenticated /readyz: it says what failed,
        never where (no database host, port or name); the details go to the log (``_check``)."""
        ready, reason, _detail = self._check()
        return ready, reason

    def _check(self) -> tuple[bool, str, str]:
        """(ready, public reason, detail for the log)."""
        if not self.keys.unlocked:
            return False, "key module is locked", ""
        try:
            self.store.ping()
            initialized = self.service.protection_initialized()
        except SignerError as exc:
            return False, "protection store unreachable", exc.message
        self.monitor.protection_initialized(initialized)
        if not initialized and self.keyring.list_keys():
            return False, NOT_INITIALIZED, ""
        stalled_s = self.guard.stalled_s(self.grpc.workers)
        if stalled_s > STALLED_S:
            detail = f"all {self.grpc.workers} gRPC worker threads busy, none freed for {stalled_s:.1f} s"
            return False, "gRPC server cannot take calls", detail
        return True, "ready", ""

    def health_checks(self) -> list[dict[str, object]]:
        """Per-check detail for the REST front's /healthcheck: keys loaded, protection store. Says
        what failed, never where (no database host), as /readyz."""
        keys = len(self.keyring.list_keys()) if self.keys.unlocked else 0
        checks: list[dict[str, object]] = [
            {"id": "keys-check", "status": "UP" if self.keys.unlocked and keys > 0 else "DOWN", "keys_loaded": keys}
        ]
        try:
            self.store.ping()
            initialized = self.service.protection_initialized()
            store: dict[str, object] = {"id": "slashing-protection-db-health-check", "status": "UP"}
            if not initialized:
                store = {**store, "status": "DOWN", "reason": "slashing protection is not initialized"}
        except SignerError:
            store = {"id": "slashing-protection-db-health-check", "status": "DOWN", "reason": "store unreachable"}
        checks.append(store)
        return checks

    def _watch_readiness(self) -> None:
        while not self._stop.is_set():
            ready, reason, detail = self._check()
            if ready != self._last_ready:
                self.grpc.set_serving(ready)
                self.monitor.ready(ready)
                if self._last_ready is not None:
                    log.warning("readiness changed", extra={"ready": ready, "reason": reason, "detail": detail})
                self._last_ready = ready
            self._stop.wait(1.0)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        server = self.config.server
        self.grpc.bind(server.grpc_listen, self.credentials.credentials if self.credentials else None)
        if self.http is not None:
            self.http.bind()
        self.metrics.start()
        ready, reason = self.readiness()
        if reason == NOT_INITIALIZED:
            log.error(
                "slashing protection not initialized: signing refused",
                extra={"reason": reason, "protection": self.config.protection.backend},
            )
        self.grpc.set_serving(ready)
        self.monitor.ready(ready)
        self._last_ready = ready
        self.grpc.start()
        if self.http is not None:
            self.http.start()
        self._ready_thread = threading.Thread(target=self._watch_readiness, name="readiness", daemon=True)
        self._ready_thread.start()
        log.info(
            "signer ready",
            extra={
                "grpc_port": self.grpc.port,
                "http_port": self.http.port if self.http is not None else None,
                "metrics_port": self.metrics.port,
                "network": self.network.name,
                "keys": len(self.keys.list_keys()),
                "protection": self.config.protection.backend,
            },
        )

    def stop(self) -> None:
        self._stop.set()
        if self.http is not None:
            self.http.server.should_exit = True  # both fronts stop taking requests at once
        self.grpc.stop(self.config.server.shutdown_grace_s)
        if self.http is not None:
            self.http.stop()
        if self.rest is not None:
            self.rest.close()
        self.batcher.close()
        if self.distributed is not None:
            self.distributed.close()
        self.metrics.stop()
        self.audit.close()
        self.store.close()
        self.keys.close()
        self.instance_lock.release()
        log.info("signer stopped")

    def run_until_signal(self) -> None:
        def _on_signal(signum: int, frame: object) -> None:
            log.info("shutting down", extra={"signal": signal.Signals(signum).name})
            self._stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        reloadable = [c for c in (self.credentials, self.ssl_context) if c is not None]
        if reloadable:
            reload_on_sighup(*reloadable)
        self.start()
        # Wake up now and then: Python runs a signal handler on the main thread only, and a SIGTERM
        # the kernel hands to another thread would not wake a wait without a timeout.
        while not self._stop.wait(0.5):
            pass
        self.stop()
