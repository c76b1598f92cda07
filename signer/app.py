"""Composition root: builds the signer's parts from the typed configuration.

For now: the key module. (The server wiring is added here later.)
"""

from __future__ import annotations

from signer.config import KeysConfig
from signer.errors import ConfigError
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.module import KeyModule


def build_key_module(keys: KeysConfig, *, create: bool = False) -> KeyModule:
    """The configured key module, unlocked (PIN read from the secret the config names).

    ``create``: an emulated module missing from ``keys.data_dir`` is created (PKCS#11 tokens are
    initialised outside the signer). Raises ConfigError for a configuration that cannot work,
    WrongPin / ModuleTampered / KeyModuleError from the module itself.
    """
    module: KeyModule
    if keys.module == "emulated":
        if keys.pin is None:
            raise ConfigError("keys.pin: the emulated module needs a PIN (file or env)")
        module = EmulatedKeyModule(keys.data_dir, keys.pin.read(), create=create)
    elif keys.module == "pkcs11":
        if keys.pkcs11 is None:
            raise ConfigError("keys.pkcs11: keys.module = 'pkcs11' needs a [keys.pkcs11] section")
        try:
            from signer.keys.pkcs11 import Pkcs11KeyModule  # noqa: PLC0415 - python-pkcs11 only if used
        except ImportError as exc:
            raise ConfigError(f"keys.module = 'pkcs11' is not available: {exc}") from exc
        if not keys.pkcs11.library_path.is_file():
            raise ConfigError(f"keys.pkcs11.library_path: no such file {keys.pkcs11.library_path}")
        module = Pkcs11KeyModule(
            library_path=keys.pkcs11.library_path,
            token_label=keys.pkcs11.token_label,
            pin=keys.pkcs11.pin.read(),
            data_dir=keys.data_dir,
        )
    else:  # pragma: no cover - the config's Literal type rules this out
        raise ConfigError(f"keys.module: unknown module {keys.module!r}")
    if not module.unlocked:
        module.unlock()
    return module
