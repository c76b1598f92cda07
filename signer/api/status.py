"""The one mapping from the error tree to the wire: ``TABLE``, one row per ``errors.Status``.

Each error class declares its ``status`` (signer/errors.py); the row says what every front answers
for it: the gRPC status code, Dirk's ResponseState, the admin API's ResponseStatus, the outcome
label of metrics and audit, and the HTTP status of the REST front. Read a row with ``wire(error)``
(``SUCCESS`` for None). Nothing else in the code base decides what a refusal looks like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from http import HTTPStatus
from types import MappingProxyType

import grpc

from signer import errors
from signer.api._proto.signer.admin.v1 import admin_pb2
from signer.api._proto.v1 import responsestate_pb2
from signer.errors import Status
from signer.types import RequestOutcome

ResponseState = responsestate_pb2.ResponseState

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
FAILED = responsestate_pb2.FAILED

_OK = admin_pb2.RESPONSE_STATUS_OK
_REFUSED = admin_pb2.RESPONSE_STATUS_REFUSED
"""Admin: the caller can fix it (bad input, another network, an unknown key, unsafe, forbidden)."""
_FAILED = admin_pb2.RESPONSE_STATUS_FAILED
"""Admin: a backend failed (store, key module) or a bug; retrying later may succeed."""

RETRY_AFTER_KEY = "retry-after-ms"
"""The gRPC trailing metadata (and REST header) that says when a rate-limited call may retry."""


@dataclass(frozen=True, slots=True)
class Wire:
    """What one kind of answer looks like on every front."""

    code: grpc.StatusCode
    state: responsestate_pb2.ResponseState
    """Dirk: DENIED for what the client caused or may not do, FAILED for our own failures."""
    admin: admin_pb2.ResponseStatus
    outcome: RequestOutcome
    http: HTTPStatus


C = grpc.StatusCode
H = HTTPStatus
SUCCESS = Wire(C.OK, SUCCEEDED, _OK, RequestOutcome.SUCCEEDED, H.OK)

TABLE: MappingProxyType[Status, Wire] = MappingProxyType(
    {
        Status.MALFORMED: Wire(C.INVALID_ARGUMENT, DENIED, _REFUSED, RequestOutcome.INVALID, H.BAD_REQUEST),
        Status.REQUEST_REFUSED: Wire(C.INVALID_ARGUMENT, DENIED, _REFUSED, RequestOutcome.DENIED, H.BAD_REQUEST),
        Status.UNKNOWN_KEY: Wire(C.NOT_FOUND, DENIED, _REFUSED, RequestOutcome.DENIED, H.NOT_FOUND),
        Status.KEY_LOCKED: Wire(C.FAILED_PRECONDITION, DENIED, _REFUSED, RequestOutcome.DENIED, H.PRECONDITION_FAILED),
        Status.ACCESS_DENIED: Wire(C.PERMISSION_DENIED, DENIED, _REFUSED, RequestOutcome.DENIED, H.FORBIDDEN),
        Status.UNAUTHENTICATED: Wire(C.UNAUTHENTICATED, DENIED, _REFUSED, RequestOutcome.DENIED, H.UNAUTHORIZED),
        Status.RATE_LIMITED: Wire(
            C.RESOURCE_EXHAUSTED, FAILED, _FAILED, RequestOutcome.RATE_LIMITED, H.TOO_MANY_REQUESTS
        ),
        Status.NOT_SAFE: Wire(C.FAILED_PRECONDITION, DENIED, _REFUSED, RequestOutcome.DENIED, H.PRECONDITION_FAILED),
        Status.DOCUMENT_REFUSED: Wire(C.INVALID_ARGUMENT, FAILED, _REFUSED, RequestOutcome.FAILED, H.BAD_REQUEST),
        Status.STORE_UNAVAILABLE: Wire(
            C.UNAVAILABLE, FAILED, _FAILED, RequestOutcome.UNAVAILABLE, H.SERVICE_UNAVAILABLE
        ),
        Status.MODULE_UNAVAILABLE: Wire(
            C.UNAVAILABLE, FAILED, _FAILED, RequestOutcome.UNAVAILABLE, H.SERVICE_UNAVAILABLE
        ),
        Status.MODULE_PIN: Wire(
            C.PERMISSION_DENIED, FAILED, _FAILED, RequestOutcome.UNAVAILABLE, H.SERVICE_UNAVAILABLE
        ),
        Status.MODULE_TAMPERED: Wire(C.INTERNAL, FAILED, _FAILED, RequestOutcome.UNAVAILABLE, H.INTERNAL_SERVER_ERROR),
        Status.DKG_ABORTED: Wire(C.ABORTED, FAILED, _FAILED, RequestOutcome.FAILED, H.CONFLICT),
        Status.INTERNAL: Wire(C.INTERNAL, FAILED, _FAILED, RequestOutcome.FAILED, H.INTERNAL_SERVER_ERROR),
    }
)

CULPRIT_KEY = "x-dkg-culprit"
"""Trailing metadata of an ABORTED DKG call: the participant id at fault, when known."""


def wire(error: errors.SignerError | None) -> Wire:
    """The row for ``error`` (``SUCCESS`` for None)."""
    return SUCCESS if error is None else TABLE[error.status]


def grpc_code(error: errors.SignerError) -> grpc.StatusCode:
    return TABLE[error.status].code


def response_state(error: errors.SignerError | None) -> responsestate_pb2.ResponseState:
    return wire(error).state


def admin_status(error: errors.SignerError | None) -> admin_pb2.ResponseStatus:
    return wire(error).admin


def outcome_label(error: errors.SignerError | None) -> RequestOutcome:
    return wire(error).outcome


def http_status(error: errors.SignerError | None) -> HTTPStatus:
    return wire(error).http


SEVERITY: MappingProxyType[str, int] = MappingProxyType(
    {
        RequestOutcome.SUCCEEDED: 0,
        RequestOutcome.INVALID: 1,
        RequestOutcome.DENIED: 2,
        RequestOutcome.RATE_LIMITED: 3,
        RequestOutcome.UNAVAILABLE: 4,
        RequestOutcome.FAILED: 5,
    }
)
"""How bad each outcome label is: a batch call's label is its worst item's
(``max(labels, key=SEVERITY.__getitem__)``)."""


def worst_outcome(outcomes: list[RequestOutcome]) -> RequestOutcome:
    """The outcome label of a batch call: succeeded only if every item succeeded."""
    return max(outcomes, key=SEVERITY.__getitem__, default=RequestOutcome.SUCCEEDED)


def retry_after_header(error: errors.RateLimited) -> str:
    """HTTP ``Retry-After`` of a rate-limit refusal on the REST front: whole seconds, rounded up, at
    least 1 (the header has no finer unit)."""
    return str(max(1, math.ceil(error.retry_after_s)))


def retry_after_ms(error: errors.RateLimited) -> int:
    """When a rate-limited call may retry, in whole milliseconds (rounded up, at least 1)."""
    return max(1, math.ceil(error.retry_after_s * 1000.0))


def describe(error: errors.SignerError) -> str:
    """The message a client sees: the class of refusal and why, never secret material."""
    if isinstance(error, errors.NotSafeToSign):
        return f"{error.offence}: {error.message}"
    return error.message


def abort(context: grpc.ServicerContext, error: errors.SignerError) -> None:
    """End the call with the status of ``error`` (raises, as grpc's abort does)."""
    if isinstance(error, errors.RateLimited):
        context.set_trailing_metadata(((RETRY_AFTER_KEY, str(retry_after_ms(error))),))
    if isinstance(error, errors.DkgAborted) and error.culprit is not None:
        context.set_trailing_metadata(((CULPRIT_KEY, str(error.culprit)),))
    context.abort(grpc_code(error), describe(error))
