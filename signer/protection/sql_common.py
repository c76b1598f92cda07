"""What the SQL stores (sqlite.py, postgres.py) share: migration files, network binding, and the
bookkeeping around history that is not a slashing decision (``rules`` decides).

Pure functions over the core records; no database library here, so each store keeps only its
dialect: how it fetches, locks and writes.
"""

from __future__ import annotations

from pathlib import Path

from signer.errors import InterchangeError, ProtectionStoreError, SchemaTooNew
from signer.protection.interchange import Interchange
from signer.protection.rules import ConsensusState
from signer.types import ConsensusCheck

MIGRATIONS_ROOT = Path(__file__).parent / "migrations"

GENESIS_VALIDATORS_ROOT_KEY = "genesis_validators_root"
"""The metadata key binding a database to one network."""


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, SQL) of every migration file ``migrations/<dialect>/NNNN_name.sql``, in order.

    Raises ProtectionStoreError unless the files are numbered 1..n without gaps.
    """
    found = []
    for path in sorted((MIGRATIONS_ROOT / dialect).glob("*.sql")):
        found.append((int(path.name.split("_", 1)[0]), path.read_text(encoding="utf-8")))
    versions = [v for v, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise ProtectionStoreError(f"migration files are not numbered 1..n: {versions}")
    return found


def check_schema_version(current: int, known: int) -> None:
    """Refuse a database whose schema is newer than the migrations this code carries."""
    if current > known:
        raise SchemaTooNew(
            f"the slashing-protection database has schema version {current}, newer than the "
            f"{known} this signer knows: refusing to use it (upgrade the signer)"
        )


def wrong_network(where: str, stored: bytes, expected: bytes) -> ProtectionStoreError:
    """The error for a database bound to another genesis_validators_root."""
    return ProtectionStoreError(
        f"wrong network: the slashing-protection database {where} belongs to "
        f"genesis_validators_root 0x{stored.hex()}, not 0x{expected.hex()}"
    )


def check_interchange_network(interchange: Interchange, genesis_validators_root: bytes) -> None:
    """Refuse (InterchangeError) an interchange made for another network."""
    if interchange.genesis_validators_root != genesis_validators_root:
        raise InterchangeError(
            "wrong network: the interchange is for genesis_validators_root "
            f"0x{interchange.genesis_validators_root.hex()}, this store for "
            f"0x{genesis_validators_root.hex()}; nothing was imported"
        )


def recorded_consensus_state(check: ConsensusCheck) -> ConsensusState:
    """The CometBFT state recorded when ``check`` is accepted as new (its signature comes later)."""
    return ConsensusState(
        height=check.height,
        round=check.round,
        step=int(check.step),
        sign_bytes=check.sign_bytes,
        sign_bytes_without_timestamp=check.sign_bytes_without_timestamp,
        signature=None,
    )


def merge_consensus_state(
    stored: ConsensusState | None, imported: ConsensusState
) -> tuple[bool, ConsensusState | None]:
    """Merge an imported priv_validator_state into the stored one.

    Returns (moved forward, state to write or None). Never goes back: an older import changes
    nothing; the same height/round/step with the same sign bytes only fills in a missing signature;
    with different sign bytes it is refused (InterchangeError).
    """
    if stored is None:
        return True, imported
    new_hrs = (imported.height, imported.round, imported.step)
    old_hrs = (stored.height, stored.round, stored.step)
    if new_hrs > old_hrs:
        return True, imported
    if new_hrs < old_hrs:
        return False, None
    if imported.sign_bytes != stored.sign_bytes:
        raise InterchangeError(
            f"the imported state at height {imported.height} round {imported.round} step "
            f"{imported.step} conflicts with the stored state (different sign bytes); "
            "nothing was imported"
        )
    if stored.signature is None and imported.signature is not None:
        return False, ConsensusState(
            stored.height,
            stored.round,
            stored.step,
            stored.sign_bytes,
            stored.sign_bytes_without_timestamp,
            imported.signature,
        )
    return False, None
