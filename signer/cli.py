"""The ``signer`` command line: ``keys init|change-pin|import|list|generate|dev``, ``check-config``,
``audit verify``, ``admin enroll-operator`` (and, added by their owners, ``serve`` and ``protection
import|export``).

To add a command: write ``_add_<name>(subparsers)`` that creates its parser and sets
``func=<one small function taking the parsed args and returning an exit code>``, and call it from
``build_parser``. Expected errors (every ``SignerError``) print one line to stderr, no traceback.

Exit codes: 0 success; 1 a command failed (or some keystores were not imported); 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import qrcode
from pydantic import ValidationError

from signer.api.distributed_client import ClientTls, sign_generic
from signer.api.ratelimit import parse_rate_limit
from signer.api.tls import is_loopback
from signer.app import (
    DEV_CHAINS,
    ServeOptions,
    SignerApp,
    build_key_module,
    build_store,
    instance_lock_dirs,
    listen_host,
    operator_secrets,
    peer_credentials,
    validate_config,
)
from signer.atomicfile import atomic_write
from signer.config import (
    DEFAULT_MIN_PIN_LENGTH,
    MIN_PIN_LENGTH_FLOOR,
    OPERATOR_NAME_PATTERN,
    AuditConfig,
    Config,
    DistributedConfig,
    KeysConfig,
    NetworkConfig,
    Pkcs11Config,
    ProtectionConfig,
    SecretRef,
    TlsConfig,
    load_config,
    parse_config,
)
from signer.crypto import ed25519, secp256k1
from signer.crypto.threshold import SecretShare, VerificationVector
from signer.distributed.accounts import DistributedAccounts
from signer.distributed.dkg import Endpoint
from signer.errors import ConfigError, InternalError, InvalidShare, MalformedRequest, SignerError
from signer.eth2.networks import network_from_config
from signer.eth2.signing import compute_signing_root
from signer.instance import InstanceLock
from signer.jsondoc import load_json, read_at_most
from signer.keyadmin import (
    DEFAULT_GENERATE_WALLET,
    DEFAULT_WALLET,
    ImportStatus,
    KeyAdmin,
    KeyStatus,
    KeystoreDocument,
    ModuleIndex,
    PendingOperation,
    ProtectionAdmin,
    check_cometbft_state,
)
from signer.keys.dev import DEV_PIN, create_dev_module
from signer.keys.eip2335 import MAX_KEYSTORE_BYTES, Keystore, decrypt_keystore, load_keystore, parse_keystore
from signer.keys.emulated import MODULE_FILE, EmulatedKeyModule
from signer.keys.module import KeyModule, check_account_name
from signer.keys.pin_policy import PinPolicy, generate_pin
from signer.observability.audit_chain import ChainKey, head_metric_value, parse_head, verify
from signer.observability.logging import configure as configure_logging
from signer.protection.cometbft_state import MAX_STATE_BYTES
from signer.protection.interchange import MAX_INTERCHANGE_BYTES
from signer.protection.store import ProtectionStore
from signer.totp import ISSUER, new_secret, provisioning_uri
from signer.types import LOCAL_CLIENT, Scheme, check_chain_id

PIN_ENV = "SIGNER_MODULE_PIN"
PROTECTION_PASSWORD_ENV = "SIGNER_PROTECTION_PASSWORD"  # noqa: S105 - the name of a variable
"""The PostgreSQL password of ``--protection-dsn`` (without --config), unless
``--protection-password-file`` names a file: never in the DSN, where ``ps`` shows it."""
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]
_T = TypeVar("_T")


# --- shared helpers ---------------------------------------------------------------------------


def _read_first_line(path: Path, what: str) -> str:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    if not lines or not lines[0].strip("\r\n"):
        raise ConfigError(f"{what} {path} is empty")
    return lines[0].rstrip("\r\n")


def _who(command: str) -> str:
    """Who ran ``command`` (user@host), as recorded when it initializes a protection store."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} ({command})"


def _ran(result: _T | PendingOperation) -> _T:
    """The operation's own answer: the CLI's operator acts alone (its key-admin core has no second
    factor, so nothing waits for approval)."""
    if isinstance(result, PendingOperation):  # pragma: no cover - no gate of the CLI asks for approval
        raise InternalError("an operation of the local operator waits for approval")
    return result


def _protection_password(args: argparse.Namespace, *, from_env: bool) -> SecretRef | None:
    """The PostgreSQL password the flags name: ``--protection-password-file``, else (``from_env``)
    $SIGNER_PROTECTION_PASSWORD when set, else None (libpq may still use PGPASSFILE)."""
    if args.protection_password_file is not None:
        return SecretRef(file=args.protection_password_file)
    if from_env and os.environ.get(PROTECTION_PASSWORD_ENV) is not None:
        return SecretRef(env=PROTECTION_PASSWORD_ENV)
    return None


def _add_protection_password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--protection-password-file",
        type=Path,
        help=f"file whose first line is the PostgreSQL password (default: ${PROTECTION_PASSWORD_ENV} if set)",
    )


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
    return KeysConfig(module="emulated", data_dir=args.data_dir, pin=pin, min_pin_length=args.min_pin_length)


def _open_module(args: argparse.Namespace, *, create: bool) -> KeyModule:
    return build_key_module(keys_config_from_args(args), create=create)


def _min_pin_length(value: str) -> int:
    number = int(value)
    if number < MIN_PIN_LENGTH_FLOOR:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_PIN_LENGTH_FLOOR}")
    return number


def _add_pin_policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-pin-length",
        type=_min_pin_length,
        default=DEFAULT_MIN_PIN_LENGTH,
        help=f"PIN policy of a new module or PIN: the shortest PIN accepted (default {DEFAULT_MIN_PIN_LENGTH})",
    )


def _add_module_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, help="the key module's data directory")
    parser.add_argument("--pin-file", type=Path, help=f"file whose first line is the module PIN (default: ${PIN_ENV})")
    _add_pin_policy_option(parser)
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


def find_keystores(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories expanded to their ``*.json`` files (recursively, sorted), skipping
    staking-deposit-cli's ``deposit_data-*.json``. Each file once, in the order found."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*.json")) if p.is_file() and not p.name.startswith("deposit_data-")
            )
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def read_keystores(paths: Sequence[Path], password: str) -> list[KeystoreDocument]:
    """The keystore files as documents for the importer, named by path; a file that cannot be read
    is a document that says why (the importer reports it as malformed, the others go on)."""
    documents = []
    for path in paths:
        try:
            with path.open("rb") as fh:
                body = read_at_most(fh, MAX_KEYSTORE_BYTES)
        except OSError as exc:
            documents.append(KeystoreDocument(str(path), b"", password, f"cannot read keystore: {exc.strerror}"))
        else:
            documents.append(KeystoreDocument(str(path), body, password))
    return documents


def _key_admin(args: argparse.Namespace, *, create: bool, import_workers: int | None = None) -> KeyAdmin:
    """The key-admin core on the module the options name: the local operator, no limits per call,
    no protection store (the ``keys`` commands work on the module alone)."""
    module = _open_module(args, create=create)
    return KeyAdmin(module, ModuleIndex(module), import_workers=import_workers)


def cmd_keys_import(args: argparse.Namespace) -> int:
    password = _read_first_line(args.password_file, "password file")
    keystores = find_keystores(args.keystores)
    if not keystores:
        raise ConfigError("no keystore files found in the given paths")
    admin = _key_admin(args, create=True, import_workers=args.workers)
    try:
        results = _ran(
            admin.import_keystores(
                LOCAL_CLIENT, read_keystores(keystores, password), wallet=args.wallet, progress=not args.quiet
            )
        )
    finally:
        admin.module.close()
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
    return EXIT_FAILED if any(r.refused for r in results) else EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    admin = _key_admin(args, create=False)
    try:
        for info in admin.list_keys(LOCAL_CLIENT):
            print(f"{info.public_key_hex} {info.name} {info.scheme.value}")
    finally:
        admin.module.close()
    return EXIT_OK


def cmd_keys_generate(args: argparse.Namespace) -> int:
    admin = _key_admin(args, create=True)
    try:
        results = admin.generate(LOCAL_CLIENT, args.count, Scheme(args.scheme), args.wallet)
    finally:
        admin.module.close()
    for result in results:
        if result.status is KeyStatus.GENERATED:
            print(f"0x{result.public_key.hex()} {result.name} {args.scheme}")
        else:
            print(f"error {result.name}: {result.message}", file=sys.stderr)
    return EXIT_FAILED if any(r.status is not KeyStatus.GENERATED for r in results) else EXIT_OK


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` and a newline to a NEW file ``path``, mode 0600, fsynced (and its directory):
    never over an existing file, never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists: a PIN file is never overwritten (remove it, or choose another path)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        data = (secret + "\n").encode("utf-8")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    os.close(fd)
    _fsync_dir(path.parent)


def _new_pin(args: argparse.Namespace, generate: Path | None, given: Path | None, what: str) -> tuple[str, bool]:
    """(the new PIN, whether it was generated into ``generate``)."""
    if generate is not None:
        if given is not None:
            raise ConfigError(f"give {what} as a file or generate it, not both")
        pin = generate_pin()
        write_new_secret_file(generate, pin)
        return pin, True
    if given is None:
        raise ConfigError(f"no {what}: pass a file with it, or let the signer generate one")
    return SecretRef(file=given).read(), False


def cmd_keys_init(args: argparse.Namespace) -> int:
    if (args.data_dir / MODULE_FILE).exists():
        raise ConfigError(f"{args.data_dir} already holds an emulated key module; nothing changed")
    policy = PinPolicy(min_length=args.min_pin_length)
    if args.generate_pin is None and args.pin_file is None:
        pin, generated = _pin_ref(args).read(), False
    else:
        pin, generated = _new_pin(args, args.generate_pin, args.pin_file, "the module PIN")
    try:
        module = EmulatedKeyModule(args.data_dir, pin, create=True, pin_policy=policy)
        if not module.unlocked:
            raise ConfigError(
                f"{args.data_dir} already holds an emulated key module (created meanwhile); nothing changed"
            )
    except BaseException:
        if generated:  # no module uses it
            args.generate_pin.unlink(missing_ok=True)
        raise
    module.close()
    where = f"; PIN in {args.generate_pin} (mode 0600)" if generated else ""
    print(f"created an empty emulated key module in {args.data_dir}{where}", file=sys.stderr)
    if generated and args.print_pin:
        print(pin)
    return EXIT_OK


def cmd_keys_change_pin(args: argparse.Namespace) -> int:
    old_pin = _pin_ref(args).read()
    policy = PinPolicy(min_length=args.min_pin_length)
    module = EmulatedKeyModule(args.data_dir, old_pin, pin_policy=policy)
    if args.generate_new_pin is None:
        new_pin, generated = _new_pin(args, None, args.new_pin_file, "new PIN")
        policy.check(new_pin)
    else:
        new_pin, generated = _new_pin(args, args.generate_new_pin, args.new_pin_file, "new PIN")
    try:
        module.change_pin(new_pin)
    except SignerError:  # refused before anything was written: the old PIN still opens the module
        if generated:
            args.generate_new_pin.unlink(missing_ok=True)
        raise
    finally:
        module.close()
    check = EmulatedKeyModule(args.data_dir, new_pin, pin_policy=policy)
    check.unlock()  # the module on disk opens with the new PIN
    count = len(check.list_keys())
    check.close()
    where = args.generate_new_pin if generated else args.new_pin_file
    print(
        f"PIN changed: the module in {args.data_dir} ({count} keys, unchanged) now opens with the PIN in {where}; "
        "point keys.pin at it and restart the signer",
        file=sys.stderr,
    )
    if generated and args.print_pin:
        print(new_pin)
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

    p = keys_sub.add_parser("init", help="create an empty emulated key module (optionally with a generated PIN)")
    p.add_argument("--data-dir", type=Path, required=True, help="the key module's data directory")
    p.add_argument("--pin-file", type=Path, help=f"file whose first line is the PIN to use (default: ${PIN_ENV})")
    p.add_argument("--generate-pin", type=Path, metavar="FILE", help="generate a random PIN into FILE (new, mode 0600)")
    p.add_argument("--print-pin", action="store_true", help="with --generate-pin: also print the PIN on stdout")
    _add_pin_policy_option(p)
    p.set_defaults(func=cmd_keys_init)

    p = keys_sub.add_parser("change-pin", help="re-seal the emulated module under a new PIN (keys unchanged)")
    p.add_argument("--data-dir", type=Path, required=True, help="the key module's data directory")
    p.add_argument("--pin-file", type=Path, help=f"file whose first line is the current PIN (default: ${PIN_ENV})")
    p.add_argument("--new-pin-file", type=Path, metavar="FILE", help="file whose first line is the new PIN")
    p.add_argument(
        "--generate-new-pin", type=Path, metavar="FILE", help="generate a random new PIN into FILE (new, mode 0600)"
    )
    p.add_argument("--print-pin", action="store_true", help="with --generate-new-pin: also print it on stdout")
    _add_pin_policy_option(p)
    p.set_defaults(func=cmd_keys_change_pin)

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
    p.add_argument("--wallet", type=_wallet, default=DEFAULT_GENERATE_WALLET)
    p.add_argument("--scheme", choices=[s.value for s in Scheme], default=Scheme.BLS.value)
    p.set_defaults(func=cmd_keys_generate)

    p = keys_sub.add_parser("dev", help="create (or open) a module of the fixed development keys")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--count", type=_positive, default=4, help="BLS keys dev/0 ... dev/{count-1}")
    p.set_defaults(func=cmd_keys_dev)


# --- admin enroll-operator --------------------------------------------------------------------


def write_operator_secret(path: Path) -> str:
    """A new operator TOTP secret in a new file of mode 0600 (an existing file is never replaced:
    ConfigError). Returns the secret."""
    secret = new_secret()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} exists already: an operator's secret is never overwritten (remove it first)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    return secret


def _terminal_qr(text: str) -> str:
    qr = qrcode.QRCode(border=1)
    qr.add_data(text)
    qr.make(fit=True)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def cmd_admin_enroll_operator(args: argparse.Namespace) -> int:
    name = args.name
    if re.fullmatch(OPERATOR_NAME_PATTERN, name) is None:
        raise ConfigError(f"invalid operator name {name!r}: 1-64 of [A-Za-z0-9._@-], starting with a letter or digit")
    secret = write_operator_secret(args.secret_file)
    uri = provisioning_uri(name, secret, issuer=args.issuer)
    print(f"Operator {name!r}: secret written to {args.secret_file} (mode 0600).")
    print("Enrol it in an authenticator app now (TOTP, 6 digits, 30 s); this is shown once:")
    print()
    print(uri)
    if not args.no_qr:
        print()
        print(_terminal_qr(uri), end="")
    print()
    print("Then list the operator under each [[clients]] entry it may act through:")
    print(f'  operators = [{{ name = "{name}", secret = {{ file = "{args.secret_file.resolve()}" }} }}]')
    return EXIT_OK


def _add_admin(subparsers: Any) -> None:
    admin = subparsers.add_parser("admin", help="operators of the admin API (second factor)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True, metavar="SUBCOMMAND")
    p = admin_sub.add_parser(
        "enroll-operator",
        help="make an operator's one-time-code secret (0600 file) and print its provisioning URI and QR once",
    )
    p.add_argument("name", metavar="NAME", help="the operator's name, as admin calls send it (x-signer-operator)")
    p.add_argument("--secret-file", type=Path, required=True, help="new file for the secret (never overwritten)")
    p.add_argument("--issuer", default=ISSUER, help=f"issuer shown by the authenticator app (default {ISSUER})")
    p.add_argument("--no-qr", action="store_true", help="print the URI only, no terminal QR code")
    p.set_defaults(func=cmd_admin_enroll_operator)


# --- check-config -----------------------------------------------------------------------------


def check_config(path: Path) -> None:
    """Load the config, run every check ``serve`` makes of it (``validate_config``: the same function,
    so the same refusals and messages) and read every secret it references; raise ConfigError on the
    first problem."""
    config = load_config(path)
    checked = validate_config(config)
    if config.distributed is not None:  # mTLS between peers (a config file is never --dev), files readable
        peer_credentials(config.distributed, config.server.tls if checked.use_tls else None, dev_plaintext=False)
    refs: list[tuple[str, SecretRef | None]] = [
        ("keys.pin", config.keys.pin),
        ("keys.pkcs11.pin", config.keys.pkcs11.pin if config.keys.pkcs11 else None),
        ("protection.password", config.protection.password),
        ("audit.hmac_key", config.audit.hmac_key),
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
        if where == "audit.hmac_key":
            ChainKey.from_text(value)
    operator_secrets(config)


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


DEV_HTTP_LISTEN = "127.0.0.1:9000"
"""Where ``serve --dev`` serves the REST front unless ``--http-listen`` moves it (Web3Signer's port)."""


# --- serve ------------------------------------------------------------------------------------


def serve_config_from_args(args: argparse.Namespace) -> Config:  # noqa: C901 -- one flat mapping of each serve flag onto the config, flag by flag
    """The Config ``serve`` runs with: the file's (``--config``) or the dev defaults, plus flags."""
    if args.config is not None:
        if args.dev:
            raise ConfigError("give either --config FILE or --dev, not both")
        config = load_config(args.config)
    else:
        if not args.dev:
            raise ConfigError("signer serve needs --config FILE (production) or --dev (development)")
        if args.data_dir is None:
            raise ConfigError("signer serve --dev needs --data-dir DIR")
        args.data_dir.mkdir(parents=True, exist_ok=True)
        pin_file = args.data_dir / "dev.pin"
        if not pin_file.exists():
            atomic_write(pin_file, (DEV_PIN + "\n").encode("utf-8"))
        config = parse_config(
            {
                "keys": {"module": "emulated", "data_dir": str(args.data_dir), "pin": {"file": str(pin_file)}},
                "server": {"reflection": True, "http_listen": DEV_HTTP_LISTEN},
                "cometbft": {"chains": [{"chain_id": c, "account": a} for c, a in DEV_CHAINS.items()]},
            }
        )
    server: dict[str, Any] = {}
    if args.grpc_listen is not None:
        server["grpc_listen"] = args.grpc_listen
    if args.metrics_listen is not None:
        server["metrics_listen"] = args.metrics_listen
    if args.http_listen is not None:
        server["http_listen"] = args.http_listen
    tls_flags = (args.tls_cert, args.tls_key, args.tls_client_ca)
    if any(f is not None for f in tls_flags):
        if not all(f is not None for f in tls_flags):
            raise ConfigError("mTLS needs all of --tls-cert, --tls-key and --tls-client-ca")
        server["tls"] = TlsConfig(cert_file=args.tls_cert, key_file=args.tls_key, client_ca_file=args.tls_client_ca)
    updates: dict[str, Any] = {}
    if server:
        updates["server"] = config.server.model_copy(update=server)
    if args.network is not None:
        updates["network"] = NetworkConfig(name=args.network)
    protection: dict[str, Any] = {}
    if args.protection_dsn is not None:
        protection.update(backend="postgres", dsn=args.protection_dsn)
    password = _protection_password(args, from_env=args.config is None)
    if password is not None:
        if (protection.get("backend") or config.protection.backend) != "postgres":
            raise ConfigError("--protection-password-file (or $SIGNER_PROTECTION_PASSWORD) needs --protection-dsn")
        protection["password"] = password
    if protection:
        updates["protection"] = config.protection.model_copy(update=protection)
    if args.rate_limit is not None:
        updates["limits"] = config.limits.model_copy(update={"default_rate": parse_rate_limit(args.rate_limit)})
    if args.audit_file is not None:
        updates["audit"] = AuditConfig(**{**config.audit.model_dump(), "path": str(args.audit_file)})
    if args.peer_id is not None or args.peers is not None:
        if not args.dev or args.config is not None:
            raise ConfigError("--peer-id and --peers are for --dev; a config file has [distributed]")
        if args.peer_id is None or args.peers is None:
            raise ConfigError("a distributed dev signer needs both --peer-id N and --peers ID=HOST:PORT,...")
        updates["distributed"] = distributed_config(args.peer_id, parse_peers(args.peers))
    if args.dev and args.config is None:
        dev_server = updates.get("server", config.server)
        for listen in (dev_server.grpc_listen, dev_server.http_listen):
            if listen is not None and not is_loopback(listen_host(listen)):
                raise ConfigError(f"--dev serves on loopback only; {listen} is not a loopback address")
    # Re-validate the whole object, so flags obey the same rules as the file.
    return parse_config(config.model_copy(update=updates).model_dump(mode="python"))


def parse_peers(text: str) -> list[dict[str, Any]]:
    """``1=HOST:PORT,2=HOST:PORT,...`` (``serve --dev --peers``) as [[distributed.peers]] entries."""
    peers: list[dict[str, Any]] = []
    for item in text.split(","):
        peer_id, sep, address = item.strip().partition("=")
        if not sep or not peer_id.strip().isdigit() or not address.strip():
            raise ConfigError(f"--peers: {item.strip()!r} is not ID=HOST:PORT")
        peers.append({"id": int(peer_id), "address": address.strip()})
    return peers


def distributed_config(peer_id: int, peers: list[dict[str, Any]]) -> DistributedConfig:
    try:
        return DistributedConfig.model_validate({"id": peer_id, "peers": peers})
    except ValidationError as exc:
        details = "; ".join(str(e["msg"]) for e in exc.errors())
        raise ConfigError(f"--peer-id/--peers: {details}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    config = serve_config_from_args(args)
    configure_logging(config.logging.level, config.logging.json_format)
    validate_config(config)  # refuse a bad config before anything is opened or created
    # One signer per data directory: refuse (naming the holder) before touching anything in it.
    lock = InstanceLock.acquire(instance_lock_dirs(config))
    try:
        options = ServeOptions(dev=args.dev, instance_lock=lock)
        if args.dev:
            created = not (config.keys.data_dir / MODULE_FILE).exists()
            options.key_module = create_dev_module(config.keys.data_dir, args.dev_keys)
            if created:  # keys and store made together: a new store starts initialized
                options.keys_created_by = _who("signer serve --dev created the keys")
        app = SignerApp(config, options)
        app.run_until_signal()
    finally:
        lock.release()
    return EXIT_OK


def _add_serve(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="run the signer (gRPC, metrics and health)")
    p.add_argument("--config", type=Path, help="the signer's TOML configuration (production)")
    p.add_argument("--dev", action="store_true", help="development: dev keys, dev PIN, plaintext on loopback")
    p.add_argument("--data-dir", type=Path, help="with --dev: the data directory (created if missing)")
    p.add_argument("--dev-keys", type=_positive, default=4, help="with --dev: BLS keys dev/0..N-1 (default 4)")
    p.add_argument("--network", help="mainnet (default), hoodi, sepolia, holesky")
    p.add_argument("--grpc-listen", help="HOST:PORT for gRPC (default 127.0.0.1:9091)")
    p.add_argument("--metrics-listen", help="HOST:PORT for /metrics, /healthz, /readyz (default 127.0.0.1:9090)")
    p.add_argument(
        "--http-listen",
        help=f"HOST:PORT for the REST front, the Web3Signer API (server.http_listen; --dev: {DEV_HTTP_LISTEN})",
    )
    p.add_argument("--protection-dsn", help="postgresql://... : use the PostgreSQL protection store (no password)")
    _add_protection_password_option(p)
    p.add_argument("--tls-cert", type=Path, help="server certificate (PEM) for mTLS")
    p.add_argument("--tls-key", type=Path, help="server private key (PEM) for mTLS")
    p.add_argument("--tls-client-ca", type=Path, help="CA (PEM) that issues client certificates")
    p.add_argument("--rate-limit", help="per-client default rate limit PER_SECOND[:BURST]")
    p.add_argument("--audit-file", type=Path, help="append the audit log (a hash chain) to this file (audit.path)")
    p.add_argument("--peer-id", type=_positive, help="with --dev: this signer's participant id (distributed accounts)")
    p.add_argument("--peers", metavar="ID=HOST:PORT,...", help="with --dev: every participant, this one included")
    p.set_defaults(func=cmd_serve)


# --- protection import | export ----------------------------------------------------------------


def _open_store(args: argparse.Namespace) -> ProtectionStore:
    if args.config is not None:
        if args.protection_dsn is not None or args.protection_password_file is not None:
            raise ConfigError(
                "--protection-dsn and --protection-password-file go without --config (the config names the store)"
            )
        config = load_config(args.config)
        network = network_from_config(config.network)
        return build_store(
            config.protection, config.keys.data_dir, network.genesis_validators_root, network.slots_per_epoch
        )
    if args.data_dir is None:
        raise ConfigError("give --config FILE, or --data-dir DIR [--network NAME] [--protection-dsn DSN]")
    network = network_from_config(NetworkConfig(name=args.network or "mainnet"))
    password = _protection_password(args, from_env=True)
    if args.protection_dsn:
        protection = ProtectionConfig(backend="postgres", dsn=args.protection_dsn, password=password)
    elif args.protection_password_file is not None:
        raise ConfigError("--protection-password-file needs --protection-dsn")
    else:
        protection = ProtectionConfig()
    return build_store(protection, args.data_dir, network.genesis_validators_root)


def _protection_admin(args: argparse.Namespace) -> ProtectionAdmin:
    """The key-admin core's history operations on the store the options name, for the local operator."""
    return ProtectionAdmin(_open_store(args))


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the signer's TOML configuration")
    parser.add_argument("--data-dir", type=Path, help="data directory of the SQLite store (without --config)")
    parser.add_argument("--network", help="network of the store (without --config; default mainnet)")
    parser.add_argument("--protection-dsn", help="postgresql://... without the password (without --config)")
    _add_protection_password_option(parser)


def _read_input(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, or of stdin for ``-``: at most ``max_bytes + 1`` of them (the parser
    refuses a larger document, signer.jsondoc)."""
    try:
        if str(path) == "-":
            return read_at_most(sys.stdin.buffer, max_bytes)
        with path.open("rb") as fh:
            return read_at_most(fh, max_bytes)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def _write_json(document: object, output: Path | None) -> None:
    """``document`` as indented JSON to ``output``, or to stdout for None or ``-``."""
    text = json.dumps(document, indent=2) + "\n"
    if output is None or str(output) == "-":
        sys.stdout.write(text)
    else:
        try:
            atomic_write(output, text.encode("utf-8"), mode=0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write {output}: {exc.strerror}") from exc


def cmd_protection_import(args: argparse.Namespace) -> int:
    document = _read_input(args.file, MAX_INTERCHANGE_BYTES)
    history = _protection_admin(args)
    try:
        report = _ran(history.import_interchange(LOCAL_CLIENT, document, who=_who("signer protection import")))
    finally:
        history.store.close()
    print(f"imported: {report}")
    return EXIT_OK


def cmd_protection_init(args: argparse.Namespace) -> int:
    if not args.keys_never_signed:
        raise ConfigError(
            "signer protection init records that the keys have never signed: say so with --keys-never-signed. "
            "If they have signed anywhere, import their history instead (signer protection import FILE)"
        )
    history = _protection_admin(args)
    try:
        record, changed = history.declare_keys_never_signed(LOCAL_CLIENT, who=_who("signer protection init"))
    finally:
        history.store.close()
    if not changed:
        print(f"already initialized ({record.describe()}); nothing changed")
    else:
        print(f"initialized: recorded that the keys have never signed ({record.describe()})")
    return EXIT_OK


def cmd_protection_export(args: argparse.Namespace) -> int:
    history = _protection_admin(args)
    try:
        keys = [bytes.fromhex(k.removeprefix("0x")) for k in args.public_key or ()]
        document = history.export_interchange(LOCAL_CLIENT, keys)
    except ValueError as exc:
        raise ConfigError(f"--public-key must be 0x-prefixed hex: {exc}") from exc
    finally:
        history.store.close()
    _write_json(document, args.output)
    return EXIT_OK


def _add_protection(subparsers: Any) -> None:
    prot = subparsers.add_parser("protection", help="EIP-3076 slashing-protection import and export")
    sub = prot.add_subparsers(dest="protection_command", required=True, metavar="ACTION")
    for name, func, help_text in (
        ("import", cmd_protection_import, "merge an EIP-3076 interchange file into the store"),
        ("export", cmd_protection_export, "write the complete history as EIP-3076 interchange JSON"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_store_options(p)
        if name == "import":
            p.add_argument("file", type=Path, help="interchange JSON file, or - for stdin")
        else:
            p.add_argument("--output", "-o", type=Path, help="output file (default stdout)")
            p.add_argument("--public-key", action="append", help="export only this key (repeatable)")
        p.set_defaults(func=func)
    p = sub.add_parser(
        "init",
        help="initialize a new or empty store for keys that have never signed (else signing is refused)",
    )
    _add_store_options(p)
    p.add_argument(
        "--keys-never-signed",
        action="store_true",
        help="declare, once, that the keys of this signer have never signed anything (recorded with who and when)",
    )
    p.set_defaults(func=cmd_protection_init)
    _add_cometbft_state(sub)


# --- protection import-cometbft-state | export-cometbft-state ---------------------------------

PUBLIC_KEY_LENGTHS = {secp256k1.PUBLIC_KEY_LENGTH: "secp256k1", ed25519.PUBLIC_KEY_LENGTH: "ed25519"}


def _cometbft_target(args: argparse.Namespace) -> tuple[str, bytes]:
    """(chain_id, public key) from --chain-id and --public-key 0xHEX; ConfigError saying what is wrong."""
    try:
        check_chain_id(args.chain_id)
    except MalformedRequest as exc:
        raise ConfigError(f"--chain-id: {exc.message}") from exc
    text = args.public_key
    if not text.startswith("0x"):
        raise ConfigError("--public-key must be 0x-prefixed hex")
    try:
        public_key = bytes.fromhex(text[2:])
    except ValueError as exc:
        raise ConfigError(f"--public-key must be 0x-prefixed hex: {exc}") from exc
    if len(public_key) not in PUBLIC_KEY_LENGTHS:
        raise ConfigError(
            "--public-key must be a 33-byte compressed secp256k1 or a 32-byte ed25519 public key, "
            f"got {len(public_key)} bytes"
        )
    return args.chain_id, public_key


def cmd_protection_import_cometbft_state(args: argparse.Namespace) -> int:
    chain_id, public_key = _cometbft_target(args)
    document = _read_input(args.file, MAX_STATE_BYTES)
    check_cometbft_state(public_key, document)  # a refused document never opens (or creates) the store
    history = _protection_admin(args)
    try:
        imported = _ran(
            history.import_cometbft_state(
                LOCAL_CLIENT, chain_id, public_key, document, who=_who("signer protection import-cometbft-state")
            )
        )
    finally:
        history.store.close()
    where = f"height {imported.height} round {imported.round} step {imported.step}"
    if imported.moved_forward:
        print(f"imported: the state of chain {chain_id} moved forward to {where}")
    else:
        print(f"imported: nothing changed, the stored state of chain {chain_id} is already at or beyond {where}")
    return EXIT_OK


def cmd_protection_export_cometbft_state(args: argparse.Namespace) -> int:
    chain_id, public_key = _cometbft_target(args)
    history = _protection_admin(args)
    try:
        document = history.export_cometbft_state(LOCAL_CLIENT, chain_id, public_key)
    finally:
        history.store.close()
    _write_json(document, args.output)
    return EXIT_OK


def _add_cometbft_state(sub: Any) -> None:
    for name, func, help_text in (
        (
            "import-cometbft-state",
            cmd_protection_import_cometbft_state,
            "merge a CometBFT priv_validator_state.json for one chain and key (never moves back)",
        ),
        (
            "export-cometbft-state",
            cmd_protection_export_cometbft_state,
            "write the last signed state of one chain and key as priv_validator_state.json",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_store_options(p)
        p.add_argument("--chain-id", required=True, help="the CometBFT chain_id the state belongs to")
        p.add_argument("--public-key", required=True, help="0x-prefixed hex public key of the validator")
        if name.startswith("import"):
            p.add_argument("file", type=Path, help="priv_validator_state.json, or - for stdin")
        else:
            p.add_argument("--output", "-o", type=Path, help="output file (default stdout)")
        p.set_defaults(func=func)


# --- audit verify ---------------------------------------------------------------------------------


def cmd_audit_verify(args: argparse.Namespace) -> int:
    keys = [
        ChainKey.from_text(_read_first_line(path, "HMAC key file"), "--hmac-key-file") for path in args.hmac_key_file
    ]
    head = parse_head(args.head) if args.head is not None else None
    result = verify(args.files, keys, live=args.live, head=head)
    for note in result.notes:
        print(f"note: {note}")
    if result.problem is not None:
        print(f"BROKEN: {result.problem}")
        return EXIT_FAILED
    assert result.head is not None and result.last_seq is not None
    print(
        f"OK: {len(result.files)} file(s), seq {result.first_seq} to {result.last_seq}, {result.lines} lines "
        f"({result.decisions} decisions; not written but counted in the chain: {result.dropped} dropped, "
        f"{result.lost} lost)"
    )
    print(
        f"head: seq {result.last_seq} hash {result.head} "
        f"(signer_audit_chain_head_hash {head_metric_value(result.head)})"
    )
    return EXIT_OK


def _add_audit(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="the audit log's hash chain")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "verify", help="check an audit log (or a rotated series, any order): names the first broken or missing line"
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument(
        "--hmac-key-file",
        type=Path,
        action="append",
        default=[],
        help="the audit.hmac_key file the log was written with (repeat for a series written under several keys)",
    )
    p.add_argument("--live", action="store_true", help="the signer still writes the newest file: no stop record yet")
    p.add_argument(
        "--head", metavar="SEQ:HASH", help="a head recorded elsewhere (log line, metric) the log must contain"
    )
    p.set_defaults(func=cmd_audit_verify)


# --- distributed import | sign -----------------------------------------------------------------


def _hex_arg(value: str, what: str) -> bytes:
    text = value.strip()
    try:
        return bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not hex") from None


def _endpoints(text: str) -> list[Endpoint]:
    endpoints = []
    for peer in parse_peers(text):
        host, _, port = str(peer["address"]).rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not port.isdigit():
            raise ConfigError(f"--participants: {peer['address']!r} is not HOST:PORT")
        endpoints.append(Endpoint(int(peer["id"]), host, int(port)))
    return endpoints


@dataclass(frozen=True, slots=True)
class _PreDealt:
    """What ``signer distributed import`` reads before it decrypts anything."""

    keystore: Keystore
    threshold: int
    participants: list[Endpoint]
    vector: list[bytes]
    participant_id: int | None


def _dirk_account(path: Path) -> _PreDealt:
    """A go-eth2-wallet-distributed account file (what Dirk stores per distributed account): itself
    an EIP-2335 keystore of the share (``crypto``, ``pubkey``, ``uuid``, ``version`` 4) with
    ``verificationvector`` (hex), ``signing_threshold`` and ``participants`` (``{"id": "host:port"}``)."""
    try:
        with path.open("rb") as fh:
            raw = read_at_most(fh, MAX_KEYSTORE_BYTES)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    document = load_json(raw, what=f"{path}: the Dirk account", max_bytes=MAX_KEYSTORE_BYTES)
    if not isinstance(document, dict):
        raise MalformedRequest(f"{path}: a Dirk account is a JSON object")
    keystore = parse_keystore(document, source=str(path))
    try:
        vector = [_hex_arg(str(c), "verificationvector") for c in document["verificationvector"]]
        threshold = document["signing_threshold"]
        participants = _endpoints(",".join(f"{k}={v}" for k, v in document["participants"].items()))
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedRequest(f"{path}: not a Dirk distributed account ({type(exc).__name__}: {exc})") from None
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise MalformedRequest(f"{path}: signing_threshold is not an integer")
    return _PreDealt(keystore, threshold, participants, vector, None)


def _pre_dealt(args: argparse.Namespace) -> _PreDealt:
    flags = {"--threshold": args.threshold, "--participants": args.participants,
             "--verification-vector": args.verification_vector}  # fmt: skip
    if args.dirk_account is not None:
        given = [name for name, value in flags.items() if value is not None and name != "--participants"]
        if given:
            raise ConfigError(f"--dirk-account carries {', '.join(given)} itself")
        found = _dirk_account(args.dirk_account)
        participants = found.participants
        if args.participants is not None:  # where the participants listen now (not where Dirk did)
            participants = _endpoints(args.participants)
            if sorted(p.id for p in participants) != sorted(p.id for p in found.participants):
                raise ConfigError("--participants must name the same ids as the Dirk account's participants")
        return _PreDealt(found.keystore, found.threshold, participants, found.vector, args.id)
    missing = [name for name, value in {**flags, "--id": args.id}.items() if value is None]
    if missing:
        raise ConfigError(f"--keystore needs {', '.join(missing)} as well")
    vector = [_hex_arg(c, "--verification-vector") for c in args.verification_vector.split(",") if c.strip()]
    return _PreDealt(load_keystore(args.keystore), args.threshold, _endpoints(args.participants), vector, args.id)


def _participant_of(share_secret: bytes, vector: list[bytes], participants: list[Endpoint]) -> int:
    """The participant whose point of the vector the share is (Dirk's account file does not say)."""
    public = SecretShare.from_bytes(participants[0].id, share_secret).public_key()
    commitments = VerificationVector(tuple(vector))
    for p in participants:
        if commitments.public_share(p.id) == public:
            return p.id
    raise InvalidShare("the share is no participant's point of the verification vector")


def cmd_distributed_import(args: argparse.Namespace) -> int:
    """Seal a pre-dealt share (from Dirk or ethdo: an EIP-2335 keystore of the share, or Dirk's
    account file) with its distributed metadata. The verification vector is required: it binds the
    share to the composite key, so that a mistyped composite key cannot put the share's history
    under another validator."""
    password = _read_first_line(args.password_file, "password file")
    found = _pre_dealt(args)
    source = str(args.dirk_account or args.keystore)
    secret = decrypt_keystore(found.keystore, password, source=source)
    if not found.vector:
        raise ConfigError("the verification vector is empty")
    participant_id = found.participant_id or _participant_of(secret, found.vector, found.participants)
    share = SecretShare.from_bytes(participant_id, secret)
    vector = found.vector
    composite = vector[0]
    if args.composite_key is not None and _hex_arg(args.composite_key, "--composite-key") != composite:
        raise ConfigError("--composite-key is not element 0 of --verification-vector")
    lock = InstanceLock.acquire([args.data_dir])  # not while a signer runs on this module
    try:
        module = _open_module(args, create=True)
        try:
            accounts = DistributedAccounts(module, args.data_dir)
            account = accounts.add(
                args.account,
                share,
                threshold=found.threshold,
                participants=found.participants,
                composite_public_key=composite,
                verification_vector=vector,
            )
        finally:
            module.close()
    finally:
        lock.release()
    print(
        f"imported 0x{account.share_public_key.hex()} {account.name}: participant {account.participant_id}, "
        f"{account.threshold} of {len(account.participants)}, composite key 0x{account.composite_public_key.hex()}"
    )
    print(
        "import the validator's slashing-protection history under the composite key before it signs "
        "(signer protection import)",
        file=sys.stderr,
    )
    return EXIT_OK


def _client_tls(args: argparse.Namespace) -> ClientTls | None:
    files = (args.tls_cert, args.tls_key, args.tls_ca)
    if all(f is None for f in files):
        return None
    if any(f is None for f in files):
        raise ConfigError("mTLS needs all of --tls-cert, --tls-key and --tls-ca")
    try:
        cert, key, ca = (f.read_bytes() for f in files)
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    return ClientTls(cert, key, ca)


def cmd_distributed_sign(args: argparse.Namespace) -> int:
    """Sign through a cluster as Vouch does (Sign by account name on every participant), combine a
    threshold of partial signatures and check the result under the composite key."""
    domain = _hex_arg(args.domain, "--domain")
    data = _hex_arg(args.data, "--data")
    remote, combined = sign_generic(
        args.endpoint,
        args.account,
        domain,
        data,
        compute_signing_root(data, domain),
        tls=_client_tls(args),
        timeout_s=args.timeout,
    )
    result = {
        "signature": "0x" + combined.signature.hex(),
        "composite_public_key": "0x" + remote.composite_public_key.hex(),
        "signers": list(combined.signers),
        "refusals": {str(i): why for i, why in combined.refusals.items()},
    }
    print(json.dumps(result, indent=2))
    return EXIT_OK


def _add_distributed(subparsers: Any) -> None:
    dist = subparsers.add_parser("distributed", help="distributed (threshold) accounts")
    sub = dist.add_subparsers(dest="distributed_command", required=True, metavar="ACTION")
    p = sub.add_parser("import", help="seal a pre-dealt share (Dirk/ethdo) with its distributed metadata")
    _add_module_options(p)
    p.add_argument("--account", required=True, help="wallet/account, as on every participant")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--keystore", type=Path, help="EIP-2335 keystore of the share (with the four flags below)")
    source.add_argument("--dirk-account", type=Path, help="Dirk's (go-eth2-wallet-distributed) account file")
    p.add_argument("--id", type=_positive, help="this signer's participant id (Dirk: server.id)")
    p.add_argument("--threshold", type=_positive, help="the signing threshold")
    p.add_argument("--participants", metavar="ID=HOST:PORT,...", help="every participant")
    p.add_argument("--verification-vector", metavar="0x..,0x..", help="the threshold commitments, composite key first")
    p.add_argument("--composite-key", help="0x... the composite public key (checked against the vector)")
    p.add_argument("--password-file", type=Path, required=True, help="first line: the keystore's password")
    p.set_defaults(func=cmd_distributed_import)
    p = sub.add_parser("sign", help="sign through a cluster (Sign on every participant), combine, verify")
    p.add_argument("--endpoint", required=True, help="HOST:PORT of one participant (lists the account)")
    p.add_argument("--account", required=True, help="wallet/account of the distributed account")
    p.add_argument("--domain", required=True, help="0x... the 32-byte domain")
    p.add_argument("--data", required=True, help="0x... the 32-byte object root")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    p.add_argument("--tls-cert", type=Path, help="client certificate (PEM) for mTLS")
    p.add_argument("--tls-key", type=Path, help="client private key (PEM)")
    p.add_argument("--tls-ca", type=Path, help="CA (PEM) of the signers' server certificates")
    p.set_defaults(func=cmd_distributed_sign)


# --- entry point ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signer", description="Remote signer for validators.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_keys(subparsers)
    _add_check_config(subparsers)
    _add_admin(subparsers)
    _add_serve(subparsers)
    _add_protection(subparsers)
    _add_audit(subparsers)
    _add_distributed(subparsers)
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
