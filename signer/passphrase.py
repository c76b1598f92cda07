"""PassphraseGuard: how often a client may guess the module PIN (AccountManager Unlock and Generate).

A wrong passphrase is a security event: it is counted (``Monitor.security_event``), logged, and it
makes the next guesses wait. Per client (the name its ``[[clients]]`` entry or certificate gives),
the first ``free_failures`` consecutive failures cost nothing; each further one locks the client out
for ``base_delay_s`` doubled per failure, up to ``max_delay_s``; a right passphrase clears its count,
and a count is forgotten ``forget_s`` after its last failure. Over all clients, failures fill a
leaky bucket (``global_limit`` failures, one leaking out every ``global_leak_s``): while it is full
every client is locked out, so many identities cannot guess in parallel.

A locked-out check is refused before the passphrase is looked at, with RateLimited (gRPC
RESOURCE_EXHAUSTED and retry-after-ms, as the rate limiter answers). ``gate()`` lets one check run
at a time: a second one is refused at once instead of running a second KDF (each takes hundreds of
MiB) on another gRPC thread. Never sleeps, never waits.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from signer.errors import RateLimited
from signer.types import Monitor, NullMonitor

log = logging.getLogger(__name__)

WRONG_PASSPHRASE = "wrong_passphrase"  # noqa: S105 - an event name, not a password
PASSPHRASE_LOCKOUT = "passphrase_lockout"  # noqa: S105 - an event name, not a password
SECURITY_EVENTS: tuple[str, ...] = (WRONG_PASSPHRASE, PASSPHRASE_LOCKOUT)
"""The ``event`` values of ``Monitor.security_event`` (signer_security_events_total)."""

BUSY_RETRY_S = 0.5
"""The retry hint when another passphrase check is running."""
MAX_CLIENTS = 10_000
"""Bound on remembered clients; beyond it, counts whose lockout has passed are forgotten first."""


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    free_failures: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 900.0
    forget_s: float = 3600.0
    global_limit: int = 20
    global_leak_s: float = 30.0


class PassphraseGuard:
    """Failure counts and lockouts for passphrase checks (see the module docstring)."""

    def __init__(
        self,
        policy: GuardPolicy | None = None,
        *,
        monitor: Monitor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or GuardPolicy()
        self._monitor: Monitor = monitor or NullMonitor()
        self._clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, _Failures] = {}
        self._global_level = 0.0
        self._global_at = clock()
        self._gate = threading.Lock()

    # --- the per-client lockout ---------------------------------------------------------------

    def _client_wait_s(self, failures: _Failures | None, now: float) -> float:
        policy = self.policy
        if failures is None or failures.count < policy.free_failures:
            return 0.0
        delay = min(policy.base_delay_s * 2.0 ** (failures.count - policy.free_failures), policy.max_delay_s)
        return max(0.0, failures.last + delay - now)

    def _leak(self, now: float) -> None:
        elapsed = now - self._global_at
        if elapsed > 0:
            self._global_level = max(0.0, self._global_level - elapsed / self.policy.global_leak_s)
            self._global_at = now

    def _global_wait_s(self) -> float:
        over = self._global_level - (self.policy.global_limit - 1)
        return over * self.policy.global_leak_s if over > 0 else 0.0

    def check(self, client: str) -> None:
        """Raise RateLimited if ``client`` (or everyone) must wait before the next guess."""
        now = self._clock()
        with self._lock:
            failures = self._clients.get(client)
            if failures is not None and now - failures.last > self.policy.forget_s:
                del self._clients[client]
                failures = None
            self._leak(now)
            client_wait = self._client_wait_s(failures, now)
            global_wait = self._global_wait_s()
        wait_s = max(client_wait, global_wait)
        if wait_s <= 0:
            return
        retry_after_s = math.ceil(wait_s * 1000.0) / 1000.0
        self._monitor.security_event(PASSPHRASE_LOCKOUT)
        if client_wait >= global_wait:
            assert failures is not None
            message = (
                f"client '{client}' gave {failures.count} wrong passphrases in a row; "
                f"the next check is possible in {retry_after_s:.3f} s"
            )
        else:
            message = (
                f"too many wrong passphrases from all clients; the next check is possible in {retry_after_s:.3f} s"
            )
        log.warning("passphrase check refused: locked out", extra={"client": client, "retry_after_s": retry_after_s})
        raise RateLimited(message, retry_after_s=retry_after_s)

    def failed(self, client: str) -> int:
        """Count a wrong passphrase of ``client``; returns its consecutive failures."""
        now = self._clock()
        with self._lock:
            failures = self._clients.get(client)
            if failures is None or now - failures.last > self.policy.forget_s:
                if failures is None and len(self._clients) >= MAX_CLIENTS:
                    self._prune(now)
                failures = self._clients[client] = _Failures(0, now)
            failures.count += 1
            failures.last = now
            self._leak(now)
            self._global_level += 1.0
            count = failures.count
        self._monitor.security_event(WRONG_PASSPHRASE)
        log.warning("wrong passphrase", extra={"client": client, "failures": count})
        return count

    def succeeded(self, client: str) -> None:
        """A right passphrase: the client's count starts over (the global bucket still leaks)."""
        with self._lock:
            self._clients.pop(client, None)

    def _prune(self, now: float) -> None:
        for name in [n for n, f in self._clients.items() if self._client_wait_s(f, now) <= 0]:
            del self._clients[name]

    # --- one check at a time ------------------------------------------------------------------

    @contextlib.contextmanager
    def gate(self) -> Iterator[None]:
        """Hold the one passphrase-check slot, or raise RateLimited at once if it is taken."""
        if not self._gate.acquire(blocking=False):
            raise RateLimited("another passphrase check is running; retry shortly", retry_after_s=BUSY_RETRY_S)
        try:
            yield
        finally:
            self._gate.release()
