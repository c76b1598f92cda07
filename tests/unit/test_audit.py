"""AuditLog: one JSON line per decision, stdout or appended file, thread-safe, no secrets. (The hash
chain the lines form: tests/unit/test_audit_chain.py.)"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from signer.config import AuditConfig
from signer.errors import ConfigError
from signer.observability.audit import AuditLog
from signer.types import AuditEvent, ConsensusStep

PUBLIC_KEY = bytes.fromhex("a1" * 48)
TS = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z


def decisions(lines: list[str]) -> list[dict[str, object]]:
    """The decision lines among audit lines (the chain's own records have a ``record`` field)."""
    return [r for r in (json.loads(line) for line in lines) if "record" not in r]


def attestation_event(**overrides: object) -> AuditEvent:
    values: dict[str, object] = {
        "client": "vc-1",
        "method": "SignBeaconAttestations",
        "outcome": "denied",
        "public_key": PUBLIC_KEY,
        "account": "w1/a",
        "operation": "sign_attestation",
        "slot": 12345,
        "source_epoch": 380,
        "target_epoch": 385,
        "offence": "surrounding_vote",
        "reason": "attestation 380->385 surrounds 381->384",
        "duration_ms": 1.23456,
        "request_id": "abc-123",
        "ts": TS,
    }
    values.update(overrides)
    return AuditEvent(**values)  # type: ignore[arg-type]


def decision_line(tmp_path: Path, event: AuditEvent, now: float) -> str:
    """The line ``AuditLog.record(event)`` writes (with its newline), without the chain's seq and prev
    (``now``: the clock). The file holds exactly the start record, that line and the stop record."""
    path = tmp_path / "one.log"
    with AuditLog(AuditConfig(path=str(path)), clock=lambda: now) as log:
        log.record(event)
    start, line, stop = path.read_text().splitlines(keepends=True)
    assert (json.loads(start)["record"], json.loads(stop)["record"]) == ("start", "stop")
    assert line.startswith('{"seq":1,"prev":"')
    return "{" + line.split(",", 2)[2]


def test_line_has_the_documented_fields(tmp_path: Path) -> None:
    line = decision_line(tmp_path, attestation_event(), now=0.0)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert json.loads(line) == {
        "ts": "2023-11-14T22:13:20.250Z",
        "client": "vc-1",
        "method": "SignBeaconAttestations",
        "outcome": "denied",
        "key": "0x" + "a1" * 48,
        "account": "w1/a",
        "operation": "sign_attestation",
        "slot": 12345,
        "source_epoch": 380,
        "target_epoch": 385,
        "offence": "surrounding_vote",
        "reason": "attestation 380->385 surrounds 381->384",
        "duration_ms": 1.235,
        "request_id": "abc-123",
    }


def test_cometbft_event_and_missing_fields_are_omitted(tmp_path: Path) -> None:
    event = AuditEvent(
        client="comet-1",
        method="SignVote",
        outcome="succeeded",
        height=100,
        round=0,
        step=ConsensusStep.PRECOMMIT,
    )
    record = json.loads(decision_line(tmp_path, event, now=TS))
    assert record == {
        "ts": "2023-11-14T22:13:20.250Z",
        "client": "comet-1",
        "method": "SignVote",
        "outcome": "succeeded",
        "height": 100,
        "round": 0,
        "step": 3,
    }


def test_control_characters_in_a_client_name_cannot_forge_lines(tmp_path: Path) -> None:
    line = decision_line(tmp_path, attestation_event(client='evil\n{"client":"vc-2"}'), now=0.0)
    assert line.count("\n") == 1
    assert json.loads(line)["client"] == 'evil\n{"client":"vc-2"}'


def test_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(AuditConfig(path="-"), clock=lambda: TS)
    log.record(AuditEvent(client="vc-1", method="Sign", outcome="succeeded"))
    log.record(AuditEvent(client="vc-2", method="Sign", outcome="rate_limited"))
    assert log.flush()  # written by the audit writer thread, not the caller
    log.close()
    lines = capsys.readouterr().out.splitlines()
    assert [r["client"] for r in decisions(lines)] == ["vc-1", "vc-2"]
    assert decisions(lines)[0]["ts"] == "2023-11-14T22:13:20.250Z"
    assert [json.loads(line)["seq"] for line in lines] == list(range(4))  # start, 2 decisions, stop


def test_file_is_appended_with_private_mode(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(AuditConfig(path=str(path))) as log:
        log.record(attestation_event())
        # visible as soon as the writer thread has it, before close
        assert log.flush()
        assert [r["client"] for r in decisions(path.read_text().splitlines())] == ["vc-1"]
    first_run = path.read_text()
    with AuditLog(AuditConfig(path=str(path))) as log:
        log.record(attestation_event(client="vc-2"))
    text = path.read_text()
    assert text.startswith(first_run)
    assert [r["client"] for r in decisions(text.splitlines())] == ["vc-1", "vc-2"]
    fresh = tmp_path / "fresh.log"
    AuditLog(AuditConfig(path=str(fresh))).close()
    assert fresh.stat().st_mode & 0o007 == 0  # never world-readable (0640 before the umask)


def test_unwritable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"audit\.path: cannot open"):
        AuditLog(AuditConfig(path=str(tmp_path / "missing-dir" / "audit.log")))


def test_write_after_close_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(AuditConfig(path=str(path)))
    log.close()
    log.record(attestation_event())
    assert log.write_errors == 1
    assert decisions(path.read_text().splitlines()) == []


def test_many_threads_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    threads_n, per_thread = 8, 250
    with AuditLog(AuditConfig(path=str(path))) as log:

        def write(n: int) -> None:
            for i in range(per_thread):
                log.record(attestation_event(client=f"vc-{n}", slot=i, reason="x" * 500))

        threads = [threading.Thread(target=write, args=(n,)) for n in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    records = decisions(path.read_text().splitlines())
    assert len(records) == threads_n * per_thread
    for n in range(threads_n):
        assert [r["slot"] for r in records if r["client"] == f"vc-{n}"] == list(range(per_thread))


def test_an_event_has_no_field_for_secret_material() -> None:
    fields = set(AuditEvent.__dataclass_fields__)
    assert not {f for f in fields if any(w in f for w in ("secret", "pin", "password", "passphrase", "signature"))}


# --- a stalled output never blocks a decision (issue 13.13) ---------------------------------------


def test_a_stalled_output_drops_and_counts_lines_and_never_blocks_the_caller(tmp_path: Path) -> None:
    """A pipe nobody reads: recording stays instant, lines beyond the queue are dropped and counted,
    the first drop is logged once, and close() returns in bounded time."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, True)
    drops: list[tuple[str, int]] = []
    log = AuditLog(AuditConfig(path=f"/dev/fd/{write_end}"), capacity=50)
    log.count_drops(lambda stream, n: drops.append((stream, n)))
    try:
        started = time.perf_counter()
        for n in range(2000):  # ~300 bytes each: the 64 KiB pipe and the 50-line queue overflow
            log.record(attestation_event(slot=n, reason="x" * 200))
        assert time.perf_counter() - started < 2.0
        assert log.dropped > 0
        assert sum(n for _, n in drops) == log.dropped and {s for s, _ in drops} == {"audit"}
        started = time.perf_counter()
        assert log.flush(timeout_s=0.2) is False
        log.close()
        assert time.perf_counter() - started < 5.0
    finally:
        os.close(read_end)  # the stuck writer now fails (EPIPE), drains and ends
        os.close(write_end)
    _wait_until_stopped(log)


def test_an_audit_file_keeps_working_while_stdout_stalls(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    stalled = AuditLog(AuditConfig(path=f"/dev/fd/{write_end}"), capacity=10)
    path = tmp_path / "audit.log"
    try:
        with AuditLog(AuditConfig(path=str(path))) as audit_file:
            for n in range(500):
                stalled.record(attestation_event(slot=n, reason="y" * 300))
                audit_file.record(attestation_event(slot=n))
            assert audit_file.flush()
        assert [r["slot"] for r in decisions(path.read_text().splitlines())] == list(range(500))
        assert stalled.dropped > 0
    finally:
        stalled.close()
        os.close(read_end)
        os.close(write_end)
    _wait_until_stopped(stalled)


def _wait_until_stopped(log: AuditLog) -> None:
    """No writer thread outlives its test (the signing pool will not fork beside other threads)."""
    deadline = time.monotonic() + 10
    while log._writer.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not log._writer.running
