"""End to end, the tamper-evident audit log (issue 16.4): real ``signer serve`` processes write it,
the real ``signer audit verify`` command checks it.

* ``serve --dev --audit-file PATH``: a clean log verifies; a deleted, an edited and a reordered line,
  a truncated file (cut mid-line, or its last lines cut) are each found and named; a signer killed
  and restarted on the same file continues the chain.
* a production config (module made by ``signer keys init --generate-pin``) with ``audit.hmac_key``,
  ``audit.rotate_bytes`` and a short ``audit.checkpoint_interval_s``: the rotated series verifies in
  any order, with the key only; the head in /metrics is in the log; a missing file, a broken rotation
  link and a wrong key are each named.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from signer.api._proto.v1 import responsestate_pb2, signer_pb2, signer_pb2_grpc
from signer.observability.audit_chain import HEAD_METRIC_HEX_DIGITS
from tests.e2e.harness import (
    DOMAIN_BEACON_PROPOSER,
    DOMAIN_RANDAO,
    SignerProcess,
    SignerProcessError,
    init_protection,
    ref_domain,
)
from tests.e2e.test_eth2_e2e import root
from tests.support import wait_for

pytestmark = pytest.mark.e2e

SUCCEEDED, DENIED = responsestate_pb2.SUCCEEDED, responsestate_pb2.DENIED
HMAC_KEY = "3c9e" * 16
OTHER_KEY = "77aa" * 16


def sign(channel: grpc.Channel, account: str, tags: range) -> None:
    """Sign a RANDAO-domain root per tag (each succeeds) and one proposer-domain root through Sign
    (refused: a slashable domain), so the log holds both outcomes."""
    stub = signer_pb2_grpc.SignerStub(channel)
    for tag in tags:
        request = signer_pb2.SignRequest(account=account, data=root(f"audit-{tag}"), domain=ref_domain(DOMAIN_RANDAO))
        assert stub.Sign(request, timeout=30).state == SUCCEEDED
    refused = signer_pb2.SignRequest(account=account, data=root("p"), domain=ref_domain(DOMAIN_BEACON_PROPOSER))
    assert stub.Sign(refused, timeout=30).state == DENIED


def decisions_on_disk(log: Path) -> int:
    """The whole decision lines in ``log`` (the chain's own records have a ``record`` field)."""
    if not log.exists():
        return 0
    lines = [line for line in log.read_text(encoding="utf-8").splitlines(keepends=True) if line.endswith("\n")]
    return sum(1 for line in lines if "record" not in json.loads(line))


def audit_verify(*args: object) -> tuple[int, str]:
    """``signer audit verify ARGS`` as an operator runs it: (exit code, stdout + stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "signer", "audit", "verify", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def broken_line(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("BROKEN: ")]
    return line


# --- serve --dev --audit-file ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dev_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The audit log of a dev signer that signed, was killed, restarted on it and stopped cleanly."""
    base = tmp_path_factory.mktemp("audit-dev")
    log = base / "audit.jsonl"
    proc = SignerProcess.dev(base / "data", extra_args=["--audit-file", str(log)]).start()
    try:
        with proc.channel() as channel:
            sign(channel, "dev/0", range(4))
        wait_for(lambda: decisions_on_disk(log) == 5, "the writer thread has the 5 decision lines on disk")
        proc.restart(kill=True)  # SIGKILL: no stop record
        with proc.channel() as channel:
            sign(channel, "dev/1", range(4, 8))
    finally:
        assert proc.terminate() == 0
    assert "audit" not in proc.stdout  # the audit log went to the file, not to stdout
    return log


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_a_clean_log_of_a_real_server_verifies(dev_log: Path) -> None:
    code, output = audit_verify(dev_log)
    assert code == 0, output
    records = [json.loads(line) for line in lines_of(dev_log)]
    decisions = [r for r in records if "record" not in r]
    assert len(decisions) == 10 and {r["outcome"] for r in decisions} == {"succeeded", "denied"}
    starts = [r for r in records if r.get("record") == "start"]
    assert [r["reason"] for r in starts] == ["new", "restart"]
    assert records[-1]["record"] == "stop"
    assert "OK: 1 file(s), seq 0 to" in output and "10 decisions" in output
    assert "restarted without a stop record" in output  # the SIGKILL, noted


def tampered(dev_log: Path, tmp_path: Path, change: str) -> tuple[Path, int]:
    """A copy of the log with one change; returns it and the line number the change is at."""
    lines = lines_of(dev_log)
    target = 3  # a decision line (1: start)
    assert "record" not in json.loads(lines[target - 1])
    if change == "deleted":
        del lines[target - 1]
    elif change == "edited":
        lines[target - 1] = lines[target - 1].replace('"succeeded"', '"denied"')
        assert lines[target - 1] != lines_of(dev_log)[target - 1]
    elif change == "reordered":
        lines[target - 1], lines[target] = lines[target], lines[target - 1]
    elif change == "truncated mid-line":
        target = len(lines)
        lines[-1] = lines[-1][: len(lines[-1]) // 2]
    elif change == "last lines cut":
        lines = lines[:-2]
        target = len(lines)
    copy = tmp_path / f"audit-{change.replace(' ', '-')}.jsonl"
    copy.write_text("".join(lines), encoding="utf-8")
    return copy, target


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("deleted", "seq 2 missing before this line"),
        ("edited", "changed: the next line"),
        ("reordered", "lines reordered"),
        ("truncated mid-line", "incomplete last line: the file was truncated"),
        ("last lines cut", "without a stop record"),
    ],
)
def test_verify_names_the_first_broken_or_missing_line(dev_log: Path, tmp_path: Path, change: str, says: str) -> None:
    copy, line = tampered(dev_log, tmp_path, change)
    code, output = audit_verify(copy)
    assert code == 1, output
    broken = broken_line(output)
    assert f"{copy} line {line}" in broken and says in broken, broken


def test_a_running_signer_log_verifies_live_and_names_an_open_end_otherwise(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    proc = SignerProcess.dev(tmp_path / "data", extra_args=["--audit-file", str(log)]).start()
    try:
        with proc.channel() as channel:
            sign(channel, "dev/0", range(2))
        wait_for(lambda: decisions_on_disk(log) == 3, "the writer thread has the 3 decision lines on disk")
        code, output = audit_verify("--live", log)
        assert code == 0, output
        code, output = audit_verify(log)
        assert code == 1 and "without a stop record" in broken_line(output)
        # A second signer on the file would interleave two chains: it refuses to start.
        other = SignerProcess.dev(tmp_path / "other", extra_args=["--audit-file", str(log)])
        with pytest.raises(SignerProcessError, match="being written by another process"):
            other.start()
    finally:
        assert proc.terminate() == 0
    assert audit_verify(log)[0] == 0


# --- a production config: HMAC key, rotation, checkpoints, the head metric ------------------------


@dataclass
class RotatedLog:
    files: list[Path]
    key: Path
    metric_head: tuple[int, int]
    """(signer_audit_chain_head_seq, signer_audit_chain_head_hash) scraped while it ran."""


def metric(text: str, name: str) -> float:
    (value,) = [line.split()[1] for line in text.splitlines() if line.startswith(name + " ")]
    return float(value)


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RotatedLog]:
    base = tmp_path_factory.mktemp("audit-rotated")
    data, pin_file, key = base / "data", base / "module.pin", base / "audit-hmac.key"
    for command in (
        ["keys", "init", "--data-dir", str(data), "--generate-pin", str(pin_file)],
        ["keys", "generate", "--data-dir", str(data), "--pin-file", str(pin_file), "--count", "1", "--wallet", "w"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "signer", *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
    key.write_text(HMAC_KEY + "\n")
    key.chmod(0o600)
    log = base / "audit" / "audit.jsonl"
    log.parent.mkdir()
    config = base / "signer.toml"
    config.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{data}"
pin = {{ file = "{pin_file}" }}

[[clients]]
name = "local"
allow_accounts = ["w/*"]
operations = ["sign_generic"]

[audit]
path = "{log}"
hmac_key = {{ file = "{key}" }}
rotate_bytes = 2048
checkpoint_interval_s = 0.2
""",
        encoding="utf-8",
    )
    init_protection(config)
    proc = SignerProcess.from_config(config).start()
    try:
        with proc.channel() as channel:
            sign(channel, "w/0", range(20))
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(proc.metrics_url, timeout=10) as answer:  # noqa: S310 - loopback
                text = answer.read().decode()
            head = (int(metric(text, "signer_audit_chain_head_seq")), int(metric(text, "signer_audit_chain_head_hash")))
            if head[0] > 30 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        assert proc.terminate() == 0
    logged = [json.loads(line) for line in proc.logs.splitlines() if '"audit chain head"' in line]
    assert any(r["seq"] == head[0] and r["head"].startswith(f"{head[1]:0{HEAD_METRIC_HEX_DIGITS}x}") for r in logged)
    files = sorted(log.parent.iterdir())
    yield RotatedLog(files, key, head)


def test_a_rotated_keyed_series_verifies_in_any_order_with_its_key(rotated: RotatedLog) -> None:
    assert len(rotated.files) >= 3  # audit.jsonl and at least two rotated files
    files = list(rotated.files)
    random.Random(16).shuffle(files)
    code, output = audit_verify("--hmac-key-file", rotated.key, *files)
    assert code == 0, output
    assert f"OK: {len(files)} file(s), seq 0 to" in output and "21 decisions" in output
    seq, value = rotated.metric_head
    code, output = audit_verify(
        "--hmac-key-file", rotated.key, "--head", f"{seq}:{value:0{HEAD_METRIC_HEX_DIGITS}x}", *files
    )
    assert code == 0, output  # the head /metrics exported is in the log


def test_a_keyed_log_without_its_key_or_with_another_is_refused(rotated: RotatedLog, tmp_path: Path) -> None:
    code, output = audit_verify(*rotated.files)
    assert code == 1 and "wrong or missing --hmac-key-file" in broken_line(output)
    other = tmp_path / "other.key"
    other.write_text(OTHER_KEY + "\n")
    code, output = audit_verify("--hmac-key-file", other, *rotated.files)
    assert code == 1 and "the key given is not that key" in broken_line(output)
    assert HMAC_KEY not in output


def test_a_missing_file_of_a_rotated_series_is_named(rotated: RotatedLog) -> None:
    files = [f for f in rotated.files if f.name != "audit.jsonl"]
    after = sorted(files)[2] if len(files) > 2 else next(f for f in rotated.files if f.name == "audit.jsonl")
    given = [f for f in rotated.files if f != sorted(files)[1]]
    code, output = audit_verify("--hmac-key-file", rotated.key, *given)
    assert code == 1
    broken = broken_line(output)
    assert f"{after} line 1" in broken and "a file of the series" in broken, broken


def test_a_broken_rotation_link_is_named(rotated: RotatedLog, tmp_path: Path) -> None:
    """The last line of a rotated file (its rotate record) changed: the next file's first line no
    longer links to it."""
    first = sorted(f for f in rotated.files if f.name != "audit.jsonl")[0]
    copies = []
    for path in rotated.files:
        copy = tmp_path / path.name
        text = path.read_text(encoding="utf-8")
        if path == first:
            text = text.replace('"record":"rotate"', '"record":"rotate","note":"x"')
        copy.write_text(text, encoding="utf-8")
        copies.append(copy)
    last_line = len(first.read_text(encoding="utf-8").splitlines())
    code, output = audit_verify("--hmac-key-file", rotated.key, *copies)
    assert code == 1
    broken = broken_line(output)
    assert f"{tmp_path / first.name} line {last_line}" in broken and "changed" in broken, broken


# --- a clean stop, whichever thread the SIGTERM reaches ---------------------------------------------

_TGKILL = {"x86_64": 234, "aarch64": 131}
"""The tgkill(2) syscall number: a signal to one thread of a process."""


def tgkill(pid: int, tid: int, signum: int) -> None:
    machine = os.uname().machine
    assert machine in _TGKILL, f"no tgkill syscall number known for {machine}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[machine], pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


def test_a_sigterm_that_reaches_another_thread_still_stops_the_signer_cleanly(tmp_path: Path) -> None:
    """The kernel hands a process-directed SIGTERM to any thread that does not block it. Python runs
    the handler on the main thread, which waited for the stop event without a timeout and so never
    woke up: the signer ignored the SIGTERM (Kubernetes then kills it: no clean stop, no stop record).
    Sent here to a thread other than the main one, every time."""
    log = tmp_path / "audit.jsonl"
    proc = SignerProcess.dev(tmp_path / "data", extra_args=["--audit-file", str(log)]).start()
    try:
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert others
        tgkill(proc.pid, others[-1], signal.SIGTERM)
        assert proc.wait(timeout_s=15) == 0
    finally:
        if proc.running:
            proc.kill()
    assert '"msg": "shutting down"' in proc.logs
    assert json.loads(lines_of(log)[-1])["record"] == "stop"
    assert audit_verify(log)[0] == 0
