"""What every servicer needs per call: who is calling, the batch-size cap, and where to report.

The client identity comes from the TLS handshake (certificate CN / SANs) through ``identify``;
outcomes go to the audit log and to the interceptor's request metrics through ``outcome_sink``.
Single attestations, proposals and CometBFT votes/proposals may be routed through the coalescing
batcher.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import grpc

from signer import errors
from signer.api import status
from signer.service import (
    AttestationRequest,
    ConsensusOutcome,
    ConsensusRequest,
    Outcome,
    ProposalRequest,
    SigningService,
)
from signer.types import LOCAL_CLIENT, AuditEvent, AuditSink, ClientIdentity


class Coalescer(Protocol):
    """The batching core: gathers concurrent single requests into one batch (signer.batching)."""

    def attestations(
        self, client: ClientIdentity, requests: Sequence[AttestationRequest], method: str
    ) -> list[Outcome]: ...

    def proposals(self, client: ClientIdentity, requests: Sequence[ProposalRequest], method: str) -> list[Outcome]: ...

    def consensus(
        self, client: ClientIdentity, requests: Sequence[ConsensusRequest], method: str
    ) -> list[ConsensusOutcome]: ...


def _no_identity(context: grpc.ServicerContext) -> ClientIdentity:
    return LOCAL_CLIENT


def _no_outcome(context: grpc.ServicerContext, outcome: str) -> None:
    pass


def _no_request_id(context: grpc.ServicerContext) -> str | None:
    return None


class CallContext:
    def __init__(
        self,
        service: SigningService,
        *,
        identify: Callable[[grpc.ServicerContext], ClientIdentity] = _no_identity,
        outcome_sink: Callable[[grpc.ServicerContext, str], None] = _no_outcome,
        audit: AuditSink | None = None,
        request_id: Callable[[grpc.ServicerContext], str | None] = _no_request_id,
        max_batch_items: int = 1000,
        coalescer: Coalescer | None = None,
    ) -> None:
        self.service = service
        self._identify = identify
        self._outcome_sink = outcome_sink
        self._audit = audit
        self._request_id = request_id
        self.max_batch_items = max_batch_items
        self.coalescer = coalescer

    def client(self, context: grpc.ServicerContext) -> ClientIdentity:
        return self._identify(context)

    def check_batch_size(self, context: grpc.ServicerContext, items: int) -> None:
        if items > self.max_batch_items:
            self._outcome_sink(context, status.OUTCOME_RATE_LIMITED)
            status.abort(
                context,
                errors.RateLimited(
                    f"batch of {items} items is over the limit of {self.max_batch_items} per call; split it",
                    retry_after_s=0.0,
                ),
            )

    def attestations(self, client: ClientIdentity, requests: list[AttestationRequest], method: str) -> list[Outcome]:
        if self.coalescer is not None:
            return self.coalescer.attestations(client, requests, method)
        return self.service.sign_attestations(client, requests, method)

    def proposals(self, client: ClientIdentity, requests: list[ProposalRequest], method: str) -> list[Outcome]:
        if self.coalescer is not None:
            return self.coalescer.proposals(client, requests, method)
        return self.service.sign_proposals(client, requests, method)

    def consensus(
        self, client: ClientIdentity, requests: list[ConsensusRequest], method: str
    ) -> list[ConsensusOutcome]:
        if self.coalescer is not None:
            return self.coalescer.consensus(client, requests, method)
        return self.service.sign_consensus(client, requests, method)

    def report(
        self, context: grpc.ServicerContext, method: str, outcomes: Sequence[Outcome], duration_s: float
    ) -> None:
        label = self.audit_outcomes(
            self.client(context).name if self._audit is not None and outcomes else "",
            self._request_id(context) if self._audit is not None and outcomes else None,
            method,
            outcomes,
            duration_s,
        )
        self._outcome_sink(context, label)

    def audit_outcomes(
        self, client: str, request_id: str | None, method: str, outcomes: Sequence[Outcome], duration_s: float
    ) -> str:
        """Write one audit line per item (any front: gRPC here, the REST front directly) and return
        the call's outcome label (the worst of its items)."""
        labels = [status.outcome_label(o.error) for o in outcomes]
        if self._audit is None or not outcomes:
            return status.worst_outcome(labels)
        duration_ms = round(duration_s * 1000, 3)
        for outcome, label in zip(outcomes, labels, strict=True):
            error = outcome.error
            subject = dict(outcome.subject or {})
            self._audit.record(
                AuditEvent(
                    client=client,
                    method=method,
                    outcome=label,
                    public_key=outcome.key.public_key if outcome.key is not None else None,
                    account=outcome.key.name if outcome.key is not None else None,
                    slot=subject.get("slot"),
                    source_epoch=subject.get("source_epoch"),
                    target_epoch=subject.get("target_epoch"),
                    height=subject.get("height"),
                    round=subject.get("round"),
                    step=subject.get("step"),
                    offence=error.offence if isinstance(error, errors.NotSafeToSign) else None,
                    reason=status.describe(error) if error is not None else None,
                    duration_ms=duration_ms,
                    request_id=request_id,
                )
            )
        return status.worst_outcome(labels)
