"""The shared slashing-protection store: PostgreSQL, for several signer replicas on one database.

Same contract and semantics as the SQLite store (``store.ProtectionStore``); every decision is made
in Python (``decide``, calling ``rules``), the database only fetches history and records. psycopg 3
with a psycopg_pool connection pool; psycopg is imported here and nowhere else.

A batch is one transaction: transaction-scoped advisory locks, one per validator history (64 bits
of BLAKE2b over ("eth2", public key) or ("cometbft", chain_id, public key)), taken in sorted order
in one statement; then one fetch per kind, ``decide_batch``, one ``unnest`` INSERT per table, the
watermark UPDATEs and COMMIT, pipelined (a constant number of round trips per batch).
``synchronous_commit=on``; ``check_and_record`` returns only after COMMIT is acknowledged. Every
failure or timeout (connect, pool, statement, and ``_Watchdog`` for a database that stops
answering on open connections) raises ProtectionStoreError. ``prune`` deletes old records under
the same locks after raising the low watermarks. Why advisory locks, the round trips, the failure
modes and the lock-table sizing: docs/ARCHITECTURE.md, "The PostgreSQL store".
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from signer.errors import ProtectionStoreError
from signer.protection import rules
from signer.protection.cometbft_state import check_state_chain_id, parse_cometbft_state, serialize_cometbft_state
from signer.protection.decide import BatchHistory, BatchWrites, ConsensusRow, decide_batch
from signer.protection.interchange import ValidatorHistory, parse_interchange, serialize_interchange
from signer.protection.rules import AttestationRecord, BlockRecord, ConsensusState, LowerBounds
from signer.protection.sql_common import (
    GENESIS_VALIDATORS_ROOT_KEY,
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
from signer.types import AttestationCheck, BlockCheck, ConsensusCheck, ProtectionCheck, Verdict

Conn = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")

UNKNOWN_ROOT = b""
"""How an unknown signing root is stored (the columns are part of primary keys, so not NULL)."""

SLOTS_PER_EPOCH = 32
"""The mainnet preset's; a network with another preset passes its own (``slots_per_epoch``)."""
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.blake2b(b"signer/migrations", digest_size=8).digest(), "big", signed=True)

LOCK_SQL = "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k"

BLOCK_FETCH_SQL = """
SELECT r.i, v.id, v.min_slot, b.slot, b.signing_root
  FROM unnest(%s::bytea[], %s::bigint[]) WITH ORDINALITY AS r (public_key, slot, i)
  LEFT JOIN validators v ON v.public_key = r.public_key
  LEFT JOIN signed_blocks b ON b.validator_id = v.id AND b.slot = r.slot
"""

# Per request: every record with its target (double vote), one earlier vote that surrounds it
# (primary key range target_epoch > t, filtered on source), one it surrounds (source index range
# source_epoch > s, filtered on target): the records rules.check_attestation needs, and no more.
ATTESTATION_FETCH_SQL = """
SELECT r.i, v.id, v.min_source_epoch, v.min_target_epoch, a.source_epoch, a.target_epoch, a.signing_root
  FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[]) WITH ORDINALITY
       AS r (public_key, source_epoch, target_epoch, i)
  LEFT JOIN validators v ON v.public_key = r.public_key
  LEFT JOIN LATERAL (
        SELECT s.source_epoch, s.target_epoch, s.signing_root FROM signed_attestations s
         WHERE s.validator_id = v.id AND s.target_epoch = r.target_epoch
        UNION ALL
        (SELECT s.source_epoch, s.target_epoch, s.signing_root FROM signed_attestations s
          WHERE s.validator_id = v.id AND s.target_epoch > r.target_epoch
            AND s.source_epoch < r.source_epoch
          ORDER BY s.target_epoch LIMIT 1)
        UNION ALL
        (SELECT s.source_epoch, s.target_epoch, s.signing_root FROM signed_attestations s
          WHERE s.validator_id = v.id AND s.source_epoch > r.source_epoch
            AND s.target_epoch < r.target_epoch
          ORDER BY s.source_epoch LIMIT 1)
  ) a ON true
"""

CONSENSUS_FETCH_SQL = """
SELECT r.i, c.height, c.round, c.step, c.sign_bytes, c.sign_bytes_without_timestamp, c.signature
  FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS r (chain_id, public_key, i)
  JOIN consensus_state c ON c.chain_id = r.chain_id AND c.public_key = r.public_key
"""

INSERT_VALIDATORS_SQL = """
INSERT INTO validators (public_key) SELECT unnest(%s::bytea[]) ON CONFLICT (public_key) DO NOTHING
"""

INSERT_BLOCKS_SQL = """
INSERT INTO signed_blocks (validator_id, slot, signing_root)
SELECT v.id, r.slot, r.signing_root
  FROM unnest(%s::bytea[], %s::bigint[], %s::bytea[]) AS r (public_key, slot, signing_root)
  JOIN validators v ON v.public_key = r.public_key
ON CONFLICT DO NOTHING
"""

INSERT_ATTESTATIONS_SQL = """
INSERT INTO signed_attestations (validator_id, target_epoch, source_epoch, signing_root)
SELECT v.id, r.target_epoch, r.source_epoch, r.signing_root
  FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[], %s::bytea[])
       AS r (public_key, target_epoch, source_epoch, signing_root)
  JOIN validators v ON v.public_key = r.public_key
ON CONFLICT DO NOTHING
"""

SET_BOUNDS_SQL = """
UPDATE validators v
   SET min_slot = r.min_slot, min_source_epoch = r.min_source_epoch, min_target_epoch = r.min_target_epoch
  FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[], %s::bigint[])
       AS r (public_key, min_slot, min_source_epoch, min_target_epoch)
 WHERE v.public_key = r.public_key
"""

UPSERT_CONSENSUS_SQL = """
INSERT INTO consensus_state AS c
       (chain_id, public_key, height, round, step, sign_bytes, sign_bytes_without_timestamp, signature)
SELECT * FROM unnest(%s::text[], %s::bytea[], %s::bigint[], %s::bigint[], %s::smallint[], %s::bytea[],
                     %s::bytea[], %s::bytea[])
ON CONFLICT (chain_id, public_key) DO UPDATE
   SET height = excluded.height, round = excluded.round, step = excluded.step,
       sign_bytes = excluded.sign_bytes, sign_bytes_without_timestamp = excluded.sign_bytes_without_timestamp,
       signature = excluded.signature
"""

FILL_BOUNDS_SQL = """
UPDATE validators v
   SET min_slot = coalesce(v.min_slot, r.min_slot),
       min_source_epoch = coalesce(v.min_source_epoch, r.min_source_epoch),
       min_target_epoch = coalesce(v.min_target_epoch, r.min_target_epoch)
  FROM unnest(%s::bytea[], %s::bigint[], %s::bigint[], %s::bigint[])
       AS r (public_key, min_slot, min_source_epoch, min_target_epoch)
 WHERE v.public_key = r.public_key
"""
"""Sets only the watermarks that are still NULL (the first record of a kind sets them)."""

SELECT_INITIALIZATION_SQL = (
    "SELECT to_char(initialized_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), how, who "
    "FROM initialization WHERE id = 1"
)
INITIALIZE_SQL = "INSERT INTO initialization (id, how, who) VALUES (1, %s, %s) ON CONFLICT (id) DO NOTHING"
"""The first initialization wins (several replicas may initialize at once)."""

SELECT_CONSENSUS_SQL = (
    "SELECT height, round, step, sign_bytes, sign_bytes_without_timestamp, signature "
    "FROM consensus_state WHERE chain_id = %s AND public_key = %s"
)


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What ``PostgresStore.prune`` removed."""

    validators: int
    """Validators whose watermark moved."""
    blocks_deleted: int
    attestations_deleted: int


def lock_key(*parts: bytes) -> int:
    """The signed 64-bit advisory-lock key of one history (see the module docstring)."""
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return int.from_bytes(digest.digest(), "big", signed=True)


def eth2_lock_key(public_key: bytes) -> int:
    return lock_key(b"eth2", public_key)


def consensus_lock_key(chain_id: str, public_key: bytes) -> int:
    return lock_key(b"cometbft", chain_id.encode("utf-8"), public_key)


def check_lock_key(check: ProtectionCheck) -> int:
    if isinstance(check, ConsensusCheck):
        return consensus_lock_key(check.chain_id, check.public_key)
    return eth2_lock_key(check.public_key)


def _root_in(root: bytes | None) -> bytes:
    return UNKNOWN_ROOT if root is None else root


def _root_out(stored: bytes | None) -> bytes | None:
    return None if stored is None or stored == UNKNOWN_ROOT else bytes(stored)


def _opt_bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _consensus_state(row: Sequence[Any]) -> ConsensusState:
    height, round_, step, sign_bytes, without_timestamp, signature = row
    return ConsensusState(
        height=height,
        round=round_,
        step=step,
        sign_bytes=_opt_bytes(sign_bytes),
        sign_bytes_without_timestamp=_opt_bytes(without_timestamp),
        signature=_opt_bytes(signature),
    )


def apply_migrations(conn: Conn) -> int:
    """Bring the schema of ``conn``'s database to the newest version; return that version.

    One writer at a time (transaction-scoped advisory lock); the others wait, then find nothing to
    do. Raises SchemaTooNew if the database is newer than this code. ``conn`` must be idle.
    """
    available = load_migrations("postgres")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        check_schema_version(current, len(available))
        for version, migration in available[current:]:
            conn.execute(migration.encode("utf-8"))
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
    return len(available)


def _schema_version(conn: Conn) -> int | None:
    """The schema version of an idle connection's database (None: no schema_version table yet)."""
    try:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        return None
    conn.commit()
    return None if row is None or row[0] is None else int(row[0])


def _connection_options(timeout_s: float) -> str:
    timeout_ms = max(1, int(timeout_s * 1000))
    return " ".join(
        [
            "-c synchronous_commit=on",
            f"-c statement_timeout={timeout_ms}",
            f"-c lock_timeout={timeout_ms}",
            f"-c idle_in_transaction_session_timeout={max(1000, 5 * timeout_ms)}",
        ]
    )


class _Watchdog:
    """Client-side deadlines for transactions, on one daemon thread per store.

    A database that stops answering without closing the connection (a frozen server, storage stuck
    in I/O, a paused VM) still has its TCP acknowledged by the kernel, so keepalives and
    tcp_user_timeout never fire, and statement_timeout runs inside the frozen server: a blocked
    call would wait forever. When a deadline passes first, the connection's socket is shut down
    (through a duplicate descriptor), so the blocked call fails at once with OperationalError and
    the pool discards the connection. Expiry and disarm hold one lock, so a connection already
    handed back to the pool is never touched.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, list[Any]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def arm(self, conn: Conn, seconds: float) -> list[Any]:
        """Start a deadline; the entry is ``[conn, expired]`` (``expired`` set by the watchdog)."""
        entry: list[Any] = [conn, False]
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, next(self._seq), entry))
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._loop, name="protection-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is entry:  # earlier than what the thread sleeps for (else: no wake-up)
                self._cond.notify()
        return entry

    def disarm(self, entry: list[Any]) -> bool:
        """Stop a deadline; True if it had already expired (the connection was cut)."""
        with self._cond:
            expired = bool(entry[1])
            entry[0] = None
            return expired

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                while self._heap and self._heap[0][2][0] is None:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                remaining = self._heap[0][0] - time.monotonic()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                _, _, entry = heapq.heappop(self._heap)
                entry[1] = True
                _shutdown_socket(entry[0])
                entry[0] = None


def _shutdown_socket(conn: Conn) -> None:
    with contextlib.suppress(OSError, ValueError, psycopg.Error):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()  # the duplicate only; psycopg still owns (and closes) its descriptor


class PostgresStore:
    """PostgreSQL-backed ProtectionStore bound to one genesis_validators_root; safe to share one
    database between several replicas (each with its own store and pool)."""

    def __init__(
        self,
        dsn: str,
        genesis_validators_root: bytes,
        *,
        password: str | None = None,
        timeout_s: float = 2.0,
        pool_size: int = 8,
        prune_keep_epochs: int | None = None,
        slots_per_epoch: int = SLOTS_PER_EPOCH,
    ) -> None:
        if len(genesis_validators_root) != 32:
            raise ProtectionStoreError("genesis_validators_root must be 32 bytes")
        if timeout_s <= 0 or pool_size < 1:
            raise ProtectionStoreError("timeout_s must be positive and pool_size at least 1")
        if prune_keep_epochs is not None and prune_keep_epochs < 1:
            raise ProtectionStoreError("prune_keep_epochs must be at least 1")
        if slots_per_epoch < 1:
            raise ProtectionStoreError("slots_per_epoch must be at least 1")
        self.slots_per_epoch = slots_per_epoch
        self.genesis_validators_root = bytes(genesis_validators_root)
        self.timeout_s = timeout_s
        self.transaction_deadline_s = 3 * timeout_s
        """Client-side bound of one signing transaction (lock wait, fetch, write, commit: each bounded
        by timeout_s in the server, while the server answers)."""
        self.prune_keep_epochs = prune_keep_epochs
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise ProtectionStoreError(f"invalid PostgreSQL DSN: {type(exc).__name__}") from None
        self.where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        """Host, port and database, for messages (never the password)."""
        # "options" given in the DSN are kept; ours come last and win.
        options = " ".join(filter(None, [str(params.pop("options", "") or ""), _connection_options(timeout_s)]))
        kwargs: dict[str, Any] = {
            "options": options,
            "connect_timeout": max(2, math.ceil(timeout_s)),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 2,
            "tcp_user_timeout": max(1000, int(timeout_s * 2000)),
            "application_name": str(params.pop("application_name", "validator-signer")),
        }
        if password is not None:
            kwargs["password"] = password
        conninfo = make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
        self._probe(conninfo, kwargs)
        self._closed = threading.Event()
        self._watchdog = _Watchdog()
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            kwargs=kwargs,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout_s,
            reconnect_timeout=timeout_s,
            max_idle=300.0,
            name="signer-protection",
        )
        try:
            self._pool.open(wait=False)
            self._run("open", self._open_database, retry=False)
            if prune_keep_epochs is not None:
                self.prune(prune_keep_epochs)
        except BaseException:
            self.close()
            raise

    # --- opening ------------------------------------------------------------------------------

    def _probe(self, conninfo: str, kwargs: dict[str, Any]) -> None:
        """One direct connection before the pool opens, so that a refused login (wrong or missing
        password, unknown role or database) or an unreachable server is reported with the server's
        reason; through the pool it would only be "couldn't get a connection after N sec"."""
        try:
            psycopg.connect(conninfo, **kwargs).close()
        except psycopg.Error as exc:
            raise ProtectionStoreError(
                f"slashing-protection database {self.where} unavailable (connect); signing refused: {_brief(exc)}"
            ) from exc

    def _open_database(self, conn: Conn) -> None:
        known = len(load_migrations("postgres"))
        current = _schema_version(conn)
        if current is None or current < known:
            conn.autocommit = True
            try:
                apply_migrations(conn)
            finally:
                conn.autocommit = False
        else:
            check_schema_version(current, known)
        with conn.pipeline():
            conn.execute(
                "INSERT INTO metadata (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (GENESIS_VALIDATORS_ROOT_KEY, self.genesis_validators_root),
            )
            cursor = conn.execute("SELECT value FROM metadata WHERE key = %s", (GENESIS_VALIDATORS_ROOT_KEY,))
            conn.commit()
        row = cursor.fetchone()
        if row is None or bytes(row[0]) != self.genesis_validators_root:
            stored = b"" if row is None else bytes(row[0])
            raise wrong_network(self.where, stored, self.genesis_validators_root)

    # --- running a transaction ----------------------------------------------------------------

    def _run(self, what: str, work: Callable[[Conn], T], *, retry: bool = True, deadline_s: float | None = None) -> T:
        """Run ``work`` on a pooled connection; psycopg errors become ProtectionStoreError.

        ``work`` runs its own transaction and commits it. If the connection turns out to be broken
        (e.g. the server restarted since it was last used), the pool is checked and ``work`` runs
        once more on a fresh connection. That is safe even if a COMMIT was lost in flight: ``work``
        decides again, under the locks, from what the database holds. With ``deadline_s``, a
        transaction still waiting for the database after that long is cut (``_Watchdog``) and
        refused, without a retry (the database is not answering).
        """
        for attempt in range(2 if retry else 1):
            if self._closed.is_set():
                raise ProtectionStoreError("the slashing-protection store is closed")
            broken = expired = False
            try:
                with self._pool.connection(timeout=self.timeout_s) as conn:
                    deadline = None if deadline_s is None else self._watchdog.arm(conn, deadline_s)
                    try:
                        return work(conn)
                    except BaseException:
                        broken = conn.broken or conn.closed
                        if not broken:
                            with contextlib.suppress(psycopg.Error):
                                conn.rollback()  # still under the deadline
                        expired = deadline is not None and self._watchdog.disarm(deadline)
                        raise
                    finally:
                        if deadline is not None:
                            self._watchdog.disarm(deadline)
            except psycopg.OperationalError as exc:
                if expired:
                    raise ProtectionStoreError(
                        f"slashing-protection database {self.where} did not answer within {deadline_s:g} s "
                        f"({what}); signing refused"
                    ) from exc
                if retry and attempt == 0 and broken:
                    self._pool.check()
                    continue
                raise ProtectionStoreError(
                    f"slashing-protection database {self.where} unavailable ({what}); signing refused: {_brief(exc)}"
                ) from exc
            except psycopg.Error as exc:
                raise ProtectionStoreError(
                    f"slashing-protection database {self.where} failed ({what}); signing refused: {_brief(exc)}"
                ) from exc
        raise ProtectionStoreError(f"slashing-protection database {self.where} unavailable ({what})")

    # --- check_and_record -----------------------------------------------------------------------

    def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        if len(checks) == 1:
            validate_check(checks[0])
            order: Sequence[int] = (0,)
        else:
            order = ordered_batch(checks)
        if not checks:
            return []
        return self._run(
            "check_and_record",
            lambda conn: self._check_and_record(conn, checks, order),
            deadline_s=self.transaction_deadline_s,
        )

    def _check_and_record(self, conn: Conn, checks: Sequence[ProtectionCheck], order: Sequence[int]) -> list[Verdict]:
        history = _fetch(conn, checks)  # one round trip: BEGIN, lock, fetch
        decision = decide_batch(checks, order, history)
        _write(conn, decision.writes)  # one round trip: write, COMMIT
        return decision.verdicts

    # --- CometBFT -------------------------------------------------------------------------------

    def record_consensus_signatures(self, signatures: Sequence[ConsensusSignature]) -> None:
        if not signatures:
            return

        def work(conn: Conn) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE consensus_state SET signature = %s WHERE chain_id = %s AND public_key = %s "
                    "AND height = %s AND round = %s AND step = %s AND sign_bytes = %s",
                    [
                        (s.signature, s.chain_id, s.public_key, s.height, s.round, int(s.step), s.sign_bytes)
                        for s in signatures
                    ],
                )
            conn.commit()

        self._run("record_consensus_signatures", work, deadline_s=self.transaction_deadline_s)

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

        def work(conn: Conn) -> bool:
            conn.execute(LOCK_SQL, ([consensus_lock_key(chain_id, public_key)],))
            conn.execute(INITIALIZE_SQL, (InitializedBy.IMPORT.value, who or "a CometBFT state import"))
            row = conn.execute(SELECT_CONSENSUS_SQL, (chain_id, public_key)).fetchone()
            moved, state = merge_consensus_state(None if row is None else _consensus_state(row), imported)
            if state is not None:
                conn.execute(UPSERT_CONSENSUS_SQL, _consensus_columns([ConsensusRow(chain_id, public_key, state)]))
            conn.commit()
            return moved

        return self._run("import_cometbft_state", work)

    def export_cometbft_state(self, chain_id: str, public_key: bytes) -> dict[str, Any]:
        def work(conn: Conn) -> ConsensusState | None:
            row = conn.execute(SELECT_CONSENSUS_SQL, (chain_id, public_key)).fetchone()
            conn.commit()
            return None if row is None else _consensus_state(row)

        return serialize_cometbft_state(self._run("export_cometbft_state", work))

    # --- EIP-3076 -------------------------------------------------------------------------------

    def initialization(self) -> Initialization | None:
        def work(conn: Conn) -> Initialization | None:
            row = conn.execute(SELECT_INITIALIZATION_SQL).fetchone()
            conn.commit()
            return None if row is None else Initialization(*row)

        return self._run("initialization", work, deadline_s=self.timeout_s)

    def initialize(self, how: InitializedBy, who: str) -> Initialization:
        def work(conn: Conn) -> Initialization:
            with conn.pipeline():
                conn.execute(INITIALIZE_SQL, (how.value, who))
                cursor = conn.execute(SELECT_INITIALIZATION_SQL)
                conn.commit()
            row = cursor.fetchone()
            assert row is not None
            return Initialization(*row)

        return self._run("initialize", work)

    def import_interchange(self, document: bytes | str | Mapping[str, Any], *, who: str = "") -> ImportReport:
        interchange = parse_interchange(document)
        check_interchange_network(interchange, self.genesis_validators_root)
        validators = sorted(interchange.validators, key=lambda v: v.public_key)
        initialized = (InitializedBy.IMPORT.value, who or "an EIP-3076 import")
        if not validators:
            self._run("import_interchange", lambda conn: _execute_and_commit(conn, INITIALIZE_SQL, initialized))
            return ImportReport(0, 0, 0, 0, 0)
        public_keys = [v.public_key for v in validators]
        keys = sorted({eth2_lock_key(pk) for pk in public_keys})
        block_columns: tuple[list[bytes], list[int], list[bytes]] = ([], [], [])
        attestation_columns: tuple[list[bytes], list[int], list[int], list[bytes]] = ([], [], [], [])
        for validator in validators:
            for block in validator.blocks:
                block_columns[0].append(validator.public_key)
                block_columns[1].append(block.slot)
                block_columns[2].append(_root_in(block.signing_root))
            for att in validator.attestations:
                attestation_columns[0].append(validator.public_key)
                attestation_columns[1].append(att.target_epoch)
                attestation_columns[2].append(att.source_epoch)
                attestation_columns[3].append(_root_in(att.signing_root))

        def work(conn: Conn) -> tuple[int, int]:
            with conn.pipeline():
                conn.execute(LOCK_SQL, (keys,))
                conn.execute(INITIALIZE_SQL, initialized)
                conn.execute(INSERT_VALIDATORS_SQL, (public_keys,))
                current = conn.execute(
                    "SELECT public_key, min_slot, min_source_epoch, min_target_epoch FROM validators "
                    "WHERE public_key = ANY(%s::bytea[])",
                    (public_keys,),
                )
                blocks_cur = conn.execute(INSERT_BLOCKS_SQL, block_columns)
                attestations_cur = conn.execute(INSERT_ATTESTATIONS_SQL, attestation_columns)
            stored = {bytes(pk): LowerBounds(s, src, tgt) for pk, s, src, tgt in current.fetchall()}
            new_bounds = {
                v.public_key: rules.bounds_after_import(stored[v.public_key], v.blocks, v.attestations)
                for v in validators
            }
            changed = {pk: b for pk, b in new_bounds.items() if b != stored[pk]}
            with conn.pipeline():
                if changed:
                    conn.execute(SET_BOUNDS_SQL, _bounds_columns(changed))
                conn.commit()
            return max(blocks_cur.rowcount, 0), max(attestations_cur.rowcount, 0)

        blocks_new, attestations_new = self._run("import_interchange", work)
        return ImportReport(
            validators=len(validators),
            blocks_imported=blocks_new,
            attestations_imported=attestations_new,
            blocks_skipped=len(block_columns[0]) - blocks_new,
            attestations_skipped=len(attestation_columns[0]) - attestations_new,
        )

    def export_interchange(self, public_keys: Sequence[bytes] | None = None) -> dict[str, Any]:
        wanted = None if public_keys is None else sorted({bytes(pk) for pk in public_keys})
        where = "" if wanted is None else "WHERE v.public_key = ANY(%s::bytea[])"
        params: tuple[Any, ...] = () if wanted is None else (wanted,)

        def work(conn: Conn) -> list[ValidatorHistory]:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            validators = conn.execute(
                f"SELECT v.id, v.public_key FROM validators v {where} ORDER BY v.public_key",  # noqa: S608
                params,
            ).fetchall()
            blocks: dict[int, list[BlockRecord]] = {}
            for vid, slot, root in conn.execute(
                f"SELECT b.validator_id, b.slot, b.signing_root FROM signed_blocks b "  # noqa: S608
                f"JOIN validators v ON v.id = b.validator_id {where} ORDER BY b.validator_id, b.slot",
                params,
            ):
                blocks.setdefault(vid, []).append(BlockRecord(slot, _root_out(root)))
            attestations: dict[int, list[AttestationRecord]] = {}
            for vid, target, source, root in conn.execute(
                f"SELECT a.validator_id, a.target_epoch, a.source_epoch, a.signing_root "  # noqa: S608
                f"FROM signed_attestations a JOIN validators v ON v.id = a.validator_id {where} "
                "ORDER BY a.validator_id, a.target_epoch, a.source_epoch",
                params,
            ):
                attestations.setdefault(vid, []).append(AttestationRecord(source, target, _root_out(root)))
            conn.commit()
            return [
                ValidatorHistory(bytes(pk), tuple(blocks.get(vid, ())), tuple(attestations.get(vid, ())))
                for vid, pk in validators
            ]

        histories = self._run("export_interchange", work)
        return serialize_interchange(self.genesis_validators_root, histories)

    # --- pruning --------------------------------------------------------------------------------

    def prune(self, keep_epochs: int | None = None) -> PruneReport:
        """Delete history more than ``keep_epochs`` epochs below each validator's newest record,
        raising its low watermarks first (same transaction) so every refusal still holds."""
        keep = self.prune_keep_epochs if keep_epochs is None else keep_epochs
        if keep is None or keep < 1:
            raise ProtectionStoreError("prune needs keep_epochs >= 1")
        keep_slots = keep * self.slots_per_epoch

        def work(conn: Conn) -> PruneReport:
            rows = conn.execute("SELECT public_key FROM validators").fetchall()
            keys = sorted({eth2_lock_key(bytes(pk)) for (pk,) in rows})
            conn.execute(LOCK_SQL, (keys,))
            # 1. the watermark moves up to the newest record about to be deleted ...
            moved = conn.execute(
                """
                WITH block_cut AS (
                    SELECT validator_id, max(slot) - %(keep_slots)s AS below
                      FROM signed_blocks GROUP BY validator_id),
                attestation_cut AS (
                    SELECT validator_id, max(target_epoch) - %(keep_epochs)s AS below
                      FROM signed_attestations GROUP BY validator_id),
                block_marks AS (
                    SELECT b.validator_id, max(b.slot) AS slot FROM signed_blocks b
                      JOIN block_cut c ON c.validator_id = b.validator_id AND b.slot < c.below
                     GROUP BY b.validator_id),
                attestation_marks AS (
                    SELECT a.validator_id, max(a.source_epoch) AS source_epoch,
                           max(a.target_epoch) AS target_epoch FROM signed_attestations a
                      JOIN attestation_cut c ON c.validator_id = a.validator_id AND a.target_epoch < c.below
                     GROUP BY a.validator_id)
                UPDATE validators v
                   SET min_slot = greatest(v.min_slot, bm.slot),
                       min_source_epoch = greatest(v.min_source_epoch, am.source_epoch),
                       min_target_epoch = greatest(v.min_target_epoch, am.target_epoch)
                  FROM validators w
                  LEFT JOIN block_marks bm ON bm.validator_id = w.id
                  LEFT JOIN attestation_marks am ON am.validator_id = w.id
                 WHERE v.id = w.id AND (bm.slot IS NOT NULL OR am.target_epoch IS NOT NULL)
                """,
                {"keep_slots": keep_slots, "keep_epochs": keep},
            ).rowcount
            # 2. ... then only records at or below the new watermark are deleted.
            blocks = conn.execute(
                "DELETE FROM signed_blocks b USING validators v "
                "WHERE v.id = b.validator_id AND b.slot <= v.min_slot "
                "AND b.slot < (SELECT max(slot) FROM signed_blocks m WHERE m.validator_id = b.validator_id) "
                "- %s",
                (keep_slots,),
            ).rowcount
            attestations = conn.execute(
                "DELETE FROM signed_attestations a USING validators v "
                "WHERE v.id = a.validator_id AND a.target_epoch <= v.min_target_epoch "
                "AND a.source_epoch <= v.min_source_epoch "
                "AND a.target_epoch < (SELECT max(target_epoch) FROM signed_attestations m "
                "WHERE m.validator_id = a.validator_id) - %s",
                (keep,),
            ).rowcount
            conn.commit()
            return PruneReport(max(moved, 0), max(blocks, 0), max(attestations, 0))

        return self._run("prune", work)

    # --- health and life cycle ------------------------------------------------------------------

    def ping(self) -> None:
        def work(conn: Conn) -> None:
            conn.execute("SELECT 1 FROM schema_version LIMIT 1")
            conn.commit()

        self._run("ping", work, deadline_s=self.timeout_s)

    def close(self) -> None:
        self._closed.set()
        self._watchdog.stop()
        self._pool.close(timeout=self.timeout_s)


# --- check_and_record: fetch and write (decide.py decides) -----------------------------------------


def _fetch(conn: Conn, checks: Sequence[ProtectionCheck]) -> BatchHistory:
    """Phase 1, one pipelined round trip: BEGIN, the advisory locks in sorted order, then one fetch per
    kind for the whole batch (each statement's snapshot is taken after the locks are granted)."""
    blocks = [(i, c) for i, c in enumerate(checks) if isinstance(c, BlockCheck)]
    attestations = [(i, c) for i, c in enumerate(checks) if isinstance(c, AttestationCheck)]
    consensus = [(i, c) for i, c in enumerate(checks) if isinstance(c, ConsensusCheck)]
    with conn.pipeline():
        conn.execute(LOCK_SQL, (sorted({check_lock_key(c) for c in checks}),))
        block_cur = attestation_cur = consensus_cur = None
        if blocks:
            block_cur = conn.execute(BLOCK_FETCH_SQL, ([c.public_key for _, c in blocks], [c.slot for _, c in blocks]))
        if attestations:
            attestation_cur = conn.execute(
                ATTESTATION_FETCH_SQL,
                (
                    [c.public_key for _, c in attestations],
                    [c.source_epoch for _, c in attestations],
                    [c.target_epoch for _, c in attestations],
                ),
            )
        if consensus:
            consensus_cur = conn.execute(
                CONSENSUS_FETCH_SQL, ([c.chain_id for _, c in consensus], [c.public_key for _, c in consensus])
            )
    return _history(
        (blocks, _rows(block_cur)), (attestations, _rows(attestation_cur)), (consensus, _rows(consensus_cur))
    )


def _rows(cursor: psycopg.Cursor[tuple[Any, ...]] | None) -> list[tuple[Any, ...]]:
    return [] if cursor is None else cursor.fetchall()


_Fetched = tuple[Sequence[tuple[int, ProtectionCheck]], Sequence[tuple[Any, ...]]]
"""The (batch index, check) pairs of one kind and the rows fetched for them. Each row starts with the
1-based ordinal of its request in the unnest() arrays, so ``pairs[n - 1]`` is the request it answers."""


def _history(blocks: _Fetched, attestations: _Fetched, consensus: _Fetched) -> BatchHistory:
    bounds: dict[int, LowerBounds] = {}
    """Per batch index: the validator's lower bounds (absent: no validator row yet)."""
    block_history: dict[int, list[BlockRecord]] = {}
    attestation_history: dict[int, list[AttestationRecord]] = {}
    pairs, rows = blocks
    for n, vid, min_slot, slot, root in rows:
        index = pairs[n - 1][0]
        if vid is not None:
            bounds[index] = LowerBounds(slot=min_slot)
        if slot is not None:
            block_history.setdefault(index, []).append(BlockRecord(slot, _root_out(root)))
    pairs, rows = attestations
    for n, vid, min_source, min_target, source, target, root in rows:
        index = pairs[n - 1][0]
        if vid is not None:
            bounds[index] = LowerBounds(source_epoch=min_source, target_epoch=min_target)
        if source is not None:
            attestation_history.setdefault(index, []).append(AttestationRecord(source, target, _root_out(root)))
    pairs, rows = consensus
    states = {pairs[n - 1][0]: _consensus_state(row) for n, *row in rows}
    return BatchHistory(bounds, block_history, attestation_history, states)


def _write(conn: Conn, writes: BatchWrites) -> None:
    """Phase 2, one pipelined round trip: one statement per table with rows to write, then COMMIT."""
    with conn.pipeline():
        if writes.new_validators:
            conn.execute(INSERT_VALIDATORS_SQL, (list(writes.new_validators),))
        if writes.blocks:
            conn.execute(
                INSERT_BLOCKS_SQL,
                (
                    [c.public_key for c in writes.blocks],
                    [c.slot for c in writes.blocks],
                    [_root_in(c.signing_root) for c in writes.blocks],
                ),
            )
        if writes.attestations:
            conn.execute(
                INSERT_ATTESTATIONS_SQL,
                (
                    [c.public_key for c in writes.attestations],
                    [c.target_epoch for c in writes.attestations],
                    [c.source_epoch for c in writes.attestations],
                    [_root_in(c.signing_root) for c in writes.attestations],
                ),
            )
        if writes.first_bounds:
            conn.execute(FILL_BOUNDS_SQL, _bounds_columns(writes.first_bounds))
        if writes.consensus:
            conn.execute(UPSERT_CONSENSUS_SQL, _consensus_columns(writes.consensus))
        conn.commit()


def _execute_and_commit(conn: Conn, query: str, params: tuple[Any, ...]) -> None:
    conn.execute(query, params)
    conn.commit()


def _bounds_columns(bounds: Mapping[bytes, LowerBounds]) -> tuple[list[Any], ...]:
    items = sorted(bounds.items())
    return (
        [pk for pk, _ in items],
        [b.slot for _, b in items],
        [b.source_epoch for _, b in items],
        [b.target_epoch for _, b in items],
    )


def _consensus_columns(rows: Sequence[ConsensusRow]) -> tuple[list[Any], ...]:
    states = [r.state for r in rows]
    return (
        [r.chain_id for r in rows],
        [r.public_key for r in rows],
        [s.height for s in states],
        [s.round for s in states],
        [s.step for s in states],
        [s.sign_bytes for s in states],
        [s.sign_bytes_without_timestamp for s in states],
        [s.signature for s in states],
    )


def _brief(exc: BaseException) -> str:
    """The first line of a psycopg error (its later lines may quote SQL; never parameters)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
