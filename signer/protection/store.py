"""The ProtectionStore protocol: what every slashing-protection backend implements.

Stores fetch history and record; they never decide (``signer.protection.decide`` decides a batch,
with the pure rules of ``signer.protection.rules``). The
contract is tested once, for every backend, by tests/unit/test_store_contract.py, the interchange
conformance vectors and the property tests (backends are listed in tests/stores.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from signer.errors import MalformedRequest
from signer.types import AttestationCheck, ConsensusCheck, ProtectionCheck, Verdict

ProtectionKey = tuple[str, str, bytes]
"""(kind, chain_id or "", public_key): the unit of history and of locking."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an EIP-3076 import did (all-or-nothing: either all of it, or an error and nothing)."""

    validators: int
    """Validators in the document (duplicate entries counted once)."""
    blocks_imported: int
    """Block records added (records already stored are not counted)."""
    attestations_imported: int
    blocks_skipped: int
    """Block records already present (identical slot and root)."""
    attestations_skipped: int


class InitializedBy(StrEnum):
    """How a store came to hold a history the signer may trust (table ``initialization``)."""

    IMPORT = "import"
    """The first EIP-3076 or CometBFT state import."""
    KEYS_NEVER_SIGNED = "keys_never_signed"
    """The operator declared that the keys have never signed (``signer protection init``)."""
    DEV = "dev"
    """``signer serve --dev`` created its keys and this store together."""
    UPGRADE = "upgrade"
    """Schema migration 2 found a database that already held history."""


@dataclass(frozen=True, slots=True)
class Initialization:
    """The record that makes a store's (possibly empty) history trusted. A store without it is new or
    emptied: a lost history while the key module holds keys, so the signer refuses to sign."""

    initialized_at: str
    """UTC, ISO 8601."""
    how: str
    """An ``InitializedBy`` value."""
    who: str
    """Who did it: user@host of a command, the admin client, or what the migration found."""

    def describe(self) -> str:
        return f"{self.how} by {self.who} at {self.initialized_at}"


MAX_INT64 = 2**63 - 1


def validate_check(check: ProtectionCheck) -> ProtectionKey:
    """Refuse (MalformedRequest) a check no store can hold; return the key it is locked and ordered
    by: one per history (blocks, attestations, and CometBFT state per chain) of one public key.

    Every store calls it for each check it is given (``ordered_batch`` for a batch of several, the
    store itself for a batch of one); the service calls it per item first, so that such an item is
    refused alone rather than with its batch.
    """
    if not check.public_key:
        raise MalformedRequest("protection check without a public key")
    if isinstance(check, ConsensusCheck):
        if not check.chain_id:
            raise MalformedRequest("CometBFT protection check without a chain_id")
        key: ProtectionKey = ("consensus", check.chain_id, check.public_key)
        values: tuple[int, ...] = (check.height, check.round, int(check.step))
    else:
        if check.signing_root is not None and len(check.signing_root) != 32:
            raise MalformedRequest(f"signing root must be 32 bytes, got {len(check.signing_root)}")
        if isinstance(check, AttestationCheck):
            key, values = ("attestation", "", check.public_key), (check.source_epoch, check.target_epoch)
        else:
            key, values = ("block", "", check.public_key), (check.slot,)
    for value in values:
        if not 0 <= value <= MAX_INT64:
            raise MalformedRequest(f"slot/epoch/height/round/step {value} is out of range 0..2**63-1")
    return key


def ordered_batch(checks: Sequence[ProtectionCheck]) -> list[int]:
    """Validate a batch of several checks and return the indexes of its items in sorted key order
    (a batch of one needs no order: its store calls ``validate_check`` alone).

    Raises MalformedRequest if a key appears twice or an item is out of range (nothing is recorded).
    """
    keys: dict[ProtectionKey, int] = {}
    for index, check in enumerate(checks):
        key = validate_check(check)
        if key in keys:
            raise MalformedRequest(
                f"batch items {keys[key]} and {index} are for the same {key[0]} history of one key; "
                "a batch may hold each key once"
            )
        keys[key] = index
    return [keys[key] for key in sorted(keys)]


@dataclass(frozen=True, slots=True)
class ConsensusSignature:
    """The signature of the CometBFT message recorded at chain_id/public_key/height/round/step."""

    chain_id: str
    public_key: bytes
    height: int
    round: int
    step: int
    sign_bytes: bytes
    signature: bytes


class ProtectionStore(Protocol):
    """A slashing-protection database bound to one genesis_validators_root.

    Every method raises ProtectionStoreError when the store fails; a failure never fails open.
    """

    genesis_validators_root: bytes
    """The network this store keeps history for (32 bytes): documents for another are refused."""

    def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        """Decide and record a batch in ONE transaction, durably committed before returning.

        One Verdict per item, in order: ``safe`` set (VALID: recorded; SAME_DATA: a repeat, for
        CometBFT with ``prior``) or ``refusal`` set (NotSafeToSign; other items are unaffected).
        Items are processed in sorted key order (``validate_check``); a key appears at most once per batch
        (MalformedRequest otherwise). On a store failure: ProtectionStoreError and nothing recorded.
        """
        ...

    def record_consensus_signatures(self, signatures: Sequence[ConsensusSignature]) -> None:
        """Remember the signatures of CometBFT messages recorded at their height/round/step (each only
        if it is still the last one), in one transaction, so an identical repeat returns it."""
        ...

    def initialization(self) -> Initialization | None:
        """The record that initialized this store; None while it is new or empty (nothing imported,
        nothing declared). Never changes once set."""
        ...

    def initialize(self, how: InitializedBy, who: str) -> Initialization:
        """Record that this store's history is complete as it stands (``how``/``who``, now), unless
        it is initialized already; return the record that holds (the first one wins)."""
        ...

    def import_interchange(self, document: bytes | str | Mapping[str, Any], *, who: str = "") -> ImportReport:
        """Merge an EIP-3076 v5 document (complete or minimal). All-or-nothing; InterchangeError for a
        wrong genesis_validators_root, format version or shape. Never removes or lowers anything:
        records are added, and each lower bound of each validator named rises to at least the
        minimum of the import's records for it (``rules.bounds_after_import``), even above local
        history. A successful import also initializes the store (``initialization``; ``who`` is
        recorded)."""
        ...

    def export_interchange(self, public_keys: Sequence[bytes] | None = None) -> dict[str, Any]:
        """The complete history (with known signing roots) as an EIP-3076 v5 document, read in one
        consistent snapshot that never blocks signing."""
        ...

    def import_cometbft_state(
        self,
        chain_id: str,
        public_key: bytes,
        document: bytes | str | Mapping[str, Any],
        sign_bytes_without_timestamp: bytes | None = None,
        *,
        who: str = "",
    ) -> bool:
        """Merge a priv_validator_state.json. Returns True if it moved the state forward, False if
        the stored state is already at or beyond it. InterchangeError if it conflicts (same
        height/round/step, different sign bytes) or is invalid. Like every import, it initializes
        the store (``who`` is recorded)."""
        ...

    def export_cometbft_state(self, chain_id: str, public_key: bytes) -> dict[str, Any]:
        """The last signed state in priv_validator_state.json shape (initial state if none)."""
        ...

    def ping(self) -> None:
        """Raise ProtectionStoreError unless the store can serve a transaction now."""
        ...

    def close(self) -> None: ...
