"""The keystore import shows a progress bar (issue 2, item 6), and ``progress=False`` hides it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from signer.cli import read_keystores
from signer.keys import dev, eip2335
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.importer import ImportStatus, import_keystores

FAST_N = 2**10
PIN = "unit-test-module-pin"


def _keystores(where: Path, count: int) -> list[Path]:
    where.mkdir()
    paths = []
    for index in range(count):
        secret = dev.dev_bls_secret(index)
        kdf = eip2335.KdfParams("pbkdf2", bytes([index]) * 32, c=1024)
        path = where / f"k{index}.json"
        path.write_text(json.dumps(eip2335.encrypt_keystore(secret, "pw", kdf=kdf)), encoding="utf-8")
        paths.append(path)
    return paths


def _import(tmp_path: Path, *, progress: bool) -> tuple[list[ImportStatus], str]:
    module = EmulatedKeyModule(tmp_path / "data", PIN, create=True, scrypt_n=FAST_N)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    paths = _keystores(tmp_path / "ks", 3)
    results = import_keystores(module, read_keystores(paths, "pw"), workers=2, progress=progress, console=console)
    return [r.status for r in results], screen.getvalue()


@pytest.mark.slow  # decrypts keystores
def test_import_draws_a_progress_bar_to_the_end(tmp_path: Path) -> None:
    statuses, screen = _import(tmp_path, progress=True)
    assert statuses == [ImportStatus.IMPORTED] * 3
    assert "importing keystores" in screen
    assert "3/3" in screen  # the bar reached the end: one step per keystore


@pytest.mark.slow  # decrypts keystores
def test_no_progress_bar_when_disabled(tmp_path: Path) -> None:
    statuses, screen = _import(tmp_path, progress=False)
    assert statuses == [ImportStatus.IMPORTED] * 3
    assert "importing keystores" not in screen
