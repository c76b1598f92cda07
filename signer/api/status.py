"""The one mapping from the error tree to gRPC status codes and to the Dirk API's ResponseState.

Nothing else in the code base decides what a refusal looks like on the wire.
"""

from __future__ import annotations

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

_CODES: tuple[tuple[type[errors.SignerError], grpc.StatusCode], ...] = (
    (errors.UnknownKey, grpc.StatusCode.NOT_FOUND),
    (errors.KeyLocked, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InterchangeError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.AccessDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.NotSafeToSign, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ProtectionStoreError, grpc.StatusCode.UNAVAILABLE),
    (errors.WrongPin, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ModuleTampered, grpc.StatusCode.INTERNAL),
    (errors.KeyModuleError, grpc.StatusCode.UNAVAILABLE),
    (errors.DkgAborted, grpc.StatusCode.ABORTED),
    (errors.InternalError, grpc.StatusCode.INTERNAL),
)

CULPRIT_KEY = "x-dkg-culprit"
"""Trailing metadata of an ABORTED DKG call: the participant id at fault, when known."""


def grpc_code(error: errors.SignerError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


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
    if isinstance(error, errors.DkgAborted) and error.culprit is not None:
        context.set_trailing_metadata(((CULPRIT_KEY, str(error.culprit)),))
    context.abort(grpc_code(error), describe(error))
