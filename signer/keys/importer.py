"""Parallel EIP-2335 keystore import into a key module.

Each keystore costs one KDF run (scrypt n=2**18: about a second and 256 MiB), so the decryption is
spread over a process pool (one worker per core by default, ``spawn`` context so that it is safe
from a threaded host such as the gRPC server). A worker returns the secret and its public key to
the parent through the pool's pipe (local and in memory); nothing is written to disk until the
parent seals the secrets into the module.

Every keystore gets one ``ImportResult``; a failure never stops the others:

* ``imported``       -- sealed into the module under ``<wallet>/<first 8 hex of the public key>``;
* ``duplicate``      -- the public key is already in the module (or earlier in this import);
  keystores whose ``pubkey`` field is already known are not even decrypted;
* ``wrong_password`` -- the checksum did not match;
* ``malformed``      -- unreadable, not EIP-2335, not a BLS secret, or ``pubkey`` disagrees;
* ``failed``         -- the module refused to store it (the message says why).
"""

from __future__ import annotations

import enum
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from signer.crypto import bls
from signer.errors import (
    KdfLimitExceeded,
    KeystoreError,
    MalformedKeystore,
    MalformedRequest,
    SignerError,
    WrongPassword,
)
from signer.keys import eip2335
from signer.keys.module import KeyModule, check_account_name
from signer.types import Scheme

DEFAULT_WALLET = "imported"
SEAL_CHUNK = 256
"""Decrypted secrets are sealed into the module in chunks of this many (one module write each)."""


class ImportStatus(enum.StrEnum):
    IMPORTED = "imported"
    DUPLICATE = "duplicate"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a status name, not a password
    MALFORMED = "malformed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What happened to one keystore. Never holds secret material."""

    source: str
    status: ImportStatus
    message: str = ""
    public_key: bytes | None = None
    name: str | None = None


def find_keystores(paths: Sequence[Path]) -> list[Path]:
    """Files as given; directories expanded to their ``*.json`` files (recursively, sorted),
    skipping staking-deposit-cli's ``deposit_data-*.json``."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p for p in sorted(path.rglob("*.json")) if p.is_file() and not p.name.startswith("deposit_data-")
            )
        else:
            found.append(path)
    return found


def _without_source(message: str, source: str) -> str:
    """Results name their keystore in ``source``; do not repeat it in the message."""
    return message.removeprefix(f"{source}: ")


def _decrypt_one(path: str, password: str) -> tuple[ImportStatus, str, bytes | None, bytes | None]:
    """Worker: (status, message, public_key, secret). Runs in a pool process."""
    try:
        keystore = eip2335.load_keystore(Path(path))
        secret = eip2335.decrypt_keystore(keystore, password, source=path)
        public_key = bls.secret_to_public(secret)
    except WrongPassword as exc:
        return ImportStatus.WRONG_PASSWORD, _without_source(exc.message, path), None, None
    except MalformedKeystore as exc:
        return ImportStatus.MALFORMED, _without_source(exc.message, path), None, None
    except MalformedRequest as exc:  # not a valid BLS secret
        return ImportStatus.MALFORMED, exc.message, None, None
    if keystore.pubkey is not None and keystore.pubkey != public_key:
        return ImportStatus.MALFORMED, "the pubkey field does not match the decrypted secret", None, None
    return ImportStatus.IMPORTED, "", public_key, secret


def account_name(wallet: str, public_key: bytes, taken: set[str]) -> str:
    """``wallet/<first 8 hex>``; longer prefixes of the public key if that name is taken."""
    hex_key = public_key.hex()
    for length in (8, 12, 16, len(hex_key)):
        name = f"{wallet}/{hex_key[:length]}"
        if name not in taken:
            return name
    return f"{wallet}/{hex_key}"


class _Sealer:
    """Collects decrypted secrets and seals them into the module in chunks."""

    def __init__(self, module: KeyModule, wallet: str, results: dict[str, ImportResult]) -> None:
        self.module = module
        self.wallet = wallet
        self.results = results
        self.names = {k.name for k in module.list_keys()}
        self.pending: list[tuple[str, str, bytes, bytes]] = []  # (source, name, public_key, secret)

    def add(self, source: str, public_key: bytes, secret: bytes) -> None:
        name = account_name(self.wallet, public_key, self.names)
        self.names.add(name)
        self.pending.append((source, name, public_key, secret))
        if len(self.pending) >= SEAL_CHUNK:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            self.module.import_secrets([(name, Scheme.BLS, secret) for _, name, _, secret in pending])
        except SignerError:
            pass  # fall through: one by one, to say which keystore was refused
        else:
            for source, name, public_key, _ in pending:
                self.results[source] = ImportResult(source, ImportStatus.IMPORTED, "", public_key, name)
            return
        for source, name, public_key, secret in pending:
            try:
                self.module.import_secret(name, Scheme.BLS, secret)
            except SignerError as exc:
                self.results[source] = ImportResult(source, ImportStatus.FAILED, exc.message, public_key)
            else:
                self.results[source] = ImportResult(source, ImportStatus.IMPORTED, "", public_key, name)


def import_keystores(
    module: KeyModule,
    paths: Sequence[Path],
    password: str | Callable[[Path], str],
    *,
    wallet: str = DEFAULT_WALLET,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    max_work: float | None = None,
) -> list[ImportResult]:
    """Decrypt the keystores in parallel and seal them into ``module`` (which must be unlocked).

    ``password`` is one password for all, or a function of the keystore path. Results come back in
    the order of ``paths``; each keystore has exactly one. A keystore over the KDF limits
    (``eip2335.check_kdf_limits``) is ``malformed`` and never decrypted. ``max_work`` bounds the KDF
    work of the whole call, in standard keystores (``eip2335.kdf_work``): over it, KdfLimitExceeded
    is raised before any KDF runs and nothing is imported.
    """
    check_account_name(f"{wallet}/x")
    paths = list(dict.fromkeys(paths))
    password_of = password if callable(password) else (lambda _path: password)
    results: dict[str, ImportResult] = {}
    known = {k.public_key for k in module.list_keys()}
    sealer = _Sealer(module, wallet, results)
    jobs: list[Path] = []
    work = 0.0
    for path in paths:
        source = str(path)
        try:
            keystore = eip2335.load_keystore(path)
        except KeystoreError as exc:
            message = _without_source(exc.message, source)
            results[source] = ImportResult(source, ImportStatus.MALFORMED, message)
            continue
        if keystore.pubkey is not None and keystore.pubkey in known:
            results[source] = ImportResult(
                source, ImportStatus.DUPLICATE, "public key already in the module", keystore.pubkey
            )
            continue
        jobs.append(path)
        work += eip2335.kdf_work(keystore.kdf)
    if max_work is not None and work > max_work:
        raise KdfLimitExceeded(
            f"the {len(jobs)} keystores to decrypt need {work:,.1f} standard keystores' worth of KDF work, "
            f"over the limit of {max_work:g} per call; import them in smaller calls"
        )

    if jobs:
        max_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
        columns = (
            TextColumn("importing keystores"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with (
            Progress(*columns, console=console or Console(stderr=True), disable=not progress) as bar,
            ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            task = bar.add_task("import", total=len(jobs))
            Outcome = tuple[ImportStatus, str, bytes | None, bytes | None]
            futures: dict[Future[Outcome], int] = {
                pool.submit(_decrypt_one, str(path), password_of(path)): i for i, path in enumerate(jobs)
            }
            # Outcomes are handled in the order of ``paths`` (buffering early finishers), so that
            # of two keystores holding one key, the first given is the one imported.
            done: dict[int, Outcome] = {}
            next_index = 0
            for future in as_completed(futures):
                try:
                    done[futures[future]] = future.result()
                except Exception as exc:  # a worker died (e.g. out of memory): report, go on
                    done[futures[future]] = (ImportStatus.FAILED, f"worker failed: {type(exc).__name__}", None, None)
                bar.advance(task)
                while next_index in done:
                    status, message, public_key, secret = done.pop(next_index)
                    source = str(jobs[next_index])
                    next_index += 1
                    if status is not ImportStatus.IMPORTED or public_key is None or secret is None:
                        results[source] = ImportResult(source, status, message)
                    elif public_key in known:
                        results[source] = ImportResult(
                            source, ImportStatus.DUPLICATE, "public key already in the module", public_key
                        )
                    else:
                        known.add(public_key)
                        sealer.add(source, public_key, secret)
            sealer.flush()
    return [results[str(path)] for path in paths]
