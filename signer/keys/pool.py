"""ParallelSigner: a KeyModule in front of another that signs BLS on every core.

BLS signatures go, in chunks, to worker processes forked once at ``start()`` (before the server
runs any thread) from the unlocked module, so they inherit its unsealed secrets and no key
material crosses a pipe: only (public key, signing root) pairs in and signatures out. Everything
else (secp256k1, ed25519, PKCS#11 sessions, keys added since the fork) is signed in the caller's
thread while the workers sign the BLS part. A worker that dies, answers garbage or stays silent
past ``chunk_timeout_s`` fails its chunk (KeyModuleError: the items are refused); a spare takes
its place; with no worker left, signing continues in-process (logged). A deleted key is never
handed to a worker again; ``lock()`` and ``close()`` stop every worker. Why processes and not
threads: docs/ARCHITECTURE.md, "BLS signs in worker processes" (figures in bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import math
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from signer import errors
from signer.crypto import bls
from signer.keys.module import KeyModule
from signer.types import KeyInfo, Scheme

log = logging.getLogger("signer.keys.pool")

DEFAULT_CHUNK = 64
"""Largest chunk handed to one worker at a time (a batch of 100 over 2 workers: 2 chunks of 50)."""
DEFAULT_CHUNK_TIMEOUT_S = 10.0
"""A worker that has not answered a chunk after this long is killed and its chunk refused (a chunk
of 64 BLS signatures takes ~30 ms; this only trips on a stopped or stuck process)."""
_STOP_TIMEOUT_S = 2.0
_LIVENESS_CHECK_S = 1.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One signing process per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this worker when the process that forked it dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _worker_main(module: KeyModule, conn: Connection, parent_pid: int) -> None:
    """The worker loop (runs in the forked child): sign chunks until told to stop or the pipe closes."""
    _die_with_parent(parent_pid)
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
            target=_worker_main, args=(module, child, os.getpid()), name=f"signer-sign-{index}", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        self.index = index

    @property
    def pid(self) -> int | None:
        return self.process.pid

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
    """The workers (and spares) forked from one state of the module, at start; retired as a whole.

    A caller that hands chunks to the workers is one of ``users`` (``ParallelSigner.sign_many``
    enters under ``cond`` and leaves when its chunks are back): ``paused`` and ``retire`` wait until
    no user is left.
    """

    def __init__(self, module: KeyModule, workers: int, spares: int, chunk_timeout_s: float = 10.0) -> None:
        self.module = module
        self.chunk_timeout_s = chunk_timeout_s
        self.keys: dict[bytes, Scheme] = {k.public_key: k.scheme for k in module.list_keys()}
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.workers: list[_Worker] = []
        self.spares: list[_Worker] = []
        self.cond = threading.Condition()
        """Guards ``users``, ``pausing``, ``retired`` and the lists of workers and spares."""
        self.users = 0
        self.pausing = False
        """A key is being deleted: no user may enter."""
        self.retired = False
        for index in range(workers + spares):
            worker = _Worker(module, index)
            if index < workers:
                self.workers.append(worker)
                self.idle.put(worker)
            else:
                self.spares.append(worker)

    @contextlib.contextmanager
    def paused(self) -> Any:
        """No chunk in flight and none handed out while the body runs (a key is being deleted)."""
        with self.cond:
            self.cond.wait_for(lambda: not self.pausing)
            self.pausing = True
            self.cond.wait_for(lambda: self.users == 0)
        try:
            yield
        finally:
            with self.cond:
                self.pausing = False
                self.cond.notify_all()

    def retire(self) -> None:
        """No new users; wait for the chunks in flight; stop every worker and spare."""
        with self.cond:
            self.retired = True
            self.cond.wait_for(lambda: self.users == 0)
            workers, self.workers = self.workers + self.spares, []
            self.spares = []
        for worker in workers:
            worker.stop()

    def replace(self, dead: _Worker) -> _Worker | None:
        """A spare in place of a dead (or confused) worker; None when no spare is left."""
        dead.kill()
        with self.cond:
            fresh = self.spares.pop() if self.spares else None
            if fresh is None:
                self.workers = [w for w in self.workers if w is not dead]
                log.warning("signing worker lost and no spare left", extra={"workers": len(self.workers)})
            else:
                self.workers = [fresh if w is dead else w for w in self.workers]
        return fresh

    def put_back(self, worker: _Worker | None) -> None:
        if worker is not None:
            self.idle.put(worker)

    def run(self, chunks: list[list[tuple[bytes, bytes]]]) -> list[list[bytes]]:
        """Sign every chunk on the workers (the caller is a user); one list of signatures per chunk.

        Raises the first refusal a worker reports, or KeyModuleError for a worker that died or stayed
        silent past ``chunk_timeout_s`` (the others' chunks are waited for first).
        """
        results: list[list[bytes] | None] = [None] * len(chunks)
        pending = list(range(len(chunks) - 1, -1, -1))
        """Chunk indexes not sent yet, the next one last."""
        inflight: dict[Connection, tuple[_Worker, int, float]] = {}
        """conn -> (worker, chunk index, deadline), in hand-out order: the first has the earliest
        deadline (every chunk gets the same timeout)."""
        failures: list[errors.SignerError] = []
        while pending or inflight:
            self._hand_out(chunks, pending, inflight)
            if not inflight:  # no worker left at all: the chunks that never left are signed here
                for index in pending:
                    results[index] = self.module.sign_many(chunks[index])
                pending.clear()
                continue
            earliest = next(iter(inflight.values()))[2]
            ready = wait(list(inflight), timeout=max(0.0, min(_LIVENESS_CHECK_S, earliest - time.monotonic())))
            if len(ready) < len(inflight):
                self._drop_silent(inflight, ready, failures)
            for conn in ready:
                assert isinstance(conn, Connection)
                worker, index, _ = inflight.pop(conn)
                try:
                    status, payload = conn.recv()
                except (EOFError, OSError, ValueError, TypeError):
                    failures.append(_crashed(worker))
                    self.put_back(self.replace(worker))
                    continue
                self.idle.put(worker)
                if status == "ok" and isinstance(payload, list) and len(payload) == len(chunks[index]):
                    results[index] = payload
                else:
                    failures.append(_refusal(status, payload))
        if failures:
            raise failures[0]
        return cast(list[list[bytes]], results)  # every chunk was answered, or a failure was raised

    def _hand_out(
        self,
        chunks: list[list[tuple[bytes, bytes]]],
        pending: list[int],
        inflight: dict[Connection, tuple[_Worker, int, float]],
    ) -> None:
        """Send pending chunks to idle workers, waiting for one only while nothing is in flight; return
        with chunks still pending when none is idle, or none is left at all. A worker found dead while
        idle held no chunk: a spare takes its place and nothing is refused."""
        while pending:
            with self.cond:
                if not self.workers:
                    return
            try:
                worker = self.idle.get(block=not inflight, timeout=0.5)  # the timeout re-checks the workers
            except queue.Empty:
                if inflight:
                    return
                continue
            if not worker.process.is_alive():
                self.put_back(self.replace(worker))
                continue
            index = pending.pop()
            try:
                worker.conn.send(chunks[index])
            except (OSError, ValueError):  # the chunk never left: another worker signs it
                _crashed(worker)
                self.put_back(self.replace(worker))
                pending.append(index)
                continue
            inflight[worker.conn] = (worker, index, time.monotonic() + self.chunk_timeout_s)

    def _drop_silent(
        self,
        inflight: dict[Connection, tuple[_Worker, int, float]],
        ready: Sequence[object],
        failures: list[errors.SignerError],
    ) -> None:
        """Replace the workers in flight that died without a word, or stayed silent past their deadline."""
        now = time.monotonic()
        for quiet_conn, (worker, _, deadline) in list(inflight.items()):
            if quiet_conn in ready:
                continue
            if not ready and not worker.process.is_alive():  # belt and braces: died without closing its pipe
                del inflight[quiet_conn]
                failures.append(_crashed(worker))
                self.put_back(self.replace(worker))
            elif now >= deadline:  # alive but silent (stopped, stuck): a timeout refuses
                del inflight[quiet_conn]
                failures.append(_hung(worker, self.chunk_timeout_s))
                self.put_back(self.replace(worker))


def _refusal(status: object, payload: object) -> errors.SignerError:
    """What a worker's answer other than the signatures of its chunk stands for."""
    if status == "error" and isinstance(payload, tuple) and len(payload) == 2:
        name, message = payload
        return _WORKER_ERRORS.get(name, errors.KeyModuleError)(str(message))
    return errors.KeyModuleError("signing worker answered malformed data")


def _hung(worker: _Worker, timeout_s: float) -> errors.KeyModuleError:
    log.warning("signing worker did not answer; killed, a spare replaces it", extra={"worker": worker.index})
    return errors.KeyModuleError(
        f"signing worker {worker.index} did not answer within {timeout_s:g} s; its items were not signed"
    )


def _crashed(worker: _Worker) -> errors.KeyModuleError:
    worker.process.join(0.05)
    code = worker.process.exitcode
    log.warning("signing worker died; a spare replaces it", extra={"worker": worker.index, "exitcode": code})
    return errors.KeyModuleError(f"signing worker {worker.index} died (exit code {code}); its items were not signed")


class ParallelSigner:
    """``ParallelSigner(module, workers)`` is a KeyModule: it delegates every KeyModule method (and
    only those) to ``module`` and signs the BLS part of ``sign_many`` over ``workers`` forked
    processes (0: one per core), with ``spares`` more forked beside them (default: as many) to
    replace workers that die.

    Call ``start()`` before the process starts any thread (the gRPC server): it is the only fork.
    """

    def __init__(
        self,
        module: KeyModule,
        workers: int = 0,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        spares: int | None = None,
        chunk_timeout_s: float = DEFAULT_CHUNK_TIMEOUT_S,
    ) -> None:
        if workers < 0 or chunk_size < 1 or (spares is not None and spares < 0) or chunk_timeout_s <= 0:
            raise errors.ConfigError(
                "batching.sign_workers must be >= 0, the chunk size >= 1 and the chunk timeout positive"
            )
        self.chunk_timeout_s = chunk_timeout_s
        self.module = module
        self.kind: str = module.kind
        self.workers = workers or default_workers()
        self.spares = self.workers if spares is None else spares
        self.chunk_size = chunk_size
        self._pool: _Pool | None = None
        self._pool_lock = threading.Lock()
        self._mutation_lock = threading.RLock()
        self._removed: set[bytes] = set()
        """Keys deleted since the workers were forked: never handed to them."""
        self._started = False
        self._closed = False

    # --- the pool's life ----------------------------------------------------------------------

    def start(self) -> None:
        """Fork the workers and spares now (if the module is unlocked). Idempotent.

        The first start forks unconditionally (call it before any thread runs); a later one, after
        ``lock()``/``unlock()``, only while this process has no other thread.
        """
        with self._mutation_lock, self._pool_lock:
            if self._pool is not None or self._closed or not self.module.unlocked:
                return
            if self._started and threading.active_count() > 1:
                log.warning("not forking signing workers from a multi-threaded process; signing in-process")
                return
            bls.get_backend()  # import and set up the backend once, before forking
            self._pool = _Pool(self.module, self.workers, self.spares, self.chunk_timeout_s)
            self._removed = set()
            self._started = True

    def _retire(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.retire()

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
        with self._mutation_lock:
            self.module.unlock()
            self.start()

    def lock(self) -> None:
        with self._mutation_lock:
            self._retire()
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

    # New keys are not in the workers (forked earlier): they are signed in-process.

    def generate(self, name: str, scheme: Scheme) -> KeyInfo:
        return self.module.generate(name, scheme)

    def import_secret(self, name: str, scheme: Scheme, secret: bytes) -> KeyInfo:
        return self.module.import_secret(name, scheme, secret)

    def import_secrets(self, items: Sequence[tuple[str, Scheme, bytes]]) -> list[KeyInfo]:
        return self.module.import_secrets(items)

    def generate_many(self, names: Sequence[str], scheme: Scheme) -> list[KeyInfo]:
        return self.module.generate_many(names, scheme)

    def delete(self, public_key: bytes) -> KeyInfo:
        """Delete the key; from then on no worker is handed it (chunks in flight finish first)."""
        with self._mutation_lock:
            pool = self._pool
            if pool is None:
                return self.module.delete(public_key)
            with pool.paused():
                info = self.module.delete(public_key)
                self._removed.add(bytes(public_key))
                return info

    def sign(self, public_key: bytes, message: bytes) -> bytes:
        return self.sign_many([(public_key, message)])[0]

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        pool = self._pool
        if pool is None:
            return self.module.sign_many(items)
        with pool.cond:  # enter the pool (a key being deleted waits for us, or we for it)
            while pool.pausing:
                pool.cond.wait()
            entered = not pool.retired and bool(pool.workers)
            if entered:
                pool.users += 1
        if not entered:  # retired (locked, closed) or no worker left: in-process
            return self.module.sign_many(items)
        try:
            pairs = [(bytes(public_key), bytes(message)) for public_key, message in items]
            removed = self._removed
            pooled = [n for n, (pk, _) in enumerate(pairs) if pool.keys.get(pk) is Scheme.BLS and pk not in removed]
            if not pooled:
                return self.module.sign_many(items)
            size = max(1, min(self.chunk_size, math.ceil(len(pooled) / self.workers)))
            if len(pooled) < len(pairs):
                return self._sign_beside(pool, pairs, pooled, size)
            # All BLS (the usual case): no thread, no hand-off.
            chunks = [pairs[start : start + size] for start in range(0, len(pairs), size)]
            return list(itertools.chain.from_iterable(pool.run(chunks)))
        finally:
            with pool.cond:
                pool.users -= 1
                pool.cond.notify_all()

    def _sign_beside(self, pool: _Pool, pairs: list[tuple[bytes, bytes]], pooled: list[int], size: int) -> list[bytes]:
        """The workers sign the items at ``pooled`` (from a thread, in chunks of ``size``) while this
        thread signs the others: other schemes, keys added since the fork, unknown keys (refused)."""
        pooled_set = set(pooled)
        others = [n for n in range(len(pairs)) if n not in pooled_set]
        positions = [pooled[start : start + size] for start in range(0, len(pooled), size)]
        chunks = [[pairs[n] for n in chunk] for chunk in positions]
        out: list[bytes | None] = [None] * len(pairs)
        done = threading.Event()
        box: dict[str, Any] = {}

        def run_pool() -> None:
            try:
                box["sigs"] = pool.run(chunks)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        runner = threading.Thread(target=run_pool, name="sign-pool", daemon=True)
        runner.start()
        try:
            for n, sig in zip(others, self.module.sign_many([pairs[n] for n in others]), strict=True):
                out[n] = sig
        finally:
            done.wait()
        if "error" in box:
            raise box["error"]
        for chunk, sigs in zip(positions, box["sigs"], strict=True):
            for n, sig in zip(chunk, sigs, strict=True):
                out[n] = sig
        if None in out:
            raise errors.KeyModuleError("signing pool returned fewer signatures than asked")
        return cast(list[bytes], out)
