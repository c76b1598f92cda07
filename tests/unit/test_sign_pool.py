"""ParallelSigner: forked BLS workers in front of a real emulated key module."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from signer import errors
from signer.crypto import bls, ed25519, secp256k1
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.module import KeyModule
from signer.keys.pool import ParallelSigner
from signer.types import KeyInfo, Scheme

PIN = "unit-test-module-pin"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def kill_and_wait(pids: list[int], timeout_s: float = 30.0) -> None:
    """SIGKILL ``pids`` and return once each has died (its pidfd turns readable), not after a guess.

    kill() only queues the signal; until the process is really gone the pool sees a live worker."""
    fds = [os.pidfd_open(pid) for pid in pids]
    try:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        for fd in fds:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert readable, f"a worker outlived SIGKILL for {timeout_s} s"
    finally:
        for fd in fds:
            os.close(fd)


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` (clock ticks), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
    return int(fields[11]) + int(fields[12])


def wait_until_signing(pids: list[int], timeout_s: float = 30.0) -> None:
    """Return once one of the workers ``pids`` has spent CPU since the call: a chunk is on it."""
    before = {pid: cpu_ticks(pid) for pid in pids}
    deadline = time.monotonic() + timeout_s
    while not any(cpu_ticks(pid) > ticks for pid, ticks in before.items()):
        assert time.monotonic() < deadline, f"no worker started signing within {timeout_s} s"
        time.sleep(0.001)


def wait_until_handed_out(signer: ParallelSigner, pids: list[int] | None = None, timeout_s: float = 30.0) -> int:
    """The process id of the (stopped) worker a chunk sits unread with, once it does (among ``pids``,
    if given): the parent's end of its pipe has bytes in its send queue (TIOCOUTQ) that the worker
    has not read."""
    pool = signer._pool  # the test looks at the pipes the pool hands chunks through
    assert pool is not None
    deadline = time.monotonic() + timeout_s
    while True:
        for worker in pool.workers:
            queued = struct.unpack("i", fcntl.ioctl(worker.conn.fileno(), termios.TIOCOUTQ, struct.pack("i", 0)))[0]
            if queued and worker.pid is not None and (pids is None or worker.pid in pids):
                return worker.pid
        assert time.monotonic() < deadline, f"no chunk was handed out within {timeout_s} s"
        time.sleep(0.001)


def sign_in_thread(
    signer: ParallelSigner, items: list[tuple[bytes, bytes]]
) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def sign() -> None:
        try:
            outcome["sigs"] = signer.sign_many(items)
        except errors.SignerError as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=sign, daemon=True)
    runner.start()
    return runner, outcome


@contextlib.contextmanager
def stopped_workers(pids: list[int]) -> Iterator[None]:
    """SIGSTOP ``pids`` for the block (alive, not answering); never leaves a stopped process behind,
    whatever happens in it."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.fixture
def module(tmp_path: Path) -> Iterator[EmulatedKeyModule]:
    m = EmulatedKeyModule(tmp_path / "keys", PIN, create=True, scrypt_n=1024)
    m.generate_many([f"w/{i}" for i in range(40)], Scheme.BLS)
    m.generate("c/secp", Scheme.SECP256K1)
    m.generate("c/ed", Scheme.ED25519)
    yield m
    m.close()


@pytest.fixture
def pool(module: EmulatedKeyModule) -> Iterator[ParallelSigner]:
    p = ParallelSigner(module, 2, chunk_size=8)
    p.start()
    yield p
    p.close()


def bls_keys(module: EmulatedKeyModule) -> list[KeyInfo]:
    return [k for k in module.list_keys() if k.scheme is Scheme.BLS]


def roots(n: int, tag: int = 0) -> list[bytes]:
    return [bytes([tag, i % 256]) * 16 for i in range(n)]


def test_signatures_equal_the_in_process_ones_in_order(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    assert len(pool.worker_pids()) == 2
    by_name = {k.name: k for k in module.list_keys()}
    keys = bls_keys(module)
    items = [(k.public_key, r) for k, r in zip(keys, roots(len(keys)), strict=True)]
    digest = secp256k1.sha256(b"vote")
    items.insert(7, (by_name["c/secp"].public_key, digest))
    items.insert(20, (by_name["c/ed"].public_key, b"proposal bytes"))
    got = pool.sign_many(items)
    assert got == module.sign_many(items)
    assert bls.verify(keys[0].public_key, items[0][1], got[0])
    assert secp256k1.verify_digest(by_name["c/secp"].public_key, digest, got[7])
    assert ed25519.verify(by_name["c/ed"].public_key, b"proposal bytes", got[20])
    assert pool.sign(keys[3].public_key, b"\x07" * 32) == module.sign(keys[3].public_key, b"\x07" * 32)


def test_refusals_in_a_worker_come_back_as_the_same_error(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    key = bls_keys(module)[0]
    with pytest.raises(errors.MalformedRequest, match="32 bytes"):
        pool.sign_many([(key.public_key, b"short")])
    with pytest.raises(errors.UnknownKey):
        pool.sign_many([(b"\x99" * 48, b"\x00" * 32)])
    assert pool.sign_many([(key.public_key, b"\x01" * 32)]) == [module.sign(key.public_key, b"\x01" * 32)]


def test_deleted_key_is_not_signed_by_a_stale_worker(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    keys = bls_keys(module)
    key, other = keys[5], keys[6]
    assert pool.sign_many([(key.public_key, b"\x01" * 32)])
    workers = pool.worker_pids()
    pool.delete(key.public_key)
    # The workers forked before the deletion still hold the secret in memory, but are never handed
    # the key again: the module refuses it (in-process), and the other keys still go to the workers.
    with pytest.raises(errors.UnknownKey):
        pool.sign_many([(key.public_key, b"\x02" * 32)])
    with pytest.raises(errors.UnknownKey):
        pool.sign_many([(other.public_key, b"\x02" * 32), (key.public_key, b"\x02" * 32)])
    assert pool.sign_many([(other.public_key, b"\x03" * 32)]) == [module.sign(other.public_key, b"\x03" * 32)]
    assert pool.worker_pids() == workers


def test_deletion_waits_for_the_chunks_in_flight(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    keys = bls_keys(module)
    items = [(keys[i % len(keys)].public_key, r) for i, r in enumerate(roots(400, tag=3))]
    box: dict[str, object] = {}
    runner = threading.Thread(target=lambda: box.update(sigs=pool.sign_many(items)))
    runner.start()
    wait_until_signing(pool.worker_pids())
    pool.delete(keys[0].public_key)  # returns only after the batch in flight is done
    assert "sigs" in box
    runner.join(30)


def test_new_keys_are_signed_and_lock_stops_the_workers(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    assert isinstance(pool, KeyModule)
    new = pool.generate("w/new", Scheme.BLS)
    imported = pool.import_secrets([("w/imp", Scheme.BLS, bls.random_secret())])[0]
    items = [(new.public_key, b"\x03" * 32), (imported.public_key, b"\x04" * 32)]
    assert pool.sign_many(items) == module.sign_many(items)
    before = pool.worker_pids()
    pool.lock()
    assert not pool.unlocked and pool.worker_pids() == []
    assert not any(alive(pid) for pid in before)
    with pytest.raises(errors.KeyModuleError, match="locked"):
        pool.sign_many(items)
    pool.unlock()
    assert len(pool.worker_pids()) == 2
    assert pool.sign_many(items) == module.sign_many(items)


def test_bulk_generate_and_import_reach_the_module_all_or_nothing(
    module: EmulatedKeyModule, pool: ParallelSigner
) -> None:
    before = {k.name for k in module.list_keys()}
    with pytest.raises(errors.MalformedRequest, match="w/0"):
        pool.generate_many(["n/0", "w/0"], Scheme.BLS)
    with pytest.raises(errors.MalformedRequest):
        pool.import_secrets([("n/1", Scheme.BLS, bls.random_secret()), ("n/2", Scheme.BLS, b"\x00" * 32)])
    assert {k.name for k in module.list_keys()} == before
    made = pool.generate_many(["n/0", "n/1"], Scheme.SECP256K1)
    imported = pool.import_secrets([("n/2", Scheme.BLS, bls.random_secret())])
    assert {k.name for k in module.list_keys()} == before | {"n/0", "n/1", "n/2"}
    items = [(k.public_key, bytes(32)) for k in [*made, *imported]]
    assert pool.sign_many(items) == module.sign_many(items)


def test_the_pool_offers_the_key_module_and_forwards_nothing_else(pool: ParallelSigner) -> None:
    assert isinstance(pool, KeyModule)
    assert not hasattr(pool, "key_info")  # an extra of the emulated module, not part of the protocol


def test_worker_crash_refuses_the_call_then_the_pool_recovers(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    keys = bls_keys(module)
    items = [(keys[i % len(keys)].public_key, r) for i, r in enumerate(roots(600, tag=9))]
    victim = pool.worker_pids()[0]
    with stopped_workers([victim]):  # it takes a chunk and keeps it: killed, it dies holding it
        runner, outcome = sign_in_thread(pool, items)
        wait_until_handed_out(pool, [victim])  # 600 signatures in chunks of 8: the other worker is still busy
        kill_and_wait([victim])
    runner.join(60)
    assert isinstance(outcome.get("error"), errors.KeyModuleError), outcome.keys()
    assert "died" in str(outcome["error"])
    assert victim not in pool.worker_pids() and len(pool.worker_pids()) == 2  # a spare took its place
    assert pool.sign_many(items[:50]) == module.sign_many(items[:50])


def test_idle_worker_death_costs_no_refusal(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    keys = bls_keys(module)
    kill_and_wait(pool.worker_pids())
    items = [(k.public_key, b"\x05" * 32) for k in keys]
    assert pool.sign_many(items) == module.sign_many(items)


def test_with_no_worker_and_no_spare_left_it_signs_in_process(module: EmulatedKeyModule, pool: ParallelSigner) -> None:
    items = [(k.public_key, b"\x08" * 32) for k in bls_keys(module)]
    for _ in range(2):  # the workers, then the spares that replaced them
        kill_and_wait(pool.worker_pids())
        assert pool.sign_many(items) == module.sign_many(items)
    assert pool.worker_pids() == []
    assert pool.sign_many(items) == module.sign_many(items)


def test_without_a_pool_it_signs_in_process(module: EmulatedKeyModule) -> None:
    signer = ParallelSigner(module, 2)  # not started
    key = bls_keys(module)[0]
    assert signer.worker_pids() == []
    assert signer.sign_many([(key.public_key, b"\x06" * 32)]) == [module.sign(key.public_key, b"\x06" * 32)]
    signer.close()
    assert not module.unlocked


def test_a_hung_worker_refuses_the_call_within_its_deadline(module: EmulatedKeyModule) -> None:
    """A worker that stops answering but stays alive (SIGSTOP, stuck in I/O, swapped out) must not
    hang the call forever (docs/ARCHITECTURE.md, invariant 2: a timeout refuses). Its chunk fails after the
    deadline, the worker is killed and a spare takes its place."""
    signer = ParallelSigner(module, 2, chunk_size=8, chunk_timeout_s=1.0)
    signer.start()
    try:
        keys = bls_keys(module)
        items = [(keys[i % len(keys)].public_key, r) for i, r in enumerate(roots(32, tag=11))]
        stopped = signer.worker_pids()
        with stopped_workers(stopped):
            started = time.monotonic()
            runner, outcome = sign_in_thread(signer, items)
            runner.join(15)
        assert not runner.is_alive(), "sign_many hung on a stopped worker"
        assert isinstance(outcome.get("error"), errors.KeyModuleError), outcome.keys()
        assert "did not answer" in str(outcome["error"])
        assert time.monotonic() - started < 8
        assert not any(pid in signer.worker_pids() for pid in stopped)
        assert signer.sign_many(items) == module.sign_many(items)  # the spares sign
    finally:
        signer.close()


# --- a lone item: one chunk on one worker, through the same hand-out and receive as a batch -----


def test_a_lone_item_whose_worker_dies_is_refused_then_a_spare_signs(
    module: EmulatedKeyModule, pool: ParallelSigner
) -> None:
    key = bls_keys(module)[0]
    item = [(key.public_key, b"\x0a" * 32)]
    with stopped_workers(pool.worker_pids()):  # the chunk waits, unread, in the pipe of the worker it was handed to
        runner, outcome = sign_in_thread(pool, item)
        victim = wait_until_handed_out(pool)
        kill_and_wait([victim])  # SIGKILL ends a stopped process too
    runner.join(30)
    assert not runner.is_alive(), "sign_many hung on a dead worker"
    assert isinstance(outcome.get("error"), errors.KeyModuleError), outcome.keys()
    assert "died" in str(outcome["error"])
    assert victim not in pool.worker_pids() and len(pool.worker_pids()) == 2  # a spare took its place
    assert pool.sign_many(item) == module.sign_many(item)


def test_a_lone_item_on_a_hung_worker_is_refused_within_its_deadline(module: EmulatedKeyModule) -> None:
    signer = ParallelSigner(module, 2, chunk_timeout_s=1.0)
    signer.start()
    try:
        key = bls_keys(module)[0]
        item = [(key.public_key, b"\x0b" * 32)]
        stopped = signer.worker_pids()
        with stopped_workers(stopped):
            started = time.monotonic()
            runner, outcome = sign_in_thread(signer, item)
            runner.join(15)
            assert not runner.is_alive(), "sign_many hung on a stopped worker"
            assert isinstance(outcome.get("error"), errors.KeyModuleError), outcome.keys()
            assert "did not answer" in str(outcome["error"])
            assert time.monotonic() - started < 8
            assert len(signer.worker_pids()) == 2 and len(set(stopped) & set(signer.worker_pids())) == 1
        assert signer.sign_many(item) == module.sign_many(item)  # the other worker or the spare signs
    finally:
        signer.close()


def test_a_lone_item_after_every_worker_is_gone_is_signed_in_process(
    module: EmulatedKeyModule, pool: ParallelSigner
) -> None:
    key = bls_keys(module)[0]
    item = [(key.public_key, b"\x0c" * 32)]
    for _ in range(2):  # the workers, then the spares that replaced them: no refusal, an idle death
        kill_and_wait(pool.worker_pids())
        assert pool.sign_many(item) == module.sign_many(item)
    assert pool.worker_pids() == []
    assert pool.sign_many(item) == module.sign_many(item)
