"""The admin calls' second factor (signer.totp) with an injected clock: the RFC 6238 window, the
single use of a code, the names of its refusals, the lockout after failures, what is counted and
audited. The codes are computed independently (hmac over the RFC 4226 dynamic truncation), and
checked against the RFC 6238 appendix B vectors first."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from collections.abc import Mapping

import pytest

from signer import errors
from signer.totp import (
    STEP_S,
    FailurePolicy,
    OperatorCode,
    SecondFactor,
    check_secret,
    code_at,
    new_secret,
    provisioning_uri,
)
from signer.types import ClientIdentity
from tests.fakes import FakeClock, RecordingAudit, RecordingMonitor

ADMIN = ClientIdentity("admin-1")
OTHER_CLIENT = ClientIdentity("admin-2")
NOBODY = ClientIdentity("vc-1")
ALICE = base64.b32encode(b"alice's secret 20 bytes!"[:20]).decode()
BOB = base64.b32encode(b"bob's secret, 20 byte"[:20]).decode()
T0 = 1_800_000_000.0 - (1_800_000_000.0 % STEP_S) + 1.0
"""One second into a step."""


def reference_code(secret_b32: str, when: float, digits: int = 6) -> str:
    """RFC 4226 HOTP of the RFC 6238 time counter (SHA-1), written from the RFCs."""
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(when // STEP_S)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def test_reference_code_matches_the_rfc_6238_vectors() -> None:
    """RFC 6238 appendix B, SHA-1 rows (8 digits): the reference used by every test below."""
    seed = base64.b32encode(b"12345678901234567890").decode()
    for when, expected in (
        (59, "94287082"),
        (1111111109, "07081804"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
    ):
        assert reference_code(seed, when, digits=8) == expected


def test_code_at_agrees_with_the_reference() -> None:
    for when in (T0, T0 + 29, T0 + 30, T0 + 10_000):
        assert code_at(ALICE, when) == reference_code(ALICE, when)


OPERATORS: dict[str, Mapping[str, str]] = {"admin-1": {"alice": ALICE, "bob": BOB}, "admin-2": {"alice": ALICE}}


def _factor(
    clock: FakeClock, monitor: RecordingMonitor | None = None, audit: RecordingAudit | None = None, **policy: float
) -> SecondFactor:
    return SecondFactor(
        lambda client: OPERATORS.get(client.name),
        policy=FailurePolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        monitor=monitor,
        audit=audit,
    )


def test_the_current_code_is_accepted_and_names_the_operator() -> None:
    clock = FakeClock(T0)
    factor = _factor(clock)
    assert factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0)), method="m") == "alice"
    assert factor.verify(ADMIN, OperatorCode("bob", reference_code(BOB, T0)), method="m") == "bob"


@pytest.mark.parametrize("skew_steps", [-1, 1])
def test_a_code_one_step_either_side_is_accepted(skew_steps: int) -> None:
    factor = _factor(FakeClock(T0))
    code = reference_code(ALICE, T0 + skew_steps * STEP_S)
    assert factor.verify(ADMIN, OperatorCode("alice", code), method="m") == "alice"


def test_a_code_two_steps_ahead_is_wrong() -> None:
    factor = _factor(FakeClock(T0))
    with pytest.raises(errors.WrongOneTimeCode, match=r"^otp_wrong: "):
        factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0 + 2 * STEP_S)), method="m")


@pytest.mark.parametrize("steps_back", [2, 5, 10])
def test_an_older_code_is_expired(steps_back: int) -> None:
    factor = _factor(FakeClock(T0))
    with pytest.raises(errors.OneTimeCodeExpired, match=f"^otp_expired: .* from {steps_back * STEP_S} s ago"):
        factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0 - steps_back * STEP_S)), method="m")


def test_a_code_is_accepted_once_and_an_earlier_one_after_it_never() -> None:
    clock = FakeClock(T0)
    factor = _factor(clock)
    now = OperatorCode("alice", reference_code(ALICE, T0))
    factor.verify(ADMIN, now, method="m")
    with pytest.raises(errors.OneTimeCodeReplayed, match=r"^otp_replayed: "):
        factor.verify(ADMIN, now, method="m")
    with pytest.raises(errors.OneTimeCodeReplayed):  # through another client: one person, one code
        factor.verify(OTHER_CLIENT, now, method="m")
    with pytest.raises(errors.OneTimeCodeReplayed):  # the previous step's code is still in the window
        factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0 - STEP_S)), method="m")
    # Still refused while it stays in the window: the step is remembered, not the code's age.
    clock.now = T0 + STEP_S - 2
    with pytest.raises(errors.OneTimeCodeReplayed):
        factor.verify(ADMIN, now, method="m")
    clock.now = T0 + STEP_S
    assert factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, clock.now)), method="m") == "alice"
    # Bob's codes are his own: Alice's use spent none of them.
    assert factor.verify(ADMIN, OperatorCode("bob", reference_code(BOB, T0)), method="m") == "bob"


def test_a_future_code_spends_every_step_up_to_it() -> None:
    factor = _factor(FakeClock(T0))
    factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0 + STEP_S)), method="m")
    with pytest.raises(errors.OneTimeCodeReplayed):
        factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0)), method="m")


@pytest.mark.parametrize(
    ("presented", "refusal"),
    [
        (None, errors.OneTimeCodeMissing),
        (OperatorCode("alice", ""), errors.OneTimeCodeMissing),
        (OperatorCode("", "123456"), errors.OneTimeCodeMissing),
        (OperatorCode("mallory", "123456"), errors.UnknownOperator),
        (OperatorCode("alice", "12345"), errors.WrongOneTimeCode),
        (OperatorCode("alice", "12345a"), errors.WrongOneTimeCode),
    ],
    ids=["no-metadata", "no-code", "no-operator", "unknown-operator", "short-code", "not-digits"],
)
def test_refusals_are_named(presented: OperatorCode | None, refusal: type[errors.AdminRefusal]) -> None:
    with pytest.raises(refusal, match=f"^{refusal.name}: "):
        _factor(FakeClock(T0)).verify(ADMIN, presented, method="m")


def test_an_operator_acts_only_through_the_clients_that_list_it() -> None:
    factor = _factor(FakeClock(T0))
    with pytest.raises(errors.UnknownOperator):
        factor.verify(OTHER_CLIENT, OperatorCode("bob", reference_code(BOB, T0)), method="m")
    with pytest.raises(errors.SecondFactorNotConfigured, match="client 'vc-1' has no operators"):
        factor.verify(NOBODY, OperatorCode("bob", reference_code(BOB, T0)), method="m")


def test_failures_lock_the_operator_and_client_out_and_then_even_a_right_code_is_refused() -> None:
    clock = FakeClock(T0)
    monitor = RecordingMonitor()
    factor = _factor(clock, monitor, max_failures=3, lockout_s=60.0)
    right = OperatorCode("alice", reference_code(ALICE, T0))
    for _ in range(3):
        with pytest.raises(errors.WrongOneTimeCode):
            factor.verify(ADMIN, OperatorCode("alice", "000000" if right.code != "000000" else "111111"), method="m")
    with pytest.raises(errors.SecondFactorLockedOut, match=r"^otp_locked_out: ") as locked:
        factor.verify(ADMIN, right, method="m")
    assert 59.0 <= locked.value.retry_after_s <= 60.0
    # Per client and operator: Alice through another client, and Bob here, are not locked.
    assert factor.verify(OTHER_CLIENT, right, method="m") == "alice"
    assert factor.verify(ADMIN, OperatorCode("bob", reference_code(BOB, T0)), method="m") == "bob"
    clock.now = T0 + 61
    assert factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, clock.now)), method="m") == "alice"
    assert monitor.events == ["otp_wrong"] * 3 + ["otp_locked_out"]


def test_a_right_code_clears_the_failure_count() -> None:
    clock = FakeClock(T0)
    factor = _factor(clock, max_failures=2, lockout_s=60.0)
    with pytest.raises(errors.WrongOneTimeCode):
        factor.verify(
            ADMIN, OperatorCode("alice", "999999" if reference_code(ALICE, T0) != "999999" else "1"), method="m"
        )
    factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0)), method="m")
    clock.now = T0 + STEP_S
    with pytest.raises(errors.OneTimeCodeReplayed):  # one failure again, not the second in a row
        factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0)), method="m")
    assert factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, clock.now)), method="m") == "alice"


def test_unknown_operator_names_share_one_count_so_rotating_names_does_not_dodge_the_lockout() -> None:
    factor = _factor(FakeClock(T0), max_failures=2, lockout_s=60.0)
    for name in ("eve-1", "eve-2"):
        with pytest.raises(errors.UnknownOperator):
            factor.verify(ADMIN, OperatorCode(name, "123456"), method="m")
    with pytest.raises(errors.SecondFactorLockedOut):
        factor.verify(ADMIN, OperatorCode("eve-3", "123456"), method="m")


def test_a_missing_code_is_refused_but_not_counted_towards_a_lockout() -> None:
    factor = _factor(FakeClock(T0), max_failures=1, lockout_s=60.0)
    for _ in range(3):
        with pytest.raises(errors.OneTimeCodeMissing):
            factor.verify(ADMIN, None, method="m")
    assert factor.verify(ADMIN, OperatorCode("alice", reference_code(ALICE, T0)), method="m") == "alice"


def test_every_refusal_is_counted_and_audited_without_the_code() -> None:
    monitor, audit = RecordingMonitor(), RecordingAudit()
    factor = _factor(FakeClock(T0), monitor, audit)
    code = reference_code(ALICE, T0 - 3 * STEP_S)
    with pytest.raises(errors.OneTimeCodeExpired):
        factor.verify(ADMIN, OperatorCode("alice", code), method="delete_keys")
    assert monitor.events == ["otp_expired"]
    (event,) = audit.events
    assert (event.client, event.method, event.outcome, event.operation, event.operator) == (
        "admin-1",
        "delete_keys",
        "denied",
        "second_factor",
        "alice",
    )
    assert event.reason is not None and event.reason.startswith("otp_expired: ")
    assert code not in repr(event)


def test_secrets_are_checked_and_never_echoed() -> None:
    assert len(check_secret(new_secret())) == 20
    with pytest.raises(errors.ConfigError, match="base32") as bad:
        check_secret("not base32 at all!")
    assert "not base32" not in bad.value.message
    with pytest.raises(errors.ConfigError, match="at least 128 bits"):
        check_secret(base64.b32encode(b"short").decode())


def test_the_provisioning_uri_is_a_standard_totp_uri() -> None:
    uri = provisioning_uri("alice@ops", ALICE)
    assert uri.startswith("otpauth://totp/validator-signer:alice%40ops?") or uri.startswith(
        "otpauth://totp/validator-signer:alice@ops?"
    )
    assert f"secret={ALICE}" in uri
    assert "issuer=validator-signer" in uri


def test_a_claimed_operator_name_is_cut_short_in_refusals_and_audit_lines() -> None:
    audit = RecordingAudit()
    factor = _factor(FakeClock(T0), audit=audit)
    with pytest.raises(errors.UnknownOperator) as refused:
        factor.verify(ADMIN, OperatorCode("x" * 5000, "123456"), method="m")
    assert "x" * 64 in refused.value.message and "x" * 65 not in refused.value.message
    assert audit.events[0].operator == "x" * 64
