"""atomic_write: a file is replaced whole or not at all, durably, with the permissions asked for; and it
is the only way the signer rewrites a file."""

from __future__ import annotations

import ast
import os
import stat
import threading
from pathlib import Path

import pytest

from signer.atomicfile import atomic_write, create_new, move
from tests.support import REPO_ROOT


def test_replaces_the_content_with_mode_0600_by_default(tmp_path: Path) -> None:
    target = tmp_path / "module.json"
    target.write_bytes(b"old")
    target.chmod(0o644)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["module.json"]


def test_creates_a_missing_file_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "export.json"
    atomic_write(target, b"{}", mode=0o644)
    assert target.read_bytes() == b"{}"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "module.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["module.json"]


def test_a_missing_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        atomic_write(tmp_path / "absent" / "file", b"x")


def test_the_file_and_then_its_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[bool, bytes | None]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append((is_dir, None if is_dir else os.pread(fd, 100, 0)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write(tmp_path / "f", b"payload")
    assert synced == [(False, b"payload"), (True, None)]


def test_a_concurrent_reader_sees_the_old_or_the_new_file_never_a_mix(tmp_path: Path) -> None:
    target = tmp_path / "big"
    versions = [bytes([n]) * 2_000_000 for n in (1, 2)]
    atomic_write(target, versions[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            data = target.read_bytes()
            if data not in versions:
                seen.append(data[:8] + data[-8:])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(20):
            atomic_write(target, versions[n % 2])
    finally:
        stop.set()
        reader.join()
    assert seen == []


# --- the only way a file is rewritten ------------------------------------------------------------

_REPLACING_CALLS = {
    ("os", "replace"),
    ("os", "rename"),
    ("tempfile", "mkstemp"),
    ("tempfile", "NamedTemporaryFile"),
}
_REPLACING_METHODS = {"write_text", "write_bytes"}


def _replacing_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        name = node.func.attr
        if (isinstance(owner, ast.Name) and (owner.id, name) in _REPLACING_CALLS) or name in _REPLACING_METHODS:
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {ast.unparse(node.func)}")
    return found


@pytest.mark.slow  # parses the whole package
def test_every_file_the_signer_rewrites_goes_through_atomic_write() -> None:
    sources = sorted((REPO_ROOT / "signer").rglob("*.py"))
    offenders = [
        hit
        for path in sources
        if path != REPO_ROOT / "signer" / "atomicfile.py" and "_proto" not in path.parts
        for hit in _replacing_calls(path)
    ]
    assert offenders == []


def test_move_renames_durably_and_a_failed_move_leaves_the_source(tmp_path: Path) -> None:
    source, target = tmp_path / "log", tmp_path / "log.1"
    source.write_bytes(b"lines")
    move(source, target)
    assert not source.exists()
    assert target.read_bytes() == b"lines"
    with pytest.raises(FileNotFoundError):
        move(source, tmp_path / "log.2")
    assert not (tmp_path / "log.2").exists()


def test_create_new_creates_a_missing_file_with_the_mode_and_never_replaces_one(tmp_path: Path) -> None:
    target = tmp_path / "token"
    assert create_new(target, b"first") is True
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert create_new(target, b"second") is False
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]
