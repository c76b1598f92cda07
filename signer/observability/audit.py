"""The audit log: one JSON line per signing decision, to stdout ('-') or a file (appended).

A line holds ``ts`` (RFC 3339, UTC, milliseconds), ``client``, ``method``, ``outcome`` and, when
known, ``operation``, ``key`` (0x public key), ``account``, ``slot``, ``epoch``, ``source_epoch``,
``target_epoch``, ``height``, ``round``, ``step``, ``offence``, ``reason``, ``duration_ms``,
``request_id``. Only these public fields exist (``AuditEvent`` has no room for a secret). Each line
is written with one write call under a lock (thread-safe; line-buffered; the file is opened with
O_APPEND, mode 0640, so several processes may append to one file).

A failing write (disk full) is logged and counted in ``write_errors``, never raised: by then the
decision is made and, for a signature, the protection record is already committed.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from signer.config import AuditConfig
from signer.errors import ConfigError
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

    def __init__(self, config: AuditConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self.write_errors = 0
        self._closed = False
        if config.path != "-":
            try:
                fd = os.open(config.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            except OSError as exc:
                raise ConfigError(f"audit.path: cannot open {config.path} for appending: {exc.strerror}") from exc
            self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def _stream(self) -> IO[str]:
        # stdout is looked up at write time, so a redirected sys.stdout is honoured
        return self._file if self._file is not None else sys.stdout

    def record(self, event: AuditEvent) -> None:
        line = audit_line(event, self._clock())
        with self._lock:
            try:
                if self._closed:
                    raise ValueError("audit log is closed")
                stream = self._stream()
                stream.write(line)
                stream.flush()
            except (OSError, ValueError) as exc:
                self.write_errors += 1
                log.error("audit log write failed (%s); the decision stands", type(exc).__name__)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
