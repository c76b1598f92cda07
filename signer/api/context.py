"""What every servicer needs per call: who is calling, where to sign, the batch-size cap, and
where to report.

The CallGuard (signer.api.interceptors) leaves a ``CallState`` on each call's ServicerContext (the
attribute ``CALL_STATE``): the client identity from the TLS handshake, the request id, and the
outcome label the servicer sets. A servicer reads it with ``calls.call(context)``, or directly on
its hot path; requests are signed through ``sign`` (the Batcher's or the SigningService's: the
same signature); each item's answer is one row of the wire table and one audit line
(``audit_item``), and ``report`` does that for a whole call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from signer import errors
from signer.api import status
from signer.service import Outcome, Refused, Signed, SigningService, SignRequest
from signer.types import LOCAL_CLIENT, AuditEvent, AuditSink, ClientIdentity, RequestOutcome

CALL_STATE = "_signer_call_state"
"""The attribute of a grpc.ServicerContext that holds the call's CallState (set by the CallGuard)."""


@dataclass(slots=True)
class CallState:
    """What the CallGuard knows about one call, left on its ServicerContext."""

    client: ClientIdentity
    request_id: str | None
    outcome: str | None = None
    """The outcome label the servicer reports (metrics); None: it follows from the status code."""


class Signs(Protocol):
    """``SigningService`` or the ``Batcher`` in front of it."""

    def sign(self, client: ClientIdentity, requests: Sequence[SignRequest]) -> list[Outcome]: ...


def done(error: errors.SignerError | None) -> Outcome:
    """The outcome to report for a call that signs nothing (Lock, Unlock, an admin call)."""
    return Refused(error) if error is not None else Signed(b"")


def _no_identity(context: grpc.ServicerContext) -> ClientIdentity:
    return LOCAL_CLIENT


class CallContext:
    def __init__(
        self,
        service: SigningService,
        *,
        identify: Callable[[grpc.ServicerContext], ClientIdentity] = _no_identity,
        audit: AuditSink | None = None,
        max_batch_items: int = 1000,
        signer: Signs | None = None,
    ) -> None:
        self.service = service
        self._identify = identify
        """Who calls when no CallGuard ran (a servicer called directly, in tests)."""
        self._audit = audit
        self.max_batch_items = max_batch_items
        self.sign = (signer or service).sign
        """``sign(client, requests) -> outcomes``: the one way a servicer signs."""

    def call(self, context: grpc.ServicerContext) -> CallState:
        """The CallGuard's state of this call; without a guard, a fresh one (identity from
        ``identify``, no request id) whose outcome nobody reads."""
        state = getattr(context, CALL_STATE, None)
        if isinstance(state, CallState):
            return state
        return CallState(self._identify(context), None)

    def client(self, context: grpc.ServicerContext) -> ClientIdentity:
        return self.call(context).client

    def check_batch_size(self, context: grpc.ServicerContext, items: int) -> None:
        if items > self.max_batch_items:
            self.call(context).outcome = RequestOutcome.RATE_LIMITED
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
        """The call's outcome label (the worst of its items) and one audit line per item
        (``client``: as the servicer read it, else the call's)."""
        call = self.call(context)
        name = (client or call.client).name
        call.outcome = self.audit_outcomes(name, call.request_id, method, outcomes, duration_s)

    def audit_outcomes(
        self, client: str, request_id: str | None, method: str, outcomes: Sequence[Outcome], duration_s: float
    ) -> RequestOutcome:
        """One audit line per item, for any front (gRPC through ``report``, the REST front directly),
        and the call's outcome label (the worst of its items)."""
        duration_ms = round(duration_s * 1000, 3)
        labels = [self.audit_item(client, request_id, method, outcome, duration_ms).outcome for outcome in outcomes]
        return status.worst_outcome(labels)

    def audit_item(
        self, client: str, request_id: str | None, method: str, outcome: Outcome, duration_ms: float
    ) -> status.Wire:
        """One item's row of the wire table (``status.wire``), after its audit line is recorded
        (when there is an audit log)."""
        error = outcome.error
        row = status.wire(error)
        if self._audit is None:
            return row
        key = outcome.key
        subject = outcome.subject or {}
        self._audit.record(
            AuditEvent(
                client=client,
                method=method,
                outcome=row.outcome,
                public_key=key.public_key if key is not None else None,
                account=key.name if key is not None else None,
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
        return row
