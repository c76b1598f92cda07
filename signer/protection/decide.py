"""The decisions of one protection batch, shared by every store: fetched history in, verdicts and rows
to write out.

A store validates and orders the batch (``store.ordered_batch``), takes its locks, fetches what
``rules`` needs for each item (``BatchHistory``), calls ``decide_batch``, writes the rows it returns
(``BatchWrites``) and commits: it fetches and writes, and decides nothing. Each key appears once per
batch, so no item's decision depends on another's; the rows of one validator's first records are
merged here (one new validator row, its lower bounds set once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from signer.errors import NotSafeToSign
from signer.protection import rules
from signer.protection.rules import AttestationRecord, BlockRecord, ConsensusState, LowerBounds
from signer.protection.sql_common import recorded_consensus_state
from signer.types import (
    Accepted,
    AttestationCheck,
    BlockCheck,
    ConsensusCheck,
    ProtectionCheck,
    Rejected,
    Safe,
    Verdict,
)


@dataclass(frozen=True, slots=True)
class BatchHistory:
    """What a store fetched for one batch under its locks, by batch index."""

    bounds: Mapping[int, LowerBounds] = field(default_factory=dict)
    """The validator's lower bounds, for each block or attestation item whose validator has a row;
    absent: the validator is new to the store."""
    blocks: Mapping[int, Sequence[BlockRecord]] = field(default_factory=dict)
    """For each block item: every record at its slot."""
    attestations: Mapping[int, Sequence[AttestationRecord]] = field(default_factory=dict)
    """For each attestation item: the records ``rules.check_attestation`` asks for (same target, one
    surrounding, one surrounded)."""
    consensus: Mapping[int, ConsensusState] = field(default_factory=dict)
    """For each CometBFT item: the last state signed for its chain and key, if any."""


@dataclass(frozen=True, slots=True)
class ConsensusRow:
    """The CometBFT state to store for a chain and key (replacing the one stored)."""

    chain_id: str
    public_key: bytes
    state: ConsensusState


@dataclass(frozen=True, slots=True)
class BatchWrites:
    """The rows a store writes for one batch, in sorted key order, all in the batch's transaction."""

    new_validators: tuple[bytes, ...]
    """Public keys to give a validator row first (sorted)."""
    blocks: tuple[BlockCheck, ...]
    attestations: tuple[AttestationCheck, ...]
    first_bounds: Mapping[bytes, LowerBounds]
    """Per public key, the lower bounds its first records set: each is written only where the
    validator's bound is still unset (None here leaves a bound as it is)."""
    consensus: tuple[ConsensusRow, ...]


@dataclass(frozen=True, slots=True)
class BatchDecision:
    verdicts: list[Verdict]
    """One per item, in the batch's order."""
    writes: BatchWrites


def decide_batch(checks: Sequence[ProtectionCheck], order: Sequence[int], history: BatchHistory) -> BatchDecision:
    """Decide every item of a batch (``order``: its indexes in sorted key order) against ``history``."""
    verdicts: list[Verdict | None] = [None] * len(checks)
    accepted: list[int] = []
    for index in order:
        verdict = _decide(checks[index], index, history)
        verdicts[index] = verdict
        if verdict.safe is Safe.VALID:
            accepted.append(index)
    return BatchDecision([v for v in verdicts if v is not None], _writes(checks, accepted, history))


def _decide(check: ProtectionCheck, index: int, history: BatchHistory) -> Verdict:
    bounds = history.bounds.get(index) or LowerBounds()
    try:
        if isinstance(check, BlockCheck):
            return Accepted(rules.check_block(check, history.blocks.get(index, ()), bounds))
        if isinstance(check, AttestationCheck):
            return Accepted(rules.check_attestation(check, history.attestations.get(index, ()), bounds))
        decision = rules.check_consensus(check, history.consensus.get(index))
        return Accepted(decision.safe, prior=decision.prior)
    except NotSafeToSign as refusal:
        return Rejected(refusal)


def _writes(checks: Sequence[ProtectionCheck], accepted: Sequence[int], history: BatchHistory) -> BatchWrites:
    """The rows that record the accepted (VALID) items."""
    new_validators: set[bytes] = set()
    first_bounds: dict[bytes, LowerBounds] = {}
    consensus: list[ConsensusRow] = []
    for index in accepted:
        check = checks[index]
        if isinstance(check, ConsensusCheck):
            consensus.append(ConsensusRow(check.chain_id, check.public_key, recorded_consensus_state(check)))
            continue
        known = history.bounds.get(index)
        if known is None:
            new_validators.add(check.public_key)
        first = _first_bounds(check, known or LowerBounds(), first_bounds.get(check.public_key, LowerBounds()))
        if first is not None:
            first_bounds[check.public_key] = first
    return BatchWrites(
        new_validators=tuple(sorted(new_validators)),
        blocks=tuple(c for c in (checks[i] for i in accepted) if isinstance(c, BlockCheck)),
        attestations=tuple(c for c in (checks[i] for i in accepted) if isinstance(c, AttestationCheck)),
        first_bounds=first_bounds,
        consensus=tuple(consensus),
    )


def _first_bounds(check: BlockCheck | AttestationCheck, known: LowerBounds, merged: LowerBounds) -> LowerBounds | None:
    """``merged`` with the bounds ``check`` sets as its validator's first record of its kind (None when
    the validator has those bounds already): a block sets the slot bound, an attestation the source and
    target bounds."""
    if isinstance(check, BlockCheck):
        if known.slot is not None:
            return None
        return dataclasses.replace(merged, slot=check.slot)
    if known.source_epoch is not None and known.target_epoch is not None:
        return None
    return dataclasses.replace(merged, source_epoch=check.source_epoch, target_epoch=check.target_epoch)
