"""Slashing-protection decisions. PURE: no I/O, no clock, no store.

Every function takes the new check and the relevant history (records the store fetched) and returns
``Safe.VALID`` or ``Safe.SAME_DATA``, or raises the named ``NotSafeToSign`` offence with the
conflicting record as ``evidence``. The rules do not care how much history they are given: a store
passes the few records that can conflict (same slot, same target, the neighbours that could surround
or be surrounded); a test may pass the whole history and must get the same answer.

Identity of data (docs/ARCHITECTURE.md, invariant 4): a record's signing root is *known* when the signer
recorded it itself (even all zeros) or when an import carried a non-zero root; an unknown root
(``None``) never equals anything, so a check with an unknown root never repeats anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from signer.errors import (
    ConflictingConsensusMessage,
    DoubleBlockProposal,
    DoubleVote,
    HeightRegression,
    RoundRegression,
    SlotNotAboveLowerBound,
    SourceBelowLowerBound,
    SourceExceedsTarget,
    StepRegression,
    SurroundedVote,
    SurroundingVote,
    TargetNotAboveLowerBound,
)
from signer.types import (
    ZERO_ROOT,
    AttestationCheck,
    BlockCheck,
    ConsensusCheck,
    PriorSignature,
    Safe,
)


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A block proposal in the history. ``signing_root`` None means unknown."""

    slot: int
    signing_root: bytes | None


@dataclass(frozen=True, slots=True)
class AttestationRecord:
    """An attestation in the history. ``signing_root`` None means unknown."""

    source_epoch: int
    target_epoch: int
    signing_root: bytes | None


@dataclass(frozen=True, slots=True)
class LowerBounds:
    """Per-validator low watermarks; None where the validator has no record of that kind yet.

    Nothing at or below ``slot`` is signed, no attestation with a source below ``source_epoch`` or a
    target at or below ``target_epoch``, unless it repeats identical, known data. They start at the
    validator's first record and only rise (``bounds_after_import``; pruning).
    """

    slot: int | None = None
    source_epoch: int | None = None
    target_epoch: int | None = None


@dataclass(frozen=True, slots=True)
class ConsensusState:
    """CometBFT: the last height/round/step signed for one chain_id + public key."""

    height: int
    round: int
    step: int
    sign_bytes: bytes | None
    sign_bytes_without_timestamp: bytes | None
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class ConsensusDecision:
    safe: Safe
    prior: PriorSignature | None = None


def imported_root(root: bytes | None) -> bytes | None:
    """The root of an IMPORTED record: absent or all zeros means unknown (None)."""
    if root is None or root == ZERO_ROOT:
        return None
    return root


def _hex(root: bytes | None) -> str | None:
    return None if root is None else "0x" + root.hex()


def _block_evidence(record: BlockRecord) -> dict[str, Any]:
    return {"kind": "block", "slot": record.slot, "signing_root": _hex(record.signing_root)}


def _attestation_evidence(record: AttestationRecord) -> dict[str, Any]:
    return {
        "kind": "attestation",
        "source_epoch": record.source_epoch,
        "target_epoch": record.target_epoch,
        "signing_root": _hex(record.signing_root),
    }


def _why_not_same(known: bytes | None) -> str:
    return "its signing root is unknown" if known is None else "a different signing root"


def _same_root(known: bytes | None, requested: bytes | None) -> bool:
    return known is not None and requested is not None and known == requested


def _raised(bound: int | None, imported: Iterable[int]) -> int | None:
    values = list(imported)
    if not values:
        return bound
    lowest = min(values)
    return lowest if bound is None else max(bound, lowest)


def bounds_after_import(
    bounds: LowerBounds, blocks: Iterable[BlockRecord], attestations: Iterable[AttestationRecord]
) -> LowerBounds:
    """The lower bounds after an import of these records for one validator.

    EVERY import raises each bound (slot; source epoch; target epoch) to at least the minimum of the
    import's records of that field, even when local history lies below (docs/ARCHITECTURE.md,
    "Slashing rules"): a file, above all a minimal one without roots, may stand for a longer history
    than it lists, and the gap between older local records and the import is unknown ground. Bounds
    never go down; a kind the import has no records of keeps its bound.
    """
    blocks, attestations = list(blocks), list(attestations)
    return LowerBounds(
        slot=_raised(bounds.slot, (b.slot for b in blocks)),
        source_epoch=_raised(bounds.source_epoch, (a.source_epoch for a in attestations)),
        target_epoch=_raised(bounds.target_epoch, (a.target_epoch for a in attestations)),
    )


def check_block(check: BlockCheck, history: Iterable[BlockRecord], bounds: LowerBounds) -> Safe:
    """Decide a block proposal. ``history`` must hold every record at ``check.slot``."""
    same_slot = [r for r in history if r.slot == check.slot]
    if same_slot:
        for record in same_slot:
            if not _same_root(record.signing_root, check.signing_root):
                why = _why_not_same(record.signing_root)
                raise DoubleBlockProposal(
                    f"double block proposal: a block at slot {check.slot} was signed before with {why}",
                    evidence=_block_evidence(record),
                )
        return Safe.SAME_DATA
    if bounds.slot is not None and check.slot <= bounds.slot:
        raise SlotNotAboveLowerBound(
            f"slot {check.slot} is not above the lowest signed slot {bounds.slot}",
            evidence={"kind": "lower_bound", "slot": bounds.slot},
        )
    return Safe.VALID


def check_attestation(check: AttestationCheck, history: Iterable[AttestationRecord], bounds: LowerBounds) -> Safe:
    """Decide an attestation.

    ``history`` must hold every record with ``check.target_epoch``, at least one record surrounded by
    the check if any exists, and at least one record surrounding it if any exists. In order: a record
    with the same target makes it a repeat or a double vote; then the lower bounds; then no record may
    surround it or be surrounded by it.
    """
    source, target = check.source_epoch, check.target_epoch
    if source > target:
        raise SourceExceedsTarget(
            f"source epoch {source} exceeds target epoch {target}",
            evidence={"kind": "request", "source_epoch": source, "target_epoch": target},
        )
    records = list(history)
    for record in records:
        if record.target_epoch == target:
            _check_same_target(check, records)
            return Safe.SAME_DATA
    if bounds.source_epoch is not None and source < bounds.source_epoch:
        raise SourceBelowLowerBound(
            f"source epoch {source} is below the lowest signed source epoch {bounds.source_epoch}",
            evidence={"kind": "lower_bound", "source_epoch": bounds.source_epoch},
        )
    if bounds.target_epoch is not None and target <= bounds.target_epoch:
        raise TargetNotAboveLowerBound(
            f"target epoch {target} is not above the lowest signed target epoch {bounds.target_epoch}",
            evidence={"kind": "lower_bound", "target_epoch": bounds.target_epoch},
        )
    for record in records:
        if source < record.source_epoch and record.target_epoch < target:
            raise SurroundingVote(
                f"surrounding vote: source {source} < {record.source_epoch} and target {target} > "
                f"{record.target_epoch} of the attestation signed before",
                evidence=_attestation_evidence(record),
            )
        if record.source_epoch < source and target < record.target_epoch:
            raise SurroundedVote(
                f"surrounded vote: source {source} > {record.source_epoch} and target {target} < "
                f"{record.target_epoch} of the attestation signed before",
                evidence=_attestation_evidence(record),
            )
    return Safe.VALID


def _check_same_target(check: AttestationCheck, records: list[AttestationRecord]) -> None:
    """Refuse unless every record with the check's target has its source and signing root."""
    source, target = check.source_epoch, check.target_epoch
    for record in records:
        if record.target_epoch != target:
            continue
        if record.source_epoch != source:
            raise DoubleVote(
                f"double vote: target {target} was signed before with source {record.source_epoch}, not {source}",
                evidence=_attestation_evidence(record),
            )
        if not _same_root(record.signing_root, check.signing_root):
            why = _why_not_same(record.signing_root)
            raise DoubleVote(
                f"double vote: source {source} and target {target} were signed before with {why}",
                evidence=_attestation_evidence(record),
            )


def check_consensus(check: ConsensusCheck, state: ConsensusState | None) -> ConsensusDecision:
    """Decide a CometBFT vote or proposal against the last signed height/round/step (FilePV rules)."""
    if state is None:
        return ConsensusDecision(Safe.VALID)
    evidence: dict[str, Any] = {
        "kind": "consensus",
        "chain_id": check.chain_id,
        "height": state.height,
        "round": state.round,
        "step": state.step,
    }
    step = int(check.step)
    if check.height < state.height:
        raise HeightRegression(
            f"height regression: height {check.height} is below the last signed height {state.height}",
            evidence=evidence,
        )
    if check.height > state.height:
        return ConsensusDecision(Safe.VALID)
    if check.round < state.round:
        raise RoundRegression(
            f"round regression: round {check.round} is below the last signed round {state.round} "
            f"at height {state.height}",
            evidence=evidence,
        )
    if check.round > state.round:
        return ConsensusDecision(Safe.VALID)
    if step < state.step:
        raise StepRegression(
            f"step regression: step {step} is below the last signed step {state.step} "
            f"at height {state.height} round {state.round}",
            evidence=evidence,
        )
    if step > state.step:
        return ConsensusDecision(Safe.VALID)
    prior = _prior_if_same_data(check, state)
    if prior is not None:
        return ConsensusDecision(Safe.SAME_DATA, prior)
    raise ConflictingConsensusMessage(
        f"conflicting consensus message: height {state.height} round {state.round} step {state.step} "
        "was signed before with different data",
        evidence=evidence,
    )


def _prior_if_same_data(check: ConsensusCheck, state: ConsensusState) -> PriorSignature | None:
    """The prior signature if the check re-signs what was signed at this height/round/step (up to its timestamp)."""
    if state.sign_bytes is None:
        return None
    prior = PriorSignature(sign_bytes=state.sign_bytes, signature=state.signature)
    if check.sign_bytes == state.sign_bytes:
        return prior
    if (
        state.sign_bytes_without_timestamp is not None
        and check.sign_bytes_without_timestamp == state.sign_bytes_without_timestamp
    ):
        return prior
    return None
