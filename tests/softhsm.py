"""SoftHSM2 fixtures: a private token directory per test session, under its own SOFTHSM2_CONF.

SoftHSM reads SOFTHSM2_CONF and the token list once, when the library is initialised in a process,
so every token the session needs is created here, up front, before any test loads the library.
Import the fixtures into a test module (``from tests.softhsm import softhsm  # noqa: F401``); the
token directory is created once per process however many modules import them.

When softhsm2-util, pkcs11-tool or the library is missing, ``missing_component`` fails under CI=true
and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signer.keys.pkcs11 import Pkcs11KeyModule
from tests.support import missing_component

USER_PIN = "user-pin-2718"
SO_PIN = "so-pin-31415926"
TOKEN_LABELS = ("contract", "threads", "attributes", "errors")
"""One token per purpose (a SoftHSM token created after the library is loaded is not seen)."""

LIBRARY_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


@dataclass(frozen=True, slots=True)
class SoftHsm:
    library_path: Path
    conf_path: Path
    token_dir: Path
    pin: str
    so_pin: str

    def label(self, purpose: str) -> str:
        if purpose not in TOKEN_LABELS:
            raise KeyError(f"no SoftHSM test token for {purpose!r}; add it to TOKEN_LABELS")
        return purpose


def find_library() -> Path | None:
    override = os.environ.get("SIGNER_SOFTHSM2_LIBRARY")
    for candidate in ((override,) if override else ()) + LIBRARY_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


_INSTANCE: SoftHsm | None = None


def _create(root: Path) -> SoftHsm:
    util = shutil.which("softhsm2-util")
    if util is None:
        missing_component("softhsm2-util (apt: softhsm2)")
    library = find_library()
    if library is None:
        missing_component("libsofthsm2.so (apt: softhsm2)")
    assert util is not None and library is not None
    token_dir = root / "tokens"
    token_dir.mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    for label in TOKEN_LABELS:
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--so-pin", SO_PIN, "--pin", USER_PIN],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        )
    return SoftHsm(library, conf, token_dir, USER_PIN, SO_PIN)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """The session's SoftHSM2 setup (tokens in TOKEN_LABELS, user PIN ``USER_PIN``)."""
    global _INSTANCE  # noqa: PLW0603 - SoftHSM state is per process, so is this
    if _INSTANCE is None:
        _INSTANCE = _create(tmp_path_factory.mktemp("softhsm"))
    return _INSTANCE


@pytest.fixture(scope="session")
def pkcs11_tool() -> str:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        missing_component("pkcs11-tool (apt: opensc)")
    assert tool is not None
    return tool


def wipe_token(softhsm: SoftHsm, label: str, data_dir: Path) -> None:
    """Delete every key a module on ``label`` lists (tests share tokens; each starts empty)."""
    module = Pkcs11KeyModule(softhsm.library_path, label, softhsm.pin, data_dir)
    module.unlock()
    try:
        for info in module.list_keys():
            module.delete(info.public_key)
    finally:
        module.close()


@pytest.fixture
def clean_token(softhsm: SoftHsm, tmp_path: Path) -> Iterator[str]:
    """The label of the ``contract`` token, emptied before and after the test."""
    label = softhsm.label("contract")
    wipe_token(softhsm, label, tmp_path / "wipe")
    yield label
    wipe_token(softhsm, label, tmp_path / "wipe")
