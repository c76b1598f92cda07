"""The one mapping from the error tree to gRPC status codes, HTTP statuses (the REST front) and the
Dirk API's ResponseState.

Nothing else in the code base decides what a refusal looks like on the wire.
"""

from __future__ import annotations

import math

import grpc

from signer import errors
from signer.api._proto.signer.admin.v1 import admin_pb2
from signer.api._proto.v1 import responsestate_pb2

ResponseState = responsestate_pb2.ResponseState

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
FAILED = responsestate_pb2.FAILED

# Outcome label values (signer_requests_total{outcome}); a closed set.
OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_DENIED = "denied"
OUTCOME_FAILED = "failed"
OUTCOME_RATE_LIMITED = "rate_limited"
OUTCOME_INVALID = "invalid"
OUTCOME_UNAVAILABLE = "unavailable"

_CODES: tuple[tuple[type[errors.SignerError], grpc.StatusCode, int], ...] = (
    # error class (first match wins)   gRPC status when a call fails      HTTP status (REST front)
    (errors.UnknownKey, grpc.StatusCode.NOT_FOUND, 404),
    (errors.KeyLocked, grpc.StatusCode.FAILED_PRECONDITION, 403),
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.InterchangeError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.ConfigError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.BearerTokenMissing, grpc.StatusCode.UNAUTHENTICATED, 401),
    (errors.AccessDenied, grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.NotSafeToSign, grpc.StatusCode.FAILED_PRECONDITION, 412),
    (errors.ProtectionStoreError, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.WrongPin, grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.ModuleTampered, grpc.StatusCode.INTERNAL, 500),
    (errors.KeyModuleError, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.InternalError, grpc.StatusCode.INTERNAL, 500),
)
"""The one error -> wire table: gRPC status and HTTP status side by side (Web3Signer's API: 400
malformed, 404 unknown key, 412 slashing protection, 429 rate limited, 503 store or module
unavailable, 500 only for a bug)."""


def grpc_code(error: errors.SignerError) -> grpc.StatusCode:
    for cls, code, _http in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def http_status(error: errors.SignerError) -> int:
    """The HTTP status of a refusal on the REST front (same table as ``grpc_code``)."""
    for cls, _code, http in _CODES:
        if isinstance(error, cls):
            return http
    return 500


def retry_after_header(error: errors.RateLimited) -> str:
    """HTTP ``Retry-After`` (whole seconds, at least 1) of a rate-limit refusal."""
    return str(max(1, math.ceil(error.retry_after_s)))


def response_state(error: errors.SignerError | None) -> responsestate_pb2.ResponseState:
    """Dirk's ResponseState: DENIED for anything the client caused or may not do (slashable, unknown
    or locked key, bad input, forbidden domain, permission); FAILED for our own failures."""
    if error is None:
        return SUCCEEDED
    if isinstance(error, errors.RequestError | errors.NotSafeToSign | errors.AccessDenied):
        return DENIED
    return FAILED


def admin_status(error: errors.SignerError | None) -> admin_pb2.ResponseStatus:
    """The admin API's ResponseStatus: REFUSED for what the caller can fix (bad input, a document
    for another network, an unknown key, an unsafe or forbidden request); FAILED for a backend that
    failed (protection store, key module) or a bug, where retrying later may succeed."""
    if error is None:
        return admin_pb2.RESPONSE_STATUS_OK
    if isinstance(
        error,
        errors.RequestError | errors.InterchangeError | errors.ConfigError | errors.NotSafeToSign | errors.AccessDenied,
    ):
        return admin_pb2.RESPONSE_STATUS_REFUSED
    return admin_pb2.RESPONSE_STATUS_FAILED


def outcome_label(error: errors.SignerError | None) -> str:
    if error is None:
        return OUTCOME_SUCCEEDED
    if isinstance(error, errors.RateLimited):
        return OUTCOME_RATE_LIMITED
    if isinstance(error, errors.MalformedRequest):
        return OUTCOME_INVALID
    if isinstance(error, errors.RequestError | errors.NotSafeToSign | errors.AccessDenied):
        return OUTCOME_DENIED
    if isinstance(error, errors.ProtectionStoreError | errors.KeyModuleError):
        return OUTCOME_UNAVAILABLE
    return OUTCOME_FAILED


def worst_outcome(outcomes: list[str]) -> str:
    """The outcome label of a batch call: succeeded only if every item succeeded."""
    order = (
        OUTCOME_FAILED,
        OUTCOME_UNAVAILABLE,
        OUTCOME_RATE_LIMITED,
        OUTCOME_DENIED,
        OUTCOME_INVALID,
        OUTCOME_SUCCEEDED,
    )
    for label in order:
        if label in outcomes:
            return label
    return OUTCOME_SUCCEEDED


def describe(error: errors.SignerError) -> str:
    """The message a client sees: the class of refusal and why, never secret material."""
    if isinstance(error, errors.NotSafeToSign):
        return f"{error.offence}: {error.message}"
    return error.message


def abort(context: grpc.ServicerContext, error: errors.SignerError) -> None:
    """End the call with the status of ``error`` (raises, as grpc's abort does)."""
    if isinstance(error, errors.RateLimited):
        context.set_trailing_metadata((("retry-after-ms", str(max(1, round(error.retry_after_s * 1000)))),))
    context.abort(grpc_code(error), describe(error))
