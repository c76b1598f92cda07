"""Permissions: which client may do which operation with which key.

A client is matched to its ``[[clients]]`` entry by certificate CN. Only a certificate without a CN
is matched by a SAN, and only to the entry that opts in to that SAN (``sans = ["dns:NAME",
"uri:NAME"]``); an unknown CN never falls back to its SANs. Unknown clients are denied.

For a key, an entry of ``allow_accounts`` or ``deny_accounts`` matches when it is ``*``, a ``0x``
public key (hex, any case), or an fnmatch pattern on the account name (``wallet/*``, or an exact
``wallet/account``). An operation must be in ``operations`` and not in ``deny_operations``.
Explicit deny wins; everything not allowed is denied.

Every refusal raises AccessDenied saying why, is counted (``Monitor.access_denied``) and is written
to the audit log.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence

from signer.config import ClientConfig, account_pattern_problem, duplicate_client, duplicate_san
from signer.errors import AccessDenied, ConfigError
from signer.types import (
    AuditEvent,
    AuditSink,
    ClientIdentity,
    KeyInfo,
    Monitor,
    NullAudit,
    NullMonitor,
    Operation,
)

log = logging.getLogger(__name__)

DEV_ACCOUNTS: tuple[str, ...] = ("dev/*",)
"""The accounts of ``signer keys dev`` (signer.keys.dev.DEV_WALLET)."""


def match_client(clients: Sequence[ClientConfig], client: ClientIdentity) -> ClientConfig | None:
    """The ``[[clients]]`` entry for this identity, or None.

    A certificate with a CN is named by its CN alone: an unknown CN is an unknown client, whatever
    its SANs say (internal CAs often let any workload ask for any DNS SAN). Only a certificate
    without a CN is matched through its SANs, and only to an entry that lists one of them in
    ``sans``; SANs that point at two entries match none.
    """
    if client.has_cn:
        for entry in clients:
            if entry.name == client.name:
                return entry
        return None
    found = [entry for entry in clients if any(san in client.alt_names for san in entry.sans)]
    return found[0] if len(found) == 1 else None


def _unknown_reason(clients: Sequence[ClientConfig], client: ClientIdentity) -> str:
    if client.has_cn:
        return (
            f"unknown client '{client.name}': no [[clients]] entry is named after its certificate CN "
            "(SANs name a client only on a certificate without a CN)"
        )
    sans = ", ".join(client.alt_names)
    found = [entry.name for entry in clients if any(san in client.alt_names for san in entry.sans)]
    if len(found) > 1:
        return f"ambiguous client '{client.name}': its certificate SANs ({sans}) are in the sans of {found}"
    return f"unknown client '{client.name}': no [[clients]] entry lists any of its certificate SANs ({sans}) in sans"


def _is_public_key(pattern: str) -> bool:
    return pattern[:2].lower() == "0x"


def account_matches(pattern: str, key: KeyInfo) -> bool:
    """``*``, a 0x public key, or an fnmatch pattern (case-sensitive) on the account name."""
    if pattern == "*":
        return True
    if _is_public_key(pattern):
        return pattern.lower() == key.public_key_hex.lower()
    return fnmatch.fnmatchcase(key.name, pattern)


def _first_match(patterns: Iterable[str], key: KeyInfo) -> str | None:
    for pattern in patterns:
        if account_matches(pattern, key):
            return pattern
    return None


def _check_patterns(client: str, field: str, patterns: Iterable[str]) -> None:
    """The config's rule (signer.config.account_pattern_problem), for entries built in code."""
    for pattern in patterns:
        problem = account_pattern_problem(pattern)
        if problem is not None:
            raise ConfigError(f"clients '{client}'.{field}: {problem}")


class PermissionAuthorizer:
    """The Authorizer of a production signer, from ``[[clients]]``."""

    def __init__(
        self,
        clients: Sequence[ClientConfig],
        *,
        audit: AuditSink | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        twice = duplicate_client(clients)
        if twice is not None:
            raise ConfigError(f"clients: '{twice}' is listed twice")
        shared = duplicate_san(clients)
        if shared is not None:
            san, first, second = shared
            raise ConfigError(f"clients '{second}'.sans: {san!r} is already in the sans of '{first}'")
        for entry in clients:
            _check_patterns(entry.name, "allow_accounts", entry.allow_accounts)
            _check_patterns(entry.name, "deny_accounts", entry.deny_accounts)
        self.clients: tuple[ClientConfig, ...] = tuple(clients)
        self._audit: AuditSink = audit or NullAudit()
        self._monitor: Monitor = monitor or NullMonitor()

    def decide(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> str | None:
        """None if allowed, else the reason (the AccessDenied message). Records nothing."""
        entry = match_client(self.clients, client)
        if entry is None:
            return _unknown_reason(self.clients, client)
        who = f"client '{entry.name}'"
        op = Operation(operation).value
        if op in entry.deny_operations:
            return f"{who} may not {op} (in deny_operations)"
        if op not in entry.operations:
            return f"{who} may not {op} (not in operations)"
        if key is None:
            return None
        denied_by = _first_match(entry.deny_accounts, key)
        if denied_by is not None:
            return f"{who} may not use account '{key.name}' (deny_accounts has {denied_by!r})"
        if _first_match(entry.allow_accounts, key) is None:
            return f"{who} may not use account '{key.name}' (not in allow_accounts)"
        return None

    def permits(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> bool:
        return self.decide(client, operation, key) is None

    def authorize(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> None:
        reason = self.decide(client, operation, key)
        if reason is None:
            return
        _refuse(self._monitor, self._audit, client=client, operation=operation, key=key, reason=reason)


def _refuse(
    monitor: Monitor,
    audit: AuditSink,
    *,
    client: ClientIdentity,
    operation: Operation,
    key: KeyInfo | None,
    reason: str,
) -> None:
    op = Operation(operation).value
    monitor.access_denied(client.name, op)
    audit.record(
        AuditEvent(
            client=client.name,
            method="authorize",
            operation=op,
            outcome="denied",
            public_key=key.public_key if key is not None else None,
            account=key.name if key is not None else None,
            reason=reason,
        )
    )
    raise AccessDenied(reason)


class DevAuthorizer:
    """``--dev``: any client the CA vouched for may do anything with the dev keys (``dev/*``), and
    nothing with any other key. Operations without a key are allowed.

    That includes ``sign_deposit`` and ``sign_voluntary_exit``: the dev keys' secrets come from a
    published seed (signer.keys.dev), so anyone can sign a deposit for them without the signer;
    refusing would protect nothing and would break local devnets that deposit their validators."""

    def __init__(
        self,
        accounts: Sequence[str] = DEV_ACCOUNTS,
        *,
        audit: AuditSink | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        _check_patterns("--dev", "accounts", accounts)
        self.accounts = tuple(accounts)
        self._audit: AuditSink = audit or NullAudit()
        self._monitor: Monitor = monitor or NullMonitor()

    def permits(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> bool:
        return key is None or _first_match(self.accounts, key) is not None

    def authorize(self, client: ClientIdentity, operation: Operation, key: KeyInfo | None) -> None:
        if key is None or self.permits(client, operation, key):
            return
        reason = f"--dev: client '{client.name}' may use only the dev keys, not account '{key.name}'"
        _refuse(self._monitor, self._audit, client=client, operation=operation, key=key, reason=reason)
