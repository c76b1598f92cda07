"""The ProtectionStore contract: every backend in tests/stores.py must pass all of it.

The functions at the end (``test_sqlite_*``) check what is specific to the SQLite backend: schema
migrations, WAL/synchronous, and that the neighbour queries use the composite indexes.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from signer.errors import (
    DoubleBlockProposal,
    DoubleVote,
    HeightRegression,
    InterchangeError,
    MalformedRequest,
    ProtectionStoreError,
    SchemaTooNew,
    SlotNotAboveLowerBound,
    SurroundedVote,
    SurroundingVote,
)
from signer.protection import sqlite as sqlite_store
from signer.protection.interchange import ValidatorHistory
from signer.protection.rules import AttestationRecord
from signer.protection.sqlite import (
    ATTESTATION_FETCH_SQL,
    BLOCK_FETCH_SQL,
    SqliteStore,
    _statements,
    migrations,
)
from signer.protection.store import ConsensusSignature, InitializedBy, ProtectionStore
from signer.types import ZERO_ROOT, AttestationCheck, BlockCheck, ConsensusCheck, ConsensusStep, Safe
from tests.stores import StoreFactory, backend, store, store_factory  # noqa: F401 - fixtures

PK_A = b"\xa1" * 48
PK_B = b"\xb2" * 48
R1 = b"\x01" * 32
R2 = b"\x02" * 32
GVR = b"\x42" * 32


def interchange(data: list[dict[str, Any]], gvr: bytes = ZERO_ROOT, version: str = "5") -> dict[str, Any]:
    return {
        "metadata": {"interchange_format_version": version, "genesis_validators_root": "0x" + gvr.hex()},
        "data": data,
    }


def validator(pk: bytes, blocks: list[Any] = (), attestations: list[Any] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "pubkey": "0x" + pk.hex(),
        "signed_blocks": [{"slot": str(s)} for s in blocks],
        "signed_attestations": [{"source_epoch": str(s), "target_epoch": str(t)} for s, t in attestations],
    }


def one(store: ProtectionStore, check: Any) -> Any:  # noqa: F811
    (verdict,) = store.check_and_record([check])
    return verdict


# --- check_and_record -----------------------------------------------------------------------


def test_batch_one_verdict_per_item_in_order_refusals_isolated(store: ProtectionStore) -> None:  # noqa: F811
    assert one(store, BlockCheck(PK_A, 10, R1)).safe is Safe.VALID
    verdicts = store.check_and_record(
        [
            AttestationCheck(PK_B, 1, 2, R1),
            BlockCheck(PK_A, 10, R2),  # double proposal
            BlockCheck(PK_B, 3, R1),
            AttestationCheck(PK_A, 2, 1, R1),  # source > target
        ]
    )
    assert [v.safe for v in verdicts] == [Safe.VALID, None, Safe.VALID, None]
    assert isinstance(verdicts[1].refusal, DoubleBlockProposal)
    assert verdicts[3].refusal is not None and verdicts[3].refusal.offence == "source_exceeds_target"


def test_identical_repeat_is_same_data_and_zero_root_recorded_by_signer_is_known(
    store: ProtectionStore,  # noqa: F811
) -> None:
    assert one(store, BlockCheck(PK_A, 5, ZERO_ROOT)).safe is Safe.VALID
    assert one(store, BlockCheck(PK_A, 5, ZERO_ROOT)).safe is Safe.SAME_DATA
    assert one(store, AttestationCheck(PK_A, 1, 2, R1)).safe is Safe.VALID
    assert one(store, AttestationCheck(PK_A, 1, 2, R1)).safe is Safe.SAME_DATA
    assert isinstance(one(store, AttestationCheck(PK_A, 1, 2, R2)).refusal, DoubleVote)


def test_unknown_request_root_is_recorded_but_never_repeats(store: ProtectionStore) -> None:  # noqa: F811
    assert one(store, BlockCheck(PK_A, 5, None)).safe is Safe.VALID
    assert isinstance(one(store, BlockCheck(PK_A, 5, None)).refusal, DoubleBlockProposal)


def test_surround_both_ways_and_lower_bounds(store: ProtectionStore) -> None:  # noqa: F811
    assert one(store, AttestationCheck(PK_A, 10, 11, R1)).ok
    assert one(store, AttestationCheck(PK_A, 20, 30, R1)).ok
    assert isinstance(one(store, AttestationCheck(PK_A, 19, 31, R2)).refusal, SurroundingVote)
    assert isinstance(one(store, AttestationCheck(PK_A, 21, 29, R2)).refusal, SurroundedVote)
    refusal = one(store, AttestationCheck(PK_A, 9, 40, R2)).refusal
    assert refusal is not None and refusal.offence == "source_below_lower_bound"
    refusal = one(store, AttestationCheck(PK_A, 10, 11, R2)).refusal
    assert isinstance(refusal, DoubleVote)
    assert one(store, AttestationCheck(PK_A, 30, 31, R1)).ok


def test_refused_checks_record_nothing(store: ProtectionStore) -> None:  # noqa: F811
    assert one(store, AttestationCheck(PK_A, 10, 20, R1)).ok
    assert not one(store, AttestationCheck(PK_A, 9, 21, R2)).ok
    exported = store.export_interchange([PK_A])
    assert exported["data"][0]["signed_attestations"] == [
        {"source_epoch": "10", "target_epoch": "20", "signing_root": "0x" + R1.hex()}
    ]


def test_duplicate_key_in_batch_is_malformed_and_records_nothing(store: ProtectionStore) -> None:  # noqa: F811
    with pytest.raises(MalformedRequest):
        store.check_and_record([BlockCheck(PK_B, 1, R1), BlockCheck(PK_A, 1, R1), BlockCheck(PK_A, 2, R1)])
    assert store.export_interchange()["data"] == []
    # a block and an attestation of one key are different histories: allowed together
    verdicts = store.check_and_record([BlockCheck(PK_A, 1, R1), AttestationCheck(PK_A, 0, 1, R1)])
    assert all(v.ok for v in verdicts)


@pytest.mark.parametrize(
    "check",
    [
        BlockCheck(PK_A, -1, R1),
        BlockCheck(PK_A, 2**63, R1),
        BlockCheck(PK_A, 1, b"\x01" * 31),
        AttestationCheck(b"", 1, 2, R1),
        ConsensusCheck("", PK_A, 1, 0, ConsensusStep.PREVOTE, b"a", b"a"),
    ],
    ids=["negative-slot", "slot-too-large", "short-root", "no-public-key", "no-chain-id"],
)
def test_malformed_checks_are_refused(store: ProtectionStore, check: Any) -> None:  # noqa: F811
    with pytest.raises(MalformedRequest):
        store.check_and_record([check])


def test_records_survive_reopen(store_factory: StoreFactory) -> None:  # noqa: F811
    first = store_factory()
    assert one(first, BlockCheck(PK_A, 7, R1)).ok
    first.close()
    second = store_factory()
    assert one(second, BlockCheck(PK_A, 7, R1)).safe is Safe.SAME_DATA
    assert isinstance(one(second, BlockCheck(PK_A, 6, R1)).refusal, SlotNotAboveLowerBound)


def test_store_bound_to_one_network(store_factory: StoreFactory) -> None:  # noqa: F811
    store_factory(GVR).close()
    with pytest.raises(ProtectionStoreError, match="wrong network"):
        store_factory(b"\x43" * 32)


def test_closed_store_refuses(store_factory: StoreFactory) -> None:  # noqa: F811
    db = store_factory()
    db.ping()
    db.close()
    with pytest.raises(ProtectionStoreError):
        db.ping()
    with pytest.raises(ProtectionStoreError):
        db.check_and_record([BlockCheck(PK_A, 1, R1)])


def test_concurrent_threads_never_accept_a_slashable_pair(store: ProtectionStore) -> None:  # noqa: F811
    accepted: list[AttestationRecord] = []
    guard = threading.Lock()

    def worker(offset: int) -> None:
        for i in range(40):
            source = (i * 7 + offset * 3) % 30
            target = source + 1 + (i + offset) % 5
            root = bytes([offset]) * 32
            (verdict,) = store.check_and_record([AttestationCheck(PK_A, source, target, root)])
            if verdict.safe is Safe.VALID:
                with guard:
                    accepted.append(AttestationRecord(source, target, root))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted
    for a in accepted:
        for b in accepted:
            if a is b:
                continue
            assert a.target_epoch != b.target_epoch, (a, b)
            assert not (a.source_epoch < b.source_epoch and b.target_epoch < a.target_epoch), (a, b)


# --- EIP-3076 import / export ---------------------------------------------------------------


def test_import_wrong_network_and_version_refused(store: ProtectionStore) -> None:  # noqa: F811
    with pytest.raises(InterchangeError, match="wrong network"):
        store.import_interchange(interchange([validator(PK_A, [1])], gvr=GVR))
    with pytest.raises(InterchangeError, match="interchange_format_version"):
        store.import_interchange(interchange([validator(PK_A, [1])], version="4"))
    with pytest.raises(InterchangeError, match="not valid JSON"):
        store.import_interchange(b"{not json")
    assert store.export_interchange()["data"] == []


def test_import_is_all_or_nothing(store: ProtectionStore) -> None:  # noqa: F811
    bad = interchange([validator(PK_A, [1, 2]), {"pubkey": "0x" + PK_B.hex(), "signed_blocks": [{"slot": "x"}]}])
    with pytest.raises(InterchangeError, match="invalid"):
        store.import_interchange(bad)
    assert store.export_interchange()["data"] == []


def test_import_accepts_bytes_str_and_mapping_and_is_idempotent(store: ProtectionStore) -> None:  # noqa: F811
    document = interchange([validator(PK_A, [5, 6], [(1, 2)])])
    report = store.import_interchange(json.dumps(document).encode())
    assert (report.validators, report.blocks_imported, report.attestations_imported) == (1, 2, 1)
    report = store.import_interchange(json.dumps(document))
    assert (report.blocks_imported, report.blocks_skipped, report.attestations_skipped) == (0, 2, 1)
    report = store.import_interchange(document)
    assert report.blocks_imported == 0


def test_import_merges_and_never_lowers_the_lower_bound(store: ProtectionStore) -> None:  # noqa: F811
    store.import_interchange(interchange([validator(PK_A, [100], [(12, 13)])]))
    store.import_interchange(interchange([validator(PK_A, [2], [(4, 5)])]))
    assert isinstance(one(store, BlockCheck(PK_A, 50, R1)).refusal, SlotNotAboveLowerBound)
    refusal = one(store, AttestationCheck(PK_A, 6, 7, R1)).refusal
    assert refusal is not None and refusal.offence == "source_below_lower_bound"
    assert one(store, BlockCheck(PK_A, 101, R1)).ok
    blocks = store.export_interchange()["data"][0]["signed_blocks"]
    assert [b["slot"] for b in blocks] == ["2", "100", "101"]


def test_import_raises_lower_bounds_above_local_history(store: ProtectionStore) -> None:  # noqa: F811
    """Issue 13.1: a minimal import above local history raises every bound to the import's minimum.

    The file stands for a history we do not see (the validator may have signed (55,56) elsewhere,
    which (50,60) surrounds), so everything at or below the imported minimum is refused.
    """
    assert one(store, AttestationCheck(PK_A, 10, 11, R1)).ok
    assert one(store, BlockCheck(PK_A, 160, R1)).ok
    store.import_interchange(interchange([validator(PK_A, [3200], [(100, 101)])]))
    refusal = one(store, AttestationCheck(PK_A, 50, 60, R2)).refusal
    assert refusal is not None and refusal.offence == "source_below_lower_bound", refusal
    assert isinstance(one(store, BlockCheck(PK_A, 2000, R2)).refusal, SlotNotAboveLowerBound)
    refusal = one(store, AttestationCheck(PK_A, 100, 101, R2)).refusal
    assert refusal is not None and refusal.offence == "double_vote"
    refusal = one(store, AttestationCheck(PK_A, 100, 100, R2)).refusal
    assert refusal is not None and refusal.offence == "target_not_above_lower_bound"
    assert isinstance(one(store, BlockCheck(PK_A, 3200, R2)).refusal, DoubleBlockProposal)
    # identical, known local data still repeats (client retries stay safe) ...
    assert one(store, AttestationCheck(PK_A, 10, 11, R1)).safe is Safe.SAME_DATA
    assert one(store, BlockCheck(PK_A, 160, R1)).safe is Safe.SAME_DATA
    # ... and what lies above the imported history is signed
    assert one(store, AttestationCheck(PK_A, 100, 102, R1)).ok
    assert one(store, BlockCheck(PK_A, 3201, R1)).ok
    # a later import below the bounds never lowers them
    store.import_interchange(interchange([validator(PK_A, [5], [(1, 2)])]))
    assert isinstance(one(store, BlockCheck(PK_A, 3000, R2)).refusal, SlotNotAboveLowerBound)
    refusal = one(store, AttestationCheck(PK_A, 99, 150, R2)).refusal
    assert refusal is not None and refusal.offence == "source_below_lower_bound"


def test_import_raises_each_bound_to_the_minimum_of_its_own_records(store: ProtectionStore) -> None:  # noqa: F811
    """Source and target bounds rise independently, each to the import's minimum of that field."""
    assert one(store, AttestationCheck(PK_A, 1, 2, R1)).ok
    store.import_interchange(interchange([validator(PK_A, [], [(30, 40), (20, 50)])]))
    refusal = one(store, AttestationCheck(PK_A, 19, 60, R2)).refusal
    assert refusal is not None and refusal.offence == "source_below_lower_bound"
    refusal = one(store, AttestationCheck(PK_A, 25, 40, R2)).refusal
    assert refusal is not None and refusal.offence == "double_vote"
    refusal = one(store, AttestationCheck(PK_A, 20, 39, R2)).refusal
    assert refusal is not None and refusal.offence == "target_not_above_lower_bound"
    assert one(store, AttestationCheck(PK_A, 30, 55, R2)).ok


def test_export_round_trip_keeps_roots_and_decisions(store_factory: StoreFactory, tmp_path: Path) -> None:  # noqa: F811
    source = store_factory(GVR)
    source.check_and_record([BlockCheck(PK_A, 3, R1), AttestationCheck(PK_A, 1, 2, R2)])
    source.check_and_record([BlockCheck(PK_B, 4, ZERO_ROOT)])
    exported = source.export_interchange()
    assert exported["metadata"] == {
        "interchange_format_version": "5",
        "genesis_validators_root": "0x" + GVR.hex(),
    }
    only_a = source.export_interchange([PK_A])
    assert [v["pubkey"] for v in only_a["data"]] == ["0x" + PK_A.hex()]
    assert only_a["data"][0]["signed_blocks"] == [{"slot": "3", "signing_root": "0x" + R1.hex()}]
    (tmp_path / "other").mkdir()
    target = store_factory(GVR, tmp_path / "other")
    target.import_interchange(exported)
    assert one(target, BlockCheck(PK_A, 3, R1)).safe is Safe.SAME_DATA
    assert one(target, AttestationCheck(PK_A, 1, 2, R2)).safe is Safe.SAME_DATA
    # an exported all-zero root is re-imported as unknown: never a repeat
    assert isinstance(one(target, BlockCheck(PK_B, 4, ZERO_ROOT)).refusal, DoubleBlockProposal)
    assert target.export_interchange()["data"][0] == exported["data"][0]


# --- initialization (issue 13.2) -------------------------------------------------------------


def test_new_store_is_not_initialized_until_declared_and_the_first_record_holds(
    store_factory: StoreFactory,  # noqa: F811
) -> None:
    db = store_factory()
    assert db.initialization() is None
    record = db.initialize(InitializedBy.KEYS_NEVER_SIGNED, "ops@host-1")
    assert (record.how, record.who) == ("keys_never_signed", "ops@host-1")
    assert record.initialized_at.endswith("Z") and record.initialized_at[:2] == "20"
    # declaring again, or importing, does not replace the first record
    assert db.initialize(InitializedBy.DEV, "someone else") == record
    db.import_interchange(interchange([validator(PK_A, [1])]), who="admin client 'ops'")
    assert db.initialization() == record
    db.close()
    assert store_factory().initialization() == record  # durable


@pytest.mark.parametrize("document", [[], [validator(PK_A, [5], [(1, 2)])]], ids=["empty", "one-validator"])
def test_every_interchange_import_initializes(store: ProtectionStore, document: list[Any]) -> None:  # noqa: F811
    store.import_interchange(interchange(document), who="admin client 'ops'")
    record = store.initialization()
    assert record is not None and (record.how, record.who) == ("import", "admin client 'ops'")


def test_a_cometbft_state_import_initializes(store: ProtectionStore) -> None:  # noqa: F811
    store.import_cometbft_state("chain-A", PK_A, {"height": "3", "round": 0, "step": 1}, who="ops@host")
    record = store.initialization()
    assert record is not None and (record.how, record.who) == ("import", "ops@host")


def test_a_refused_import_does_not_initialize(store: ProtectionStore) -> None:  # noqa: F811
    with pytest.raises(InterchangeError):
        store.import_interchange(interchange([validator(PK_A, [1])], gvr=GVR))
    with pytest.raises(InterchangeError):
        store.import_cometbft_state("chain-A", PK_A, {"height": 3, "round": 0, "step": 1})
    assert store.initialization() is None


# --- CometBFT -------------------------------------------------------------------------------


def vote(height: int, round_: int, step: ConsensusStep, block_id: bytes, ts: bytes = b"@1") -> ConsensusCheck:
    return ConsensusCheck("chain-A", PK_A, height, round_, step, block_id + ts, block_id)


def test_consensus_sequence_repeat_and_signature(store: ProtectionStore) -> None:  # noqa: F811
    assert one(store, vote(5, 0, ConsensusStep.PREVOTE, b"B1")).safe is Safe.VALID
    repeat = one(store, vote(5, 0, ConsensusStep.PREVOTE, b"B1"))
    assert repeat.safe is Safe.SAME_DATA
    assert repeat.prior is not None and repeat.prior.signature is None
    store.record_consensus_signatures([ConsensusSignature("chain-A", PK_A, 5, 0, 2, b"B1@1", b"SIG")])
    later = one(store, vote(5, 0, ConsensusStep.PREVOTE, b"B1", ts=b"@2"))
    assert later.safe is Safe.SAME_DATA
    assert later.prior is not None
    assert (later.prior.sign_bytes, later.prior.signature) == (b"B1@1", b"SIG")
    conflict = one(store, vote(5, 0, ConsensusStep.PREVOTE, b"B2"))
    assert conflict.refusal is not None and conflict.refusal.offence == "conflicting_consensus_message"
    assert one(store, vote(5, 0, ConsensusStep.PRECOMMIT, b"B1")).safe is Safe.VALID
    assert isinstance(one(store, vote(4, 9, ConsensusStep.PRECOMMIT, b"B1")).refusal, HeightRegression)
    # another chain is another history
    other = ConsensusCheck("chain-B", PK_A, 1, 0, ConsensusStep.PROPOSAL, b"P", b"P")
    assert one(store, other).safe is Safe.VALID


def test_cometbft_state_export_shape_and_import(store_factory: StoreFactory, tmp_path: Path) -> None:  # noqa: F811
    db = store_factory()
    assert db.export_cometbft_state("chain-A", PK_A) == {"height": "0", "round": 0, "step": 0}
    one(db, vote(36, 0, ConsensusStep.PRECOMMIT, b"\x0a\x0b"))
    db.record_consensus_signatures([ConsensusSignature("chain-A", PK_A, 36, 0, 3, b"\x0a\x0b@1", b"\x01\x02")])
    state = db.export_cometbft_state("chain-A", PK_A)
    assert state == {
        "height": "36",
        "round": 0,
        "step": 3,
        "signature": base64.b64encode(b"\x01\x02").decode(),
        "signbytes": (b"\x0a\x0b@1").hex().upper(),
    }
    (tmp_path / "other").mkdir()
    other = store_factory(ZERO_ROOT, tmp_path / "other")
    assert other.import_cometbft_state("chain-A", PK_A, state) is True
    repeat = one(other, vote(36, 0, ConsensusStep.PRECOMMIT, b"\x0a\x0b"))
    assert repeat.prior is not None and repeat.prior.signature == b"\x01\x02"
    assert isinstance(one(other, vote(35, 0, ConsensusStep.PRECOMMIT, b"x")).refusal, HeightRegression)
    # an older state does not lower the stored one
    assert other.import_cometbft_state("chain-A", PK_A, {"height": "3", "round": 0, "step": 1}) is False
    assert other.export_cometbft_state("chain-A", PK_A)["height"] == "36"
    with pytest.raises(InterchangeError, match="conflicts"):
        other.import_cometbft_state("chain-A", PK_A, {"height": "36", "round": 0, "step": 3, "signbytes": "FF"})
    with pytest.raises(InterchangeError, match="invalid"):
        other.import_cometbft_state("chain-A", PK_A, {"height": 36, "round": 0, "step": 3})


@pytest.mark.parametrize(
    ("chain_id", "why"),
    [
        ("", "chain_id is empty"),
        ("c" * 300, "chain_id is longer than 50 bytes"),
        ("é" * 26, "chain_id is longer than 50 bytes"),
    ],
    ids=["empty", "300-characters", "52-bytes"],
)
def test_cometbft_state_import_applies_the_chain_id_rule(store: ProtectionStore, chain_id: str, why: str) -> None:  # noqa: F811
    with pytest.raises(InterchangeError, match=f"a CometBFT state import needs a valid chain_id: {why}"):
        store.import_cometbft_state(chain_id, PK_A, {"height": "5", "round": 0, "step": 1})


# --- SQLite specifics -----------------------------------------------------------------------


def test_sqlite_wal_full_sync_and_schema_version(tmp_path: Path) -> None:
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        conn = db._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        assert versions == [v for v, _ in migrations()]
    finally:
        db.close()


def test_sqlite_schema_too_new_is_refused(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT).close()
    with sqlite3.connect(tmp_path / "p.sqlite") as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future')")
    with pytest.raises(SchemaTooNew, match="999"):
        SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)


def _version_1_database(path: Path, with_history: bool) -> None:
    """A database as the signer before schema version 2 left it."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        for statement in _statements(migrations()[0][1]):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, '2025-01-01T00:00:00Z')")
        conn.execute("INSERT INTO metadata VALUES ('genesis_validators_root', ?)", (ZERO_ROOT,))
        if with_history:
            conn.execute("INSERT INTO validators (id, public_key, min_slot) VALUES (1, ?, 7)", (PK_A,))
            conn.execute("INSERT INTO signed_blocks VALUES (1, 7, ?)", (R1,))


@pytest.mark.parametrize("with_history", [True, False], ids=["with-history", "empty"])
def test_sqlite_upgrade_initializes_a_database_that_held_history(tmp_path: Path, with_history: bool) -> None:
    _version_1_database(tmp_path / "p.sqlite", with_history)
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        record = db.initialization()
        if with_history:
            assert record is not None and record.how == "upgrade", record
            assert isinstance(one(db, BlockCheck(PK_A, 7, R2)).refusal, DoubleBlockProposal)
        else:
            assert record is None  # an empty database is no history: not initialized
    finally:
        db.close()


def test_sqlite_zero_byte_file_is_a_new_store_not_initialized(tmp_path: Path) -> None:
    (tmp_path / "p.sqlite").write_bytes(b"")
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        assert db.initialization() is None
    finally:
        db.close()


def test_sqlite_database_copied_without_its_wal_is_not_initialized(tmp_path: Path) -> None:
    """Only the database file copied, while the write-ahead log still held every commit (as after a
    crash, before any checkpoint): the copy opens as a new store, not initialized."""
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        db.initialize(InitializedBy.KEYS_NEVER_SIGNED, "ops")
        assert one(db, BlockCheck(PK_A, 7, R1)).ok
        (tmp_path / "copy").mkdir()
        (tmp_path / "copy" / "p.sqlite").write_bytes((tmp_path / "p.sqlite").read_bytes())
    finally:
        db._conn = None  # like a crash: no checkpoint at close
    copy = SqliteStore(tmp_path / "copy" / "p.sqlite", ZERO_ROOT)
    try:
        assert copy.initialization() is None
    finally:
        copy.close()


def test_sqlite_wal_without_its_database_is_refused(tmp_path: Path) -> None:
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    conn = db._conn
    db._conn = None  # keep the WAL: no checkpoint at close
    try:
        db_wal = tmp_path / "p.sqlite-wal"
        assert db_wal.stat().st_size > 0
        (tmp_path / "moved").mkdir()
        (tmp_path / "p.sqlite").rename(tmp_path / "moved" / "p.sqlite")
        with pytest.raises(ProtectionStoreError, match="write-ahead log"):
            SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
        (tmp_path / "p.sqlite").write_bytes(b"")  # a 0-byte database beside the log: the same
        with pytest.raises(ProtectionStoreError, match="moved or lost"):
            SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    finally:
        assert conn is not None
        conn.close()


def test_sqlite_export_reads_a_snapshot_that_never_blocks_signing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13.12: while an export's read transaction is open (mid-iteration), signing commits,
    from another connection (another process: ``signer protection export`` on a live data dir) and
    through the same store (the admin export); the export is one consistent snapshot."""
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT, timeout_s=0.2)
    other = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT, timeout_s=0.2)
    try:
        db.check_and_record([BlockCheck(PK_A, 1, R1), AttestationCheck(PK_A, 1, 2, R1)])
        db.check_and_record([BlockCheck(PK_B, 1, R1)])
        committed: list[Any] = []
        build = ValidatorHistory

        def sign_mid_export(*args: Any) -> Any:
            if not committed:  # the export has read one validator; its transaction is open
                committed.append(other.check_and_record([BlockCheck(PK_A, 2, R1)])[0])
                same = threading.Thread(
                    target=lambda: committed.append(db.check_and_record([BlockCheck(PK_B, 2, R1)])[0])
                )
                same.start()
                same.join(timeout=5)
                assert not same.is_alive(), "signing through the exporting store waited for the export"
            return build(*args)

        monkeypatch.setattr(sqlite_store, "ValidatorHistory", sign_mid_export)
        exported = db.export_interchange()
        assert [v.safe for v in committed] == [Safe.VALID, Safe.VALID]
        slots = {d["pubkey"]: [b["slot"] for b in d["signed_blocks"]] for d in exported["data"]}
        assert slots == {"0x" + PK_A.hex(): ["1"], "0x" + PK_B.hex(): ["1"]}  # as of the snapshot
        again = {d["pubkey"]: [b["slot"] for b in d["signed_blocks"]] for d in db.export_interchange()["data"]}
        assert again == {"0x" + PK_A.hex(): ["1", "2"], "0x" + PK_B.hex(): ["1", "2"]}
    finally:
        other.close()
        db.close()


def test_sqlite_failure_mid_batch_records_nothing(tmp_path: Path) -> None:
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        with sqlite3.connect(tmp_path / "p.sqlite") as conn:
            conn.execute(
                "CREATE TRIGGER fail_99 BEFORE INSERT ON signed_blocks WHEN NEW.slot = 99 "
                "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
            )
        with pytest.raises(ProtectionStoreError, match="nothing was recorded"):
            db.check_and_record([BlockCheck(PK_A, 1, R1), BlockCheck(PK_B, 99, R1)])
        assert one(db, BlockCheck(PK_A, 1, R1)).safe is Safe.VALID  # not SAME_DATA: nothing was kept
    finally:
        db.close()


def test_sqlite_busy_database_refuses(tmp_path: Path) -> None:
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT, timeout_s=0.05)
    blocker = sqlite3.connect(tmp_path / "p.sqlite", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(ProtectionStoreError, match="unavailable"):
            db.check_and_record([BlockCheck(PK_A, 1, R1)])
        blocker.execute("ROLLBACK")
        assert one(db, BlockCheck(PK_A, 1, R1)).safe is Safe.VALID
    finally:
        blocker.close()
        db.close()


def _plan(conn: sqlite3.Connection, sql: str, params: Any) -> str:
    return "\n".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_sqlite_neighbour_queries_use_composite_indexes(tmp_path: Path) -> None:
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        for epoch in range(0, 400, 4):
            db.check_and_record([AttestationCheck(PK_A, epoch, epoch + 1, R1), BlockCheck(PK_A, epoch, R1)])
        db.check_and_record([BlockCheck(bytes([n]) * 48, 1, R1) for n in range(50)])  # validators to search
        conn = db._conn
        assert conn is not None
        conn.execute("ANALYZE")
        plan = _plan(conn, ATTESTATION_FETCH_SQL, {"public_key": PK_A, "source": 200, "target": 201})
        assert _scans(plan) == [], plan
        assert plan.count("USING INDEX sqlite_autoindex_validators_1 (public_key=?)") == 3, plan
        assert plan.count("USING PRIMARY KEY (validator_id=? AND target_epoch=?)") == 1, plan
        assert plan.count("USING PRIMARY KEY (validator_id=? AND target_epoch>?)") == 1, plan
        assert "USING COVERING INDEX signed_attestations_by_source (validator_id=? AND source_epoch>?)" in plan
        block_plan = _plan(conn, BLOCK_FETCH_SQL, {"public_key": PK_A, "slot": 200})
        assert "USING INDEX sqlite_autoindex_validators_1 (public_key=?)" in block_plan, block_plan
        assert "USING PRIMARY KEY (validator_id=? AND slot=?)" in block_plan, block_plan
        assert _scans(block_plan) == [], block_plan
    finally:
        db.close()


def _scans(plan: str) -> list[str]:
    """The steps of a query plan that read a whole table or index (a subquery's own rows aside)."""
    return [line for line in plan.splitlines() if line.startswith("SCAN") and "subquery" not in line]


def _vm_steps(conn: sqlite3.Connection, sql: str, params: Any) -> int:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    conn.set_progress_handler(count, 1)
    try:
        conn.execute(sql, params).fetchall()
    finally:
        conn.set_progress_handler(None, 1)
    return steps


@pytest.mark.slow  # builds a long history
def test_sqlite_neighbour_query_cost_does_not_grow_with_history(tmp_path: Path) -> None:
    """A check at the head of the history touches only neighbouring records, not the whole history."""
    db = SqliteStore(tmp_path / "p.sqlite", ZERO_ROOT)
    try:
        conn = db._conn
        assert conn is not None

        def fill(start: int, stop: int) -> None:
            for first in range(start, stop, 100):
                for epoch in range(first, min(first + 100, stop)):
                    db.check_and_record([AttestationCheck(PK_A, epoch, epoch + 1, R1)])

        def head_cost(epoch: int) -> int:
            # the next attestation at the head, and one that would surround the newest records
            params = {"public_key": PK_A, "source": epoch, "target": epoch + 1}
            surround = {"public_key": PK_A, "source": epoch - 3, "target": epoch + 5}
            return _vm_steps(conn, ATTESTATION_FETCH_SQL, params) + _vm_steps(conn, ATTESTATION_FETCH_SQL, surround)

        fill(0, 100)
        small = head_cost(100)
        fill(100, 3000)
        large = head_cost(3000)
        assert large <= small * 1.5 + 20, (small, large)
    finally:
        db.close()
