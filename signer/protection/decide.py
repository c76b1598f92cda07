"""The decisions of one protection batch, shared by every store: fetched history in, verdicts and rows
to write out.

A store validates the batch (``store.validate_check``; ``store.ordered_batch`` orders a batch of
several), takes its locks, fetches what ``rules`` needs for each item (``BatchHistory``), calls
``decide_batch``, writes the rows it returns (``BatchWrites``) and commits: it fetches and writes,
and decides nothing. Each key appears once per batch, so no item's decision depends on another's;
the rows of one validator's first records are merged here (one new validator row, its lower bounds
set once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from signer.errors import InternalError, NotSafeToSign
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

NO_BOUNDS = LowerBounds()
"""The bounds of a validator without records (none set)."""


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
    consensus: Mapping[int, ConsensusState | None] = field(default_factory=dict)
    """For each CometBFT item: the last state signed for its chain and key (absent or None: none)."""


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
        check = checks[index]
        bounds = history.bounds.get(index) or NO_BOUNDS
        try:
            if isinstance(check, AttestationCheck):
                verdict: Verdict = Accepted(rules.check_attestation(check, history.attestations.get(index, ()), bounds))
            elif isinstance(check, BlockCheck):
                verdict = Accepted(rules.check_block(check, history.blocks.get(index, ()), bounds))
            else:
                decision = rules.check_consensus(check, history.consensus.get(index))
                verdict = Accepted(decision.safe, prior=decision.prior)
        except NotSafeToSign as refusal:
            verdict = Rejected(refusal)
        verdicts[index] = verdict
        if verdict.safe is Safe.VALID:
            accepted.append(index)
    if None in verdicts:
        raise InternalError("a protection batch's order does not name every item once")
    return BatchDecision(cast(list[Verdict], verdicts), _writes(checks, accepted, history))


def _writes(checks: Sequence[ProtectionCheck], accepted: Sequence[int], history: BatchHistory) -> BatchWrites:
    """The rows that record the accepted (VALID) items, in their (sorted key) order. A validator's
    first record of a kind sets its lower bounds of that kind: a block the slot bound, an attestation
    the source and target bounds (merged per public key: one batch may hold both kinds of one key)."""
    new_validators: set[bytes] = set()
    blocks: list[BlockCheck] = []
    attestations: list[AttestationCheck] = []
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
        known = known or NO_BOUNDS
        merged = first_bounds.get(check.public_key, NO_BOUNDS)
        if isinstance(check, BlockCheck):
            blocks.append(check)
            if known.slot is None:
                first_bounds[check.public_key] = dataclasses.replace(merged, slot=check.slot)
        else:
            attestations.append(check)
            if known.source_epoch is None or known.target_epoch is None:
                first_bounds[check.public_key] = dataclasses.replace(
                    merged, source_epoch=check.source_epoch, target_epoch=check.target_epoch
                )
    return BatchWrites(
        new_validators=tuple(sorted(new_validators)),
        blocks=tuple(blocks),
        attestations=tuple(attestations),
        first_bounds=first_bounds,
        consensus=tuple(consensus),
    )
