"""Every metric of the signer, and the only module that imports prometheus_client.

``PrometheusMonitor`` implements the ``Monitor`` protocol of ``signer.types`` on its own
``CollectorRegistry`` (never the global one, so several monitors can live in one process, e.g. in
tests). Names carry the ``signer_`` prefix and base units (seconds). Label values come from closed
sets (enums, the error tree, config); a public key is never a label. A value outside its closed set
is folded into one bucket value instead of growing the label space, and a monitor call never raises
into the signing path.
"""

from __future__ import annotations

import platform
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

import signer
from signer import approval, passphrase, totp
from signer.errors import NotSafeToSign
from signer.observability.audit_chain import head_metric_value
from signer.types import RequestOutcome, Scheme

# No *_created series: they double the series count and nothing here queries them.
disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE_LATEST = CONTENT_TYPE_PLAIN_0_0_4
"""The content type of ``render()``: the text format 0.0.4 every Prometheus 2.x and 3.x scrapes."""

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "CONTENT_TYPE_LATEST",
    "DURATION_BUCKETS_S",
    "METRIC_NAMES",
    "OFFENCES",
    "PrometheusMonitor",
]

DURATION_BUCKETS_S: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
"""Resolve 1 ms to 1 s (p99 budgets are single-digit milliseconds)."""

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

OTHER = "other"
"""The label value for anything outside a closed set."""

LOG_STREAMS: tuple[str, ...] = ("log", "audit")
SECURITY_EVENTS: tuple[str, ...] = passphrase.SECURITY_EVENTS + totp.SECURITY_EVENTS + approval.SECURITY_EVENTS
"""Every ``event`` label of signer_security_events_total (each created at zero)."""
"""The ``stream`` label of signer_log_lines_dropped_total."""

MAX_CLIENT_LABELS = 256
"""Client names come from config, but a bound keeps a misconfiguration from exploding the series."""


_OUTCOMES = frozenset(o.value for o in RequestOutcome)


def _offences() -> frozenset[str]:
    found: set[str] = set()
    pending: list[type[NotSafeToSign]] = [NotSafeToSign]
    while pending:
        cls = pending.pop()
        found.add(cls.offence)
        pending.extend(cls.__subclasses__())
    return frozenset(found)


OFFENCES: frozenset[str] = _offences()
"""Every ``offence`` of the NotSafeToSign tree (the ``offence`` label)."""

METRIC_NAMES: tuple[str, ...] = (
    "signer_requests_total",
    "signer_request_duration_seconds",
    "signer_signing_duration_seconds",
    "signer_signatures_total",
    "signer_batch_size",
    "signer_protection_refusals_total",
    "signer_protection_store_duration_seconds",
    "signer_rate_limited_total",
    "signer_keys_loaded",
    "signer_module_errors_total",
    "signer_build_info",
    "signer_ready",
    "signer_log_lines_dropped_total",
    "signer_security_events_total",
    "signer_protection_initialized",
    "signer_audit_chain_head_seq",
    "signer_audit_chain_head_hash",
)
"""The metric families this module defines (as a Prometheus query names them)."""


def _version() -> str:
    """The code's own version (signer/__init__.py), not the metadata of an installed distribution."""
    return signer.__version__


class PrometheusMonitor:
    """The ``Monitor`` of the running signer, backed by prometheus_client."""

    def __init__(self, *, version: str | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            "signer_requests_total",
            "Requests handled, by gRPC method and outcome.",
            ("method", "outcome"),
            registry=reg,
        )
        self._request_duration = Histogram(
            "signer_request_duration_seconds",
            "Time from request received to response ready, by gRPC method.",
            ("method",),
            buckets=DURATION_BUCKETS_S,
            registry=reg,
        )
        self._signing_duration = Histogram(
            "signer_signing_duration_seconds",
            "Time spent producing signatures, per signing call (a batch counts once), by scheme.",
            ("scheme",),
            buckets=DURATION_BUCKETS_S,
            registry=reg,
        )
        self._signatures = Counter(
            "signer_signatures_total",
            "Signatures produced, by scheme.",
            ("scheme",),
            registry=reg,
        )
        self._batch_size = Histogram(
            "signer_batch_size",
            "Items per batch handed to slashing protection and signing.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=reg,
        )
        self._refusals = Counter(
            "signer_protection_refusals_total",
            "Messages refused by slashing protection, by offence.",
            ("offence",),
            registry=reg,
        )
        self._store_duration = Histogram(
            "signer_protection_store_duration_seconds",
            "Slashing-protection store latency, by operation.",
            ("operation",),
            buckets=DURATION_BUCKETS_S,
            registry=reg,
        )
        self._rate_limited = Counter(
            "signer_rate_limited_total",
            "Requests refused by rate limiting, by client identity.",
            ("client",),
            registry=reg,
        )
        self._keys_loaded = Gauge(
            "signer_keys_loaded",
            "Keys loaded in the key module, by module kind and scheme.",
            ("module", "scheme"),
            registry=reg,
        )
        self._module_errors = Counter(
            "signer_module_errors_total",
            "Key module (HSM or emulated) errors, by module kind.",
            ("module",),
            registry=reg,
        )
        self._build_info = Gauge(
            "signer_build_info",
            "Build information; the value is always 1.",
            ("version", "python"),
            registry=reg,
        )
        self._ready = Gauge(
            "signer_ready",
            "1 when the signer is ready to sign (keys unlocked, store reachable), else 0.",
            registry=reg,
        )
        self._lines_dropped = Counter(
            "signer_log_lines_dropped_total",
            "Log and audit lines dropped because their output did not keep up (a stalled stdout or stderr).",
            ("stream",),
            registry=reg,
        )
        for stream in LOG_STREAMS:
            self._lines_dropped.labels(stream=stream)
        self._security_events = Counter(
            "signer_security_events_total",
            "Security events: wrong passphrases (module PIN) and refused, locked-out passphrase checks; admin "
            "calls refused by their one-time code or their approval (signer.totp, signer.approval).",
            ("event",),
            registry=reg,
        )
        for event in SECURITY_EVENTS:
            self._security_events.labels(event=event)
        self._protection_initialized = Gauge(
            "signer_protection_initialized",
            "1 when the slashing-protection store is initialized (history imported, keys declared never "
            "signed, or history found at upgrade); 0: a new or emptied store, signing refused.",
            registry=reg,
        )
        self._audit_head_seq = Gauge(
            "signer_audit_chain_head_seq",
            "The seq of the audit chain's head (the last checkpoint, rotation, start or stop record); "
            "-1 before the first.",
            registry=reg,
        )
        self._audit_head_hash = Gauge(
            "signer_audit_chain_head_hash",
            "The first 52 bits (13 hex digits) of the audit chain head's link hash, as an integer: "
            "signer audit verify --head SEQ:HASH checks a log against it (the full hash is logged).",
            registry=reg,
        )
        self._audit_head_seq.set(-1)
        self._build_info.labels(version=version or _version(), python=platform.python_version()).set(1)
        self._ready.set(0)
        self._protection_initialized.set(0)
        self._clients: set[str] = set()
        # Labelled children of the per-request series, cached: ``labels()`` takes a lock and builds
        # a key every call. The label sets are closed, so these dicts stay small.
        self._request_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._store_children: dict[str, Any] = {}
        self._scheme_children: dict[str, tuple[Any, Any]] = {}
        # Closed label sets start at zero, so rate() and increase() see the first event.
        for offence in sorted(OFFENCES):
            self._refusals.labels(offence=offence)
        for scheme in Scheme:
            self._signatures.labels(scheme=scheme.value)

    # --- the Monitor protocol -----------------------------------------------------------------

    def request_done(self, method: str, outcome: str, duration_s: float) -> None:
        children = self._request_children.get((method, outcome))
        if children is None:
            outcome_label = outcome if outcome in _OUTCOMES else RequestOutcome.FAILED.value
            children = (
                self._requests.labels(method=method, outcome=outcome_label),
                self._request_duration.labels(method=method),
            )
            self._request_children[(method, outcome)] = children
        children[0].inc()
        children[1].observe(max(duration_s, 0.0))

    def signed(self, scheme: Scheme, count: int, duration_s: float) -> None:
        children = self._scheme_children.get(scheme)
        if children is None:
            label = Scheme(scheme).value
            children = (self._signatures.labels(scheme=label), self._signing_duration.labels(scheme=label))
            self._scheme_children[label] = children  # StrEnum: Scheme.BLS and "bls" are one key
        if count > 0:
            children[0].inc(count)
        children[1].observe(max(duration_s, 0.0))

    def batch(self, size: int) -> None:
        self._batch_size.observe(size)

    def refusal(self, offence: str) -> None:
        self._refusals.labels(offence=offence if offence in OFFENCES else OTHER).inc()

    def store_latency(self, operation: str, duration_s: float) -> None:
        child = self._store_children.get(operation)
        if child is None:
            child = self._store_children[operation] = self._store_duration.labels(operation=operation)
        child.observe(max(duration_s, 0.0))

    def rate_limited(self, client: str) -> None:
        if client not in self._clients:
            if len(self._clients) >= MAX_CLIENT_LABELS:
                client = OTHER
            else:
                self._clients.add(client)
        self._rate_limited.labels(client=client).inc()

    def module_error(self, module: str) -> None:
        self._module_errors.labels(module=module).inc()

    def keys_loaded(self, module: str, scheme: Scheme, count: int) -> None:
        self._keys_loaded.labels(module=module, scheme=Scheme(scheme).value).set(count)

    def ready(self, is_ready: bool) -> None:
        self._ready.set(1 if is_ready else 0)

    def lines_dropped(self, stream: str, count: int = 1) -> None:
        """``count`` lines of ``stream`` ("log" or "audit") were dropped: their output stalled."""
        self._lines_dropped.labels(stream=stream if stream in LOG_STREAMS else OTHER).inc(count)

    def security_event(self, event: str) -> None:
        self._security_events.labels(event=event if event in SECURITY_EVENTS else OTHER).inc()

    def protection_initialized(self, initialized: bool) -> None:
        """Not part of the core's Monitor: set by the app's readiness check."""
        self._protection_initialized.set(1 if initialized else 0)

    def audit_chain_head(self, seq: int, head: str) -> None:
        """Not part of the core's Monitor: the audit writer's chain head (signer.observability.audit)."""
        self._audit_head_hash.set(head_metric_value(head))
        self._audit_head_seq.set(seq)

    def access_denied(self, client: str, operation: str) -> None:
        """No series of its own: the request is counted as outcome="denied" by request_done, and
        slashing refusals apart in signer_protection_refusals_total; who and what go to the audit log."""

    # --- exposition ---------------------------------------------------------------------------

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
