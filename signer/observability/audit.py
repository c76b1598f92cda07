"""The audit log: one JSON line per signing decision, to stdout ('-') or a file (appended).

A line holds ``ts`` (RFC 3339, UTC, milliseconds), ``client``, ``method``, ``outcome`` and, when
known, ``operation``, ``key`` (0x public key), ``account``, ``slot``, ``epoch``, ``source_epoch``,
``target_epoch``, ``height``, ``round``, ``step``, ``offence``, ``reason``, ``duration_ms``,
``request_id``, ``operator``, ``approval`` (admin calls). Only these public fields exist
(``AuditEvent`` has no room for a secret). The file
is opened with O_APPEND, mode 0640, so several processes may append to one file.

Recording never blocks a signature: each line is handed to a ``LineWriter`` of its own (a bounded
queue and a writer thread; one whole line per queued item, so lines never interleave). When the
output stalls (stdout to a pipe nobody reads), lines are dropped, counted (``dropped``, the metric
``signer_log_lines_dropped_total{stream="audit"}`` once wired) and the first drop is logged. An
audit file has its own writer, so it keeps working whatever stdout and stderr do.

A failing write (disk full) is logged and counted in ``write_errors``, never raised: by then the
decision is made and, for a signature, the protection record is already committed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from signer.config import AuditConfig
from signer.errors import ConfigError
from signer.observability.logging import CLOSE_TIMEOUT_S, DEFAULT_CAPACITY, LineWriter
from signer.types import AuditEvent, AuditSink, NullAudit

__all__ = ["AuditEvent", "AuditLog", "AuditSink", "NullAudit", "audit_line"]

log = logging.getLogger(__name__)

_OPTIONAL_FIELDS = (
    "operation",
    "account",
    "slot",
    "epoch",
    "source_epoch",
    "target_epoch",
    "height",
    "round",
    "step",
    "offence",
    "reason",
    "duration_ms",
    "request_id",
    "operator",
    "approval",
)


def _timestamp(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def audit_line(event: AuditEvent, now: float) -> str:
    """The JSON line (with its newline) for ``event``; ``now`` stands in for a missing ``ts``."""
    record: dict[str, Any] = {
        "ts": _timestamp(event.ts if event.ts is not None else now),
        "client": event.client,
        "method": event.method,
        "outcome": event.outcome,
    }
    if event.public_key is not None:
        record["key"] = "0x" + bytes(event.public_key).hex()
    for name in _OPTIONAL_FIELDS:
        value = getattr(event, name)
        if value is None:
            continue
        if name == "duration_ms":
            value = round(float(value), 3)
        elif name == "step":
            value = int(value)
        record[name] = value
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"


class AuditLog:
    """An AuditSink writing JSON lines to stdout (``path = "-"``) or appending to a file."""

    def __init__(
        self,
        config: AuditConfig,
        *,
        clock: Callable[[], float] = time.time,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self.config = config
        self._clock = clock
        self._closed_writes = 0
        hooks: dict[str, Any] = {
            "name": "audit",
            "capacity": capacity,
            "on_first_drop": self._first_drop,
            "on_error": self._write_failed,
        }
        if config.path == "-":
            self._writer = LineWriter.for_stream(sys.stdout, **hooks)
        else:
            try:
                fd = os.open(config.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as exc:
                raise ConfigError(f"audit.path: cannot open {config.path} for appending: {exc.strerror}") from exc
            self._writer = LineWriter(fd, **hooks)

    @property
    def write_errors(self) -> int:
        """Lines lost to a failing write, or recorded after close."""
        return self._writer.write_errors + self._closed_writes

    @property
    def dropped(self) -> int:
        """Lines dropped because the output did not keep up."""
        return self._writer.dropped

    def count_drops(self, count: Callable[[str, int], None]) -> None:
        """Report dropped lines to ``count("audit", n)`` from now on (the metric)."""
        self._writer.on_drop = lambda n: count("audit", n)

    @staticmethod
    def _first_drop() -> None:
        log.error(
            "audit output is not keeping up: audit lines are being dropped (counted in "
            'signer_log_lines_dropped_total{stream="audit"}); the decisions stand'
        )

    @staticmethod
    def _write_failed(exc: OSError) -> None:
        log.error("audit log write failed (%s); the decision stands", type(exc).__name__)

    def record(self, event: AuditEvent) -> None:
        if self._writer.closed:
            self._closed_writes += 1
            log.error("audit log write failed (audit log is closed); the decision stands")
            return
        self._writer.write(audit_line(event, self._clock()))

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait (bounded) until every recorded line is written; True if it was."""
        return self._writer.flush(timeout_s)

    def close(self) -> None:
        """Write what is queued (bounded wait) and stop; never hangs on a stalled output."""
        self._writer.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
