"""PostgreSQL specifics of the protection store: migrations, durability settings, constant round trips
per batch, pruning. (The shared contract runs on PostgreSQL through tests/stores.py.)"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import psycopg
import pytest

from signer.errors import (
    DoubleVote,
    NotSafeToSign,
    ProtectionStoreError,
    SchemaTooNew,
    SlotNotAboveLowerBound,
)
from signer.protection import rules
from signer.protection.postgres import PostgresStore, eth2_lock_key
from signer.protection.rules import AttestationRecord, LowerBounds
from signer.protection.sql_common import load_migrations
from signer.protection.store import InitializedBy
from signer.types import ZERO_ROOT, AttestationCheck, BlockCheck, Safe
from tests.postgres import PostgresServer, postgres_dsn, postgres_server  # noqa: F401 - fixtures
from tests.support import missing_component

pytestmark = pytest.mark.integration

PK_A = b"\xa1" * 48
R1 = b"\x01" * 32
R2 = b"\x02" * 32


def one(store: PostgresStore, check: Any) -> Any:
    (verdict,) = store.check_and_record([check])
    return verdict


def test_migrations_on_empty_database_from_concurrent_replicas(postgres_server: PostgresServer) -> None:  # noqa: F811
    dsn = postgres_server.new_database(empty=True)
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            stores.append(PostgresStore(dsn, ZERO_ROOT, timeout_s=10.0, pool_size=1))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        assert len(stores) == 6
        with psycopg.connect(dsn) as conn:
            versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [v for v, _ in load_migrations("postgres")]
        assert one(stores[0], BlockCheck(PK_A, 1, R1)).safe is Safe.VALID
        assert one(stores[5], BlockCheck(PK_A, 1, R1)).safe is Safe.SAME_DATA
    finally:
        for store in stores:
            store.close()


def test_schema_newer_than_the_code_is_refused(postgres_dsn: str) -> None:  # noqa: F811
    PostgresStore(postgres_dsn, ZERO_ROOT).close()
    with psycopg.connect(postgres_dsn) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (999)")
    with pytest.raises(SchemaTooNew, match="999"):
        PostgresStore(postgres_dsn, ZERO_ROOT)


@pytest.mark.parametrize("with_history", [True, False], ids=["with-history", "empty"])
def test_upgrade_initializes_a_database_that_held_history(
    postgres_server: PostgresServer,  # noqa: F811
    with_history: bool,
) -> None:
    """Issue 13.2: schema migration 2 records an initialization for a database in use (history in
    it), and none for an empty one (a lost history, until imported or declared)."""
    dsn = postgres_server.new_database(empty=True)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(load_migrations("postgres")[0][1].encode())
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        if with_history:
            conn.execute("INSERT INTO validators (public_key, min_slot) VALUES (%s, 7)", (PK_A,))
    store = PostgresStore(dsn, ZERO_ROOT, timeout_s=10.0, pool_size=1)
    try:
        record = store.initialization()
        if with_history:
            assert record is not None and record.how == "upgrade", record
            assert isinstance(one(store, BlockCheck(PK_A, 7, R1)).refusal, SlotNotAboveLowerBound)
        else:
            assert record is None
    finally:
        store.close()


def test_replicas_initializing_at_once_keep_one_record(postgres_dsn: str) -> None:  # noqa: F811
    stores = [PostgresStore(postgres_dsn, ZERO_ROOT, timeout_s=10.0, pool_size=1) for _ in range(4)]
    start = threading.Barrier(4)
    records: list[Any] = []

    def declare(n: int) -> None:
        start.wait()
        records.append(stores[n].initialize(InitializedBy.KEYS_NEVER_SIGNED, f"replica-{n}"))

    threads = [threading.Thread(target=declare, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(records) == 4 and len(set(records)) == 1, records
        assert all(store.initialization() == records[0] for store in stores)
    finally:
        for store in stores:
            store.close()


def test_bound_to_one_network(postgres_dsn: str) -> None:  # noqa: F811
    PostgresStore(postgres_dsn, b"\x42" * 32).close()
    with pytest.raises(ProtectionStoreError, match="wrong network"):
        PostgresStore(postgres_dsn, b"\x43" * 32)


def test_sessions_are_durable_and_bounded_in_time(postgres_dsn: str) -> None:  # noqa: F811
    store = PostgresStore(postgres_dsn, ZERO_ROOT, timeout_s=1.5, password="not-used-by-trust-auth")  # noqa: S106
    try:
        with store._pool.connection() as conn:
            settings: dict[str, str] = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('synchronous_commit', 'statement_timeout', 'lock_timeout', 'fsync')"
                ).fetchall()
            )
            conn.rollback()
        assert settings["synchronous_commit"] == "on"
        assert settings["statement_timeout"] == "1500"
        assert settings["lock_timeout"] == "1500"
    finally:
        store.close()


def _statements(conn: psycopg.Connection[Any], dbname: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE d.datname = %s",
        (dbname,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_statements_per_batch_do_not_grow_with_the_batch(postgres_server: PostgresServer) -> None:  # noqa: F811
    """One lock statement, one fetch per kind, one insert per table, one commit: 1 item or 200."""
    if not postgres_server.has_pg_stat_statements:
        missing_component("pg_stat_statements on the test server (postgresql contrib)")
    dsn = postgres_server.new_database()
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    keys = [bytes([i % 256, i // 256]) * 24 for i in range(200)]
    store = PostgresStore(dsn, ZERO_ROOT, pool_size=1)
    try:
        with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

            def count(checks: list[Any]) -> int:
                admin.execute("SELECT pg_stat_statements_reset()")
                verdicts = store.check_and_record(checks)
                assert all(v.ok for v in verdicts)
                return _statements(admin, str(dbname))

            # new validators (insert validators, blocks, attestations, watermarks) ...
            single = count([BlockCheck(keys[0], 5, R1), AttestationCheck(keys[0], 1, 2, R1)])
            many = count([BlockCheck(k, 5, R1) for k in keys[1:]] + [AttestationCheck(k, 1, 2, R1) for k in keys[1:]])
            assert many == single, (single, many)
            # ... and known validators (no watermark to set)
            known_single = count([AttestationCheck(keys[0], 2, 3, R1)])
            known_many = count([AttestationCheck(k, 2, 3, R1) for k in keys[1:]])
            assert known_many == known_single <= 5, (known_single, known_many)
    finally:
        store.close()


def test_a_held_validator_lock_times_out_and_records_nothing(postgres_dsn: str) -> None:  # noqa: F811
    store = PostgresStore(postgres_dsn, ZERO_ROOT, timeout_s=0.5)
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (eth2_lock_key(PK_A),))
            with pytest.raises(ProtectionStoreError, match="signing refused"):
                store.check_and_record([BlockCheck(PK_A, 1, R1), BlockCheck(b"\xb2" * 48, 1, R1)])
            other.execute("SELECT pg_advisory_unlock_all()")
        # nothing of the failed batch was kept: both are new, not repeats
        verdicts = store.check_and_record([BlockCheck(PK_A, 1, R1), BlockCheck(b"\xb2" * 48, 1, R1)])
        assert [v.safe for v in verdicts] == [Safe.VALID, Safe.VALID]
    finally:
        store.close()


def test_a_session_killed_mid_transaction_refuses_and_the_store_recovers(postgres_dsn: str) -> None:  # noqa: F811
    # the killed session's batch is retried once on a fresh connection (the lock is still held, so
    # that attempt times out): a refusal within about 2 x timeout_s
    store = PostgresStore(postgres_dsn, ZERO_ROOT, timeout_s=1.0, pool_size=1)
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (eth2_lock_key(PK_A),))
            outcome: list[BaseException | None] = []

            def blocked() -> None:
                try:
                    store.check_and_record([BlockCheck(PK_A, 1, R1)])
                    outcome.append(None)
                except ProtectionStoreError as exc:
                    outcome.append(exc)

            thread = threading.Thread(target=blocked)
            thread.start()
            for _ in range(200):  # wait until the store's session waits for the lock, then kill it
                row = other.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'advisory' AND pid <> pg_backend_pid()"
                ).fetchone()
                if row is not None:
                    other.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    break
                threading.Event().wait(0.02)
            else:
                pytest.fail("the store never waited for the advisory lock")
            thread.join(10)
            other.execute("SELECT pg_advisory_unlock_all()")
        assert len(outcome) == 1 and isinstance(outcome[0], ProtectionStoreError), outcome
        assert one(store, BlockCheck(PK_A, 1, R1)).safe is Safe.VALID  # nothing was recorded
        store.ping()
    finally:
        store.close()


def test_unreachable_database_refuses_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        started = time.monotonic()
        with pytest.raises(ProtectionStoreError, match="unavailable"):
            PostgresStore(f"host=127.0.0.1 port={port} dbname=x user=x", ZERO_ROOT, timeout_s=0.5)
        assert time.monotonic() - started < 3.0


# --- pruning --------------------------------------------------------------------------------


def _interchange(keys: list[bytes], slots: list[int], pairs: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "metadata": {"interchange_format_version": "5", "genesis_validators_root": "0x" + ZERO_ROOT.hex()},
        "data": [
            {
                "pubkey": "0x" + key.hex(),
                "signed_blocks": [{"slot": str(s), "signing_root": "0x" + R1.hex()} for s in slots],
                "signed_attestations": [
                    {"source_epoch": str(s), "target_epoch": str(t), "signing_root": "0x" + R1.hex()} for s, t in pairs
                ],
            }
            for key in keys
        ],
    }


HISTORY = [(e, e + 1) for e in range(0, 60, 2)] + [(61, 64), (64, 70), (70, 71), (72, 73)]
"""A history with gaps, a wide vote (64 -> 70) and its neighbours; newest target 73."""
CANDIDATES = [(s, t) for s in range(0, 76, 3) for t in range(s, 78, 4)] + [(63, 65), (65, 69), (60, 71), (73, 74)]


def test_prune_raises_watermarks_first_and_loses_no_refusal(postgres_dsn: str) -> None:  # noqa: F811
    """One validator per candidate, all with the same history: after pruning to the last 10 epochs
    every candidate refused on the full history is still refused, and the head still signs."""
    keys = [i.to_bytes(2, "big") * 24 for i in range(len(CANDIDATES))]
    store = PostgresStore(postgres_dsn, ZERO_ROOT)
    try:
        store.import_interchange(_interchange(keys, [32 * e for e in range(0, 74, 5)], HISTORY))
        report = store.prune(10)
        assert report.validators == len(keys)
        assert report.attestations_deleted > 0 and report.blocks_deleted > 0
        exported = store.export_interchange([keys[0]])["data"][0]
        kept_targets = sorted(int(a["target_epoch"]) for a in exported["signed_attestations"])
        assert min(kept_targets) >= 73 - 10, kept_targets
        assert all(int(b["slot"]) >= 32 * 70 - 320 for b in exported["signed_blocks"])

        full = [AttestationRecord(s, t, R1) for s, t in HISTORY]
        bounds = LowerBounds(source_epoch=0, target_epoch=1)
        checks = [AttestationCheck(k, s, t, R2) for k, (s, t) in zip(keys, CANDIDATES, strict=True)]
        verdicts = store.check_and_record(checks)
        for check, verdict in zip(checks, verdicts, strict=True):
            try:
                reference = rules.check_attestation(check, full, bounds)
            except NotSafeToSign:  # refused on the full history
                reference = None
            if reference is None:
                assert not verdict.ok, (check.source_epoch, check.target_epoch)
            elif check.source_epoch >= 72:
                assert verdict.ok, (check.source_epoch, check.target_epoch, verdict.refusal)
        assert sum(v.ok for v in verdicts) > 0
        # the watermark refuses what the pruned records would have refused
        assert isinstance(one(store, BlockCheck(keys[0], 32 * 5, R2)).refusal, SlotNotAboveLowerBound)
        assert one(store, BlockCheck(keys[0], 32 * 80, R2)).ok
        assert isinstance(one(store, AttestationCheck(keys[1], 72, 73, R2)).refusal, DoubleVote)
    finally:
        store.close()


def test_prune_keep_epochs_applies_at_start_and_twice_is_a_no_op(postgres_dsn: str) -> None:  # noqa: F811
    first = PostgresStore(postgres_dsn, ZERO_ROOT)
    for epoch in range(40):
        first.check_and_record([AttestationCheck(PK_A, epoch, epoch + 1, R1), BlockCheck(PK_A, epoch * 32, R1)])
    first.close()
    store = PostgresStore(postgres_dsn, ZERO_ROOT, prune_keep_epochs=5)
    try:
        exported = store.export_interchange()["data"][0]
        assert [a["target_epoch"] for a in exported["signed_attestations"]] == [str(t) for t in range(35, 41)]
        # newest slot 39 * 32: blocks within 5 epochs (160 slots) of it are kept
        assert [b["slot"] for b in exported["signed_blocks"]] == [str(32 * e) for e in range(34, 40)]
        again = store.prune()
        assert (again.blocks_deleted, again.attestations_deleted) == (0, 0)
        # pruned data, even identical, is refused by the watermark now
        assert isinstance(one(store, BlockCheck(PK_A, 32 * 10, R1)).refusal, SlotNotAboveLowerBound)
        refusal = one(store, AttestationCheck(PK_A, 20, 21, R1)).refusal
        assert refusal is not None and refusal.offence == "source_below_lower_bound"
        assert one(store, AttestationCheck(PK_A, 40, 41, R1)).safe is Safe.VALID
    finally:
        store.close()


def test_prune_counts_block_history_in_the_networks_slots_per_epoch(postgres_dsn: str) -> None:  # noqa: F811
    """On an 8-slot (minimal preset) network, keeping 5 epochs keeps 40 slots of blocks, not 160."""
    first = PostgresStore(postgres_dsn, ZERO_ROOT, slots_per_epoch=8)
    for slot in range(0, 200, 4):
        first.check_and_record([BlockCheck(PK_A, slot, R1)])
    first.close()
    store = PostgresStore(postgres_dsn, ZERO_ROOT, prune_keep_epochs=5, slots_per_epoch=8)
    try:
        exported = store.export_interchange()["data"][0]
        # newest slot 196: blocks within 5 x 8 = 40 slots of it are kept
        assert [int(b["slot"]) for b in exported["signed_blocks"]] == list(range(156, 200, 4))
        assert isinstance(one(store, BlockCheck(PK_A, 150, R2)).refusal, SlotNotAboveLowerBound)
    finally:
        store.close()
