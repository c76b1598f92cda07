"""EmulatedKeyModule.change_pin (issue 16.3): the master key is re-sealed under the new PIN, every key
entry stays as it is, and a crash at any step leaves the old PIN or the new one working, never
neither (a real child process is killed between the steps)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from signer.crypto import bls
from signer.errors import KeyModuleError, ModuleTampered, WeakPin, WrongPin
from signer.keys.dev import dev_bls_secret, dev_ed25519_secret
from signer.keys.emulated import MODULE_FILE, EmulatedKeyModule
from signer.types import Scheme
from tests.support import REPO_ROOT

FAST_N = 2**10
OLD_PIN = "old-module-pin-for-tests"
NEW_PIN = "new-module-pin-for-tests"
MESSAGE = b"\x42" * 32
V1_FIXTURE = Path(__file__).parent / "fixtures" / "emulated-module-v1.json"
V1_PIN = "v1-module-fixture-pin"
"""tests/unit/fixtures/emulated-module-v1.json: written by the version 1 code (before this change):
old/0 (BLS, dev_bls_secret(0)) and old/ed (ed25519, dev_ed25519_secret()), scrypt n = 2**10."""


def make_module(data: Path) -> dict[str, bytes]:
    """A module with two keys; returns their signatures of MESSAGE by account."""
    module = EmulatedKeyModule(data, OLD_PIN, create=True, scrypt_n=FAST_N)
    module.import_secrets([("w/0", Scheme.BLS, dev_bls_secret(0)), ("w/ed", Scheme.ED25519, dev_ed25519_secret())])
    signatures = signatures_of(module)
    module.close()
    return signatures


def signatures_of(module: EmulatedKeyModule) -> dict[str, bytes]:
    return {info.name: module.sign(info.public_key, MESSAGE) for info in module.list_keys()}


def doc(data: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((data / MODULE_FILE).read_text())
    return loaded


def opens_with(data: Path, pin: str) -> EmulatedKeyModule | None:
    module = EmulatedKeyModule(data, pin)
    try:
        module.unlock()
    except WrongPin:
        return None
    return module


def test_change_pin_reseals_the_master_key_and_leaves_every_entry_as_it_was(tmp_path: Path) -> None:
    data = tmp_path / "data"
    before_signatures = make_module(data)
    before = doc(data)
    module = EmulatedKeyModule(data, OLD_PIN)
    module.change_pin(NEW_PIN)
    assert module.unlocked and module.verify_pin(NEW_PIN) and not module.verify_pin(OLD_PIN)
    module.close()
    after = doc(data)
    assert after["keys"] == before["keys"]  # byte for byte: not re-sealed
    assert after["kdf"]["salt"] != before["kdf"]["salt"] and after["kdf"]["n"] == before["kdf"]["n"]
    assert after["master_key"] != before["master_key"] and after["pin_verifier"] != before["pin_verifier"]
    assert opens_with(data, OLD_PIN) is None
    reopened = opens_with(data, NEW_PIN)
    assert reopened is not None
    assert signatures_of(reopened) == before_signatures


@pytest.mark.parametrize(
    ("new_pin", "rule"),
    [("short-pin", "at least 16"), ("passwordpassword", "common"), (OLD_PIN, "current one")],
)
def test_a_weak_or_unchanged_new_pin_is_refused_and_nothing_changes(tmp_path: Path, new_pin: str, rule: str) -> None:
    data = tmp_path / "data"
    make_module(data)
    before = (data / MODULE_FILE).read_bytes()
    module = EmulatedKeyModule(data, OLD_PIN)
    with pytest.raises(WeakPin, match=rule):
        module.change_pin(new_pin)
    assert (data / MODULE_FILE).read_bytes() == before


def test_a_wrong_current_pin_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_module(data)
    before = (data / MODULE_FILE).read_bytes()
    with pytest.raises(WrongPin):
        EmulatedKeyModule(data, "not-the-module-pin-at-all").change_pin(NEW_PIN)
    assert (data / MODULE_FILE).read_bytes() == before


def test_a_tampered_module_is_not_resealed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_module(data)
    tampered = doc(data)
    tampered["keys"] = tampered["keys"][:1]  # a key removed outside the module: the file MAC breaks
    (data / MODULE_FILE).write_text(json.dumps(tampered))
    before = (data / MODULE_FILE).read_bytes()
    with pytest.raises(ModuleTampered):
        EmulatedKeyModule(data, OLD_PIN).change_pin(NEW_PIN)
    assert (data / MODULE_FILE).read_bytes() == before


def test_a_sealed_master_key_that_was_changed_is_tampered_not_a_wrong_pin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_module(data)
    tampered = doc(data)
    sealed = tampered["master_key"]["sealed"]
    tampered["master_key"]["sealed"] = ("0" if sealed[0] != "0" else "1") + sealed[1:]
    (data / MODULE_FILE).write_text(json.dumps(tampered))
    with pytest.raises(ModuleTampered, match="master key"):
        EmulatedKeyModule(data, OLD_PIN).unlock()


def test_a_version_1_module_opens_and_becomes_version_2_at_its_first_pin_change(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(V1_FIXTURE, data / MODULE_FILE)
    old = EmulatedKeyModule(data, V1_PIN)
    old.unlock()
    names = {info.name: info.public_key for info in old.list_keys()}
    assert names["old/0"] == bls.secret_to_public(dev_bls_secret(0))
    expected = signatures_of(old)
    old.change_pin(NEW_PIN)
    old.close()
    after = doc(data)
    assert after["version"] == 2 and "master_key" in after
    assert after["keys"] == json.loads(V1_FIXTURE.read_text())["keys"]
    reopened = opens_with(data, NEW_PIN)
    assert reopened is not None and signatures_of(reopened) == expected
    reopened.generate("new/0", Scheme.BLS)  # and it takes new keys
    assert len(reopened.list_keys()) == 3


def test_a_running_signer_refuses_to_write_after_a_pin_change_and_says_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    signatures = make_module(data)
    running = EmulatedKeyModule(data, OLD_PIN)
    running.unlock()
    EmulatedKeyModule(data, OLD_PIN).change_pin(NEW_PIN)  # signer keys change-pin, meanwhile
    assert signatures_of(running) == signatures  # signing goes on
    with pytest.raises(KeyModuleError, match="restart") as refused:
        running.generate("w/1", Scheme.BLS)
    assert not isinstance(refused.value, ModuleTampered)
    reopened = opens_with(data, NEW_PIN)
    assert reopened is not None and len(reopened.list_keys()) == 2


# --- a crash between the steps -------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from signer.keys.emulated import EmulatedKeyModule

    data, old_pin, new_pin, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    real_replace, real_fsync = os.replace, os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        is_temp = os.path.basename(target).startswith(".emulated-module.")
        if point == "temp-file-written" and is_temp:
            os._exit(9)  # the new file is written but not yet synced
        real_fsync(fd)
        if point == "directory-not-synced" and os.path.isdir(target):
            os._exit(9)

    def replace(src, dst):
        if point == "before-rename":
            os._exit(9)
        real_replace(src, dst)
        if point == "after-rename":
            os._exit(9)

    os.fsync, os.replace = fsync, replace
    EmulatedKeyModule(data, old_pin).change_pin(new_pin)
    """
)


@pytest.mark.parametrize(
    ("point", "working"),
    [
        ("temp-file-written", OLD_PIN),
        ("before-rename", OLD_PIN),
        ("after-rename", NEW_PIN),
        ("directory-not-synced", NEW_PIN),
        ("never", NEW_PIN),
    ],
)
def test_a_crash_during_a_pin_change_leaves_the_old_or_the_new_pin_working(
    tmp_path: Path, point: str, working: str
) -> None:
    data = tmp_path / "data"
    signatures = make_module(data)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), OLD_PIN, NEW_PIN, point],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == (0 if point == "never" else 9), child.stderr  # it died exactly there
    other = NEW_PIN if working == OLD_PIN else OLD_PIN
    assert opens_with(data, other) is None
    module = opens_with(data, working)
    assert module is not None
    assert signatures_of(module) == signatures  # every key, unchanged
