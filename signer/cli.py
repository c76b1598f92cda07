"""The ``signer`` command line: ``keys import|list|generate|dev``, ``check-config`` (and, added by
their owners, ``serve`` and ``protection import|export``).

To add a command: write ``_add_<name>(subparsers)`` that creates its parser and sets
``func=<one small function taking the parsed args and returning an exit code>``, and call it from
``build_parser``. Expected errors (every ``SignerError``) print one line to stderr, no traceback.

Exit codes: 0 success; 1 a command failed (or some keystores were not imported); 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from signer.app import build_key_module
from signer.config import KeysConfig, Pkcs11Config, SecretRef, load_config
from signer.errors import ConfigError, SignerError
from signer.keys.importer import DEFAULT_WALLET, ImportStatus, find_keystores, import_keystores
from signer.keys.module import KeyModule, check_account_name
from signer.types import Scheme

PIN_ENV = "SIGNER_MODULE_PIN"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


# --- shared helpers ---------------------------------------------------------------------------


def _read_first_line(path: Path, what: str) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not lines or not lines[0].strip("\r\n"):
        raise ConfigError(f"{what} {path} is empty")
    return lines[0].rstrip("\r\n")


def _pin_ref(args: argparse.Namespace) -> SecretRef:
    if args.pin_file is not None:
        return SecretRef(file=args.pin_file)
    if os.environ.get(PIN_ENV) is None:
        raise ConfigError(f"no module PIN: set {PIN_ENV} or pass --pin-file FILE")
    return SecretRef(env=PIN_ENV)


def keys_config_from_args(args: argparse.Namespace) -> KeysConfig:
    """The KeysConfig the ``keys`` options describe (the same path ``serve`` takes from TOML)."""
    pin = _pin_ref(args)
    if args.module == "pkcs11":
        if args.pkcs11_library is None or args.token_label is None:
            raise ConfigError("--module pkcs11 needs --pkcs11-library PATH and --token-label LABEL")
        pkcs11 = Pkcs11Config(library_path=args.pkcs11_library, token_label=args.token_label, pin=pin)
        return KeysConfig(module="pkcs11", data_dir=args.data_dir, pkcs11=pkcs11)
    return KeysConfig(module="emulated", data_dir=args.data_dir, pin=pin)


def _open_module(args: argparse.Namespace, *, create: bool) -> KeyModule:
    return build_key_module(keys_config_from_args(args), create=create)


def _add_module_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="the key module's data directory")
    parser.add_argument(
        "--pin-file", type=Path, help=f"file whose first line is the module PIN (default: ${PIN_ENV})"
    )
    parser.add_argument("--module", choices=("emulated", "pkcs11"), default="emulated")
    parser.add_argument("--pkcs11-library", type=Path, help="PKCS#11 library (with --module pkcs11)")
    parser.add_argument("--token-label", help="PKCS#11 token label (with --module pkcs11)")


def _wallet(value: str) -> str:
    try:
        check_account_name(f"{value}/x")
    except SignerError as exc:
        raise argparse.ArgumentTypeError(f"invalid wallet name {value!r}") from exc
    return value


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


# --- keys -------------------------------------------------------------------------------------


def cmd_keys_import(args: argparse.Namespace) -> int:
    password = _read_first_line(args.password_file, "password file")
    keystores = find_keystores(args.keystores)
    if not keystores:
        raise ConfigError("no keystore files found in the given paths")
    module = _open_module(args, create=True)
    try:
        results = import_keystores(
            module, keystores, password, wallet=args.wallet, workers=args.workers, progress=not args.quiet
        )
    finally:
        module.close()
    for result in results:
        if result.status is ImportStatus.IMPORTED:
            assert result.public_key is not None
            print(f"imported        0x{result.public_key.hex()} {result.name} ({result.source})")
        else:
            key = f"0x{result.public_key.hex()} " if result.public_key else ""
            print(f"{result.status.value:<15} {key}({result.source}): {result.message}")
    counts = {status: sum(r.status is status for r in results) for status in ImportStatus}
    summary = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
    print(f"{len(results)} keystores: {summary}", file=sys.stderr)
    failed = any(r.status not in (ImportStatus.IMPORTED, ImportStatus.DUPLICATE) for r in results)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    module = _open_module(args, create=False)
    try:
        for info in sorted(module.list_keys(), key=lambda k: k.name):
            print(f"{info.public_key_hex} {info.name} {info.scheme.value}")
    finally:
        module.close()
    return EXIT_OK


def cmd_keys_generate(args: argparse.Namespace) -> int:
    scheme = Scheme(args.scheme)
    module = _open_module(args, create=True)
    try:
        taken = {k.name for k in module.list_keys()}
        names: list[str] = []
        index = 0
        while len(names) < args.count:
            name = f"{args.wallet}/{index}"
            if name not in taken:
                names.append(name)
            index += 1
        generate_many = getattr(module, "generate_many", None)
        if generate_many is not None:
            infos = generate_many(names, scheme)
        else:
            infos = [module.generate(name, scheme) for name in names]
        for info in infos:
            print(f"{info.public_key_hex} {info.name} {info.scheme.value}")
    finally:
        module.close()
    return EXIT_OK


def cmd_keys_dev(args: argparse.Namespace) -> int:
    from signer.keys.dev import DEV_PIN, create_dev_module  # noqa: PLC0415 - dev only

    module = create_dev_module(args.data_dir, args.count)
    try:
        for info in sorted(module.list_keys(), key=lambda k: k.name):
            print(f"{info.public_key_hex} {info.name} {info.scheme.value}")
    finally:
        module.close()
    print(f"development keys only; module PIN is {DEV_PIN!r}", file=sys.stderr)
    return EXIT_OK


def _add_keys(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="manage the keys of the key module")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    p = keys_sub.add_parser("import", help="import EIP-2335 keystores (decrypted in parallel)")
    _add_module_options(p)
    p.add_argument("--password-file", type=Path, required=True, help="first line: the keystores' password")
    p.add_argument("--wallet", type=_wallet, default=DEFAULT_WALLET, help="wallet of the new accounts")
    p.add_argument("--workers", type=_positive, default=None, help="decrypting processes (default: cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("keystores", nargs="+", type=Path, metavar="KEYSTORE_OR_DIR")
    p.set_defaults(func=cmd_keys_import)

    p = keys_sub.add_parser("list", help="list the keys: public key, account name, scheme")
    _add_module_options(p)
    p.set_defaults(func=cmd_keys_list)

    p = keys_sub.add_parser("generate", help="create new keys inside the module")
    _add_module_options(p)
    p.add_argument("--count", type=_positive, required=True)
    p.add_argument("--wallet", type=_wallet, default="generated")
    p.add_argument("--scheme", choices=[s.value for s in Scheme], default=Scheme.BLS.value)
    p.set_defaults(func=cmd_keys_generate)

    p = keys_sub.add_parser("dev", help="create (or open) a module of the fixed development keys")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--count", type=_positive, default=4, help="BLS keys dev/0 ... dev/{count-1}")
    p.set_defaults(func=cmd_keys_dev)


# --- check-config -----------------------------------------------------------------------------


def check_config(path: Path) -> None:
    """Load the config and read every secret it references; raise ConfigError on the first problem."""
    config = load_config(path)
    refs: list[tuple[str, SecretRef | None]] = [
        ("keys.pin", config.keys.pin),
        ("keys.pkcs11.pin", config.keys.pkcs11.pin if config.keys.pkcs11 else None),
        ("protection.password", config.protection.password),
    ]
    for where, ref in refs:
        if ref is None:
            continue
        try:
            value = ref.read()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}") from exc
        if not value:
            raise ConfigError(f"{where}: the secret is empty")


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        check_config(args.file)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    print("config OK")
    return EXIT_OK


def _add_check_config(subparsers: Any) -> None:
    p = subparsers.add_parser("check-config", help="validate a config file and the secrets it names")
    p.add_argument("file", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_check_config)


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signer", description="Remote signer for validators.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_keys(subparsers)
    _add_check_config(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except SignerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
