"""signer.api.status: the one error -> wire table (gRPC code, Dirk ResponseState, admin status,
outcome label, HTTP status), one row per ``errors.Status``; each error class declares its status.

Exhaustiveness: every concrete error class (and every ``Status``) has a row, so a new class gets a
wire answer decided where it is declared. The rules below pin what the fronts rely on (Dirk's
DENIED for the caller's refusals, FAILED for ours; the REST front's HTTP statuses).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import cast

import grpc
import pytest

from signer import errors
from signer.api import status
from signer.api._proto.signer.admin.v1 import admin_pb2
from signer.errors import Status
from signer.types import RequestOutcome

C = grpc.StatusCode
ABSTRACT = {errors.RequestError, errors.KeystoreError, errors.NotSafeToSign, errors.ThresholdError}


def _concrete_classes(base: type[errors.SignerError]) -> set[type[errors.SignerError]]:
    found: set[type[errors.SignerError]] = set()
    for sub in base.__subclasses__():
        found |= {sub} | _concrete_classes(sub)
    return found - ABSTRACT


CLASSES = sorted(_concrete_classes(errors.SignerError), key=lambda cls: cls.__name__)


def _make(cls: type[errors.SignerError]) -> errors.SignerError:
    if issubclass(cls, errors.RateLimited):
        return cls("over the rate", retry_after_s=0.25)
    return cls(f"{cls.__name__} for the test")


def test_every_status_has_one_row() -> None:
    assert set(status.TABLE) == set(Status)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_class_declares_a_status_with_a_row(cls: type[errors.SignerError]) -> None:
    error = _make(cls)
    assert isinstance(cls.status, Status)
    assert status.wire(error) is status.TABLE[cls.status]


def _rows(base: type[errors.SignerError]) -> list[type[errors.SignerError]]:
    return [cls for cls in CLASSES if issubclass(cls, base)]


@pytest.mark.parametrize("cls", _rows(errors.NotSafeToSign), ids=lambda cls: cls.__name__)
def test_a_slashing_refusal_is_denied_precondition_failed_412(cls: type[errors.SignerError]) -> None:
    row = status.wire(_make(cls))
    assert (row.code, row.state, row.admin, row.outcome, row.http) == (
        C.FAILED_PRECONDITION,
        status.DENIED,
        admin_pb2.RESPONSE_STATUS_REFUSED,
        RequestOutcome.DENIED,
        HTTPStatus.PRECONDITION_FAILED,
    )


@pytest.mark.parametrize(
    "cls", [c for c in _rows(errors.AccessDenied) if c is not errors.BearerTokenMissing], ids=lambda cls: cls.__name__
)
def test_access_denied_and_admin_refusals_are_permission_denied_403(cls: type[errors.SignerError]) -> None:
    row = status.wire(_make(cls))
    assert (row.code, row.state, row.outcome, row.http) == (
        C.PERMISSION_DENIED,
        status.DENIED,
        RequestOutcome.DENIED,
        HTTPStatus.FORBIDDEN,
    )


def test_a_missing_keymanager_token_is_unauthenticated_401_and_a_wrong_one_403() -> None:
    missing = status.wire(errors.BearerTokenMissing("no bearer token"))
    assert (missing.code, missing.state, missing.admin, missing.outcome, missing.http) == (
        C.UNAUTHENTICATED,
        status.DENIED,
        admin_pb2.RESPONSE_STATUS_REFUSED,
        RequestOutcome.DENIED,
        HTTPStatus.UNAUTHORIZED,
    )
    assert status.http_status(errors.BearerTokenWrong("wrong bearer token")) == HTTPStatus.FORBIDDEN


@pytest.mark.parametrize("cls", _rows(errors.RateLimited), ids=lambda cls: cls.__name__)
def test_rate_limits_are_resource_exhausted_429_with_a_retry_after(cls: type[errors.SignerError]) -> None:
    error = _make(cls)
    row = status.wire(error)
    assert (row.code, row.state, row.outcome, row.http) == (
        C.RESOURCE_EXHAUSTED,
        status.FAILED,
        RequestOutcome.RATE_LIMITED,
        HTTPStatus.TOO_MANY_REQUESTS,
    )
    assert isinstance(error, errors.RateLimited) and status.retry_after_ms(error) == 250


@pytest.mark.parametrize("cls", _rows(errors.MalformedRequest), ids=lambda cls: cls.__name__)
def test_malformed_requests_are_invalid_400(cls: type[errors.SignerError]) -> None:
    row = status.wire(_make(cls))
    assert (row.code, row.state, row.outcome, row.http) == (
        C.INVALID_ARGUMENT,
        status.DENIED,
        RequestOutcome.INVALID,
        HTTPStatus.BAD_REQUEST,
    )


@pytest.mark.parametrize(
    ("cls", "code", "http"),
    [
        (errors.WrongNetwork, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
        (errors.SigningRootMismatch, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
        (errors.ForbiddenDomain, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
        (errors.PartialSignatureOnly, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
        (errors.UnsupportedScheme, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
        (errors.UnknownKey, C.NOT_FOUND, HTTPStatus.NOT_FOUND),
        (errors.KeyLocked, C.FAILED_PRECONDITION, HTTPStatus.PRECONDITION_FAILED),
        (errors.WrongPassword, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
        (errors.InvalidShare, C.INVALID_ARGUMENT, HTTPStatus.BAD_REQUEST),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_the_callers_refusals_are_denied(cls: type[errors.SignerError], code: grpc.StatusCode, http: int) -> None:
    row = status.wire(_make(cls))
    assert (row.code, row.state, row.admin, row.outcome, row.http) == (
        code,
        status.DENIED,
        admin_pb2.RESPONSE_STATUS_REFUSED,
        RequestOutcome.DENIED,
        http,
    )


@pytest.mark.parametrize(
    ("cls", "code", "admin", "outcome", "http"),
    [
        (errors.ProtectionStoreError, C.UNAVAILABLE, "failed", "unavailable", 503),
        (errors.SchemaTooNew, C.UNAVAILABLE, "failed", "unavailable", 503),
        (errors.KeyModuleError, C.UNAVAILABLE, "failed", "unavailable", 503),
        (errors.DuplicateKey, C.UNAVAILABLE, "failed", "unavailable", 503),
        (errors.WrongPin, C.PERMISSION_DENIED, "failed", "unavailable", 503),
        (errors.ModuleTampered, C.INTERNAL, "failed", "unavailable", 500),
        (errors.InterchangeError, C.INVALID_ARGUMENT, "refused", "failed", 400),
        (errors.ConfigError, C.INVALID_ARGUMENT, "refused", "failed", 400),
        (errors.WeakPin, C.INVALID_ARGUMENT, "refused", "failed", 400),
        (errors.InternalError, C.INTERNAL, "failed", "failed", 500),
        (errors.DataDirLocked, C.INTERNAL, "failed", "failed", 500),
        (errors.DkgAborted, C.ABORTED, "failed", "failed", 409),  # its culprit in the x-dkg-culprit trailer
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_our_own_failures_are_failed(
    cls: type[errors.SignerError], code: grpc.StatusCode, admin: str, outcome: str, http: int
) -> None:
    admin_codes = {"failed": admin_pb2.RESPONSE_STATUS_FAILED, "refused": admin_pb2.RESPONSE_STATUS_REFUSED}
    row = status.wire(_make(cls))
    assert (row.code, row.state, row.admin, row.outcome, row.http) == (
        code,
        status.FAILED,
        admin_codes[admin],
        outcome,
        http,
    )


def test_success_is_succeeded_everywhere() -> None:
    assert status.response_state(None) == status.SUCCEEDED
    assert status.admin_status(None) == admin_pb2.RESPONSE_STATUS_OK
    assert status.outcome_label(None) == "succeeded"
    assert status.http_status(None) == HTTPStatus.OK


def test_a_refusal_names_its_offence_and_other_errors_their_message() -> None:
    assert status.describe(errors.SurroundingVote("surrounds 3 -> 9")) == "surrounding_vote: surrounds 3 -> 9"
    assert status.describe(errors.StepRegression("step 1 < 2")) == "step_regression: step 1 < 2"
    assert status.describe(errors.UnknownKey("no key dev/9")) == "no key dev/9"


def test_retry_after_is_whole_milliseconds_rounded_up_and_at_least_one() -> None:
    assert status.retry_after_ms(errors.RateLimited("x", retry_after_s=0.0)) == 1
    assert status.retry_after_ms(errors.RateLimited("x", retry_after_s=0.0101)) == 11
    assert status.retry_after_ms(errors.RateLimited("x", retry_after_s=1.0)) == 1000


def test_worst_outcome_of_a_batch() -> None:
    o = RequestOutcome
    assert status.worst_outcome([]) == "succeeded"
    assert status.worst_outcome([o.SUCCEEDED, o.SUCCEEDED]) == "succeeded"
    assert status.worst_outcome([o.SUCCEEDED, o.INVALID, o.DENIED]) == "denied"
    assert status.worst_outcome([o.DENIED, o.RATE_LIMITED, o.SUCCEEDED]) == "rate_limited"
    assert status.worst_outcome([o.RATE_LIMITED, o.UNAVAILABLE]) == "unavailable"
    assert status.worst_outcome([o.UNAVAILABLE, o.FAILED, o.SUCCEEDED]) == "failed"


def test_every_outcome_label_has_a_severity_and_success_is_the_least() -> None:
    assert set(status.SEVERITY) == set(RequestOutcome)
    assert min(status.SEVERITY, key=status.SEVERITY.__getitem__) == RequestOutcome.SUCCEEDED
    assert len(set(status.SEVERITY.values())) == len(status.SEVERITY)


def test_web3signer_statuses_for_the_refusals_clients_see() -> None:
    """The REST front's answers as the Web3Signer API defines them."""
    assert status.http_status(errors.MalformedRequest("x")) == 400
    assert status.http_status(errors.SigningRootMismatch("x")) == 400
    assert status.http_status(errors.WrongNetwork("x")) == 400
    assert status.http_status(errors.UnknownKey("x")) == 404
    assert status.http_status(errors.AccessDenied("x")) == 403
    assert status.http_status(errors.DoubleVote("x")) == 412
    assert status.http_status(errors.DoubleBlockProposal("x")) == 412
    assert status.http_status(errors.RateLimited("x", retry_after_s=0.2)) == 429
    assert status.http_status(errors.ProtectionStoreError("x")) == 503
    assert status.http_status(errors.KeyModuleError("x")) == 503
    assert status.http_status(errors.InternalError("x")) == 500


def test_http_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert status.retry_after_header(errors.RateLimited("x", retry_after_s=0.001)) == "1"
    assert status.retry_after_header(errors.RateLimited("x", retry_after_s=1.2)) == "2"
    assert status.retry_after_header(errors.RateLimited("x", retry_after_s=0.0)) == "1"


class _Ended(Exception):
    pass


class _Context:
    """What ``status.abort`` uses of a grpc.ServicerContext: the trailers it sets and how it ends."""

    def __init__(self) -> None:
        self.trailing: list[tuple[str, str]] = []
        self.ended: tuple[grpc.StatusCode, str] | None = None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing.extend(metadata)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.ended = (code, details)
        raise _Ended


@pytest.mark.parametrize(("culprit", "trailing"), [(3, [(status.CULPRIT_KEY, "3")]), (None, [])])
def test_an_aborted_dkg_ends_aborted_naming_its_culprit_when_known(
    culprit: int | None, trailing: list[tuple[str, str]]
) -> None:
    context = _Context()
    with pytest.raises(_Ended):
        status.abort(cast(grpc.ServicerContext, context), errors.DkgAborted("participant 3 cheated", culprit=culprit))
    assert context.ended == (C.ABORTED, "participant 3 cheated")
    assert context.trailing == trailing
