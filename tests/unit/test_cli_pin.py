"""`signer keys init` and `signer keys change-pin` through cli.main (issue 16.3): a generated PIN goes
to a new 0600 file and is printed only when asked; the PIN policy refuses a weak PIN at creation (by
init and by the commands that create a module on the way) and at a change; a change keeps every key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from signer.cli import PIN_ENV, main
from signer.keys.emulated import MODULE_FILE, EmulatedKeyModule

pytestmark = pytest.mark.slow  # modules re-encrypted through the whole CLI: the full suite runs it, not make test-fast

GOOD_PIN = "cli-test-module-pin-0042"


@pytest.fixture(autouse=True)
def _no_pin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)


def first_line(path: Path) -> str:
    return path.read_text(encoding="utf-8").splitlines()[0]


def keys_listed(data: Path, pin_file: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["keys", "list", "--data-dir", str(data), "--pin-file", str(pin_file)]) == 0
    return capsys.readouterr().out.splitlines()


def test_init_generates_a_pin_into_a_new_private_file_and_never_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, pin_file = tmp_path / "data", tmp_path / "module.pin"
    assert main(["keys", "init", "--data-dir", str(data), "--generate-pin", str(pin_file)]) == 0
    out = capsys.readouterr()
    pin = first_line(pin_file)
    assert len(pin) >= 32
    assert stat.S_IMODE(pin_file.stat().st_mode) == 0o600
    assert pin not in out.out and pin not in out.err
    assert str(pin_file) in out.err
    module = EmulatedKeyModule(data, pin)
    module.unlock()
    assert module.list_keys() == []


def test_init_prints_the_generated_pin_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pin_file = tmp_path / "module.pin"
    args = ["keys", "init", "--data-dir", str(tmp_path / "data"), "--generate-pin", str(pin_file), "--print-pin"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == first_line(pin_file)


def test_init_never_overwrites_a_pin_file_or_a_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, pin_file = tmp_path / "data", tmp_path / "module.pin"
    pin_file.write_text("something else\n")
    assert main(["keys", "init", "--data-dir", str(data), "--generate-pin", str(pin_file)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert pin_file.read_text() == "something else\n" and not (data / MODULE_FILE).exists()

    good = tmp_path / "good.pin"
    good.write_text(GOOD_PIN + "\n")
    assert main(["keys", "init", "--data-dir", str(data), "--pin-file", str(good)]) == 0
    module_file = (data / MODULE_FILE).read_bytes()
    again = tmp_path / "again.pin"
    assert main(["keys", "init", "--data-dir", str(data), "--generate-pin", str(again)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert (data / MODULE_FILE).read_bytes() == module_file and not again.exists()


@pytest.mark.parametrize("command", ["init", "generate"])
def test_a_weak_pin_creates_no_module(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    data, pin_file = tmp_path / "data", tmp_path / "weak.pin"
    pin_file.write_text("hunter2\n")
    args = ["keys", command, "--data-dir", str(data), "--pin-file", str(pin_file)]
    if command == "generate":
        args += ["--count", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "PIN refused: the PIN has 7 characters; the PIN policy needs at least 16" in err
    assert "hunter2" not in err
    assert not (data / MODULE_FILE).exists()


def test_min_pin_length_is_configurable_but_not_below_8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pin_file = tmp_path / "module.pin"
    pin_file.write_text("Zq9!xW2p7vLr\n")  # 12 characters
    base = ["keys", "init", "--data-dir", str(tmp_path / "data"), "--pin-file", str(pin_file)]
    assert main(base) == 2
    with pytest.raises(SystemExit):
        main([*base, "--min-pin-length", "4"])
    capsys.readouterr()
    assert main([*base, "--min-pin-length", "12"]) == 0


def test_change_pin_to_a_generated_pin_keeps_every_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, old_file, new_file = tmp_path / "data", tmp_path / "old.pin", tmp_path / "new.pin"
    old_file.write_text(GOOD_PIN + "\n")
    module = ["--data-dir", str(data), "--pin-file", str(old_file)]
    assert main(["keys", "init", *module]) == 0
    assert main(["keys", "generate", *module, "--count", "3"]) == 0
    capsys.readouterr()
    listed = keys_listed(data, old_file, capsys)
    assert len(listed) == 3

    assert main(["keys", "change-pin", *module, "--generate-new-pin", str(new_file)]) == 0
    out = capsys.readouterr()
    new_pin = first_line(new_file)
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert new_pin not in out.out + out.err and "3 keys, unchanged" in out.err
    assert keys_listed(data, new_file, capsys) == listed
    assert main(["keys", "list", *module]) == 1
    assert "wrong PIN" in capsys.readouterr().err


def test_change_pin_refuses_a_weak_new_pin_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, old_file, weak = tmp_path / "data", tmp_path / "old.pin", tmp_path / "weak.pin"
    old_file.write_text(GOOD_PIN + "\n")
    weak.write_text("passwordpassword\n")
    assert main(["keys", "init", "--data-dir", str(data), "--pin-file", str(old_file)]) == 0
    before = (data / MODULE_FILE).read_bytes()
    args = ["keys", "change-pin", "--data-dir", str(data), "--pin-file", str(old_file), "--new-pin-file", str(weak)]
    assert main(args) == 2
    assert "common or published" in capsys.readouterr().err
    assert (data / MODULE_FILE).read_bytes() == before


def test_change_pin_with_a_wrong_pin_removes_the_pin_it_generated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, old_file, wrong, new_file = tmp_path / "data", tmp_path / "old.pin", tmp_path / "wrong.pin", tmp_path / "n"
    old_file.write_text(GOOD_PIN + "\n")
    wrong.write_text("not-the-module-pin-at-all\n")
    assert main(["keys", "init", "--data-dir", str(data), "--pin-file", str(old_file)]) == 0
    args = [
        "keys",
        "change-pin",
        "--data-dir",
        str(data),
        "--pin-file",
        str(wrong),
        "--generate-new-pin",
        str(new_file),
    ]
    assert main(args) == 1
    assert "wrong PIN" in capsys.readouterr().err
    assert not new_file.exists()
