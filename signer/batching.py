"""The Batcher: coalesces concurrent single requests into batches for the SigningService.

``Batcher.sign(client, requests)`` has the service's signature, so a front calls one or the other
the same way. A call of several requests is a batch already and goes to ``service.sign`` as it is.
A single request is prepared at once in its caller's thread (``service.prepare``: key resolved,
authorized, message computed); one that needs no protection (Sign: no slashing history) is signed
at once; the rest are coalesced: one protection transaction and one durable commit per batch, one
signing call (which the ParallelSigner fans out over every core), one outcome per request.

A batch goes through two stages, ``service.commit`` then ``Staged.finish``:

* **protect** (one batch at a time: the store serialises its writers anyway): ONE
  ``check_and_record`` transaction, committed. Whenever this stage is free it takes everything
  queued (up to ``max_batch``), so batches grow with the load by themselves (group commit).
* **sign** (up to ``max_running`` batches at once): the safe items are signed and answered, while
  the next batch is being protected. Invariant 1 holds: a batch is signed only after its own
  records are committed.

How a batch is cut: a lone request never waits (when nothing is queued and the protect stage is
free, the caller's thread runs both stages itself). Otherwise the request is queued and the
dispatcher thread cuts a batch ``window_ms`` after its OLDEST request arrived, or as soon as
``max_batch`` requests are queued, and only while fewer than ``max_running`` batches sign. A batch
never names a key twice: the later request for a key stays queued, in order, for the next batch.
Each request's outcome is its own; only a store or module failure refuses a whole batch (nothing
fails open). At most ``queue_size`` requests wait; beyond that ``RateLimited`` is raised at once.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from signer import errors
from signer.service import Outcome, Prepared, Refused, SigningService, SignRequest, Staged
from signer.types import ClientIdentity

_SCAN_FACTOR = 4
"""A cut looks at most this many times ``max_batch`` queued requests (bounded work per cut)."""


@dataclass(slots=True, eq=False)
class _Entry:
    item: Prepared
    key: object
    """What identifies the key for the one-key-per-batch rule (its public key; the entry itself
    for an item refused already)."""
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


class Batcher:
    """``Batcher(service, window_ms=1.0, max_batch=256, queue_size=20000, max_running=2)``.

    ``max_running``: batches in the signing stage at once (the protect stage runs one at a time).
    """

    def __init__(
        self,
        service: SigningService,
        *,
        window_ms: float = 1.0,
        max_batch: int = 256,
        queue_size: int = 20000,
        max_running: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_running < 1 or window_ms < 0:
            raise errors.ConfigError("batching: window_ms >= 0, max_batch, queue_size and max_running >= 1")
        self.service = service
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self.queue_size = queue_size
        self.max_running = max_running
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: collections.deque[_Entry] = collections.deque()
        self._pending = 0
        self._protecting = False
        """A batch is in the protect stage (one at a time)."""
        self._signing = 0
        """Batches in the signing stage."""
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="batch")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="batcher", daemon=True)
        self._dispatcher.start()

    def sign(self, client: ClientIdentity, requests: Sequence[SignRequest]) -> list[Outcome]:
        """One outcome per request, in order (``SigningService.sign``, coalesced when single)."""
        if len(requests) != 1:
            return self.service.sign(client, requests)
        item = self.service.prepare(client, requests[0])
        if item.error is None and item.check is None:  # nothing to protect: nothing to wait for
            return self.service.commit([item]).finish()
        entry: _Entry | None = None
        with self._cond:
            if self._closed:
                raise errors.RateLimited("the signer is shutting down; retry on another replica", retry_after_s=1.0)
            if self._pending == 0 and not self._protecting and self._signing < self.max_running:
                self._protecting = True  # alone: this thread runs both stages (a signing slot taken now)
                self._signing += 1
            else:
                entry = self._enqueue(item)
        if entry is not None:
            entry.done.wait()
            assert entry.outcome is not None
            return [entry.outcome]
        outcome: Outcome
        try:
            try:
                staged = self.service.commit([item])
            finally:  # the protect stage is free for the next batch while this one signs
                with self._cond:
                    self._protecting = False
                    if self._pending:
                        self._cond.notify_all()
            [outcome] = staged.finish()
        except errors.SignerError as exc:
            outcome = Refused(exc)
        except Exception as exc:  # nothing fails open
            outcome = Refused(errors.InternalError(f"batch failed: {type(exc).__name__}"))
        finally:
            with self._cond:
                self._signing -= 1
                if self._pending:
                    self._cond.notify_all()
        return [outcome]

    # --- state, for metrics and tests ---------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests waiting for a batch."""
        return self._pending

    def close(self) -> None:
        """Stop taking requests; queued ones are refused (retryable); running batches finish."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._dispatcher.join()
        self._executor.shutdown(wait=True)

    # --- queueing ----------------------------------------------------------------------------

    def _enqueue(self, item: Prepared) -> _Entry:
        """Queue a request for the next batch (the caller holds the lock); RateLimited when full."""
        if self._pending >= self.queue_size:
            raise errors.RateLimited(
                f"the signing queue is full ({self.queue_size} requests waiting); slow down",
                retry_after_s=max(self.window_s, 0.01),
            )
        entry = _Entry(item, None, self._clock())
        entry.key = item.key.public_key if item.key is not None and item.error is None else entry
        self._queue.append(entry)
        self._pending += 1
        if self._pending == 1 or self._pending >= self.max_batch:
            self._cond.notify_all()
        return entry

    # --- cutting and running batches ----------------------------------------------------------

    def _cut(self) -> list[_Entry]:
        """Up to max_batch entries, one per key, in arrival order; the rest stay queued."""
        queued = self._queue
        batch: list[_Entry] = []
        keep: list[_Entry] = []
        keys: set[object] = set()
        scanned = 0
        limit = self.max_batch * _SCAN_FACTOR
        while queued and len(batch) < self.max_batch and scanned < limit:
            entry = queued.popleft()
            scanned += 1
            if entry.key in keys:
                keep.append(entry)
                continue
            keys.add(entry.key)
            batch.append(entry)
        queued.extendleft(reversed(keep))
        self._pending -= len(batch)
        return batch

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (
                    self._pending == 0 or self._protecting or self._signing >= self.max_running
                ):
                    self._cond.wait()
                if self._closed:
                    self._refuse_queued()
                    return
                deadline = self._queue[0].arrived + self.window_s
                while not self._closed and self._pending < self.max_batch:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed:
                    self._refuse_queued()
                    return
                if self._protecting:  # a lone request took the stage while the window ran
                    continue
                batch = self._cut()
                self._protecting = True
            staged = self._protect(batch)
            if staged is not None:
                self._executor.submit(self._sign, staged, batch)

    def _refuse_queued(self) -> None:
        refusal = errors.RateLimited("the signer is shutting down; retry on another replica", retry_after_s=1.0)
        for entry in self._queue:
            entry.outcome = Refused(refusal)
            entry.done.set()
        self._queue.clear()
        self._pending = 0

    def _protect(self, batch: list[_Entry]) -> Staged | None:
        """The protect stage of one batch (the caller holds the stage): None when it failed as a whole.

        On success the batch enters the signing stage (counted before the stage is released).
        """
        staged: Staged | None = None
        try:
            staged = self.service.commit([e.item for e in batch])
        except errors.SignerError as exc:
            self._answer_all(batch, exc)
        except Exception as exc:  # nothing fails open, and no caller waits forever
            self._answer_all(batch, errors.InternalError(f"batch failed: {type(exc).__name__}"))
        finally:
            with self._cond:
                self._protecting = False
                if staged is not None:
                    self._signing += 1
                if self._pending:  # the dispatcher waits for the stage only when work is queued
                    self._cond.notify_all()
        return staged

    def _sign(self, staged: Staged, batch: list[_Entry]) -> None:
        """The signing stage of one batch; every entry gets an outcome, whatever happens."""
        try:
            outcomes = staged.finish()
            if len(outcomes) != len(batch):
                raise errors.InternalError("the service answered a different number of outcomes")
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome = outcome
        except errors.SignerError as exc:
            for entry in batch:
                entry.outcome = Refused(exc)
        except Exception as exc:  # nothing fails open, and no caller waits forever
            failure = errors.InternalError(f"batch failed: {type(exc).__name__}")
            for entry in batch:
                entry.outcome = Refused(failure)
        finally:
            for entry in batch:
                if entry.outcome is None:
                    entry.outcome = Refused(errors.InternalError("no outcome"))
                entry.done.set()
            with self._cond:
                self._signing -= 1
                if self._pending:
                    self._cond.notify_all()

    @staticmethod
    def _answer_all(batch: list[_Entry], error: errors.SignerError) -> None:
        for entry in batch:
            entry.outcome = Refused(error)
            entry.done.set()
