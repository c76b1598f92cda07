"""Two-person approval of dangerous admin operations, and the gate every admin call passes.

``AdminGate`` is what the key-admin core (``signer.keyadmin``) asks, once per admin call, before it
reads or changes anything: which operator's one-time code the call carries (``signer.totp``), and
whether the operation must wait for a second operator. Without a second factor (the CLI's local
operator; ``serve --dev`` on plaintext loopback; ``admin.second_factor = false``) there are no
operators, every call is its caller's alone, and nothing waits for approval.

Operations that can remove a key or change slashing history (``ApprovalKind``; the config's
``admin.require_approval`` says which) are not run when asked for: ``propose`` keeps the request in
memory as a ``PendingOperation`` (an id, what it does, who asked, until when) and the caller answers
PENDING. A second operator approves it by id: ``claim`` refuses an unknown id, an expired operation
(and forgets it), the operator who asked (SameOperatorApproval), another kind of operation, and an
operation approved already; the core re-authorizes the approving client for what the operation
needs, then ``take`` removes it, so it runs once. Both steps are audited.

Pending operations live in this process's memory only: a restart (or another replica) does not know
them, and they must be asked for again. That is safe: nothing was done before the approval.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from signer import errors
from signer.totp import OperatorCode, SecondFactor
from signer.types import AuditEvent, AuditSink, ClientIdentity, Monitor, NullAudit, NullMonitor

log = logging.getLogger(__name__)

ENDED_REMEMBERED = 1024
"""Ids of approved or expired operations remembered, to refuse a later approval by name."""

SECURITY_EVENTS: tuple[str, ...] = (
    errors.SameOperatorApproval.name,
    errors.PendingOperationExpired.name,
    errors.PendingOperationDone.name,
    errors.UnknownPendingOperation.name,
    errors.PendingKindMismatch.name,
)
"""The ``event`` values this module reports (signer_security_events_total)."""


class ApprovalKind(enum.StrEnum):
    """The operations that may need a second operator (config: ``admin.require_approval``)."""

    DELETE_KEYS = "delete_keys"
    IMPORT_KEYSTORES = "import_keystores"
    """Only an import that carries slashing-protection history."""
    IMPORT_INTERCHANGE = "import_interchange"
    IMPORT_COMETBFT_STATE = "import_cometbft_state"


@dataclass(frozen=True, slots=True)
class PendingOperation:
    """An operation waiting for approval: what the approver sees, and the request it will run."""

    id: str
    kind: ApprovalKind
    operator: str
    """Who asked."""
    client: str
    created_s: float
    expires_s: float
    public_keys: tuple[bytes, ...] = ()
    """The keys it deletes, or whose history it imports."""
    document_sha256: bytes = b""
    document_size: int = 0
    keystores: int = 0
    chain_id: str = ""
    summary: str = ""
    request: object = field(default=None, repr=False, compare=False)
    """What the core runs on approval (its own frozen request type); may hold keystore passwords,
    so it is never shown, logged or audited."""


def document_digest(document: bytes) -> bytes:
    """SHA-256 of a document, as ``sha256sum`` prints it (the approver compares it)."""
    return hashlib.sha256(document).digest()


class AdminGate:
    """The second factor and the pending operations of one signer (see the module docstring).

    ``AdminGate()``: no second factor and no approvals (the CLI, dev on plaintext loopback, or
    ``admin.second_factor = false``). ``clock`` is injectable for tests."""

    def __init__(
        self,
        second_factor: SecondFactor | None = None,
        *,
        require_approval: Sequence[ApprovalKind] = (),
        expiry_s: float = 900.0,
        max_pending: int = 16,
        clock: Callable[[], float] = time.time,
        monitor: Monitor | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        if require_approval and second_factor is None:
            raise errors.ConfigError("two-person approval needs a second factor to tell the operators apart")
        self.second_factor = second_factor
        self.require_approval = frozenset(require_approval)
        self.expiry_s = expiry_s
        self.max_pending = max_pending
        self._clock = clock
        self._monitor: Monitor = monitor or NullMonitor()
        self._audit: AuditSink = audit or NullAudit()
        self._lock = threading.Lock()
        self._pending: dict[str, PendingOperation] = {}
        self._ended: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        """id -> (approved, by which operator) for approved operations, (False, "") for expired ones."""

    # --- the second factor ------------------------------------------------------------------

    def operator(self, client: ClientIdentity, code: OperatorCode | None, *, method: str) -> str | None:
        """The operator this admin call acts for (its code checked and spent), or None without a
        second factor. Raises the named refusal."""
        if self.second_factor is None:
            return None
        return self.second_factor.verify(client, code, method=method)

    # --- pending operations -----------------------------------------------------------------

    def needs_approval(self, kind: ApprovalKind) -> bool:
        return kind in self.require_approval

    def propose(
        self,
        kind: ApprovalKind,
        client: ClientIdentity,
        operator: str | None,
        request: object,
        *,
        public_keys: Sequence[bytes] = (),
        document: bytes = b"",
        keystores: int = 0,
        chain_id: str = "",
        summary: str,
    ) -> PendingOperation:
        """Keep ``request`` until a second operator approves it or it expires."""
        if operator is None:  # pragma: no cover - the constructor rules it out
            raise errors.ConfigError("two-person approval needs a second factor to tell the operators apart")
        now = self._clock()
        with self._lock:
            self._expire(now)
            if len(self._pending) >= self.max_pending:
                soonest = min(p.expires_s for p in self._pending.values())
                raise errors.TooManyPending(
                    f"{len(self._pending)} operations are waiting for approval already (admin.max_pending); "
                    "approve them or let them expire",
                    retry_after_s=max(1.0, soonest - now),
                )
            pending = PendingOperation(
                id=secrets.token_hex(16),
                kind=kind,
                operator=operator,
                client=client.name,
                created_s=now,
                expires_s=now + self.expiry_s,
                public_keys=tuple(public_keys),
                document_sha256=document_digest(document) if document else b"",
                document_size=len(document),
                keystores=keystores,
                chain_id=chain_id,
                summary=summary,
                request=request,
            )
            self._pending[pending.id] = pending
        self._record(client, pending, operator, "pending", f"waits for a second operator: {summary}")
        log.warning(
            "admin operation waits for approval",
            extra={"approval": pending.id, "kind": kind.value, "operator": operator, "client": client.name},
        )
        return pending

    def pending(self) -> list[PendingOperation]:
        """The operations waiting now, oldest first (expired ones are forgotten)."""
        with self._lock:
            self._expire(self._clock())
            return sorted(self._pending.values(), key=lambda p: p.created_s)

    def claim(
        self, kind: ApprovalKind, pending_id: str, client: ClientIdentity, operator: str | None
    ) -> PendingOperation:
        """The pending operation ``pending_id`` if ``operator`` may approve it now (it stays pending
        until ``take``); raises the named refusal, audited."""
        try:
            return self._claim(kind, pending_id, operator)
        except errors.AdminRefusal as exc:
            self._monitor.security_event(exc.name)
            self._audit.record(
                AuditEvent(
                    client=client.name,
                    method=f"approve_{kind.value}",
                    outcome="denied",
                    operation="approval",
                    reason=exc.message,
                    operator=operator,
                    approval=pending_id or None,
                )
            )
            raise

    def _claim(self, kind: ApprovalKind, pending_id: str, operator: str | None) -> PendingOperation:
        if operator is None:
            raise errors.UnknownPendingOperation("this signer has no second factor, so nothing waits for approval")
        now = self._clock()
        with self._lock:
            pending = self._pending.get(pending_id)
            if pending is None:
                ended = self._ended.get(pending_id)
                if ended is not None and ended[0]:
                    raise errors.PendingOperationDone(
                        f"operation {pending_id} was approved by operator '{ended[1]}' and ran already; "
                        "an approval runs it once"
                    )
                if ended is not None:
                    raise errors.PendingOperationExpired(
                        f"operation {pending_id} expired unapproved and is forgotten; ask again"
                    )
                raise errors.UnknownPendingOperation(
                    f"no operation {pending_id} waits for approval (never asked for, expired, or asked for "
                    "before the signer restarted: ask again)"
                )
            if pending.expires_s <= now:
                self._expire(now)
                raise errors.PendingOperationExpired(
                    f"operation {pending_id} expired {now - pending.expires_s:.0f} s ago unapproved and is "
                    "forgotten; ask again"
                )
            if pending.kind is not kind:
                raise errors.PendingKindMismatch(
                    f"operation {pending_id} is {pending.kind.value}, not {kind.value}: approve it with its own call"
                )
            if pending.operator == operator:
                raise errors.SameOperatorApproval(
                    f"operator '{operator}' asked for operation {pending_id} and may not approve it: a second, "
                    "different operator must"
                )
            return pending

    def take(self, pending: PendingOperation, client: ClientIdentity, operator: str | None) -> None:
        """Remove ``pending`` (claimed by ``operator``) so that it runs once; PendingOperationDone if
        another approval took it meanwhile."""
        with self._lock:
            if self._pending.pop(pending.id, None) is None:
                raise errors.PendingOperationDone(f"operation {pending.id} was approved meanwhile and ran already")
            self._end(pending.id, approved_by=operator or "")
        self._record(
            client,
            pending,
            operator,
            "approved",
            f"approved; asked for by operator '{pending.operator}' through client '{pending.client}': "
            f"{pending.summary}",
        )
        log.warning(
            "admin operation approved",
            extra={
                "approval": pending.id,
                "kind": pending.kind.value,
                "asked_by": pending.operator,
                "operator": operator,
            },
        )

    def _expire(self, now: float) -> None:
        """Forget expired operations. Holds the lock."""
        for pending_id in [i for i, p in self._pending.items() if p.expires_s <= now]:
            pending = self._pending.pop(pending_id)
            self._end(pending_id, approved_by=None)
            log.warning(
                "admin operation expired unapproved", extra={"approval": pending_id, "kind": pending.kind.value}
            )

    def _end(self, pending_id: str, *, approved_by: str | None) -> None:
        """Remember how ``pending_id`` ended (None: expired). Holds the lock."""
        self._ended[pending_id] = (approved_by is not None, approved_by or "")
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    def _record(
        self, client: ClientIdentity, pending: PendingOperation, operator: str | None, outcome: str, reason: str
    ) -> None:
        self._audit.record(
            AuditEvent(
                client=client.name,
                method=pending.kind.value,
                outcome=outcome,
                operation="approval",
                reason=reason,
                operator=operator,
                approval=pending.id,
                public_key=pending.public_keys[0] if len(pending.public_keys) == 1 else None,
            )
        )
