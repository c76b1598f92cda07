"""The audit log: one JSON line per signing decision, to stdout ('-') or a file (appended), every
line a link of a hash chain.

A decision line holds ``seq`` and ``prev`` (the chain, below), ``ts`` (RFC 3339, UTC, milliseconds),
``client``, ``method``, ``outcome`` and, when known, ``operation``, ``key`` (0x public key),
``account``, ``slot``, ``epoch``, ``source_epoch``, ``target_epoch``, ``height``, ``round``,
``step``, ``offence``, ``reason``, ``duration_ms``, ``request_id``, ``operator``, ``approval`` (admin
calls). Only these public fields exist
(``AuditEvent`` has no room for a secret). The file is opened with O_APPEND, mode 0640, and locked
(``flock``): one signer writes one chain, a second one refuses to start on the same file.

The chain (format and checks: ``signer.observability.audit_chain``) is computed on the writer thread
over exactly what is written, so it never has a hole it does not explain: lines dropped before they
reach the writer (the queue was full) become a ``dropped`` record with their count, lines a failing
write lost a ``lost`` record, and a write that stopped mid-line is followed by a newline and a record
marked ``after_partial_line``. A restarted signer continues the chain its file ends with (a
``start`` record linking to its last line); a file that does not end with a chain line (written by
an older signer, or damaged) is renamed to ``<path>.unchained-<time>`` and a new chain begins, with
a warning. With ``audit.rotate_bytes``, a file that reached that size ends with a ``rotate`` record,
is renamed to ``<path>.<seq of that record, 12 digits>`` and a new file begins with a ``start``
record linking to it. Every ``audit.checkpoint_interval_s`` while lines are written, at each
rotation and at the stop, a record's seq and link hash (the chain head) are logged ("audit chain
head", INFO) and reported to ``report_head`` (the metrics signer_audit_chain_head_seq and
signer_audit_chain_head_hash): copies outside the file to check it against.

Recording never blocks a signature: each line is handed to a ``LineWriter`` of its own (a bounded
queue and a writer thread; one whole line per queued item, so lines never interleave). When the
output stalls (stdout to a pipe nobody reads), lines are dropped, counted (``dropped``, the metric
``signer_log_lines_dropped_total{stream="audit"}`` once wired) and the first drop is logged. An
audit file has its own writer, so it keeps working whatever stdout and stderr do.

A failing write (disk full) is logged and counted in ``write_errors``, never raised: by then the
decision is made and, for a signature, the protection record is already committed.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import math
import os
import queue
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import signer
from signer import atomicfile
from signer.config import AuditConfig
from signer.errors import ConfigError
from signer.observability.audit_chain import (
    CHECKPOINT,
    DROPPED,
    GENESIS,
    LOST,
    MAX_LINE_BYTES,
    ROTATE,
    START,
    STOP,
    ChainKey,
    chained,
    parse_chain_line,
    record_body,
)
from signer.observability.logging import CLOSE_TIMEOUT_S, DEFAULT_CAPACITY, LineWriter
from signer.types import AuditEvent, AuditSink, NullAudit

__all__ = ["AuditEvent", "AuditLog", "AuditSink", "NullAudit"]

log = logging.getLogger(__name__)

HeadSink = Callable[[int, str], None]
"""Told ``(seq, link hash)`` of each chain head (checkpoint, rotation, start, stop)."""

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


_to_json = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode
"""Compact, ASCII-only JSON (one encoder, not one per line as ``json.dumps`` with options makes)."""

CHAIN_PREFIX_BYTES: Final = 100
"""At most what ``seq`` and ``prev`` add to a line (about 90 bytes): rotation plans with it."""


def _timestamp(ts: float) -> str:
    """RFC 3339, UTC, milliseconds (``AuditLog.record`` writes the same inline)."""
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- where a chain starts ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Opening:
    """How the writer begins: the next seq and the line it links to (None: a new chain)."""

    seq: int
    last_line: bytes | None
    reason: str
    after_partial_line: bool = False
    unchained_file: str | None = None


_NEW_CHAIN = _Opening(seq=0, last_line=None, reason="new")


def _last_chain_line(path: Path, size: int) -> tuple[bytes | None, bool]:
    """(the file's last whole line if it is a chain line, whether an incomplete line follows it)."""
    with path.open("rb") as fh:
        offset = max(0, size - 2 * MAX_LINE_BYTES)
        fh.seek(offset)
        data = fh.read()
    partial = not data.endswith(b"\n")
    whole = data[: data.rfind(b"\n") + 1] if partial else data
    if not whole:
        return None, partial
    before, _, last = whole[:-1].rpartition(b"\n")
    if offset > 0 and not before and len(whole) == len(data):  # no line start seen within the window
        return None, partial
    return (last if parse_chain_line(last) is not None else None), partial


def _utc_stamp(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, tz=datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"audit.path: {path} is being written by another process: one signer per audit file (one chain)"
        ) from None


def _open_append(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except OSError as exc:
        raise ConfigError(f"audit.path: cannot open {path} for appending: {exc.strerror}") from exc


def _open_audit_file(path: Path, now: float) -> tuple[int, _Opening, int]:
    """Open (create) the audit file, lock it, and read where its chain stands: (fd, opening, size)."""
    fd = _open_append(path)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # a pipe or a device: nothing to continue, nothing to lock
        return fd, _NEW_CHAIN, 0
    _lock(fd, path)
    if info.st_size == 0:
        return fd, _NEW_CHAIN, 0
    try:
        last, partial = _last_chain_line(path, info.st_size)
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"audit.path: cannot read {path}: {exc.strerror}") from exc
    if last is not None:
        record = parse_chain_line(last)
        assert record is not None
        return fd, _Opening(int(record["seq"]) + 1, last, "restart", after_partial_line=partial), info.st_size
    aside = path.with_name(f"{path.name}.unchained-{_utc_stamp(now)}")
    counter = 0
    while aside.exists():
        counter += 1
        aside = path.with_name(f"{path.name}.unchained-{_utc_stamp(now)}-{counter}")
    try:
        atomicfile.move(path, aside)
    except OSError as exc:
        log.warning(
            "audit.path does not end with a line of a hash chain and cannot be renamed: a new chain starts "
            "after its lines (they are outside it)",
            extra={"path": str(path), "error": exc.strerror},
        )
        return fd, _Opening(0, None, "new", after_partial_line=partial), info.st_size
    os.close(fd)
    log.warning(
        "audit.path did not end with a line of a hash chain (written by an older signer, or damaged): "
        "renamed; a new chain starts",
        extra={"path": str(path), "renamed_to": str(aside)},
    )
    fd = _open_append(path)
    _lock(fd, path)
    return fd, _Opening(0, None, "new", unchained_file=aside.name), os.fstat(fd).st_size


# --- the writer -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One line of a batch: its body, what it is (None: a decision) and the count it reports."""

    kind: str | None
    body: str
    count: int = 0


class _ChainWriter(LineWriter):
    """A LineWriter whose lines form the hash chain (see the module docstring). Everything below
    runs on the writer thread, except the constructor."""

    def __init__(
        self,
        target: int | IO[str],
        *,
        key: ChainKey,
        opening: _Opening,
        path: Path | None,
        size: int,
        rotate_bytes: int | None,
        checkpoint_interval_s: float,
        clock: Callable[[], float],
        on_head: HeadSink,
        **kwargs: Any,
    ) -> None:
        self._key = key
        self._seq = opening.seq
        self._prev = key.link(opening.last_line) if opening.last_line is not None else GENESIS
        self._path = path
        self._size = size
        self._rotate_bytes = rotate_bytes
        self._next_rotation: float = rotate_bytes if path is not None and rotate_bytes is not None else math.inf
        """The file size at which it is rotated (never: infinity)."""
        self._checkpoint_interval_s = checkpoint_interval_s
        self._clock = clock
        self.on_head = on_head
        self._need_newline = opening.after_partial_line
        start: dict[str, Any] = {"reason": opening.reason}
        if opening.unchained_file is not None:
            start["unchained_file"] = opening.unchained_file
        self._start: dict[str, Any] | None = start
        self._dropped_recorded = 0
        self._lost_pending = 0
        self.lost = 0
        self.written = 0
        self._since_checkpoint = 0
        self._checkpoint_at = time.monotonic() + checkpoint_interval_s
        """When (monotonic) the next checkpoint is due, once decision lines were written since the last."""
        self._records_due = True
        """A start, lost or after-partial-line record must precede the next line (writer thread only;
        lines dropped on the callers' threads are seen by comparing ``dropped``)."""
        self._idle_at = 0.0  # the start record goes first
        super().__init__(target, **kwargs)

    @classmethod
    def for_path(cls, config: AuditConfig, key: ChainKey, clock: Callable[[], float], **kwargs: Any) -> _ChainWriter:
        chain: dict[str, Any] = {
            "key": key,
            "rotate_bytes": config.rotate_bytes,
            "checkpoint_interval_s": config.checkpoint_interval_s,
            "clock": clock,
            **kwargs,
        }
        if config.path == "-":
            writer = cls.for_stream(sys.stdout, opening=_NEW_CHAIN, path=None, size=0, **chain)
            assert isinstance(writer, _ChainWriter)
            return writer
        path = Path(config.path)
        fd, opening, size = _open_audit_file(path, clock())
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        return cls(fd, opening=opening, path=path if regular else None, size=size, **chain)

    # -- building lines ----------------------------------------------------------------------------

    def _ts(self) -> str:
        return _timestamp(self._clock())

    def _pending(self) -> list[_Item]:
        """The chain records that must precede the next lines: the start record (until written), and
        what was dropped or lost since the last record of it. The first is marked after a fragment."""
        items: list[_Item] = []
        if self._start is not None:
            fields = {**self._start, **self._key.describe(), "pid": os.getpid(), "version": signer.__version__}
            items.append(_Item(START, record_body(START, self._ts(), **fields)))
        dropped = self.dropped - self._dropped_recorded
        if dropped > 0:
            items.append(_Item(DROPPED, record_body(DROPPED, self._ts(), count=dropped), dropped))
        if self._lost_pending > 0 or (self._need_newline and not items):  # (a cut record loses no decision)
            items.append(_Item(LOST, record_body(LOST, self._ts(), count=self._lost_pending), self._lost_pending))
        if self._need_newline and items:
            first = json.loads(items[0].body)
            first["after_partial_line"] = True
            items[0].body = json.dumps(first, ensure_ascii=True, separators=(",", ":"))
        return items

    def _chain(self, items: list[_Item]) -> tuple[list[str], list[str]]:
        """The chain lines (with their newlines) of ``items`` after the last line written, and the
        link hash of each."""
        seq, prev = self._seq, self._prev
        texts: list[str] = []
        links: list[str] = []
        for item in items:
            line = chained(seq, prev, item.body)
            prev = self._key.link(line.encode("utf-8"))
            texts.append(line + "\n")
            links.append(prev)
            seq += 1
        return texts, links

    def _write_items(self, items: list[_Item]) -> bool:
        """Chain and write ``items`` after the pending records; True if all of them were written."""
        items = self._pending() + items
        if not items:
            return True
        texts, links = self._chain(items)
        prefix = "\n" if self._need_newline else ""
        done = self._emit((prefix + "".join(texts)).encode("utf-8")) - len(prefix)
        return self._settle(items, texts, links, done, len(prefix))

    def _settle(self, items: list[_Item], texts: list[str], links: list[str], done: int, prefix: int) -> bool:
        """Account for a write of ``items`` (chained as ``texts`` with ``links``) of which ``done``
        bytes after a ``prefix`` newline went out; True if all of them were written.

        On a failed write the chain goes on from the last whole line written: the decision lines
        not written are counted as lost (a ``lost`` record follows), records not written are made
        again."""
        if done < 0:  # not even the newline that ends the fragment: nothing written
            whole = 0
        else:
            self._need_newline = False
            whole, offset = 0, 0
            while whole < len(texts) and offset + len(texts[whole]) <= done:
                offset += len(texts[whole])
                whole += 1
            if offset < done:  # a line was cut off mid-way: end it before writing on
                self._need_newline = True
            self._size += done + prefix
        for item in items[:whole]:
            if item.kind == START:
                self._start = None
            elif item.kind == DROPPED:
                self._dropped_recorded += item.count
            elif item.kind == LOST:
                self._lost_pending -= item.count
        lost = sum(1 for item in items[whole:] if item.kind is None)
        self._lost_pending += lost
        self.lost += lost
        if whole:
            self._seq += whole
            self._prev = links[whole - 1]
            decisions = sum(1 for item in items[:whole] if item.kind is None)
            self.written += decisions
            self._since_checkpoint += decisions
        self._records_due = self._start is not None or self._lost_pending > 0 or self._need_newline
        self._plan_idle()
        return whole == len(items)

    def _plan_idle(self) -> None:
        """When ``_idle`` is due: at each pause while a start or lost record waits to be written, at the
        checkpoint time once decision lines were written since the last, else never. (Lines are
        dropped only while the queue is full: the ``dropped`` record goes before the queued lines.)"""
        waiting = self._start is not None or self._lost_pending > 0
        self._idle_at = 0.0 if waiting else self._checkpoint_at if self._since_checkpoint else math.inf

    def _head(self) -> None:
        """Report the chain head: the last line written."""
        seq = self._seq - 1
        if seq < 0:
            return
        with contextlib.suppress(Exception):
            self.on_head(seq, self._prev)
        log.info("audit chain head", extra={"seq": seq, "head": self._prev, "audit_path": str(self._path or "-")})

    def _record(self, kind: str, **fields: Any) -> bool:
        written = self._write_items([_Item(kind, record_body(kind, self._ts(), **fields))])
        if written:
            self._head()
        return written

    def _counts(self) -> dict[str, int]:
        return {"written": self.written, "dropped": self.dropped, "lost": self.lost}

    # -- the LineWriter hooks ----------------------------------------------------------------------

    def _begin(self) -> None:
        if self._write_items([]):
            self._head()

    def _write_batch(self, lines: list[str]) -> None:
        """Chain and write a batch of decision lines (each a compact JSON object and its newline).

        Here, inline: the common case, nothing to record before them, no rotation due within them,
        the write whole; each line becomes ``chained(seq, prev, line)`` and its link hash
        ``ChainKey.link``. Anything else goes the general way (``_write_chunks``, ``_settle``)."""
        due = self._size + sum(map(len, lines)) + CHAIN_PREFIX_BYTES * len(lines) >= self._next_rotation
        if due or self._records_due or self.dropped != self._dropped_recorded:
            self._write_chunks(lines)
            return
        seq, prev, template = self._seq, self._prev, self._key.template
        chunks: list[bytes] = []
        for line in lines:
            text = f'{{"seq":{seq},"prev":"{prev}",{line[1:]}'.encode()
            link = template.copy()
            link.update(text[:-1])
            prev = link.hexdigest()
            chunks.append(text)
            seq += 1
        data = b"".join(chunks)
        done = self._emit(data)
        if done != len(data):
            items = [_Item(None, line.rstrip("\n")) for line in lines]
            self._settle(items, *self._chain(items), done, 0)
        else:
            self._seq, self._prev = seq, prev
            self._size += done
            self.written += len(lines)
            self._since_checkpoint += len(lines)
            self._idle_at = self._checkpoint_at
        if time.monotonic() >= self._checkpoint_at:
            self._checkpoint()

    def _write_chunks(self, lines: list[str]) -> None:
        """The pending records, then ``lines`` in chunks that end where the file reaches its rotation
        size, each followed by a checkpoint or a rotation when due."""
        items = [_Item(None, line.rstrip("\n")) for line in lines]
        while True:
            room = self._next_rotation - self._size
            take, size = 0, 0
            while take < len(items) and size < room:
                size += len(items[take].body) + CHAIN_PREFIX_BYTES
                take += 1
            self._write_items(items[:take])
            del items[:take]
            if time.monotonic() >= self._checkpoint_at:
                self._checkpoint()
            if self._size >= self._next_rotation:
                self._rotate_now()
            if not items:
                return

    def _idle(self) -> None:
        if self._start is not None or self._lost_pending or self.dropped > self._dropped_recorded:
            self._write_items([])
        if time.monotonic() >= self._checkpoint_at:
            self._checkpoint()
        self._plan_idle()

    def _end(self) -> None:
        self._record(STOP, **self._counts())
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
        super()._end()

    def _checkpoint(self) -> None:
        """Write a checkpoint record if decision lines were written since the last one."""
        if self._since_checkpoint and self._record(CHECKPOINT, **self._counts()):
            self._since_checkpoint = 0
            self._checkpoint_at = time.monotonic() + self._checkpoint_interval_s
            self._plan_idle()

    # -- rotation ----------------------------------------------------------------------------------

    def _rotate_now(self) -> None:
        assert self._path is not None and self._rotate_bytes is not None
        self._next_rotation = self._size + self._rotate_bytes  # unless it works (then: a new file)
        try:
            self._rotate(self._path, self._rotate_bytes)
        except OSError as exc:
            log.error(
                "audit log rotation failed; writing on to the same file",
                extra={"audit_path": str(self._path), "error": exc.strerror},
            )

    def _rotated_name(self, path: Path) -> Path:
        target = path.with_name(f"{path.name}.{self._seq:012d}")
        counter = 0
        while target.exists():
            counter += 1
            target = path.with_name(f"{path.name}.{self._seq:012d}-{counter}")
        return target

    def _rotate(self, path: Path, rotate_bytes: int) -> None:
        """End this file with a rotate record, rename it, and begin a new one that links to it."""
        target = self._rotated_name(path)
        if not self._record(ROTATE, file=target.name):
            return
        assert self._fd is not None
        os.fsync(self._fd)
        atomicfile.move(path, target)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            # The renamed file stays open: the chain goes on in it (it has a rotate record mid-way).
            log.error(
                "audit log rotation: cannot open a new file; writing on to the renamed one",
                extra={"audit_path": str(path), "renamed_to": str(target), "error": exc.strerror},
            )
            return
        old, self._fd = self._fd, fd
        os.close(old)
        self._size = 0
        self._next_rotation = rotate_bytes
        self._start = {"reason": "rotation", "previous_file": target.name}
        if self._write_items([]):
            self._head()


class AuditLog:
    """An AuditSink writing chained JSON lines to stdout (``path = "-"``) or appending to a file."""

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
        self._head_sink: HeadSink | None = None
        self._last_head: tuple[int, str] | None = None
        key = ChainKey()
        if config.hmac_key is not None:
            try:
                key = ChainKey.from_text(config.hmac_key.read())
            except ConfigError as exc:
                raise ConfigError(f"audit.hmac_key: {exc.message.removeprefix('audit.hmac_key: ')}") from exc
        self._writer = _ChainWriter.for_path(
            config,
            key,
            clock,
            on_head=self._on_head,
            name="audit",
            capacity=capacity,
            on_first_drop=self._first_drop,
            on_error=self._write_failed,
        )

    @property
    def write_errors(self) -> int:
        """Failed writes, and lines recorded after close."""
        return self._writer.write_errors + self._closed_writes

    @property
    def dropped(self) -> int:
        """Lines dropped because the output did not keep up."""
        return self._writer.dropped

    @property
    def lost(self) -> int:
        """Decision lines a failing write lost (each counted in a ``lost`` record of the chain)."""
        return self._writer.lost

    def count_drops(self, count: Callable[[str, int], None]) -> None:
        """Report dropped lines to ``count("audit", n)`` from now on (the metric)."""
        self._writer.on_drop = lambda n: count("audit", n)

    def report_head(self, sink: HeadSink) -> None:
        """Tell ``sink(seq, link hash)`` the chain head: the last one so far, and each from now on."""
        self._head_sink = sink
        last = self._last_head
        if last is not None:
            sink(*last)

    @property
    def head(self) -> tuple[int, str] | None:
        """The last chain head reported: (seq, link hash)."""
        return self._last_head

    def _on_head(self, seq: int, head: str) -> None:
        self._last_head = (seq, head)
        sink = self._head_sink
        if sink is not None:
            sink(seq, head)

    @staticmethod
    def _first_drop() -> None:
        log.error(
            "audit output is not keeping up: audit lines are being dropped (counted in "
            'signer_log_lines_dropped_total{stream="audit"} and in the chain); the decisions stand'
        )

    @staticmethod
    def _write_failed(exc: OSError) -> None:
        log.error("audit log write failed (%s); the decision stands", type(exc).__name__)

    def record(self, event: AuditEvent) -> None:
        """Queue the decision line of ``event`` (never waits: a full queue drops it, counted). The
        line: ``ts`` (the event's or now; RFC 3339, UTC, milliseconds), ``client``, ``method``,
        ``outcome``, ``key`` (0x hex) and the optional fields that are set, as compact ASCII JSON."""
        writer = self._writer
        if writer.closed:
            self._closed_writes += 1
            log.error("audit log write failed (audit log is closed); the decision stands")
            return
        moment = datetime.datetime.fromtimestamp(event.ts if event.ts is not None else self._clock(), tz=datetime.UTC)
        line: dict[str, Any] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "client": event.client,
            "method": event.method,
            "outcome": event.outcome,
        }
        if event.public_key is not None:
            line["key"] = "0x" + bytes(event.public_key).hex()
        for name in _OPTIONAL_FIELDS:
            value = getattr(event, name)
            if value is not None:
                line[name] = value
        if event.duration_ms is not None:  # (the key keeps its place)
            line["duration_ms"] = round(float(event.duration_ms), 3)
        if event.step is not None:
            line["step"] = int(event.step)
        try:
            writer.put(_to_json(line) + "\n")
        except queue.Full:
            writer.note_drop()

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait (bounded) until every recorded line is written; True if it was."""
        return self._writer.flush(timeout_s)

    def close(self) -> None:
        """Write what is queued and the stop record (bounded wait) and stop; never hangs on a stalled
        output."""
        self._writer.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
