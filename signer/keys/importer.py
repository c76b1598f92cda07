"""Parallel EIP-2335 keystore import into a key module, in two steps: decrypt, then seal.

The importer takes keystores as documents (their JSON bytes, a password, and a name for the results),
never paths: the CLI reads files, the admin API passes what it received. Each keystore costs one KDF
run (scrypt n=2**18: about a second and 256 MiB), so ``decrypt_keystores`` spreads the decryption
over a process pool (one worker per core by default, ``spawn`` context so that it is safe from a
threaded host such as the gRPC server). A worker returns the secret and its public key to the parent
through the pool's pipe (local and in memory); nothing is written until ``seal_keystores`` seals the
secrets into the module. Between the two steps the caller knows which keys are about to be imported
(``Decryption.public_keys``): signer.keyadmin imports their slashing-protection history there,
before any of them exists in the module.

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
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

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


_REFUSALS: dict[ImportStatus, str] = {
    ImportStatus.WRONG_PASSWORD: "wrong password",
    ImportStatus.MALFORMED: "malformed keystore",
    ImportStatus.FAILED: "import failed",
}


@dataclass(frozen=True, slots=True)
class KeystoreDocument:
    """One keystore to import: its JSON bytes, its password, and the name results give it (a path,
    ``keystore 3``). The password is kept out of ``repr``."""

    source: str
    body: bytes
    password: str = field(repr=False)
    unreadable: str = ""
    """Why the keystore could not be read (``body`` is then empty): it is reported as malformed."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What happened to one keystore. Never holds secret material.

    ``public_key`` is the decrypted key, or, for a keystore that was not imported, the public key its
    ``pubkey`` field declares (when it has one), so that a refusal can say which key it concerns."""

    source: str
    status: ImportStatus
    message: str = ""
    public_key: bytes | None = None
    name: str | None = None

    @property
    def refused(self) -> bool:
        """Neither imported nor a duplicate (which is an answer, not a refusal)."""
        return self.status not in (ImportStatus.IMPORTED, ImportStatus.DUPLICATE)

    def describe(self) -> str:
        """The refusal in words (``wrong password: checksum mismatch ...``); the message otherwise."""
        prefix = _REFUSALS.get(self.status)
        if prefix is None:
            return self.message
        return f"{prefix}: {self.message}" if self.message else prefix


@dataclass(frozen=True, slots=True)
class _Decrypted:
    public_key: bytes
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Decryption:
    """The first step's outcome: every keystore either decided (``results``) or decrypted and new
    (``decrypted``, in the order given). Nothing is written yet. Holds secrets: keep it short-lived."""

    sources: tuple[str, ...]
    results: dict[int, ImportResult]
    decrypted: dict[int, _Decrypted] = field(repr=False)

    @property
    def public_keys(self) -> list[bytes]:
        """The keys ``seal_keystores`` will import (unless the module refuses one)."""
        return [d.public_key for _, d in sorted(self.decrypted.items())]


def _without_source(message: str, source: str) -> str:
    """Results name their keystore in ``source``; do not repeat it in the message."""
    return message.removeprefix(f"{source}: ")


def _decrypt_one(body: bytes, password: str, source: str) -> tuple[ImportStatus, str, bytes | None, bytes | None]:
    """Worker: (status, message, public_key, secret). Runs in a pool process."""
    try:
        keystore = eip2335.parse_keystore(body, source=source)
        secret = eip2335.decrypt_keystore(keystore, password, source=source)
        public_key = bls.secret_to_public(secret)
    except WrongPassword as exc:
        return ImportStatus.WRONG_PASSWORD, _without_source(exc.message, source), None, None
    except MalformedKeystore as exc:
        return ImportStatus.MALFORMED, _without_source(exc.message, source), None, None
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


def decrypt_keystores(
    documents: Sequence[KeystoreDocument],
    known: Collection[bytes],
    *,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    max_work: float | None = None,
) -> Decryption:
    """Step one: parse every keystore, decrypt the new ones in parallel, write nothing.

    ``known``: the public keys already in the module (their keystores are duplicates). A keystore over
    the KDF limits (``eip2335.check_kdf_limits``) is ``malformed`` and never decrypted. ``max_work``
    bounds the KDF work of the whole call, in standard keystores (``eip2335.kdf_work``): over it,
    KdfLimitExceeded is raised before any KDF runs. Of two keystores holding one key, the first given
    is the one imported.
    """
    known = set(known)
    results: dict[int, ImportResult] = {}
    declared: dict[int, bytes | None] = {}
    jobs: list[int] = []
    work = 0.0
    for index, document in enumerate(documents):
        source = document.source
        if document.unreadable:
            results[index] = ImportResult(source, ImportStatus.MALFORMED, document.unreadable)
            continue
        try:
            keystore = eip2335.parse_keystore(document.body, source=source)
        except KeystoreError as exc:
            results[index] = ImportResult(source, ImportStatus.MALFORMED, _without_source(exc.message, source))
            continue
        if keystore.pubkey is not None and keystore.pubkey in known:
            results[index] = ImportResult(
                source, ImportStatus.DUPLICATE, "public key already in the module", keystore.pubkey
            )
            continue
        declared[index] = keystore.pubkey
        jobs.append(index)
        work += eip2335.kdf_work(keystore.kdf)
    if max_work is not None and work > max_work:
        raise KdfLimitExceeded(
            f"the {len(jobs)} keystores to decrypt need {work:,.1f} standard keystores' worth of KDF work, "
            f"over the limit of {max_work:g} per call; import them in smaller calls"
        )
    decrypted: dict[int, _Decrypted] = {}
    for index, (status, message, public_key, secret) in _run_pool(documents, jobs, workers, progress, console):
        source = documents[index].source
        if status is not ImportStatus.IMPORTED or public_key is None or secret is None:
            results[index] = ImportResult(source, status, message, declared[index])
        elif public_key in known:
            results[index] = ImportResult(
                source, ImportStatus.DUPLICATE, "public key already in the module", public_key
            )
        else:
            known.add(public_key)
            decrypted[index] = _Decrypted(public_key, secret)
    return Decryption(tuple(d.source for d in documents), results, decrypted)


_Outcome = tuple[ImportStatus, str, bytes | None, bytes | None]


def _run_pool(
    documents: Sequence[KeystoreDocument],
    jobs: list[int],
    workers: int | None,
    progress: bool,
    console: Console | None,
) -> Iterator[tuple[int, _Outcome]]:
    """Decrypt ``documents[i]`` for each ``i`` in ``jobs`` over a process pool; yield (i, outcome) in
    the order of ``jobs`` (early finishers are buffered), with a progress bar unless ``progress`` is
    False. A worker that dies (e.g. out of memory) fails its keystore only."""
    if not jobs:
        return
    max_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    columns = (TextColumn("importing keystores"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        Progress(*columns, console=console or Console(stderr=True), disable=not progress) as bar,
        ProcessPoolExecutor(max_workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        task = bar.add_task("import", total=len(jobs))
        futures: dict[Future[_Outcome], int] = {
            pool.submit(_decrypt_one, documents[i].body, documents[i].password, documents[i].source): n
            for n, i in enumerate(jobs)
        }
        done: dict[int, _Outcome] = {}
        next_job = 0
        for future in as_completed(futures):
            try:
                done[futures[future]] = future.result()
            except Exception as exc:
                done[futures[future]] = (ImportStatus.FAILED, f"worker failed: {type(exc).__name__}", None, None)
            bar.advance(task)
            while next_job in done:
                yield jobs[next_job], done.pop(next_job)
                next_job += 1


def seal_keystores(module: KeyModule, decryption: Decryption, wallet: str = DEFAULT_WALLET) -> list[ImportResult]:
    """Step two: seal the decrypted keys into ``module`` (unlocked) under ``wallet``, in chunks of
    ``SEAL_CHUNK`` (one ``import_secrets`` each, all or nothing; a refused chunk again one by one, to
    name the keystore refused); return one result per keystore, in the order given to
    ``decrypt_keystores``."""
    check_account_name(f"{wallet}/x")
    results = dict(decryption.results)
    taken = {k.name for k in module.list_keys()}
    pending: list[tuple[int, str, _Decrypted]] = []
    for index, key in sorted(decryption.decrypted.items()):
        name = account_name(wallet, key.public_key, taken)
        taken.add(name)
        pending.append((index, name, key))
    for start in range(0, len(pending), SEAL_CHUNK):
        for index, result in _seal(module, pending[start : start + SEAL_CHUNK], decryption.sources):
            results[index] = result
    return [results[index] for index in range(len(decryption.sources))]


def _seal(
    module: KeyModule, chunk: list[tuple[int, str, _Decrypted]], sources: tuple[str, ...]
) -> Iterator[tuple[int, ImportResult]]:
    try:
        module.import_secrets([(name, Scheme.BLS, key.secret) for _, name, key in chunk])
    except SignerError:
        pass  # fall through: one by one, to say which keystore was refused
    else:
        for index, name, key in chunk:
            yield index, ImportResult(sources[index], ImportStatus.IMPORTED, "", key.public_key, name)
        return
    for index, name, key in chunk:
        try:
            module.import_secret(name, Scheme.BLS, key.secret)
        except SignerError as exc:
            yield index, ImportResult(sources[index], ImportStatus.FAILED, exc.message, key.public_key)
        else:
            yield index, ImportResult(sources[index], ImportStatus.IMPORTED, "", key.public_key, name)


def import_keystores(
    module: KeyModule,
    documents: Sequence[KeystoreDocument],
    *,
    wallet: str = DEFAULT_WALLET,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    max_work: float | None = None,
) -> list[ImportResult]:
    """Both steps: decrypt the keystores in parallel and seal the new ones into ``module``
    (unlocked). Results come back in the order of ``documents``, one each."""
    check_account_name(f"{wallet}/x")
    known = {k.public_key for k in module.list_keys()}
    decryption = decrypt_keystores(
        documents, known, workers=workers, progress=progress, console=console, max_work=max_work
    )
    return seal_keystores(module, decryption, wallet)
