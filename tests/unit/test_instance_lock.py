"""One signer per SQLite data directory (issue 13.14): the lock file, its holder, and which directories
a configuration locks. Contention needs another process (a record lock is per process): a real one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signer.app import instance_lock_dirs
from signer.config import parse_config
from signer.errors import DataDirLocked
from signer.instance import LOCK_FILE, InstanceLock

HOLD = """
import os, sys, time
from pathlib import Path
from signer.instance import InstanceLock
lock = InstanceLock.acquire([Path(sys.argv[1])])
if sys.argv[2] == "fork" and os.fork() == 0:   # a child that outlives its parent, like a signing worker
    time.sleep(60)
    os._exit(0)
print("held", flush=True)
time.sleep(60)
"""


def hold(directory: Path, mode: str = "plain") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(directory), mode], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def acquire_soon(directory: Path, timeout_s: float = 5.0) -> InstanceLock:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return InstanceLock.acquire([directory])
        except DataDirLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_held_lock_refuses_naming_the_holder_and_sigkill_releases_it(tmp_path: Path) -> None:
    with hold(tmp_path) as holder:  # the with closes its stdout pipe
        try:
            with pytest.raises(DataDirLocked, match=rf"another signer \(pid {holder.pid}\)") as caught:
                InstanceLock.acquire([tmp_path])
            assert str(tmp_path / LOCK_FILE) in caught.value.message
        finally:
            holder.kill()
            holder.wait()
    lock = acquire_soon(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_is_killed(tmp_path: Path) -> None:
    with hold(tmp_path, "fork") as holder:  # the with closes its stdout pipe
        try:
            with pytest.raises(DataDirLocked):
                InstanceLock.acquire([tmp_path])
            holder.kill()  # the parent only: its forked child keeps running
            holder.wait()
            InstanceLock.acquire([tmp_path]).release()  # at once: the child never held the lock
        finally:
            os.killpg(holder.pid, signal.SIGKILL)


def test_sqlite_locks_the_data_dir_and_the_store_dir_postgres_locks_nothing(tmp_path: Path) -> None:
    keys = {"module": "emulated", "data_dir": str(tmp_path / "data"), "pin": {"env": "PIN"}}
    assert instance_lock_dirs(parse_config({"keys": keys})) == [tmp_path / "data", tmp_path / "data"]
    elsewhere = parse_config({"keys": keys, "protection": {"sqlite_path": str(tmp_path / "db" / "p.sqlite")}})
    assert instance_lock_dirs(elsewhere) == [tmp_path / "data", tmp_path / "db"]
    replicas = parse_config({"keys": keys, "protection": {"backend": "postgres", "dsn": "host=db dbname=signer"}})
    assert instance_lock_dirs(replicas) == []  # replicas share one history (and may share a data dir)
