"""One signer per SQLite data directory: an exclusive lock file, held for the life of the process.

Two ``signer serve`` on one data directory with the SQLite store would share one history file.
SQLite's own locks keep that safe on a local disk, but NFS and other shared (RWX) volumes do not
promise them, so ``serve`` takes ``signer.lock`` in the data directory (and in the store's directory)
first and a second instance refuses to start, naming the holder's pid. (Replicas on PostgreSQL share
their history by design and take no lock: ``signer.app.instance_lock_dirs``.)

The lock is a POSIX record lock (``fcntl.lockf``), not ``flock``: the kernel releases both when the
process ends (SIGKILL included), but a ``flock`` is shared with every process forked afterwards, and
the signing workers (``signer.keys.pool``) could hold it for a moment after their parent was killed;
a record lock is never inherited by a fork. Linux's NFS client also takes record locks on the
server (NLM, NFSv4), where it only emulates ``flock`` with them.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path

from signer.errors import DataDirLocked

LOCK_FILE = "signer.lock"


class InstanceLock:
    """The held lock files (one per directory); ``release`` (or process exit) lets them go."""

    def __init__(self, held: list[tuple[Path, int]]) -> None:
        self._held = held

    @property
    def paths(self) -> list[Path]:
        return [path for path, _ in self._held]

    @classmethod
    def acquire(cls, directories: Iterable[Path]) -> InstanceLock:
        """Lock ``signer.lock`` in each directory (created if missing), or raise DataDirLocked and
        hold none of them."""
        held: list[tuple[Path, int]] = []
        try:
            for directory in dict.fromkeys(Path(d).absolute() for d in directories):
                held.append(_lock(directory / LOCK_FILE))
        except BaseException:
            cls(held).release()
            raise
        return cls(held)

    def release(self) -> None:
        held, self._held = self._held, []
        for _, fd in held:
            os.close(fd)  # closing the descriptor drops the record lock


def _lock(path: Path) -> tuple[Path, int]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DataDirLocked(f"cannot open the instance lock file {path}: {exc.strerror}") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise DataDirLocked(
                f"another signer (pid {holder}) is running on this data directory: {path} is locked. "
                "Stop it first; two signers on one data directory could both sign"
            ) from None
        raise DataDirLocked(f"cannot lock the instance lock file {path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return path, fd


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file ("unknown" if it has not yet)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
