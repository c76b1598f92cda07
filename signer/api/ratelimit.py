"""Rate limits: token buckets per client (and optionally per key), a global in-flight cap, a batch cap,
and caps on open streaming calls (overall and per client).

Never waits and never sleeps: a request over a limit is refused at once with RateLimited, whose
``retry_after_s`` says when the bucket will hold enough tokens. Each bucket has its own lock, held
only for a few arithmetic operations, so a limited client never slows another.

A request of ``items`` items costs ``items`` tokens. It is admitted when the bucket holds
``min(items, burst)`` tokens, and then takes all ``items`` (the bucket may go negative): a batch
larger than the burst is possible, and the long-run rate still holds, because the debt is repaid
before the next request.

Per request the gRPC front makes exactly two calls: ``admit`` (in-flight slot, tokens) and
``release`` (the slot back). The bucket name and rate of an identity are worked out once per
identity (``rate_for``) and remembered: ``[[clients]]`` is fixed for the limiter's life.
``acquire`` wraps ``admit`` in a ``Permit`` for callers that want a context manager (the REST front).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from signer.api.auth import match_client
from signer.config import ClientConfig, LimitsConfig, RateConfig
from signer.errors import ConfigError, MalformedRequest, RateLimited
from signer.types import ClientIdentity

Clock = Callable[[], float]

_EPSILON = 1e-9
"""Tokens lost to float rounding of clock arithmetic are forgiven up to this much."""
_MIN_RETRY_S = 0.001

IN_FLIGHT_RETRY_S = 0.05
"""The retry hint when the in-flight cap is reached (a slot frees when any call ends)."""

STREAM_RETRY_S = 1.0
"""The retry hint when a stream cap is reached (streams are long-lived)."""

MAX_BUCKETS = 10_000
"""Bound on remembered buckets; beyond it, full buckets (indistinguishable from new) are dropped."""

MAX_REMEMBERED_IDENTITIES = 10_000
"""Bound on identities whose bucket name and rate are remembered; beyond it the memory starts over."""


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; starts full."""

    __slots__ = ("_lock", "burst", "rate", "tokens", "updated")

    def __init__(self, rate: RateConfig, now: float) -> None:
        self.rate = float(rate.per_second)
        self.burst = float(rate.burst)
        self.tokens = self.burst
        self.updated = now
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens and return 0.0, or take nothing and return the seconds to wait."""
        with self._lock:
            self._refill(now)
            need = min(cost, self.burst)
            if self.tokens >= need - _EPSILON:
                self.tokens -= cost
                return 0.0
            return max((need - self.tokens) / self.rate, _MIN_RETRY_S)

    def is_full(self, now: float) -> bool:
        with self._lock:
            self._refill(now)
            return self.tokens >= self.burst


class _Buckets:
    """A bounded map of buckets; the map lock is held only to find or insert a bucket."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[object, TokenBucket] = {}

    def get(self, key: object, rate: RateConfig) -> TokenBucket:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    now = self._clock()
                    for old in [k for k, b in self._buckets.items() if b.is_full(now)]:
                        del self._buckets[old]
                bucket = TokenBucket(rate, self._clock())
                self._buckets[key] = bucket
            return bucket

    def __len__(self) -> int:
        return len(self._buckets)


class Permit:
    """An admitted request (``RateLimiter.acquire``): holds one in-flight slot until released or
    closed (use it as a context manager); releasing twice gives the slot back once."""

    __slots__ = ("_limiter", "_released", "client", "items")

    def __init__(self, limiter: RateLimiter, client: ClientIdentity, items: int) -> None:
        self._limiter = limiter
        self._released = False
        self.client = client
        self.items = items

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter.release()

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class StreamPermit:
    """An open streaming call: holds one stream slot (overall and of its client) until released."""

    __slots__ = ("_limiter", "_released", "name")

    def __init__(self, limiter: RateLimiter, name: str) -> None:
        self._limiter = limiter
        self._released = False
        self.name = name

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release_stream(self.name)


def _rate_text(rate: RateConfig) -> str:
    return f"{rate.per_second:g}/s, burst {rate.burst}"


def _round_up_ms(seconds: float) -> float:
    return math.ceil(seconds * 1000.0 - 1e-6) / 1000.0  # the epsilon absorbs float noise


class RateLimiter:
    """Token buckets per client identity (``[[clients]].rate`` overrides ``limits.default_rate``),
    per key (``limits.per_key_rate``), the in-flight cap and the batch cap."""

    def __init__(
        self,
        limits: LimitsConfig,
        clients: Sequence[ClientConfig] = (),
        clock: Clock = time.monotonic,
        *,
        max_streams: int | None = None,
    ) -> None:
        self.limits = limits
        self.clients = tuple(clients)
        self._clock = clock
        self._client_buckets = _Buckets(clock)
        self._key_buckets = _Buckets(clock)
        self._slots_lock = threading.Lock()
        self._in_flight = 0
        self.max_streams = max_streams if max_streams is not None else limits.max_streams
        """Open streams, all clients (None: no overall cap; app.py passes the resolved default)."""
        self._streams = 0
        self._client_streams: dict[str, int] = {}
        self._rates: dict[tuple[str, bool, tuple[str, ...]], tuple[str, RateConfig | None]] = {}
        """``rate_for`` per identity (name, has_cn, alt_names): what matching depends on."""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def rate_for(self, client: ClientIdentity) -> tuple[str, RateConfig | None]:
        """The bucket name (the matched ``[[clients]]`` name, else the CN) and its rate, if any."""
        entry = match_client(self.clients, client)
        if entry is not None:
            return entry.name, entry.rate or self.limits.default_rate
        return client.name, self.limits.default_rate

    def _remember_rate(self, client: ClientIdentity) -> tuple[str, RateConfig | None]:
        """``rate_for(client)``, remembered for the next request of the same identity."""
        if len(self._rates) >= MAX_REMEMBERED_IDENTITIES:
            self._rates.clear()
        found = self.rate_for(client)
        self._rates[(client.name, client.has_cn, client.alt_names)] = found
        return found

    def admit(self, client: ClientIdentity, items: int = 1, *, rate: bool = True) -> None:
        """Admit a request of ``items`` items, taking one in-flight slot (give it back with
        ``release``), or raise: RateLimited, or MalformedRequest for a batch over
        ``limits.max_batch_items`` (no retry can fix that). ``rate=False`` takes only the in-flight
        slot, no tokens (gRPC health and reflection)."""
        limits = self.limits
        if items > limits.max_batch_items:
            raise MalformedRequest(f"batch of {items} items is over limits.max_batch_items = {limits.max_batch_items}")
        with self._slots_lock:
            if self._in_flight >= limits.max_in_flight:
                raise RateLimited(
                    f"the signer is at its cap of {limits.max_in_flight} requests in flight",
                    retry_after_s=IN_FLIGHT_RETRY_S,
                )
            self._in_flight += 1
        if not rate:
            return
        found = self._rates.get((client.name, client.has_cn, client.alt_names))
        name, bucket_rate = found if found is not None else self._remember_rate(client)
        if bucket_rate is None:
            return
        cost = max(items, 1)
        wait_s = self._client_buckets.get(name, bucket_rate).take(cost, self._clock())
        if wait_s > 0:
            self.release()
            retry_after_s = _round_up_ms(wait_s)
            raise RateLimited(
                f"client '{name}' is over its rate limit ({_rate_text(bucket_rate)}); retry in {retry_after_s:.3f} s",
                retry_after_s=retry_after_s,
            )

    def release(self) -> None:
        """Give back the in-flight slot of one admitted request (once per ``admit``)."""
        with self._slots_lock:
            self._in_flight -= 1

    def acquire(self, client: ClientIdentity, items: int = 1, *, rate: bool = True) -> Permit:
        """``admit`` as a Permit that gives the slot back when released or closed."""
        self.admit(client, items, rate=rate)
        return Permit(self, client, max(items, 1))

    def acquire_stream(self, client: ClientIdentity) -> StreamPermit:
        """Admit a streaming call (it holds a worker thread while open) or raise RateLimited: at most
        ``max_streams`` open overall and ``limits.max_streams_per_client`` per client."""
        found = self._rates.get((client.name, client.has_cn, client.alt_names))
        name = (found if found is not None else self._remember_rate(client))[0]
        per_client = self.limits.max_streams_per_client
        with self._slots_lock:
            if self.max_streams is not None and self._streams >= self.max_streams:
                raise RateLimited(
                    f"the signer is at its cap of {self.max_streams} open streams (limits.max_streams)",
                    retry_after_s=STREAM_RETRY_S,
                )
            open_now = self._client_streams.get(name, 0)
            if open_now >= per_client:
                raise RateLimited(
                    f"client '{name}' is at its cap of {per_client} open streams (limits.max_streams_per_client)",
                    retry_after_s=STREAM_RETRY_S,
                )
            self._streams += 1
            self._client_streams[name] = open_now + 1
        return StreamPermit(self, name)

    def _release_stream(self, name: str) -> None:
        with self._slots_lock:
            self._streams -= 1
            left = self._client_streams.get(name, 1) - 1
            if left > 0:
                self._client_streams[name] = left
            else:
                self._client_streams.pop(name, None)

    def check_key(self, public_key: bytes) -> None:
        """Take one token from the key's bucket (``limits.per_key_rate``; no limit when unset)."""
        rate = self.limits.per_key_rate
        if rate is None:
            return
        wait_s = self._key_buckets.get(bytes(public_key), rate).take(1, self._clock())
        if wait_s > 0:
            retry_after_s = _round_up_ms(wait_s)
            raise RateLimited(
                f"key 0x{bytes(public_key).hex()[:16]}... is over limits.per_key_rate "
                f"({_rate_text(rate)}); retry in {retry_after_s:.3f} s",
                retry_after_s=retry_after_s,
            )


def parse_rate_limit(text: str) -> RateConfig:
    """``--rate-limit PER_SECOND[:BURST]``: e.g. ``50`` (burst 50) or ``50:200``.

    Without a burst, the burst is one second of traffic (``ceil(PER_SECOND)``, at least 1).
    """
    rate_text, sep, burst_text = text.strip().partition(":")
    try:
        per_second = float(rate_text)
    except ValueError:
        per_second = math.nan
    if not math.isfinite(per_second) or per_second <= 0:
        raise ConfigError(f"--rate-limit {text!r}: PER_SECOND must be a positive number (PER_SECOND[:BURST])")
    if sep:
        if not burst_text.isdigit() or int(burst_text) < 1:
            raise ConfigError(f"--rate-limit {text!r}: BURST must be a positive integer (PER_SECOND[:BURST])")
        burst = int(burst_text)
    else:
        burst = max(1, math.ceil(per_second))
    return RateConfig(per_second=per_second, burst=burst)
