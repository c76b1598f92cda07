"""ParallelSigner: a KeyModule in front of another that signs BLS on every core.

Why processes, not threads (measured; DESIGN.md and bench/RESULTS.md): blst through pyblst, the
default BLS backend, holds the GIL, so 2 threads sign at 1.0x while 2 processes sign at 1.9-2.1x.
blspy releases the GIL (2 threads ~1.8-2.0x) but is an optional extra and no faster per signature;
a thread design would tie throughput to the optional backend and would still leave every bit of
Python work around a signature (secret decoding, the gRPC server, protection) on one GIL. So the
BLS work goes to a pool of forked worker processes, in chunks (50-100 signatures amortise the
~100 us of IPC per chunk); the result does not depend on which backend is the default.

Key material crosses no socket: a worker is forked from this process after the module is
unlocked and inherits the module object with its unsealed secrets (the emulated module keeps them
in a plain dict for exactly this reason; the PKCS#11 module keeps its unsealed BLS secrets the
same way). The pipe to a worker carries only (public key, signing root) pairs in and signatures
(or a refusal) out.

Only BLS goes to the workers. secp256k1 (coincurve, ~26 us, releases the GIL) and everything that
goes through a PKCS#11 session are signed by the caller's thread, directly by the module, while
the workers sign the BLS part of the same call: they never queue behind BLS work. Keys the pool
does not know (added since the workers were forked) are signed in-process too.

Key changes: every mutation that goes through this object (generate, import, delete, lock,
unlock, close) first retires the current pool -- no new chunk is handed to it, the chunks in
flight finish, then the workers are stopped -- so no worker holds a deleted key or any key after
``lock()``; while the mutation runs, signing happens in-process, against the module's current
state. A fresh pool (forked from the new state) replaces it afterwards if the module is unlocked.

A worker that dies (or answers garbage) fails its chunk: the call raises KeyModuleError, so the
service refuses the affected items; the dead worker is replaced by a fresh fork and the next call
signs normally. Dead idle workers are replaced before they are handed work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from signer import errors
from signer.crypto import bls
from signer.keys.module import KeyModule
from signer.types import KeyInfo, Scheme

log = logging.getLogger("signer.keys.pool")

DEFAULT_CHUNK = 64
"""Largest chunk handed to one worker at a time (a batch of 100 over 2 workers: 2 chunks of 50)."""
_STOP_TIMEOUT_S = 2.0


def default_workers() -> int:
    """One signing process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _worker_main(module: KeyModule, conn: Connection) -> None:
    """The worker loop (runs in the forked child): sign chunks until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        try:
            reply: tuple[str, Any] = ("ok", [module.sign(public_key, message) for public_key, message in chunk])
        except errors.SignerError as exc:
            reply = ("error", (type(exc).__name__, exc.message))
        except Exception as exc:
            reply = ("error", ("KeyModuleError", f"signing worker failed: {type(exc).__name__}"))
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


_WORKER_ERRORS: dict[str, type[errors.SignerError]] = {
    cls.__name__: cls
    for cls in (
        errors.UnknownKey,
        errors.MalformedRequest,
        errors.UnsupportedScheme,
        errors.KeyModuleError,
        errors.InternalError,
    )
}


class _Worker:
    """One forked signing process and the parent's end of its pipe."""

    def __init__(self, module: KeyModule, index: int) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main, args=(module, child), name=f"signer-sign-{index}", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        self.index = index

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(_STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(_STOP_TIMEOUT_S)
        self.conn.close()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.join(_STOP_TIMEOUT_S)
        self.conn.close()


class _Pool:
    """One generation of workers, forked from one state of the module; retired as a whole."""

    def __init__(self, module: KeyModule, workers: int) -> None:
        self.module = module
        self.keys: dict[bytes, Scheme] = {k.public_key: k.scheme for k in module.list_keys()}
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.workers: list[_Worker] = []
        self._cond = threading.Condition()
        self._users = 0
        self._retired = False
        for index in range(workers):
            worker = _Worker(module, index)
            self.workers.append(worker)
            self.idle.put(worker)

    def enter(self) -> bool:
        with self._cond:
            if self._retired:
                return False
            self._users += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._users -= 1
            self._cond.notify_all()

    def retire(self) -> None:
        """No new users; wait for the chunks in flight; stop every worker."""
        with self._cond:
            self._retired = True
            self._cond.wait_for(lambda: self._users == 0)
            workers, self.workers = self.workers, []
        for worker in workers:
            worker.stop()

    def take(self, block: bool) -> _Worker | None:
        try:
            worker = self.idle.get(block=block)
        except queue.Empty:
            return None
        if not worker.alive():
            worker = self.replace(worker)
        return worker

    def replace(self, dead: _Worker) -> _Worker:
        """A fresh fork in place of a dead (or confused) worker."""
        dead.kill()
        fresh = _Worker(self.module, dead.index)
        with self._cond:
            self.workers = [fresh if w is dead else w for w in self.workers]
        return fresh

    def run(self, chunks: list[list[tuple[bytes, bytes]]]) -> list[list[bytes]]:
        """Sign every chunk on the workers; raises the first refusal (or KeyModuleError on a crash)."""
        results: list[list[bytes] | None] = [None] * len(chunks)
        pending = list(range(len(chunks)))
        pending.reverse()
        inflight: dict[Connection, tuple[_Worker, int]] = {}
        failure: errors.SignerError | None = None
        while pending or inflight:
            while pending:
                worker = self.take(block=not inflight)
                if worker is None:
                    break
                index = pending.pop()
                try:
                    worker.conn.send(chunks[index])
                except (OSError, ValueError):
                    failure = failure or _crashed(worker)
                    self.idle.put(self.replace(worker))
                    continue
                inflight[worker.conn] = (worker, index)
            if not inflight:
                continue
            for conn in wait(list(inflight)):
                assert isinstance(conn, Connection)
                worker, index = inflight.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError, ValueError, TypeError):
                    failure = failure or _crashed(worker)
                    self.idle.put(self.replace(worker))
                    continue
                self.idle.put(worker)
                if status == "ok" and isinstance(payload, list) and len(payload) == len(chunks[index]):
                    results[index] = payload
                elif status == "error":
                    name, message = payload
                    failure = failure or _WORKER_ERRORS.get(name, errors.KeyModuleError)(message)
                else:
                    failure = failure or errors.KeyModuleError("signing worker answered malformed data")
        if failure is not None:
            raise failure
        return [r if r is not None else [] for r in results]


def _crashed(worker: _Worker) -> errors.KeyModuleError:
    code = worker.process.exitcode
    log.warning("signing worker died; replacing it", extra={"worker": worker.index, "exitcode": code})
    return errors.KeyModuleError(f"signing worker {worker.index} died (exit code {code}); its items were not signed")


class ParallelSigner:
    """``ParallelSigner(module, workers)`` is a KeyModule: it delegates everything to ``module``
    and signs the BLS part of ``sign_many`` over ``workers`` forked processes (0: one per core).

    Call ``start()`` before the process starts threads of its own (the gRPC server), so the first
    fork happens in a quiet process; later refreshes fork from a running one (the workers only
    sign, they never touch a lock, a socket or a database they inherited).
    """

    def __init__(self, module: KeyModule, workers: int = 0, *, chunk_size: int = DEFAULT_CHUNK) -> None:
        if workers < 0 or chunk_size < 1:
            raise errors.ConfigError("batching.sign_workers must be >= 0 and the chunk size >= 1")
        self.module = module
        self.kind: str = module.kind
        self.workers = workers or default_workers()
        self.chunk_size = chunk_size
        self._pool: _Pool | None = None
        self._pool_lock = threading.Lock()
        self._mutation_lock = threading.RLock()
        self._closed = False

    # --- the pool's life ----------------------------------------------------------------------

    def start(self) -> None:
        """Fork the workers now (if the module is unlocked). Idempotent."""
        with self._mutation_lock, self._pool_lock:
            if self._pool is None and not self._closed and self.module.unlocked:
                bls.get_backend()  # import and set up the backend once, before forking
                self._pool = _Pool(self.module, self.workers)

    def _retire(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.retire()

    def _refresh(self) -> None:
        self._retire()
        self.start()

    @contextlib.contextmanager
    def _changing(self, restart: bool = True) -> Any:
        """Retire the pool around a mutation of the module; start a fresh one after it."""
        with self._mutation_lock:
            self._retire()
            try:
                yield
            finally:
                if restart:
                    self.start()

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (empty when there is no pool). For tests and ops."""
        with self._pool_lock:
            pool = self._pool
        return [] if pool is None else [w.pid for w in pool.workers if w.pid is not None]

    # --- KeyModule ----------------------------------------------------------------------------

    @property
    def unlocked(self) -> bool:
        return self.module.unlocked

    def unlock(self) -> None:
        with self._changing():
            self.module.unlock()

    def lock(self) -> None:
        with self._changing(restart=False):
            self.module.lock()

    def close(self) -> None:
        with self._mutation_lock:
            self._closed = True
            self._retire()
            self.module.close()

    def verify_pin(self, pin: str) -> bool:
        return self.module.verify_pin(pin)

    def list_keys(self) -> list[KeyInfo]:
        return self.module.list_keys()

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        with self._changing():
            return self.module.generate(name, scheme)

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        with self._changing():
            return self.module.import_secret(name, scheme, secret)

    def import_secrets(self, items: Sequence[tuple[str, Scheme, bytes]]) -> list[KeyInfo]:
        """BulkImport when the module has it (all or nothing), else one import per item."""
        bulk = getattr(self.module, "import_secrets", None)
        with self._changing():
            if bulk is not None:
                result: list[KeyInfo] = bulk(items)
                return result
            return [self.module.import_secret(n, s, secret) for n, s, secret in items]

    def delete(self, public_key: bytes) -> KeyInfo:
        with self._changing():
            return self.module.delete(public_key)

    def __getattr__(self, name: str) -> Any:
        """Read-only extras of the module (key_info, sign_recoverable, ...)."""
        if name.startswith("_") or name in {"generate_many"}:
            raise AttributeError(name)
        return getattr(self.module, name)

    def generate_many(self, names: Sequence[str], scheme: Scheme) -> list[KeyInfo]:
        with self._changing():
            result: list[KeyInfo] = self.module.generate_many(names, scheme)  # type: ignore[attr-defined]
            return result

    def sign(self, public_key: bytes, message: bytes) -> bytes:
        return self.sign_many([(public_key, message)])[0]

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        pool = self._pool
        if pool is None or not pool.enter():
            return self.module.sign_many(items)
        try:
            pooled = [n for n, (pk, _) in enumerate(items) if pool.keys.get(bytes(pk)) is Scheme.BLS]
            if not pooled:
                return self.module.sign_many(items)
            out: list[bytes | None] = [None] * len(items)
            per_worker = math.ceil(len(pooled) / self.workers)
            size = max(1, min(self.chunk_size, per_worker))
            index_chunks = [pooled[i : i + size] for i in range(0, len(pooled), size)]
            chunks = [[(bytes(items[n][0]), bytes(items[n][1])) for n in idx] for idx in index_chunks]
            # The other schemes (and unknown keys) are signed here, while the workers sign BLS.
            pooled_set = set(pooled)
            rest = [n for n in range(len(items)) if n not in pooled_set]
            done = threading.Event()
            box: dict[str, Any] = {}

            def run_pool() -> None:
                try:
                    box["sigs"] = pool.run(chunks)
                except BaseException as exc:
                    box["error"] = exc
                finally:
                    done.set()

            if rest:
                runner = threading.Thread(target=run_pool, name="sign-pool", daemon=True)
                runner.start()
                try:
                    for n, sig in zip(rest, self.module.sign_many([items[n] for n in rest]), strict=True):
                        out[n] = sig
                finally:
                    done.wait()
            else:
                run_pool()
            if "error" in box:
                raise box["error"]
            for idx, sigs in zip(index_chunks, box["sigs"], strict=True):
                for n, sig in zip(idx, sigs, strict=True):
                    out[n] = sig
            if any(s is None for s in out):
                raise errors.KeyModuleError("signing pool returned fewer signatures than asked")
            return [s for s in out if s is not None]
        finally:
            pool.leave()
