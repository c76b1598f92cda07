"""Replacing, creating or moving a file atomically and durably: the one way the signer rewrites,
creates a secret file, or renames a file.

A reader (or a crash, or a power cut) sees either the old file or the new one, never a mix: the data
goes to a new temporary file in the same directory (created with the final permissions, so a
secret is never readable by others, not even for a moment), is fsynced, renamed over the target,
and the directory is fsynced so that the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

SECRET_MODE = 0o600
"""Owner read/write only: the mode of every file that holds key material or a PIN."""


def atomic_write(path: Path, data: bytes, *, mode: int = SECRET_MODE) -> None:
    """Replace ``path`` with ``data`` (see the module docstring); the file gets ``mode``.

    Raises OSError; on failure ``path`` is unchanged and no temporary file is left behind.
    """
    path = Path(path)
    tmp = _durable_temporary(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(path.parent)


def create_new(path: Path, data: bytes, *, mode: int = SECRET_MODE) -> bool:
    """Create ``path`` holding ``data`` unless a file is there already; never replaces one.

    The data is written and fsynced in a temporary file (with ``mode`` from the start), then linked to
    ``path`` in one step that fails if ``path`` exists: two processes racing to create the same file
    end with one file, whole, and each can read it. Returns True if this call created the file,
    False if one existed. Raises OSError otherwise; no temporary file is left behind.
    """
    path = Path(path)
    tmp = _durable_temporary(path, data, mode)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _sync_directory(path.parent)
    return True


def move(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` in one directory and make the rename survive a power cut.

    Raises OSError when the rename fails (``source`` is then where it was); a directory that cannot
    be fsynced after a successful rename is not an error (the rename happened).
    """
    os.rename(source, target)
    with contextlib.suppress(OSError):
        _sync_directory(Path(target).parent)


def _durable_temporary(path: Path, data: bytes, mode: int) -> str:
    """A new temporary file beside ``path`` holding ``data``, with ``mode`` from the start, fsynced;
    its name. Raises OSError and leaves no temporary file behind on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _sync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
