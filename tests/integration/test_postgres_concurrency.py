"""Two replicas (two PostgresStores, two pools) on one database, many threads, conflicting requests:
for every conflict set exactly one message is accepted, and the export holds no slashable pair.

A control test shows the race is real: with the advisory locks switched off and two transactions
forced to interleave (both fetch before either writes), a surround vote really gets stored.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from signer.protection import postgres as postgres_module
from signer.protection import rules
from signer.protection.postgres import PostgresStore
from signer.protection.store import ProtectionStore
from signer.types import ZERO_ROOT, AttestationCheck, BlockCheck, ProtectionCheck, Safe
from tests.postgres import postgres_dsn, postgres_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration

THREADS = 8
COPIES = 2
"""Every message is sent twice (by different threads, through both replicas): identical repeats."""


def _root(n: int) -> bytes:
    return n.to_bytes(2, "big") * 16


def conflict_sets(count: int) -> list[list[ProtectionCheck]]:
    """Sets of pairwise slashable messages, one validator per set (so sets cannot interact)."""
    sets: list[list[ProtectionCheck]] = []
    for n in range(count):
        key = (n + 1).to_bytes(4, "big") * 12
        kind = n % 4
        base = 100 + n
        if kind == 0:  # double votes: one target, different sources and roots
            members: list[ProtectionCheck] = [AttestationCheck(key, base - 1 - i, base, _root(i)) for i in range(4)]
        elif kind == 1:  # nested votes: every pair surrounds (both directions)
            members = [AttestationCheck(key, base - i, base + 5 + i, _root(i)) for i in range(4)]
        elif kind == 2:  # double proposals
            members = [BlockCheck(key, base * 32, _root(i)) for i in range(4)]
        else:  # same target, same source, different roots (a double vote by root only)
            members = [AttestationCheck(key, base - 1, base, _root(i)) for i in range(4)]
        sets.append(members)
    return sets


def slashable(a: ProtectionCheck, b: ProtectionCheck) -> bool:
    if isinstance(a, BlockCheck) and isinstance(b, BlockCheck):
        return a.slot == b.slot and a.signing_root != b.signing_root
    if isinstance(a, AttestationCheck) and isinstance(b, AttestationCheck):
        if a.target_epoch == b.target_epoch:
            return (a.source_epoch, a.signing_root) != (b.source_epoch, b.signing_root)
        return (a.source_epoch < b.source_epoch and b.target_epoch < a.target_epoch) or (
            b.source_epoch < a.source_epoch and a.target_epoch < b.target_epoch
        )
    return False


@pytest.fixture
def replicas(postgres_dsn: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:  # noqa: F811
    first = PostgresStore(postgres_dsn, ZERO_ROOT, timeout_s=10.0, pool_size=4)
    second = PostgresStore(postgres_dsn, ZERO_ROOT, timeout_s=10.0, pool_size=4)
    yield first, second
    first.close()
    second.close()


def test_two_replicas_accept_exactly_one_message_per_conflict_set(  # noqa: C901 -- one concurrency scenario read top to bottom
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    sets = conflict_sets(48)
    rng = random.Random(3076)
    # Thread t sends, for every set in turn, a batch of its share of members of a few sets: all
    # threads hit the same validators at the same moment, in random order, through both replicas.
    work: list[list[list[ProtectionCheck]]] = [[] for _ in range(THREADS)]
    for first in range(0, len(sets), 3):
        group = range(first, min(first + 3, len(sets)))
        copies = [m for n in group for m in sets[n] for _ in range(COPIES)]
        rng.shuffle(copies)
        per_thread: list[list[ProtectionCheck]] = [[] for _ in range(THREADS)]
        for position, message in enumerate(copies):
            per_thread[position % THREADS].append(message)
        for t in range(THREADS):
            # split into batches holding each validator once
            batches: list[list[ProtectionCheck]] = []
            for message in per_thread[t]:
                target = next((b for b in batches if all(m.public_key != message.public_key for m in b)), None)
                if target is None:
                    batches.append([message])
                else:
                    target.append(message)
            work[t].extend(batches)

    accepted: list[tuple[ProtectionCheck, Safe]] = []
    errors: list[BaseException] = []
    guard = threading.Lock()
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        store: ProtectionStore = replicas[t % 2]
        start.wait()
        try:
            for batch in work[t]:
                verdicts = store.check_and_record(batch)
                with guard:
                    accepted.extend((m, v.safe) for m, v in zip(batch, verdicts, strict=True) if v.safe)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors

    for members in sets:
        distinct = {m for m, _ in accepted if m in members}
        assert len(distinct) == 1, (members[0].public_key.hex()[:8], distinct)
        (winner,) = distinct
        outcomes = sorted(safe.value for m, safe in accepted if m == winner)
        assert outcomes == ["same_data", "valid"], outcomes  # its identical copy is a repeat

    exported = replicas[1].export_interchange()
    assert len(exported["data"]) == len(sets)
    for validator in exported["data"]:
        key = bytes.fromhex(validator["pubkey"][2:])
        records: list[ProtectionCheck] = [
            BlockCheck(key, int(b["slot"]), bytes.fromhex(b["signing_root"][2:])) for b in validator["signed_blocks"]
        ]
        records += [
            AttestationCheck(key, int(a["source_epoch"]), int(a["target_epoch"]), bytes.fromhex(a["signing_root"][2:]))
            for a in validator["signed_attestations"]
        ]
        assert len(records) == 1, records
        for a, b in itertools.combinations(records, 2):
            assert not slashable(a, b), (a, b)


def _interleaving_surround(
    replicas: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch, *, locks: bool
) -> list[dict[str, Any]]:
    """Two replicas check two surrounding votes at once; both decide before either writes, if the
    locks let them (a barrier inside the decision, given up after 1 s)."""
    key = b"\x5a" * 48
    barrier = threading.Barrier(2, timeout=1.0)
    decide = rules.check_attestation

    def check_attestation_in_step(*args: Any) -> Safe:
        # broken barrier: the other transaction is waiting for our lock, so go on alone
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        return decide(*args)

    monkeypatch.setattr(rules, "check_attestation", check_attestation_in_step)
    if not locks:
        monkeypatch.setattr(postgres_module, "LOCK_SQL", "SELECT %s::bigint[] IS NULL")
    checks = [AttestationCheck(key, 10, 20, _root(1)), AttestationCheck(key, 9, 21, _root(2))]
    threads = [threading.Thread(target=replicas[n].check_and_record, args=([checks[n]],)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    data = replicas[0].export_interchange([key])["data"]
    return [] if not data else list(data[0]["signed_attestations"])


def test_control_without_locks_a_surround_vote_really_gets_stored(
    replicas: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = _interleaving_surround(replicas, monkeypatch, locks=False)
    assert len(stored) == 2, stored  # (9, 21) surrounds (10, 20): slashable, and both are in


def test_with_locks_the_same_interleaving_stores_one_vote(
    replicas: tuple[PostgresStore, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = _interleaving_surround(replicas, monkeypatch, locks=True)
    assert len(stored) == 1, stored
