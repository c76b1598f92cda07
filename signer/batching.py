"""The batched core: coalesces concurrent single requests into batches for the SigningService.

``Batcher`` implements the ``Coalescer`` protocol the servicers call for single attestations and
proposals (SignBeaconAttestation, SignBeaconProposal). Concurrent requests from one client for
one method are gathered into one ``SigningService`` call: one protection transaction and one
durable commit for the batch, one signing call (which the ParallelSigner fans out over every
core), one ``Outcome`` per request. Explicit batches (Multisign, SignBeaconAttestations) do not
come here: the servicers send them to the service directly.

How a batch is cut:

* A lone request never waits: when nothing is queued and no batch is running, the caller's
  thread signs it at once (a batch of one, no thread hand-off).
* Otherwise the request is queued and a dispatcher thread cuts batches. A batch closes
  ``window_ms`` after its OLDEST request arrived, or as soon as ``max_batch`` requests are
  queued, whichever comes first. At most ``max_running`` batches run at once (2: the protection
  transaction of the next batch overlaps the signing of the current one); requests that arrive
  while both run wait in the queue, so under load batches grow by themselves and the window
  has usually passed when a slot frees (no extra wait).
* A batch never names a key twice (the service would refuse the later item): the later
  request for a key stays queued, in order, for the next batch.
* Each request's outcome is its own: a refusal of one item (protection, authorization, a
  malformed domain) never touches the others; only a store or module failure, which refuses a
  whole batch by design (nothing fails open), affects every item of it.
* Backpressure: at most ``queue_size`` requests wait; beyond that ``RateLimited`` is raised at
  once (RESOURCE_EXHAUSTED), so memory stays bounded.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from signer import errors
from signer.service import AttestationRequest, KeyRef, Outcome, ProposalRequest, SigningService
from signer.types import ClientIdentity

Kind = Literal["attestation", "proposal"]
_SCAN_FACTOR = 4
"""A cut looks at most this many times ``max_batch`` queued requests (bounded work per cut)."""


@dataclass(slots=True, eq=False)
class _Entry:
    request: AttestationRequest | ProposalRequest
    key: object
    """What identifies the key for the one-key-per-batch rule (its public key, or the KeyRef)."""
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class _Group:
    kind: Kind
    client: ClientIdentity
    method: str


class Batcher:
    """``Batcher(service, window_ms=1.0, max_batch=256, queue_size=20000)``: the Coalescer."""

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
        self._queues: dict[_Group, collections.deque[_Entry]] = {}
        self._pending = 0
        self._running = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="batch")
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="batcher", daemon=True)
        self._dispatcher.start()

    # --- the Coalescer protocol ---------------------------------------------------------------

    def attestations(
        self, client: ClientIdentity, requests: Sequence[AttestationRequest], method: str
    ) -> list[Outcome]:
        if len(requests) != 1:
            return self.service.sign_attestations(client, requests, method)
        return [self._submit(_Group("attestation", client, method), requests[0])]

    def proposals(self, client: ClientIdentity, requests: Sequence[ProposalRequest], method: str) -> list[Outcome]:
        if len(requests) != 1:
            return self.service.sign_proposals(client, requests, method)
        return [self._submit(_Group("proposal", client, method), requests[0])]

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

    # --- submitting ---------------------------------------------------------------------------

    def _key_of(self, ref: KeyRef) -> object:
        key = self.service.key_of(ref)
        return key.public_key if key is not None else ref

    def _submit(self, group: _Group, request: AttestationRequest | ProposalRequest) -> Outcome:
        entry = _Entry(request, self._key_of(request.key), self._clock())
        with self._cond:
            if self._closed:
                raise errors.RateLimited("the signer is shutting down; retry on another replica", retry_after_s=1.0)
            alone = self._pending == 0 and self._running == 0
            if alone:
                self._running += 1
            else:
                if self._pending >= self.queue_size:
                    raise errors.RateLimited(
                        f"the signing queue is full ({self.queue_size} requests waiting); slow down",
                        retry_after_s=max(self.window_s, 0.01),
                    )
                self._queues.setdefault(group, collections.deque()).append(entry)
                self._pending += 1
                if self._pending == 1 or self._pending >= self.max_batch:
                    self._cond.notify_all()
        if alone:
            self._run(group, [entry])
        entry.done.wait()
        assert entry.outcome is not None
        return entry.outcome

    # --- cutting and running batches ----------------------------------------------------------

    def _oldest_group(self) -> _Group:
        return min(self._queues, key=lambda g: self._queues[g][0].arrived)

    def _cut(self, group: _Group) -> list[_Entry]:
        """Up to max_batch entries of ``group``, one per key, in arrival order; the rest stay queued."""
        queued = self._queues[group]
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
        if not queued:
            del self._queues[group]
        self._pending -= len(batch)
        return batch

    def _dispatch_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (self._pending == 0 or self._running >= self.max_running):
                    self._cond.wait()
                if self._closed:
                    self._refuse_queued()
                    return
                group = self._oldest_group()
                deadline = self._queues[group][0].arrived + self.window_s
                while not self._closed and self._pending < self.max_batch:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._closed:
                    self._refuse_queued()
                    return
                batch = self._cut(group)
                self._running += 1
            self._executor.submit(self._run, group, batch)

    def _refuse_queued(self) -> None:
        refusal = errors.RateLimited("the signer is shutting down; retry on another replica", retry_after_s=1.0)
        for queued in self._queues.values():
            for entry in queued:
                entry.outcome = Outcome(error=refusal)
                entry.done.set()
        self._queues.clear()
        self._pending = 0

    def _run(self, group: _Group, batch: list[_Entry]) -> None:
        """Sign one batch (one service call); every entry gets an outcome, whatever happens."""
        try:
            outcomes = self._call(group, batch)
            if len(outcomes) != len(batch):
                raise errors.InternalError("the service answered a different number of outcomes")
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome = outcome
        except errors.SignerError as exc:
            for entry in batch:
                entry.outcome = Outcome(error=exc)
        except Exception as exc:  # nothing fails open, and no caller waits forever
            failure = errors.InternalError(f"batch failed: {type(exc).__name__}")
            for entry in batch:
                entry.outcome = Outcome(error=failure)
        finally:
            for entry in batch:
                if entry.outcome is None:
                    entry.outcome = Outcome(error=errors.InternalError("no outcome"))
                entry.done.set()
            with self._cond:
                self._running -= 1
                if self._pending:  # the dispatcher waits for a free slot only when work is queued
                    self._cond.notify_all()

    def _call(self, group: _Group, batch: list[_Entry]) -> list[Outcome]:
        if group.kind == "attestation":
            attestations = [e.request for e in batch if isinstance(e.request, AttestationRequest)]
            return self.service.sign_attestations(group.client, attestations, group.method)
        proposals = [e.request for e in batch if isinstance(e.request, ProposalRequest)]
        return self.service.sign_proposals(group.client, proposals, group.method)
