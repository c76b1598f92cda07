"""The batched core: coalesces concurrent single requests into batches for the SigningService.

``Batcher`` implements the ``Coalescer`` protocol the servicers call for single attestations,
proposals (SignBeaconAttestation, SignBeaconProposal) and CometBFT votes and proposals (SignVote,
SignProposal). Concurrent requests from one client for one method are gathered into one
``SigningService`` call: one protection transaction and one durable commit for the batch, one
signing call (which the ParallelSigner fans out over every core), one outcome per request.
Explicit batches (Multisign, SignBeaconAttestations) do not come here: the servicers send them to
the service directly.

A batch goes through two stages (``SigningService.stage_*`` then ``Staged.finish``):

* **protect** (one batch at a time: the store serialises its writers anyway): validate, authorize,
  compute signing roots, ONE ``check_and_record`` transaction, committed. Whenever this stage is
  free it takes everything queued for the oldest group (up to ``max_batch``), so batches grow with
  the load by themselves (group commit) instead of being cut small while the store is busy.
* **sign** (up to ``max_running`` batches at once): the safe items are signed and answered. It
  runs while the next batch is being protected. Invariant 1 holds: a batch is signed only after its
  own records are committed.

How a batch is cut:

* A lone request never waits: when nothing is queued and the protect stage is free, the
  caller's thread runs both stages itself (a batch of one, no thread hand-off).
* Otherwise the request is queued and the dispatcher thread cuts batches. A batch closes
  ``window_ms`` after its OLDEST request arrived, or as soon as ``max_batch`` requests are
  queued, whichever comes first, and only while fewer than ``max_running`` batches sign.
  The dispatcher protects the batch itself, then hands it to a signing thread. Under load the
  window has usually passed when the stage frees (no extra wait).
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
from typing import Any, Literal

from signer import errors
from signer.service import (
    AttestationRequest,
    ConsensusOutcome,
    ConsensusRequest,
    KeyRef,
    Outcome,
    ProposalRequest,
    SigningService,
    Staged,
)
from signer.types import ClientIdentity

Kind = Literal["attestation", "proposal", "consensus"]
_Request = AttestationRequest | ProposalRequest | ConsensusRequest
_Answer = Outcome | ConsensusOutcome
_SCAN_FACTOR = 4
"""A cut looks at most this many times ``max_batch`` queued requests (bounded work per cut)."""


@dataclass(slots=True, eq=False)
class _Entry:
    request: _Request
    key: object
    """What identifies the key for the one-key-per-batch rule (its public key, or the KeyRef)."""
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    outcome: _Answer | None = None


@dataclass(frozen=True, slots=True)
class _Group:
    kind: Kind
    client: ClientIdentity
    method: str


class Batcher:
    """``Batcher(service, window_ms=1.0, max_batch=256, queue_size=20000, max_running=2)``: the Coalescer.

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
        self._queues: dict[_Group, collections.deque[_Entry]] = {}
        self._pending = 0
        self._protecting = False
        """A batch is in the protect stage (one at a time)."""
        self._signing = 0
        """Batches in the signing stage."""
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
        outcome = self._submit(_Group("attestation", client, method), requests[0], self._key_of(requests[0].key))
        assert isinstance(outcome, Outcome)
        return [outcome]

    def proposals(self, client: ClientIdentity, requests: Sequence[ProposalRequest], method: str) -> list[Outcome]:
        if len(requests) != 1:
            return self.service.sign_proposals(client, requests, method)
        outcome = self._submit(_Group("proposal", client, method), requests[0], self._key_of(requests[0].key))
        assert isinstance(outcome, Outcome)
        return [outcome]

    def consensus(
        self, client: ClientIdentity, requests: Sequence[ConsensusRequest], method: str
    ) -> list[ConsensusOutcome]:
        if len(requests) != 1:
            return self.service.sign_consensus(client, requests, method)
        request = requests[0]
        key = self.service.comet_key_of(request.chain_id)
        outcome = self._submit(
            _Group("consensus", client, method), request, key.public_key if key is not None else request.chain_id
        )
        assert isinstance(outcome, ConsensusOutcome)
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

    # --- submitting ---------------------------------------------------------------------------

    def _key_of(self, ref: KeyRef) -> object:
        key = self.service.key_of(ref)
        return key.public_key if key is not None else ref

    def _submit(self, group: _Group, request: _Request, key: object) -> _Answer:
        entry = _Entry(request, key, self._clock())
        with self._cond:
            if self._closed:
                raise errors.RateLimited("the signer is shutting down; retry on another replica", retry_after_s=1.0)
            alone = self._pending == 0 and not self._protecting and self._signing < self.max_running
            if alone:
                self._protecting = True
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
            staged = self._protect(group, [entry])
            if staged is not None:
                self._sign(staged, [entry])
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
                while not self._closed and (
                    self._pending == 0 or self._protecting or self._signing >= self.max_running
                ):
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
                if self._protecting:  # a lone request took the stage while the window ran
                    continue
                batch = self._cut(group)
                self._protecting = True
            staged = self._protect(group, batch)
            if staged is not None:
                self._executor.submit(self._sign, staged, batch)

    def _refuse_queued(self) -> None:
        refusal = errors.RateLimited("the signer is shutting down; retry on another replica", retry_after_s=1.0)
        for queued in self._queues.values():
            for entry in queued:
                entry.outcome = _refusal(entry, refusal)
                entry.done.set()
        self._queues.clear()
        self._pending = 0

    def _protect(self, group: _Group, batch: list[_Entry]) -> Staged[Any] | None:
        """The protect stage of one batch (the caller holds the stage): None when it failed as a whole.

        On success the batch enters the signing stage (counted before the stage is released).
        """
        staged: Staged[Any] | None = None
        try:
            staged = self._stage(group, batch)
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

    def _sign(self, staged: Staged[Any], batch: list[_Entry]) -> None:
        """The signing stage of one batch; every entry gets an outcome, whatever happens."""
        try:
            outcomes = staged.finish()
            if len(outcomes) != len(batch):
                raise errors.InternalError("the service answered a different number of outcomes")
            for entry, outcome in zip(batch, outcomes, strict=True):
                entry.outcome = outcome
        except errors.SignerError as exc:
            for entry in batch:
                entry.outcome = _refusal(entry, exc)
        except Exception as exc:  # nothing fails open, and no caller waits forever
            failure = errors.InternalError(f"batch failed: {type(exc).__name__}")
            for entry in batch:
                entry.outcome = _refusal(entry, failure)
        finally:
            for entry in batch:
                if entry.outcome is None:
                    entry.outcome = _refusal(entry, errors.InternalError("no outcome"))
                entry.done.set()
            with self._cond:
                self._signing -= 1
                if self._pending:
                    self._cond.notify_all()

    @staticmethod
    def _answer_all(batch: list[_Entry], error: errors.SignerError) -> None:
        for entry in batch:
            entry.outcome = _refusal(entry, error)
            entry.done.set()

    def _stage(self, group: _Group, batch: list[_Entry]) -> Staged[Any]:
        if group.kind == "attestation":
            attestations = [e.request for e in batch if isinstance(e.request, AttestationRequest)]
            return self.service.stage_attestations(group.client, attestations, group.method)
        if group.kind == "proposal":
            proposals = [e.request for e in batch if isinstance(e.request, ProposalRequest)]
            return self.service.stage_proposals(group.client, proposals, group.method)
        consensus = [e.request for e in batch if isinstance(e.request, ConsensusRequest)]
        return self.service.stage_consensus(group.client, consensus, group.method)


def _refusal(entry: _Entry, error: errors.SignerError) -> _Answer:
    if isinstance(entry.request, ConsensusRequest):
        return ConsensusOutcome(error=error)
    return Outcome(error=error)
