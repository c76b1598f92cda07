"""Process logging through a LineWriter: a stalled stderr never blocks the caller (issue 13.13)."""

from __future__ import annotations

import json
import logging
import os
import select
import time
from collections.abc import Iterator
from typing import TextIO

import pytest

from signer.observability.logging import LineWriter, QueuedStreamHandler, attach_drop_counter, configure


@pytest.fixture
def stalled_stderr() -> Iterator[tuple[int, TextIO]]:
    """A stderr-like stream on a pipe nobody reads (yet): (read end, stream). The root logger's
    handlers come back after the test."""
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        yield read_end, stream
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
            if isinstance(handler, QueuedStreamHandler):
                deadline = time.monotonic() + 10
                while handler.writer.running and time.monotonic() < deadline:
                    time.sleep(0.05)
        root.handlers[:], root.level = saved[0], saved[1]
        stream.close()
        os.close(read_end)


def _read_until(fd: int, needle: bytes, timeout_s: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            seen = seen[-100_000:] + os.read(fd, 1 << 16)
    return seen


def test_logging_never_blocks_on_a_stalled_stderr_counts_drops_and_notes_them_once(
    stalled_stderr: tuple[int, TextIO],
) -> None:
    read_end, stream = stalled_stderr
    handler = configure("info", stream=stream)
    counted: list[tuple[str, int]] = []
    attach_drop_counter(lambda stream, n: counted.append((stream, n)))
    logger = logging.getLogger("signer.test")
    started = time.perf_counter()
    for n in range(20_000):  # ~300 bytes a line: far more than the 64 KiB pipe and the queue hold
        logger.info("line %d %s", n, "x" * 200)
    assert time.perf_counter() - started < 10.0  # each call returned at once (no write waited)
    dropped = handler.writer.dropped
    assert dropped > 0
    assert sum(n for _, n in counted) == dropped and {s for s, _ in counted} == {"log"}
    # Once the output moves again, what was queued is written, then the note (once).
    seen = _read_until(read_end, b"lines are being dropped")
    note = [json.loads(line) for line in seen.splitlines() if b"lines are being dropped" in line]
    assert len(note) == 1 and note[0]["level"] == "warning", note
    assert handler.writer.flush(timeout_s=10)


def test_close_does_not_hang_on_an_output_that_never_moves() -> None:
    read_end, write_end = os.pipe()
    try:
        writer = LineWriter(os.dup(write_end), name="test", capacity=100)
        for n in range(1000):  # 100 queued lines of 2 KB are more than the 64 KiB pipe holds
            writer.write(f"{n} {'z' * 2000}\n")
        started = time.perf_counter()
        assert writer.close(timeout_s=0.5) is False  # not everything could be written
        assert time.perf_counter() - started < 3.0
        assert writer.write("after close\n") is False
    finally:
        os.close(read_end)  # the stuck writer now fails (EPIPE), drains and ends
        os.close(write_end)
    deadline = time.monotonic() + 10
    while writer.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not writer.running
