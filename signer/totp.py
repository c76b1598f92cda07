"""The second factor of admin calls: an operator's one-time code (TOTP, RFC 6238; pyotp stays here).

Every admin call names an operator of the calling client's ``[[clients]]`` entry and carries its
current code (6 digits, 30-second steps, HMAC-SHA-1: what authenticator apps show). ``SecondFactor``
decides, in this order, and every refusal names itself (``signer.errors.AdminRefusal``):

* no operator or no code: OneTimeCodeMissing (not a guess, so not counted towards a lockout);
* the client has no operators: SecondFactorNotConfigured; an operator it does not list:
  UnknownOperator;
* the pair (client, operator) locked out: SecondFactorLockedOut (RateLimited), code unchecked;
* the code of the current step or one step either side (clock skew) is accepted once: a code of a
  step at or before the last one this operator used is OneTimeCodeReplayed (RFC 6238 section 5.2;
  one remembered step per operator, no growing cache); a code of an older step, up to
  ``EXPIRED_LOOKBACK_STEPS`` back, is OneTimeCodeExpired; anything else is WrongOneTimeCode.

Failures (unknown operator, wrong, expired, replayed) count per (client, operator): after
``max_failures`` in a row the pair is locked out for ``lockout_s``; an accepted code clears the count.
Every refusal is counted (``Monitor.security_event`` with the refusal's name) and audited. What is
remembered lives in memory: a restart forgets the lockouts and the last used steps (a code used in
the last minute before a restart could be used once more after it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import pyotp

from signer import errors
from signer.types import AuditEvent, AuditSink, ClientIdentity, Monitor, NullAudit, NullMonitor

log = logging.getLogger(__name__)

STEP_S = 30
"""RFC 6238's default time step, the only one common authenticator apps honour."""
DIGITS = 6
SKEW_STEPS = 1
"""Steps accepted either side of the server's current one."""
EXPIRED_LOOKBACK_STEPS = 10
"""How far back a code is still recognised as the operator's, to say "expired" instead of "wrong"."""
MIN_SECRET_BYTES = 16
"""RFC 4226 section 4: a shared secret of at least 128 bits (``new_secret`` makes 160)."""
MAX_NAME_CHARS = 64
"""A claimed operator name is cut to this in refusals, logs and audit lines (it is the caller's text)."""
MAX_TRACKED = 10_000
"""Bound on remembered failure counts; beyond it, the oldest are forgotten first."""
ISSUER = "validator-signer"

SECURITY_EVENTS: tuple[str, ...] = (
    errors.OneTimeCodeMissing.name,
    errors.SecondFactorNotConfigured.name,
    errors.UnknownOperator.name,
    errors.WrongOneTimeCode.name,
    errors.OneTimeCodeExpired.name,
    errors.OneTimeCodeReplayed.name,
    errors.SecondFactorLockedOut.name,
)
"""The ``event`` values this module reports (signer_security_events_total)."""


@dataclass(frozen=True, slots=True)
class OperatorCode:
    """What a front passes from the call: the operator it names and the code it sends."""

    operator: str
    code: str


def new_secret() -> str:
    """A fresh base32 TOTP secret (160 bits)."""
    return pyotp.random_base32()


def check_secret(secret: str) -> bytes:
    """The raw bytes of a base32 secret; ConfigError (never echoing it) if it is not one, or short."""
    text = secret.strip().replace(" ", "").upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise errors.ConfigError("an operator secret must be base32 (as signer admin enroll-operator writes)") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise errors.ConfigError(f"an operator secret must hold at least {MIN_SECRET_BYTES * 8} bits")
    return raw


def provisioning_uri(operator: str, secret: str, *, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app enrols from (a QR code of it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S, issuer=issuer).provisioning_uri(
        name=quote(operator, safe="@.")
    )


def code_at(secret: str, when: float) -> str:
    """The operator's code at Unix time ``when`` (tests and tools compute codes with it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).at(when)


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    max_failures: int = 5
    lockout_s: float = 300.0


@dataclass(slots=True)
class _Failures:
    count: int
    locked_until: float


OperatorsOf = Callable[[ClientIdentity], Mapping[str, str] | None]
"""``client -> {operator: base32 secret}`` of its ``[[clients]]`` entry, None for an unknown client."""


class SecondFactor:
    """Checks operators' one-time codes (see the module docstring). ``clock`` is injectable for tests."""

    def __init__(
        self,
        operators_of: OperatorsOf,
        *,
        policy: FailurePolicy | None = None,
        clock: Callable[[], float] = time.time,
        monitor: Monitor | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self._operators_of = operators_of
        self.policy = policy or FailurePolicy()
        self._clock = clock
        self._monitor: Monitor = monitor or NullMonitor()
        self._audit: AuditSink = audit or NullAudit()
        self._lock = threading.Lock()
        self._last_step: dict[str, int] = {}
        """operator -> the last step whose code it used."""
        self._failures: dict[tuple[str, str], _Failures] = {}

    def verify(self, client: ClientIdentity, presented: OperatorCode | None, *, method: str) -> str:
        """The operator whose code this call carries, once per code; raises the named refusal."""
        try:
            return self._verify(client, presented)
        except (errors.AdminRefusal, errors.SecondFactorLockedOut) as exc:
            name = exc.name
            operator = presented.operator[:MAX_NAME_CHARS] if presented is not None else None
            self._monitor.security_event(name)
            self._audit.record(
                AuditEvent(
                    client=client.name,
                    method=method,
                    outcome="denied",
                    operation="second_factor",
                    reason=exc.message,
                    operator=operator or None,
                )
            )
            log.warning(
                "admin call refused by its second factor",
                extra={"client": client.name, "operator": operator, "method": method, "refusal": name},
            )
            raise

    def _verify(self, client: ClientIdentity, presented: OperatorCode | None) -> str:
        if presented is None or not presented.operator or not presented.code:
            raise errors.OneTimeCodeMissing(
                "admin calls need an operator and its one-time code (x-signer-operator and x-signer-otp: gRPC "
                "metadata or HTTP headers)"
            )
        operators = self._operators_of(client)
        if not operators:
            raise errors.SecondFactorNotConfigured(
                f"client '{client.name}' has no operators configured ([[clients]] operators), so no one-time "
                "code can be accepted through it"
            )
        operator = presented.operator
        key = (client.name, operator if operator in operators else "")
        now = self._clock()
        with self._lock:
            self._check_lockout(key, operator[:MAX_NAME_CHARS], now)
            try:
                step = self._accept(operators, operator, presented.code, now)
            except errors.AdminRefusal:
                self._fail(key, now)
                raise
            self._failures.pop(key, None)
            self._last_step[operator] = step
        return operator

    def _check_lockout(self, key: tuple[str, str], operator: str, now: float) -> None:
        failures = self._failures.get(key)
        if failures is not None and failures.locked_until > now:
            raise errors.SecondFactorLockedOut(
                f"too many failed one-time codes for operator '{operator}' through client '{key[0]}'; "
                f"locked out for {failures.locked_until - now:.0f} s",
                retry_after_s=failures.locked_until - now,
            )

    def _accept(self, operators: Mapping[str, str], operator: str, code: str, now: float) -> int:
        """The step of the accepted code; raises the refusal otherwise. Holds the lock."""
        secret = operators.get(operator)
        if secret is None:
            raise errors.UnknownOperator(f"operator '{operator[:MAX_NAME_CHARS]}' may not act through this client")
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
        if len(code) != DIGITS or not code.isdigit():
            raise errors.WrongOneTimeCode(f"the one-time code of operator '{operator}' is wrong ({DIGITS} digits)")
        current = int(now // STEP_S)
        matched = [
            step
            for step in range(current - EXPIRED_LOOKBACK_STEPS, current + SKEW_STEPS + 1)
            if hmac.compare_digest(totp.generate_otp(step), code)
        ]
        in_window = [step for step in matched if abs(step - current) <= SKEW_STEPS]
        if in_window:
            step = max(in_window)
            last = self._last_step.get(operator)
            if last is not None and step <= last:
                raise errors.OneTimeCodeReplayed(
                    f"this code of operator '{operator}' was used already (each code once): wait for the next one"
                )
            return step
        if matched:
            raise errors.OneTimeCodeExpired(
                f"the one-time code of operator '{operator}' is from {(current - max(matched)) * STEP_S} s ago; "
                "use the current one (is the operator's clock right?)"
            )
        raise errors.WrongOneTimeCode(f"the one-time code of operator '{operator}' is wrong")

    def _fail(self, key: tuple[str, str], now: float) -> None:
        failures = self._failures.pop(key, None) or _Failures(0, 0.0)
        failures.count += 1
        if failures.count >= self.policy.max_failures:
            failures.locked_until = now + self.policy.lockout_s
            failures.count = 0
            log.warning(
                "operator locked out after failed one-time codes",
                extra={"client": key[0], "operator": key[1] or None, "lockout_s": self.policy.lockout_s},
            )
        self._failures[key] = failures  # re-inserted: the dict's order is the order of last failure
        while len(self._failures) > MAX_TRACKED:
            del self._failures[next(iter(self._failures))]
