"""The audit log's hash chain (issue 16.4), as the AuditLog writes it: every line links to the one
before, across restarts and rotated files; what the writer could not write (dropped, lost to a failing
write) is counted in the chain; the head is reported; an HMAC key names itself. (What ``signer audit
verify`` finds in a tampered log of a real server: tests/e2e/test_audit_chain_e2e.py.)"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from signer.cli import check_config
from signer.config import AuditConfig, SecretRef, parse_config
from signer.errors import ConfigError
from signer.observability.audit import AuditLog
from signer.observability.audit_chain import (
    GENESIS,
    ChainKey,
    chained,
    parse_head,
    verify,
)
from signer.types import AuditEvent
from tests.support import REPO_ROOT, wait_for

KEY = "6f1c" * 16  # 64 characters, as `openssl rand -hex 32` makes them
OTHER_KEY = "a0b1" * 16


def event(n: int, **fields: Any) -> AuditEvent:
    return AuditEvent(client="vc-1", method="Sign", outcome="succeeded", slot=n, **fields)


def lines_of(*paths: Path) -> list[bytes]:
    return [line for path in paths for line in path.read_bytes().splitlines()]


def records_of(*paths: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines_of(*paths)]


def write_log(path: Path, count: int, **config: Any) -> AuditLog:
    with AuditLog(AuditConfig(path=str(path), **config)) as audit:
        for n in range(count):
            audit.record(event(n))
    return audit


def key_file(tmp_path: Path, key: str, name: str = "audit.key") -> Path:
    path = tmp_path / name
    path.write_text(key + "\n")
    return path


def test_every_line_links_to_the_line_before_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 5)
    raw = lines_of(path)
    records = [json.loads(line) for line in raw]
    assert [r["seq"] for r in records] == list(range(7))
    assert records[0]["prev"] == GENESIS
    for before, record in zip(raw, records[1:], strict=False):
        assert record["prev"] == hashlib.sha256(before).hexdigest()
    start, stop = records[0], records[-1]
    assert start["record"] == "start" and start["reason"] == "new" and start["hash"] == "sha256"
    assert stop["record"] == "stop" and stop["written"] == 5 and stop["dropped"] == 0 and stop["lost"] == 0
    assert [r["slot"] for r in records[1:-1]] == list(range(5))
    assert all(line.startswith(b'{"seq":') for line in raw)
    result = verify([path])
    assert result.ok and result.decisions == 5 and result.last_seq == 6 and not result.notes


def test_a_restart_continues_the_chain_of_its_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 2)
    first = path.read_bytes()
    write_log(path, 3)
    assert path.read_bytes().startswith(first)
    records = records_of(path)
    restart = records[4]
    assert restart["record"] == "start" and restart["reason"] == "restart" and restart["seq"] == 4
    assert restart["prev"] == hashlib.sha256(first.splitlines()[-1]).hexdigest()
    result = verify([path])
    assert result.ok and result.decisions == 5 and not result.notes


CRASHING_WRITER = textwrap.dedent(
    """
    import os, sys
    from signer.config import AuditConfig
    from signer.observability.audit import AuditLog
    from signer.types import AuditEvent
    audit = AuditLog(AuditConfig(path=sys.argv[1]))
    for n in range(3):
        audit.record(AuditEvent(client="vc-1", method="Sign", outcome="succeeded", slot=n))
    assert audit.flush()
    os._exit(9)  # no stop record
    """
)


def test_a_crash_leaves_the_chain_open_and_the_restart_says_so(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    done = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path)], cwd=REPO_ROOT, timeout=60, check=False)
    assert done.returncode == 9
    cut = verify([path])
    assert not cut.ok and cut.problem is not None
    assert "without a stop record" in cut.problem.message and cut.problem.line == 4
    assert verify([path], live=True).ok
    write_log(path, 1)
    result = verify([path])
    assert result.ok
    assert [n.message for n in result.notes] == ["the signer restarted without a stop record: it had crashed"]


def test_a_file_that_does_not_end_in_a_chain_line_is_renamed_and_a_new_chain_begins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.log"
    older = '{"ts":"2024-01-01T00:00:00.000Z","client":"vc-1","method":"Sign","outcome":"succeeded"}\n'
    path.write_text(older)
    with caplog.at_level(logging.WARNING):
        write_log(path, 1)
    (aside,) = tmp_path.glob("audit.log.unchained-*")
    assert aside.read_text() == older  # kept as it was
    records = records_of(path)
    assert records[0]["seq"] == 0 and records[0]["unchained_file"] == aside.name
    assert verify([path]).ok
    assert "renamed" in caplog.text


def test_a_second_writer_on_one_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(AuditConfig(path=str(path))), pytest.raises(ConfigError, match="another process"):
        AuditLog(AuditConfig(path=str(path)))
    assert verify([path]).ok


def test_lines_dropped_before_the_writer_are_counted_in_the_chain(tmp_path: Path) -> None:
    """A pipe nobody reads: the queue overflows and lines are dropped; once the output moves again,
    a ``dropped`` record with their count is the next line of the chain, which verifies."""
    read_end, write_end = os.pipe()
    collected = tmp_path / "stdout.log"
    audit = AuditLog(AuditConfig(path=f"/dev/fd/{write_end}"), capacity=20)
    for n in range(2000):  # ~300 bytes each: the 64 KiB pipe and the 20-line queue overflow
        audit.record(event(n, reason="x" * 200))
    assert audit.dropped > 0

    def drain() -> None:
        with collected.open("wb") as out:
            while chunk := os.read(read_end, 65536):
                out.write(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    audit.record(event(9999))  # (dropped too, if the queue is still full)
    audit.close()
    os.close(write_end)
    reader.join(timeout=30)
    os.close(read_end)
    dropped = audit.dropped
    records = records_of(collected)
    counted = [r for r in records if r.get("record") == "dropped"]
    assert sum(r["count"] for r in counted) == dropped
    assert records[-1]["record"] == "stop" and records[-1]["dropped"] == dropped
    result = verify([collected])
    assert result.ok, result.problem
    assert result.dropped == dropped
    assert result.decisions + dropped == 2001


LIMITED_WRITER = textwrap.dedent(
    """
    import os, resource, signal, sys, time
    from signer.config import AuditConfig
    from signer.observability.audit import AuditLog
    from signer.types import AuditEvent
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    path = sys.argv[1]
    def event(n):
        return AuditEvent(client="vc-1", method="Sign", outcome="succeeded", slot=n, reason="y" * 100)
    audit = AuditLog(AuditConfig(path=path))
    audit.record(event(0))
    assert audit.flush()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 100, hard))  # the disk is full
    for n in range(1, 6):
        audit.record(event(n))
    assert audit.flush()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # room again
    audit.record(event(6))
    audit.close()
    print(audit.lost, audit.write_errors)
    """
)


def test_lines_a_failing_write_lost_are_counted_and_the_cut_line_is_skipped(tmp_path: Path) -> None:
    """A file-size limit cuts a write mid-line (as a full disk does): the fragment is ended by a
    newline, the next record is marked after_partial_line and links to the last whole line, the lost
    lines are counted, and the chain verifies."""
    path = tmp_path / "audit.log"
    done = subprocess.run(
        [sys.executable, "-c", LIMITED_WRITER, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lost, write_errors = map(int, done.stdout.split())
    assert lost == 5 and write_errors >= 1
    raw = lines_of(path)
    fragments = [line for line in raw if not line.endswith(b"}")]
    assert len(fragments) == 1 and len(fragments[0]) > 0  # the write really stopped mid-line
    records = [json.loads(line) for line in raw if line.endswith(b"}")]
    (lost_record,) = [r for r in records if r.get("record") == "lost"]
    assert lost_record["count"] == 5 and lost_record["after_partial_line"] is True
    result = verify([path])
    assert result.ok, result.problem
    assert result.lost == 5 and [r["slot"] for r in records if "slot" in r] == [0, 6]
    assert any("incomplete line" in n.message for n in result.notes)


# --- the HMAC key ---------------------------------------------------------------------------------


def test_a_keyed_chain_verifies_with_its_key_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 3, hmac_key=SecretRef(file=key_file(tmp_path, KEY)))
    raw = lines_of(path)
    start = json.loads(raw[0])
    key = ChainKey.from_text(KEY)
    assert start["hash"] == "hmac-sha256" and start["key_id"] == key.key_id
    assert KEY not in path.read_text()
    assert json.loads(raw[1])["prev"] == hmac.new(KEY.encode(), raw[0], hashlib.sha256).hexdigest()
    assert verify([path], [key]).ok
    missing = verify([path])
    assert missing.problem is not None and f"key of id {key.key_id}" in missing.problem.message
    wrong = verify([path], [ChainKey.from_text(OTHER_KEY)])
    assert wrong.problem is not None and "wrong or missing --hmac-key-file" in wrong.problem.message
    assert (wrong.problem.line, wrong.problem.seq) == (1, 0)


def test_a_keyed_chain_rebuilt_without_the_key_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 3, hmac_key=SecretRef(file=key_file(tmp_path, KEY)))
    records = records_of(path)
    records[2]["outcome"] = "denied"  # the edit
    # Rebuilt as an unkeyed chain from the start: every link right for sha256.
    forged: list[str] = []
    prev = GENESIS
    for record in records:
        body = {k: v for k, v in record.items() if k not in ("seq", "prev")}
        if body.get("record") == "start":
            body["hash"] = "sha256"
            body.pop("key_id")
        line = chained(record["seq"], prev, json.dumps(body, separators=(",", ":")))
        forged.append(line)
        prev = hashlib.sha256(line.encode()).hexdigest()
    path.write_text("\n".join(forged) + "\n")
    assert verify([path]).ok  # without the key nothing can tell
    caught = verify([path], [ChainKey.from_text(KEY)])
    assert caught.problem is not None and "plain sha256" in caught.problem.message


def test_a_short_hmac_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 32 characters"):
        AuditLog(AuditConfig(path=str(tmp_path / "a.log"), hmac_key=SecretRef(file=key_file(tmp_path, "short"))))


# --- rotation and the head ------------------------------------------------------------------------


def test_rotation_starts_files_that_link_to_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 40, rotate_bytes=2048)
    rotated = sorted(tmp_path.glob("audit.log.*"))
    assert len(rotated) >= 3
    for older, newer in zip(rotated, [*rotated[1:], path], strict=False):
        last = json.loads(older.read_bytes().splitlines()[-1])
        first = json.loads(newer.read_bytes().splitlines()[0])
        assert last["record"] == "rotate" and last["file"] == older.name
        assert older.name.endswith(f".{last['seq']:012d}")
        assert first["record"] == "start" and first["reason"] == "rotation" and first["previous_file"] == older.name
        assert first["prev"] == hashlib.sha256(older.read_bytes().splitlines()[-1]).hexdigest()
    files = [*rotated, path]
    random.Random(7).shuffle(files)
    result = verify(files)
    assert result.ok and result.decisions == 40
    assert list(result.files) == [str(p) for p in [*rotated, path]]
    missing = verify([rotated[0], *rotated[2:], path])
    assert missing.problem is not None and "a file of the series" in missing.problem.message
    assert missing.problem.file == str(rotated[2]) and missing.problem.line == 1


def test_a_file_is_rotated_at_the_line_that_reaches_its_size_when_lines_come_one_by_one(tmp_path: Path) -> None:
    """One line per batch (the writer's common case): the file is rotated right after the line that
    makes it reach audit.rotate_bytes, not before and not later."""
    path = tmp_path / "audit.log"
    with AuditLog(AuditConfig(path=str(path), rotate_bytes=2048)) as audit:
        for n in range(60):
            audit.record(event(n, reason="r" * 40))
            assert audit.flush()
    rotated = sorted(tmp_path.glob("audit.log.*"))
    assert len(rotated) >= 3
    for older in rotated:
        *kept, last = older.read_bytes().splitlines(keepends=True)
        assert json.loads(last)["record"] == "rotate"
        size = sum(map(len, kept))
        assert size >= 2048 > size - len(kept[-1]), older.name
    result = verify([*rotated, path])
    assert result.ok and result.decisions == 60


def _ends_with_checkpoint(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        return False  # a line is being written
    return bool(json.loads(text.splitlines()[-1]).get("record") == "checkpoint")


def test_the_head_is_checkpointed_logged_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.log"
    heads: list[tuple[int, str]] = []
    with caplog.at_level(logging.INFO, logger="signer.observability.audit"):
        audit = AuditLog(AuditConfig(path=str(path), checkpoint_interval_s=0.05))
        audit.report_head(lambda seq, head: heads.append((seq, head)))
        for n in range(3):
            audit.record(event(n))
            assert audit.flush()
            wait_for(lambda: _ends_with_checkpoint(path), f"a checkpoint after record {n}")
        audit.close()
    records = records_of(path)
    checkpoints = [r for r in records if r.get("record") == "checkpoint"]
    assert checkpoints and all(r["written"] >= 1 for r in checkpoints)
    raw = lines_of(path)
    reported = dict(heads)
    for record in [*checkpoints, records[0], records[-1]]:  # start, checkpoints, stop
        seq = record["seq"]
        assert reported[seq] == hashlib.sha256(raw[seq]).hexdigest()
        assert verify([path], head=(seq, reported[seq])).ok
        assert verify([path], head=parse_head(f"{seq}:{reported[seq][:13]}")).ok
    logged = [r for r in caplog.records if r.getMessage() == "audit chain head"]
    assert {(r.__dict__["seq"], r.__dict__["head"]) for r in logged} == set(heads)
    seq, head = heads[-1]
    assert audit.head == (seq, head)
    other = verify([path], head=(seq, "0" * 13))
    assert other.problem is not None and "does not hash to the given head" in other.problem.message


def test_rotation_needs_a_file_and_a_sane_size() -> None:
    keys = {"pin": {"env": "X"}}
    with pytest.raises(ConfigError, match=r"rotate_bytes needs audit\.path to be a file"):
        parse_config({"keys": keys, "audit": {"rotate_bytes": 4096}})
    with pytest.raises(ConfigError, match=r"audit\.rotate_bytes"):
        parse_config({"keys": keys, "audit": {"path": "/x", "rotate_bytes": 10}})
    with pytest.raises(ConfigError, match=r"--head"):
        parse_head("12")


def test_a_chain_that_gets_a_key_later_verifies_with_the_key_and_the_key_covers_what_came_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 2)  # no key yet
    write_log(path, 2, hmac_key=SecretRef(file=key_file(tmp_path, KEY)))  # the operator adds one
    key = ChainKey.from_text(KEY)
    assert verify([path], [key]).ok
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"slot":0', '"slot":7')  # an early, unkeyed line changed...
    forged: list[str] = []
    prev = GENESIS
    for line in lines[:5]:  # ...and the plain chain rebuilt up to the keyed start record
        record = json.loads(line)
        body = json.dumps({k: v for k, v in record.items() if k not in ("seq", "prev")}, separators=(",", ":"))
        text = chained(record["seq"], prev, body)
        forged.append(text + "\n")
        prev = hashlib.sha256(text.encode()).hexdigest()
    path.write_text("".join(forged[:4] + lines[4:]))
    caught = verify([path], [key])
    assert caught.problem is not None and caught.problem.line == 4 and "changed" in caught.problem.message


def test_check_config_reads_the_audit_hmac_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X", "check-config-test-pin")
    short = key_file(tmp_path, "too-short", "short.key")
    config = tmp_path / "signer.toml"
    config.write_text(
        f'[keys]\npin = {{ env = "X" }}\n[audit]\npath = "{tmp_path / "a.log"}"\nhmac_key = {{ file = "{short}" }}\n'
    )
    with pytest.raises(ConfigError, match="at least 32 characters"):
        check_config(config)


def test_an_overlong_line_is_not_a_chain_line_and_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    write_log(path, 2)
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = '{"seq":2,' + "x" * (2 * 1024 * 1024) + "\n"
    path.write_text("".join(lines))
    result = verify([path])
    assert result.problem is not None and (result.problem.line, result.problem.seq) == (3, None)
    assert "not a line of the chain" in result.problem.message
