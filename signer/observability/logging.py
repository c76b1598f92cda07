"""Process logging: one JSON object per line (or plain text), to stderr. Never a secret.

Writing never blocks a signature: a record is formatted on the caller's thread and handed to a
``LineWriter``, a bounded queue emptied by a writer thread of its own. When the output stalls (a
stderr pipe nobody reads, a full disk), the queue fills and further lines are dropped, counted (the
metric ``signer_log_lines_dropped_total``, once ``attach_drop_counter`` has wired it) and noted once
in the log itself. The audit log (``observability.audit``) writes through a LineWriter of its own, so
an audit file keeps working when stderr or stdout stall.

A LineWriter bound to the real stdout or stderr writes to a duplicate of its file descriptor with
``os.write``: a writer thread blocked on a full pipe then holds no lock of Python's ``sys.stderr``,
and the interpreter can still exit. ``close()`` waits a bounded time for what is queued.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Final

_RESERVED = set(vars(logging.makeLogRecord({})))

DEFAULT_CAPACITY: Final = 10_000
"""Lines a LineWriter holds before it drops (about 5 MB of audit lines)."""
CLOSE_TIMEOUT_S: Final = 2.0
"""How long ``close()`` waits for queued lines to be written."""
_BATCH_LINES: Final = 256
_IDLE_CHECK_S: Final = 0.2


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(entry, default=str)


class LineWriter:
    """Writes text lines to one output from a thread of its own; ``write`` never waits.

    ``target`` is a file descriptor (the writer owns it and closes it) or a text stream without one
    (pytest's capture). ``on_drop(n)`` is told of every dropped line; ``on_first_drop`` is called
    once, on the caller's thread, when the first line is dropped. ``on_error`` is told of a failed
    write (disk full), which loses that line and nothing else.

    A caller on a hot path may queue with ``put`` (``queue.Queue.put_nowait``: raises
    ``queue.Full``) and report a refused line with ``note_drop()``; ``write`` does both.

    A subclass may shape what is written (the audit log's hash chain) by overriding the hooks that
    run on the writer thread: ``_begin`` (first), ``_write_batch`` (each batch of queued lines),
    ``_idle`` (the queue stayed empty for a while and ``_idle_at``, a ``time.monotonic()`` time, has
    come: never unless a subclass sets it) and ``_end`` (closed and drained; closes the descriptor).
    """

    _idle_at: float = math.inf
    """When (``time.monotonic()``) ``_idle`` is due; a subclass sets it (before this constructor
    starts the thread, and then on the writer thread)."""

    def __init__(
        self,
        target: int | IO[str],
        *,
        name: str,
        capacity: int = DEFAULT_CAPACITY,
        on_drop: Callable[[int], None] | None = None,
        on_first_drop: Callable[[], None] | None = None,
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self._fd = target if isinstance(target, int) else None
        self._stream = None if isinstance(target, int) else target
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self.put = self._queue.put_nowait
        self.on_drop = on_drop
        self._on_first_drop = on_first_drop
        self._on_error = on_error
        self.dropped = 0
        self.write_errors = 0
        self.closed = False
        """Set by ``close()``: no line is taken any more."""
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    @classmethod
    def for_stream(cls, stream: IO[str], **kwargs: object) -> LineWriter:
        """A writer to ``stream``: through a duplicate of its file descriptor when it has one."""
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return cls(stream, **kwargs)  # type: ignore[arg-type]
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()  # what Python buffered so far goes first
        return cls(os.dup(fd), **kwargs)  # type: ignore[arg-type]

    def write(self, line: str, *, count_drop: bool = True) -> bool:
        """Queue ``line`` (with its newline); False if it was dropped (queue full, or closed).
        ``count_drop=False``: a refused line is not counted as dropped (a retried note)."""
        if self.closed:
            return False
        try:
            self.put(line)
        except queue.Full:
            if count_drop:
                self.note_drop()
            return False
        return True

    def note_drop(self) -> None:
        """Count a line the full queue refused (on the caller's thread)."""
        self.dropped += 1
        first = self.dropped == 1
        if self.on_drop is not None:
            with contextlib.suppress(Exception):
                self.on_drop(1)
        if first and self._on_first_drop is not None:
            with contextlib.suppress(Exception):
                self._on_first_drop()

    def _run(self) -> None:
        """Write batches of queued lines until closed and drained (checked at least every 0.2 s)."""
        self._begin()
        while True:
            try:
                first = self._queue.get(timeout=_IDLE_CHECK_S)
            except queue.Empty:
                if self.closed:
                    self._end()
                    return
                if time.monotonic() >= self._idle_at:
                    self._idle()
                continue
            lines = [str(first)]
            while len(lines) < _BATCH_LINES:
                try:
                    lines.append(str(self._queue.get_nowait()))
                except queue.Empty:
                    break
            try:
                self._write_batch(lines)
            finally:
                for _ in lines:
                    self._queue.task_done()

    def _begin(self) -> None:
        """Hook: runs first on the writer thread."""

    def _idle(self) -> None:
        """Hook: the queue stayed empty for the idle interval (0.2 s) and ``_idle_at`` has come."""

    def _write_batch(self, lines: list[str]) -> None:
        """Hook: write one batch of queued lines (each with its newline)."""
        self._emit("".join(lines).encode("utf-8", "replace"))

    def _end(self) -> None:
        """Hook: closed and drained; the writer thread alone closes its descriptor."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _emit(self, data: bytes) -> int:
        """Write ``data`` (UTF-8 text); returns the bytes that were written (all of them unless a write
        failed; a stream writes all or nothing)."""
        done = 0
        try:
            if self._fd is not None:
                while done < len(data):
                    done += os.write(self._fd, data[done:])
            elif self._stream is not None:
                self._stream.write(data.decode("utf-8", "replace"))
                self._stream.flush()
                done = len(data)
        except (OSError, ValueError) as exc:
            self.write_errors += 1
            if self._on_error is not None and isinstance(exc, OSError):
                with contextlib.suppress(Exception):
                    self._on_error(exc)
        return done

    def flush(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait (at most ``timeout_s``) until every queued line is written; True if they were."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    @property
    def running(self) -> bool:
        """The writer thread is alive (it ends once closed and drained)."""
        return self._thread.is_alive()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Stop taking lines, write what is queued (bounded wait), end the thread. True if all was
        written; a writer stuck on its output is left behind (a daemon thread that ends when the
        output moves or fails) instead of hanging the caller."""
        if self.closed:
            return not self._thread.is_alive()
        self.closed = True
        drained = self.flush(timeout_s)
        self._thread.join(timeout=2 * _IDLE_CHECK_S + 0.1 if drained else 0.0)
        return drained


class QueuedStreamHandler(logging.Handler):
    """A logging handler that formats on the caller's thread and writes through a LineWriter."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # a broken record must not print a traceback onto a stalled stderr
            self.writer.write_errors += 1
            return
        self.writer.write(line)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
        super().close()


_DROP_NOTE = "log output is not keeping up: lines are being dropped (counted in signer_log_lines_dropped_total)"


def configure(level: str = "info", json_format: bool = True, stream: IO[str] | None = None) -> QueuedStreamHandler:
    """Log to ``stream`` (default stderr) through a LineWriter, replacing the root logger's handlers;
    returns the handler."""
    holder: list[QueuedStreamHandler] = []

    def note_first_drop() -> None:
        # The queue is full now; the note is written as soon as there is room again.
        threading.Thread(target=_note_when_room, args=(holder, _DROP_NOTE), name="log-drop-note", daemon=True).start()

    writer = LineWriter.for_stream(
        stream if stream is not None else sys.stderr, name="log", on_first_drop=note_first_drop
    )
    handler = QueuedStreamHandler(writer)
    holder.append(handler)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        if isinstance(old, QueuedStreamHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def _note_when_room(holder: list[QueuedStreamHandler], message: str, timeout_s: float = 3600.0) -> None:
    """Log ``message`` once the log writer has room for it (bounded wait, polling)."""
    deadline = time.monotonic() + timeout_s
    while holder and time.monotonic() < deadline:
        handler = holder[0]
        if handler.writer.closed:
            return
        record = logging.LogRecord("signer.observability.logging", logging.WARNING, __file__, 0, message, None, None)
        try:
            line = handler.format(record) + "\n"
        except Exception:
            return
        if handler.writer.write(line, count_drop=False):
            return
        time.sleep(0.5)


def attach_drop_counter(count: Callable[[str, int], None]) -> None:
    """Report dropped log lines to ``count("log", n)`` from now on, and those dropped so far."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, QueuedStreamHandler):
            writer = handler.writer
            if writer.dropped:
                count("log", writer.dropped)
            writer.on_drop = lambda n: count("log", n)
