"""The embedded slashing-protection store: SQLite in WAL mode, synchronous=FULL, one writer.

One connection guarded by a lock (the gRPC server calls from several threads); each batch is one
``BEGIN IMMEDIATE`` transaction, committed (fsync of the WAL) before ``check_and_record`` returns:
one statement per item fetches the validator's row (its lower bounds) joined to the records that
can conflict, ``decide_batch`` decides, and the records it accepts are inserted by public key.
Exports read on a connection of their own, in one WAL read transaction (``_snapshot``): a WAL
reader never blocks the writer, so an export, however long, never stops signing (BEGIN IMMEDIATE
for a read-only export would). The schema comes from versioned SQL files in ``migrations/sqlite``
recorded in ``schema_version``; opening a database that needs no migration writes nothing.

A ``<path>-wal`` file without its database (``<path>`` missing or empty) is refused: the database
was moved or lost in part, and opening would start a new one beside the stray log.
"""

from __future__ import annotations

import operator
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from signer.errors import ProtectionStoreError
from signer.protection import rules
from signer.protection.cometbft_state import check_state_chain_id, parse_cometbft_state, serialize_cometbft_state
from signer.protection.decide import BatchHistory, decide_batch
from signer.protection.interchange import (
    ValidatorHistory,
    parse_interchange,
    serialize_interchange,
)
from signer.protection.rules import AttestationRecord, BlockRecord, ConsensusState, LowerBounds
from signer.protection.sql_common import (
    GENESIS_VALIDATORS_ROOT_KEY,
    MIGRATIONS_ROOT,
    check_interchange_network,
    check_schema_version,
    load_migrations,
    merge_consensus_state,
    wrong_network,
)
from signer.protection.store import (
    ConsensusSignature,
    ImportReport,
    Initialization,
    InitializedBy,
    ordered_batch,
    validate_check,
)
from signer.types import AttestationCheck, ConsensusCheck, ProtectionCheck, Verdict

MIGRATIONS_DIR = MIGRATIONS_ROOT / "sqlite"
UNKNOWN_ROOT = b""
"""How an unknown signing root is stored (the columns are part of primary keys, so not NULL)."""

_GVR_KEY = GENESIS_VALIDATORS_ROOT_KEY

# What ``rules`` needs to decide one check, with its validator's row folded in (no row: the validator
# is new). Every row carries the validator's lower bounds; the record columns are NULL where the
# validator has no such record. "+column" keeps a term from choosing the index, so each range scan
# runs on the index whose leading range column it names:
#   1. same target (double vote)             -> primary key (validator_id, target_epoch = ?)
#   2. an earlier vote surrounding the new   -> primary key (validator_id, target_epoch > ?)
#   3. an earlier vote the new one surrounds -> signed_attestations_by_source (source_epoch > ?)
# An unknown signing root (stored as X'') comes out as NULL.
ATTESTATION_FETCH_SQL = """
SELECT v.min_slot, v.min_source_epoch, v.min_target_epoch, a.source_epoch, a.target_epoch,
       nullif(a.signing_root, x'')
  FROM validators v LEFT JOIN signed_attestations a ON a.validator_id = v.id AND a.target_epoch = :target
 WHERE v.public_key = :public_key
UNION ALL
SELECT * FROM (
    SELECT v.min_slot, v.min_source_epoch, v.min_target_epoch, a.source_epoch, a.target_epoch,
           nullif(a.signing_root, x'')
      FROM validators v JOIN signed_attestations a ON a.validator_id = v.id
     WHERE v.public_key = :public_key AND a.target_epoch > :target AND +a.source_epoch < :source
     LIMIT 1)
UNION ALL
SELECT * FROM (
    SELECT v.min_slot, v.min_source_epoch, v.min_target_epoch, a.source_epoch, a.target_epoch,
           nullif(a.signing_root, x'')
      FROM validators v JOIN signed_attestations a ON a.validator_id = v.id
     WHERE v.public_key = :public_key AND a.source_epoch > :source AND +a.target_epoch < :target
     LIMIT 1)
"""

BLOCK_FETCH_SQL = """
SELECT v.min_slot, v.min_source_epoch, v.min_target_epoch, b.slot, nullif(b.signing_root, x'')
  FROM validators v LEFT JOIN signed_blocks b ON b.validator_id = v.id AND b.slot = :slot
 WHERE v.public_key = :public_key
"""

# The writes of check_and_record. Records name their validator by public key (its row exists: a new
# validator's row is inserted first, in the same transaction); an unknown signing root is stored as X''.
INSERT_VALIDATOR_SQL = "INSERT INTO validators (public_key) VALUES (?)"
INSERT_BLOCK_SQL = (
    "INSERT INTO signed_blocks (validator_id, slot, signing_root) "
    "SELECT id, ?, coalesce(?, x'') FROM validators WHERE public_key = ?"
)
BLOCK_ROW = operator.attrgetter("slot", "signing_root", "public_key")
"""The parameters of INSERT_BLOCK_SQL, from a BlockCheck."""
INSERT_ATTESTATION_SQL = (
    "INSERT INTO signed_attestations (validator_id, target_epoch, source_epoch, signing_root) "
    "SELECT id, ?, ?, coalesce(?, x'') FROM validators WHERE public_key = ?"
)
ATTESTATION_ROW = operator.attrgetter("target_epoch", "source_epoch", "signing_root", "public_key")
"""The parameters of INSERT_ATTESTATION_SQL, from an AttestationCheck."""
FILL_BOUNDS_SQL = (
    "UPDATE validators SET min_slot = coalesce(min_slot, ?), min_source_epoch = coalesce(min_source_epoch, ?), "
    "min_target_epoch = coalesce(min_target_epoch, ?) WHERE public_key = ?"
)
"""Sets only the bounds that are still NULL (the first record of a kind sets them)."""

SELECT_INITIALIZATION_SQL = "SELECT initialized_at, how, who FROM initialization WHERE id = 1"
INITIALIZE_SQL = (
    "INSERT INTO initialization (id, initialized_at, how, who) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _root_in(root: bytes | None) -> bytes:
    return UNKNOWN_ROOT if root is None else root


def _root_out(stored: bytes) -> bytes | None:
    return None if stored == UNKNOWN_ROOT else bytes(stored)


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every migration file ``NNNN_name.sql``, in order."""
    return load_migrations("sqlite")


class SqliteStore:
    """SQLite-backed ProtectionStore bound to one genesis_validators_root."""

    def __init__(self, path: Path, genesis_validators_root: bytes, timeout_s: float = 5.0) -> None:
        if len(genesis_validators_root) != 32:
            raise ProtectionStoreError("genesis_validators_root must be 32 bytes")
        self.path = Path(path)
        self.genesis_validators_root = bytes(genesis_validators_root)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._refuse_stray_wal()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
            conn = self._conn
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ProtectionStoreError(f"cannot put {self.path} in WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._migrate(conn)
            self._bind_network(conn)
        except sqlite3.Error as exc:
            self._close_quietly()
            raise ProtectionStoreError(f"cannot open slashing-protection database {self.path}: {exc}") from exc
        except BaseException:
            self._close_quietly()
            raise

    # --- opening ------------------------------------------------------------------------------

    def _refuse_stray_wal(self) -> None:
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            main_size = self.path.stat().st_size if self.path.exists() else 0
            stray = main_size == 0 and wal.exists() and wal.stat().st_size > 0
        except OSError as exc:
            raise ProtectionStoreError(f"cannot open slashing-protection database {self.path}: {exc}") from exc
        if stray:
            raise ProtectionStoreError(
                f"the slashing-protection database {self.path} is missing or empty but its write-ahead log "
                f"{wal} is not: part of the database was moved or lost. Restore {self.path.name}, "
                f"{wal.name} and {self.path.name}-shm together; refusing to start a new database beside it"
            )

    def _close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        if exists is None:
            return 0
        return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])

    @classmethod
    def _migrate(cls, conn: sqlite3.Connection) -> None:
        available = migrations()
        current = cls._schema_version(conn)
        check_schema_version(current, len(available))
        if current == len(available):
            return  # nothing to do: no write (and no writer lock) on a live database
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            check_schema_version(current, len(available))
            for version, sql in available[current:]:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, _now()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _bind_network(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("SELECT value FROM metadata WHERE key = ?", (_GVR_KEY,)).fetchone()
        if row is not None:
            if bytes(row[0]) != self.genesis_validators_root:
                raise wrong_network(str(self.path), bytes(row[0]), self.genesis_validators_root)
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM metadata WHERE key = ?", (_GVR_KEY,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO metadata (key, value) VALUES (?, ?)",
                    (_GVR_KEY, self.genesis_validators_root),
                )
            elif bytes(row[0]) != self.genesis_validators_root:
                raise wrong_network(str(self.path), bytes(row[0]), self.genesis_validators_root)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """Hold the writer lock and one BEGIN IMMEDIATE transaction; commit on success.

        sqlite3 errors become ProtectionStoreError; on any error everything is rolled back.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ProtectionStoreError("the slashing-protection store is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise ProtectionStoreError(f"slashing-protection store unavailable ({what}): {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if isinstance(exc, sqlite3.Error):
                    raise ProtectionStoreError(
                        f"slashing-protection store failed ({what}); nothing was recorded: {exc}"
                    ) from exc
                raise

    @contextmanager
    def _snapshot(self, what: str) -> Iterator[sqlite3.Connection]:
        """One read transaction on a connection of its own, outside the writer lock.

        In WAL mode a reader works on the snapshot its first read sees and never blocks the writer,
        nor waits for it: signing goes on (and commits) while an export reads. sqlite3 errors become
        ProtectionStoreError.
        """
        if self._conn is None:
            raise ProtectionStoreError("the slashing-protection store is closed")
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ProtectionStoreError(f"slashing-protection store unavailable ({what}): {exc}") from exc
        try:
            conn.execute("PRAGMA query_only = 1")
            conn.execute("BEGIN")  # deferred: the snapshot is taken by the first read
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise ProtectionStoreError(f"slashing-protection store failed ({what}): {exc}") from exc
        finally:
            conn.close()

    def _validator(self, conn: sqlite3.Connection, public_key: bytes) -> tuple[int | None, LowerBounds]:
        row = conn.execute(
            "SELECT id, min_slot, min_source_epoch, min_target_epoch FROM validators WHERE public_key = ?",
            (public_key,),
        ).fetchone()
        if row is None:
            return None, LowerBounds()
        return row[0], LowerBounds(slot=row[1], source_epoch=row[2], target_epoch=row[3])

    def _create_validator(self, conn: sqlite3.Connection, public_key: bytes) -> int:
        cursor = conn.execute("INSERT INTO validators (public_key) VALUES (?)", (public_key,))
        vid = cursor.lastrowid
        assert vid is not None
        return vid

    @staticmethod
    def _consensus_state(conn: sqlite3.Connection, chain_id: str, public_key: bytes) -> ConsensusState | None:
        row = conn.execute(
            "SELECT height, round, step, sign_bytes, sign_bytes_without_timestamp, signature "
            "FROM consensus_state WHERE chain_id = ? AND public_key = ?",
            (chain_id, public_key),
        ).fetchone()
        if row is None:
            return None
        return ConsensusState(
            height=row[0],
            round=row[1],
            step=row[2],
            sign_bytes=None if row[3] is None else bytes(row[3]),
            sign_bytes_without_timestamp=None if row[4] is None else bytes(row[4]),
            signature=None if row[5] is None else bytes(row[5]),
        )

    @staticmethod
    def _put_consensus_state(conn: sqlite3.Connection, chain_id: str, public_key: bytes, state: ConsensusState) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO consensus_state (chain_id, public_key, height, round, step, sign_bytes, "
            "sign_bytes_without_timestamp, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chain_id,
                public_key,
                state.height,
                state.round,
                state.step,
                state.sign_bytes,
                state.sign_bytes_without_timestamp,
                state.signature,
            ),
        )

    # --- the protocol -------------------------------------------------------------------------

    def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        """Validate (and order a batch of several), then in one transaction: fetch what each item
        needs, ``decide_batch``, write what it accepted, commit (durable: synchronous=FULL)."""
        if len(checks) == 1:
            validate_check(checks[0])
            order: Sequence[int] = (0,)
        else:
            order = ordered_batch(checks)
        bounds: dict[int, LowerBounds] = {}
        blocks: dict[int, list[BlockRecord]] = {}
        attestations: dict[int, list[AttestationRecord]] = {}
        consensus: dict[int, ConsensusState | None] = {}
        with self._transaction("check_and_record") as conn:
            for index in order:
                check = checks[index]
                if isinstance(check, ConsensusCheck):
                    consensus[index] = self._consensus_state(conn, check.chain_id, check.public_key)
                    continue
                if isinstance(check, AttestationCheck):
                    params = {
                        "public_key": check.public_key,
                        "source": check.source_epoch,
                        "target": check.target_epoch,
                    }
                    rows = conn.execute(ATTESTATION_FETCH_SQL, params).fetchall()
                    attestations[index] = [
                        AttestationRecord(s, t, root) for _, _, _, s, t, root in rows if s is not None
                    ]
                else:
                    rows = conn.execute(
                        BLOCK_FETCH_SQL, {"public_key": check.public_key, "slot": check.slot}
                    ).fetchall()
                    blocks[index] = [BlockRecord(slot, root) for _, _, _, slot, root in rows if slot is not None]
                if rows:  # the validator has a row
                    bounds[index] = LowerBounds(*rows[0][:3])
            decision = decide_batch(checks, order, BatchHistory(bounds, blocks, attestations, consensus))
            writes = decision.writes
            if writes.new_validators:
                conn.executemany(INSERT_VALIDATOR_SQL, [(pk,) for pk in writes.new_validators])
            inserted = conn.executemany(INSERT_BLOCK_SQL, map(BLOCK_ROW, writes.blocks)).rowcount
            inserted += conn.executemany(INSERT_ATTESTATION_SQL, map(ATTESTATION_ROW, writes.attestations)).rowcount
            if inserted != len(writes.blocks) + len(writes.attestations):  # never: each validator has its row
                raise ProtectionStoreError(
                    "slashing-protection store failed (check_and_record): a record was not written"
                )
            if writes.first_bounds:
                conn.executemany(
                    FILL_BOUNDS_SQL,
                    [(b.slot, b.source_epoch, b.target_epoch, pk) for pk, b in writes.first_bounds.items()],
                )
            for row in writes.consensus:
                self._put_consensus_state(conn, row.chain_id, row.public_key, row.state)
        return decision.verdicts

    def record_consensus_signatures(self, signatures: Sequence[ConsensusSignature]) -> None:
        if not signatures:
            return
        with self._transaction("record_consensus_signatures") as conn:
            conn.executemany(
                "UPDATE consensus_state SET signature = ? WHERE chain_id = ? AND public_key = ? "
                "AND height = ? AND round = ? AND step = ? AND sign_bytes = ?",
                [
                    (s.signature, s.chain_id, s.public_key, s.height, s.round, int(s.step), s.sign_bytes)
                    for s in signatures
                ],
            )

    def initialization(self) -> Initialization | None:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ProtectionStoreError("the slashing-protection store is closed")
            try:
                row = conn.execute(SELECT_INITIALIZATION_SQL).fetchone()
            except sqlite3.Error as exc:
                raise ProtectionStoreError(f"slashing-protection store unavailable: {exc}") from exc
        return None if row is None else Initialization(*row)

    def initialize(self, how: InitializedBy, who: str) -> Initialization:
        with self._transaction("initialize") as conn:
            conn.execute(INITIALIZE_SQL, (_now(), how.value, who))
            row = conn.execute(SELECT_INITIALIZATION_SQL).fetchone()
        return Initialization(*row)

    def import_interchange(self, document: bytes | str | Mapping[str, Any], *, who: str = "") -> ImportReport:
        interchange = parse_interchange(document)
        check_interchange_network(interchange, self.genesis_validators_root)
        blocks_new = attestations_new = blocks_seen = attestations_seen = 0
        with self._transaction("import_interchange") as conn:
            conn.execute(INITIALIZE_SQL, (_now(), InitializedBy.IMPORT.value, who or "an EIP-3076 import"))
            for validator in interchange.validators:
                vid, bounds = self._validator(conn, validator.public_key)
                if vid is None:
                    vid = self._create_validator(conn, validator.public_key)
                for block in validator.blocks:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO signed_blocks (validator_id, slot, signing_root) VALUES (?, ?, ?)",
                        (vid, block.slot, _root_in(block.signing_root)),
                    )
                    blocks_new += cursor.rowcount
                    blocks_seen += 1 - cursor.rowcount
                for att in validator.attestations:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO signed_attestations "
                        "(validator_id, target_epoch, source_epoch, signing_root) VALUES (?, ?, ?, ?)",
                        (vid, att.target_epoch, att.source_epoch, _root_in(att.signing_root)),
                    )
                    attestations_new += cursor.rowcount
                    attestations_seen += 1 - cursor.rowcount
                # Lower bounds: raised to the import's minimum (rules decides); never lowered.
                new_bounds = rules.bounds_after_import(bounds, validator.blocks, validator.attestations)
                if new_bounds != bounds:
                    conn.execute(
                        "UPDATE validators SET min_slot = ?, min_source_epoch = ?, min_target_epoch = ? WHERE id = ?",
                        (new_bounds.slot, new_bounds.source_epoch, new_bounds.target_epoch, vid),
                    )
        return ImportReport(
            validators=len(interchange.validators),
            blocks_imported=blocks_new,
            attestations_imported=attestations_new,
            blocks_skipped=blocks_seen,
            attestations_skipped=attestations_seen,
        )

    def export_interchange(self, public_keys: Sequence[bytes] | None = None) -> dict[str, Any]:
        with self._snapshot("export_interchange") as conn:
            if public_keys is None:
                rows = conn.execute("SELECT id, public_key FROM validators ORDER BY public_key").fetchall()
            else:
                rows = []
                for public_key in sorted(set(public_keys)):
                    vid, _ = self._validator(conn, public_key)
                    if vid is not None:
                        rows.append((vid, public_key))
            histories = [self._history(conn, vid, bytes(public_key)) for vid, public_key in rows]
        return serialize_interchange(self.genesis_validators_root, histories)

    def _history(self, conn: sqlite3.Connection, vid: int, public_key: bytes) -> ValidatorHistory:
        """One validator's complete history, read in the caller's transaction."""
        blocks = tuple(
            BlockRecord(slot, _root_out(root))
            for slot, root in conn.execute(
                "SELECT slot, signing_root FROM signed_blocks WHERE validator_id = ? ORDER BY slot", (vid,)
            )
        )
        attestations = tuple(
            AttestationRecord(source, target, _root_out(root))
            for target, source, root in conn.execute(
                "SELECT target_epoch, source_epoch, signing_root FROM signed_attestations "
                "WHERE validator_id = ? ORDER BY target_epoch, source_epoch",
                (vid,),
            )
        )
        return ValidatorHistory(public_key, blocks, attestations)

    def import_cometbft_state(
        self,
        chain_id: str,
        public_key: bytes,
        document: bytes | str | Mapping[str, Any],
        sign_bytes_without_timestamp: bytes | None = None,
        *,
        who: str = "",
    ) -> bool:
        check_state_chain_id(chain_id)
        imported = parse_cometbft_state(document, sign_bytes_without_timestamp)
        with self._transaction("import_cometbft_state") as conn:
            conn.execute(INITIALIZE_SQL, (_now(), InitializedBy.IMPORT.value, who or "a CometBFT state import"))
            stored = self._consensus_state(conn, chain_id, public_key)
            moved, state = merge_consensus_state(stored, imported)
            if state is not None:
                self._put_consensus_state(conn, chain_id, public_key, state)
            return moved

    def export_cometbft_state(self, chain_id: str, public_key: bytes) -> dict[str, Any]:
        with self._snapshot("export_cometbft_state") as conn:
            state = self._consensus_state(conn, chain_id, public_key)
        return serialize_cometbft_state(state)

    def ping(self) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ProtectionStoreError("the slashing-protection store is closed")
            try:
                conn.execute("SELECT count(*) FROM schema_version").fetchone()
            except sqlite3.Error as exc:
                raise ProtectionStoreError(f"slashing-protection store unavailable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._close_quietly()


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our SQL literals)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
