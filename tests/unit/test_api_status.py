"""signer.api.status, the one mapping from the error tree to the wire (issue 3: ResponseState).

Dirk's ResponseState is DENIED for anything the client caused or may not do (slashable, unknown key,
locked account, bad input, a forbidden domain or another network's domain, a permission) and FAILED
for our own failures (storage, key module, internal). Every concrete error class is in the table, so
a new class without a decided mapping fails ``test_every_error_class_is_in_the_table``.
"""

from __future__ import annotations

import grpc
import pytest

from signer import errors
from signer.api import status
from signer.api._proto.signer.admin.v1 import admin_pb2

OK = admin_pb2.RESPONSE_STATUS_OK
REFUSED = admin_pb2.RESPONSE_STATUS_REFUSED
ADMIN_FAILED = admin_pb2.RESPONSE_STATUS_FAILED
C = grpc.StatusCode


def _make(cls: type[errors.SignerError]) -> errors.SignerError:
    if issubclass(cls, errors.RateLimited):
        return cls("over the rate", retry_after_s=0.25)
    return cls(f"{cls.__name__} for the test")


# class -> (gRPC code, Dirk ResponseState, admin ResponseStatus, outcome label)
TABLE: dict[type[errors.SignerError], tuple[grpc.StatusCode, int, int, str]] = {
    errors.MalformedRequest: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "invalid"),
    errors.MalformedDocument: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "invalid"),
    errors.UnknownKey: (C.NOT_FOUND, status.DENIED, REFUSED, "denied"),
    errors.UnsupportedScheme: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.KeyLocked: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.WrongNetwork: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.ForbiddenDomain: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.SigningRootMismatch: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.MalformedKeystore: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.KdfLimitExceeded: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.WrongPassword: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.AccessDenied: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.RateLimited: (C.RESOURCE_EXHAUSTED, status.FAILED, ADMIN_FAILED, "rate_limited"),
    errors.DoubleBlockProposal: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.SlotNotAboveLowerBound: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.DoubleVote: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.SurroundingVote: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.SurroundedVote: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.SourceExceedsTarget: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.SourceBelowLowerBound: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.TargetNotAboveLowerBound: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.HeightRegression: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.RoundRegression: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.StepRegression: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.ConflictingConsensusMessage: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.ProtectionNotInitialized: (C.FAILED_PRECONDITION, status.DENIED, REFUSED, "denied"),
    errors.ProtectionStoreError: (C.UNAVAILABLE, status.FAILED, ADMIN_FAILED, "unavailable"),
    errors.SchemaTooNew: (C.UNAVAILABLE, status.FAILED, ADMIN_FAILED, "unavailable"),
    errors.InterchangeError: (C.INVALID_ARGUMENT, status.FAILED, REFUSED, "failed"),
    errors.KeyModuleError: (C.UNAVAILABLE, status.FAILED, ADMIN_FAILED, "unavailable"),
    errors.WrongPin: (C.PERMISSION_DENIED, status.FAILED, ADMIN_FAILED, "unavailable"),
    errors.ModuleTampered: (C.INTERNAL, status.FAILED, ADMIN_FAILED, "unavailable"),
    errors.ConfigError: (C.INVALID_ARGUMENT, status.FAILED, REFUSED, "failed"),
    errors.WeakPin: (C.INVALID_ARGUMENT, status.FAILED, REFUSED, "failed"),  # a CLI refusal: never on the wire
    errors.InternalError: (C.INTERNAL, status.FAILED, ADMIN_FAILED, "failed"),
    errors.DataDirLocked: (C.INTERNAL, status.FAILED, ADMIN_FAILED, "failed"),  # at start only: never on the wire
    # Distributed accounts (issue 17). Threshold and session refusals are the caller's: DENIED. An
    # aborted key generation is ABORTED (its culprit in the x-dkg-culprit trailer).
    errors.InvalidParticipantId: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.DuplicateParticipantId: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.InvalidThreshold: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.InvalidPoint: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.InvalidShare: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.NotEnoughShares: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.DkgSessionConflict: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.DkgSessionNotFound: (C.INVALID_ARGUMENT, status.DENIED, REFUSED, "denied"),
    errors.DkgAborted: (C.ABORTED, status.FAILED, ADMIN_FAILED, "failed"),
    # Admin calls' second factor and two-person approval (issue 16): refusals of the caller.
    errors.AdminRefusal: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.OneTimeCodeMissing: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.SecondFactorNotConfigured: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.UnknownOperator: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.WrongOneTimeCode: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.OneTimeCodeExpired: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.OneTimeCodeReplayed: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.SameOperatorApproval: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.UnknownPendingOperation: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.PendingOperationExpired: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.PendingOperationDone: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.PendingKindMismatch: (C.PERMISSION_DENIED, status.DENIED, REFUSED, "denied"),
    errors.SecondFactorLockedOut: (C.RESOURCE_EXHAUSTED, status.FAILED, ADMIN_FAILED, "rate_limited"),
    errors.TooManyPending: (C.RESOURCE_EXHAUSTED, status.FAILED, ADMIN_FAILED, "rate_limited"),
}


def _concrete_classes(base: type[errors.SignerError]) -> set[type[errors.SignerError]]:
    found: set[type[errors.SignerError]] = set()
    for sub in base.__subclasses__():
        found |= {sub} | _concrete_classes(sub)
    return found


def test_every_error_class_is_in_the_table() -> None:
    abstract = {errors.RequestError, errors.KeystoreError, errors.NotSafeToSign, errors.ThresholdError}
    assert _concrete_classes(errors.SignerError) - abstract == set(TABLE)


@pytest.mark.parametrize("cls", list(TABLE), ids=lambda cls: cls.__name__)
def test_error_maps_to_code_state_admin_status_and_outcome(cls: type[errors.SignerError]) -> None:
    error = _make(cls)
    code, state, admin, outcome = TABLE[cls]
    assert status.grpc_code(error) == code
    assert status.response_state(error) == state
    assert status.admin_status(error) == admin
    assert status.outcome_label(error) == outcome


def test_success_is_succeeded_everywhere() -> None:
    assert status.response_state(None) == status.SUCCEEDED
    assert status.admin_status(None) == OK
    assert status.outcome_label(None) == "succeeded"


def test_a_refusal_names_its_offence_and_other_errors_their_message() -> None:
    assert status.describe(errors.SurroundingVote("surrounds 3 -> 9")) == "surrounding_vote: surrounds 3 -> 9"
    assert status.describe(errors.StepRegression("step 1 < 2")) == "step_regression: step 1 < 2"
    assert status.describe(errors.UnknownKey("no key dev/9")) == "no key dev/9"


def test_worst_outcome_of_a_batch() -> None:
    assert status.worst_outcome([]) == "succeeded"
    assert status.worst_outcome(["succeeded", "succeeded"]) == "succeeded"
    assert status.worst_outcome(["succeeded", "invalid", "denied"]) == "denied"
    assert status.worst_outcome(["denied", "rate_limited", "succeeded"]) == "rate_limited"
    assert status.worst_outcome(["rate_limited", "unavailable"]) == "unavailable"
    assert status.worst_outcome(["unavailable", "failed", "succeeded"]) == "failed"
