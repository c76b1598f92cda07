"""What every servicer needs per call: who is calling, where to sign, the batch-size cap, and
where to report.

The client identity comes from the TLS handshake (certificate CN / SANs) through ``identify``;
requests are signed through ``sign`` (the Batcher's or the SigningService's: the same signature);
outcomes go to the audit log and to the interceptor's request metrics through ``report``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import grpc

from signer import errors
from signer.api import status
from signer.service import Outcome, Refused, Signed, SigningService, SignRequest
from signer.types import LOCAL_CLIENT, AuditEvent, AuditSink, ClientIdentity, RequestOutcome


class Signs(Protocol):
    """``SigningService`` or the ``Batcher`` in front of it."""

    def sign(self, client: ClientIdentity, requests: Sequence[SignRequest]) -> list[Outcome]: ...


def done(error: errors.SignerError | None) -> Outcome:
    """The outcome to report for a call that signs nothing (Lock, Unlock, an admin call)."""
    return Refused(error) if error is not None else Signed(b"")


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
        signer: Signs | None = None,
    ) -> None:
        self.service = service
        self._identify = identify
        self._outcome_sink = outcome_sink
        self._audit = audit
        self._request_id = request_id
        self.max_batch_items = max_batch_items
        self.sign = (signer or service).sign
        """``sign(client, requests) -> outcomes``: the one way a servicer signs."""

    def client(self, context: grpc.ServicerContext) -> ClientIdentity:
        return self._identify(context)

    def check_batch_size(self, context: grpc.ServicerContext, items: int) -> None:
        if items > self.max_batch_items:
            self._outcome_sink(context, RequestOutcome.RATE_LIMITED)
            status.abort(
                context,
                errors.RateLimited(
                    f"batch of {items} items is over the limit of {self.max_batch_items} per call; split it",
                    retry_after_s=0.0,
                ),
            )

    def report(
        self,
        context: grpc.ServicerContext,
        method: str,
        outcomes: Sequence[Outcome],
        duration_s: float,
        client: ClientIdentity | None = None,
    ) -> None:
        """Metrics outcome of the call and one audit line per item (``client``: as the servicer
        read it, else read again)."""
        if self._audit is None or not outcomes:
            labels = [status.outcome_label(o.error) for o in outcomes]
            self._outcome_sink(context, status.worst_outcome(labels))
            return
        client_name = (client or self.client(context)).name
        label = self.audit_outcomes(client_name, self._request_id(context), method, outcomes, duration_s)
        self._outcome_sink(context, label)

    def audit_outcomes(
        self, client: str, request_id: str | None, method: str, outcomes: Sequence[Outcome], duration_s: float
    ) -> RequestOutcome:
        """One audit line per item, for any front (gRPC through ``report``, the REST front directly),
        and the call's outcome label (the worst of its items)."""
        labels = [status.outcome_label(o.error) for o in outcomes]
        if self._audit is None:
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
