"""The pure slashing-protection rules: every offence, its evidence and message, and the repeats."""

from __future__ import annotations

import pytest

from signer.errors import (
    ConflictingConsensusMessage,
    DoubleBlockProposal,
    DoubleVote,
    HeightRegression,
    NotSafeToSign,
    RoundRegression,
    SlotNotAboveLowerBound,
    SourceBelowLowerBound,
    SourceExceedsTarget,
    StepRegression,
    SurroundedVote,
    SurroundingVote,
    TargetNotAboveLowerBound,
)
from signer.protection.rules import (
    AttestationRecord,
    BlockRecord,
    ConsensusState,
    LowerBounds,
    bounds_after_import,
    check_attestation,
    check_block,
    check_consensus,
    imported_root,
)
from signer.types import ZERO_ROOT, AttestationCheck, BlockCheck, ConsensusCheck, ConsensusStep, Safe

PK = b"\xaa" * 48
R1 = b"\x01" * 32
R2 = b"\x02" * 32


def block(slot: int, root: bytes | None = R1) -> BlockCheck:
    return BlockCheck(PK, slot, root)


def att(source: int, target: int, root: bytes | None = R1) -> AttestationCheck:
    return AttestationCheck(PK, source, target, root)


def test_imported_zero_root_is_unknown() -> None:
    assert imported_root(ZERO_ROOT) is None
    assert imported_root(None) is None
    assert imported_root(R1) == R1


# --- lower bounds after an import -------------------------------------------------------------


def test_import_raises_bounds_to_its_minimum_even_above_local_history() -> None:
    local = LowerBounds(slot=160, source_epoch=10, target_epoch=11)
    raised = bounds_after_import(local, [BlockRecord(3200, None)], [AttestationRecord(100, 101, None)])
    assert raised == LowerBounds(slot=3200, source_epoch=100, target_epoch=101)


def test_import_bounds_take_each_fields_minimum_and_never_go_down() -> None:
    records = [AttestationRecord(30, 40, None), AttestationRecord(20, 50, R1)]
    assert bounds_after_import(LowerBounds(), [BlockRecord(9, R1), BlockRecord(7, None)], records) == LowerBounds(
        slot=7, source_epoch=20, target_epoch=40
    )
    high = LowerBounds(slot=100, source_epoch=60, target_epoch=61)
    assert bounds_after_import(high, [BlockRecord(5, None)], [AttestationRecord(1, 2, None)]) == high
    # a kind without imported records keeps its bound (None stays None)
    assert bounds_after_import(LowerBounds(slot=3), [], []) == LowerBounds(slot=3)
    assert bounds_after_import(LowerBounds(), [BlockRecord(4, None)], []) == LowerBounds(slot=4)


# --- blocks ---------------------------------------------------------------------------------


def test_block_without_history_is_valid() -> None:
    assert check_block(block(5), [], LowerBounds()) is Safe.VALID


def test_block_identical_known_root_is_same_data_even_at_lower_bound() -> None:
    assert check_block(block(5), [BlockRecord(5, R1)], LowerBounds(slot=5)) is Safe.SAME_DATA


def test_block_known_zero_root_recorded_by_signer_repeats() -> None:
    assert check_block(block(5, ZERO_ROOT), [BlockRecord(5, ZERO_ROOT)], LowerBounds(slot=5)) is Safe.SAME_DATA


@pytest.mark.parametrize(
    ("stored", "requested", "why"),
    [
        (R1, R2, "a different signing root"),
        (None, R1, "its signing root is unknown"),
        (None, None, "its signing root is unknown"),
        (R1, None, "a different signing root"),
    ],
    ids=["different-root", "unknown-stored", "both-unknown", "unknown-requested"],
)
def test_double_block(stored: bytes | None, requested: bytes | None, why: str) -> None:
    with pytest.raises(DoubleBlockProposal) as info:
        check_block(block(7, requested), [BlockRecord(7, stored)], LowerBounds(slot=7))
    assert why in info.value.message
    assert info.value.evidence["slot"] == 7
    assert info.value.offence == "double_block_proposal"


def test_block_conflicting_with_one_of_two_records_at_slot_is_refused() -> None:
    with pytest.raises(DoubleBlockProposal):
        check_block(block(7, R1), [BlockRecord(7, R1), BlockRecord(7, R2)], LowerBounds(slot=7))


@pytest.mark.parametrize("slot", [3, 10], ids=["below", "at"])
def test_block_at_or_below_lower_bound(slot: int) -> None:
    with pytest.raises(SlotNotAboveLowerBound) as info:
        check_block(block(slot), [], LowerBounds(slot=10))
    assert "lowest signed slot 10" in info.value.message
    assert info.value.evidence == {"kind": "lower_bound", "slot": 10}


def test_block_above_lower_bound_with_other_records_is_valid() -> None:
    assert check_block(block(11), [BlockRecord(10, R1), BlockRecord(12, R2)], LowerBounds(slot=10)) is Safe.VALID


# --- attestations ---------------------------------------------------------------------------


def test_attestation_without_history_is_valid() -> None:
    assert check_attestation(att(1, 2), [], LowerBounds()) is Safe.VALID


def test_genesis_attestation_source_equals_target_is_valid() -> None:
    assert check_attestation(att(0, 0), [], LowerBounds()) is Safe.VALID


def test_source_exceeds_target() -> None:
    with pytest.raises(SourceExceedsTarget) as info:
        check_attestation(att(5, 4), [], LowerBounds())
    assert "source epoch 5 exceeds target epoch 4" in info.value.message


def test_attestation_identical_repeat() -> None:
    history = [AttestationRecord(5, 6, R1)]
    assert check_attestation(att(5, 6), history, LowerBounds(5, 5, 6)) is Safe.SAME_DATA


def test_double_vote_different_source() -> None:
    with pytest.raises(DoubleVote) as info:
        check_attestation(att(4, 6), [AttestationRecord(5, 6, R1)], LowerBounds())
    assert info.value.evidence == {
        "kind": "attestation",
        "source_epoch": 5,
        "target_epoch": 6,
        "signing_root": "0x" + R1.hex(),
    }
    assert "target 6 was signed before with source 5" in info.value.message


@pytest.mark.parametrize(
    ("stored", "requested"),
    [(R1, R2), (None, R1), (None, ZERO_ROOT), (R1, None)],
    ids=["different-root", "unknown-stored", "unknown-stored-zero-request", "unknown-requested"],
)
def test_double_vote_same_epochs_root_not_known_equal(stored: bytes | None, requested: bytes | None) -> None:
    with pytest.raises(DoubleVote):
        check_attestation(att(5, 6, requested), [AttestationRecord(5, 6, stored)], LowerBounds())


def test_surrounding_vote_message_and_evidence() -> None:
    with pytest.raises(SurroundingVote) as info:
        check_attestation(att(3, 10), [AttestationRecord(5, 6, R1)], LowerBounds())
    assert info.value.message == ("surrounding vote: source 3 < 5 and target 10 > 6 of the attestation signed before")
    assert info.value.evidence["source_epoch"] == 5


def test_surrounded_vote() -> None:
    with pytest.raises(SurroundedVote) as info:
        check_attestation(att(6, 7), [AttestationRecord(5, 10, R1)], LowerBounds())
    assert "source 6 > 5 and target 7 < 10" in info.value.message


def test_source_below_lower_bound() -> None:
    with pytest.raises(SourceBelowLowerBound):
        check_attestation(att(4, 20), [], LowerBounds(source_epoch=5, target_epoch=10))


@pytest.mark.parametrize("target", [9, 10], ids=["below", "at"])
def test_target_not_above_lower_bound(target: int) -> None:
    with pytest.raises(TargetNotAboveLowerBound):
        check_attestation(att(5, target), [], LowerBounds(source_epoch=5, target_epoch=10))


def test_attestation_sharing_source_or_target_edges_is_not_surround() -> None:
    history = [AttestationRecord(5, 8, R1)]
    assert check_attestation(att(5, 9), history, LowerBounds()) is Safe.VALID
    assert check_attestation(att(6, 9), history, LowerBounds()) is Safe.VALID


def test_every_refusal_is_not_safe_to_sign_and_not_retryable() -> None:
    with pytest.raises(NotSafeToSign) as info:
        check_attestation(att(3, 10), [AttestationRecord(5, 6, None)], LowerBounds())
    assert info.value.retryable is False


# --- CometBFT -------------------------------------------------------------------------------


def consensus(height: int, round_: int, step: ConsensusStep, data: bytes, ts: bytes = b"t1") -> ConsensusCheck:
    return ConsensusCheck("chain-1", PK, height, round_, step, data + ts, data)


STATE = ConsensusState(
    height=10,
    round=2,
    step=2,
    sign_bytes=b"vote-at" + b"t1",
    sign_bytes_without_timestamp=b"vote-at",
    signature=b"sig",
)


def test_consensus_first_message_is_valid() -> None:
    assert check_consensus(consensus(1, 0, ConsensusStep.PROPOSAL, b"x"), None).safe is Safe.VALID


@pytest.mark.parametrize(
    ("height", "round_", "step", "error"),
    [
        (9, 5, ConsensusStep.PRECOMMIT, HeightRegression),
        (10, 1, ConsensusStep.PRECOMMIT, RoundRegression),
        (10, 2, ConsensusStep.PROPOSAL, StepRegression),
    ],
    ids=["height", "round", "step"],
)
def test_consensus_regressions(height: int, round_: int, step: ConsensusStep, error: type[NotSafeToSign]) -> None:
    with pytest.raises(error) as info:
        check_consensus(consensus(height, round_, step, b"other"), STATE)
    assert info.value.evidence["height"] == 10


@pytest.mark.parametrize(
    ("height", "round_", "step"),
    [(11, 0, ConsensusStep.PROPOSAL), (10, 3, ConsensusStep.PROPOSAL), (10, 2, ConsensusStep.PRECOMMIT)],
    ids=["height-up", "round-up", "step-up"],
)
def test_consensus_progress_is_valid(height: int, round_: int, step: ConsensusStep) -> None:
    assert check_consensus(consensus(height, round_, step, b"other"), STATE).safe is Safe.VALID


def test_consensus_identical_returns_prior() -> None:
    decision = check_consensus(consensus(10, 2, ConsensusStep.PREVOTE, b"vote-at"), STATE)
    assert decision.safe is Safe.SAME_DATA
    assert decision.prior is not None
    assert decision.prior.signature == b"sig"


def test_consensus_timestamp_only_difference_returns_earlier_sign_bytes() -> None:
    decision = check_consensus(consensus(10, 2, ConsensusStep.PREVOTE, b"vote-at", ts=b"t2"), STATE)
    assert decision.safe is Safe.SAME_DATA
    assert decision.prior is not None
    assert decision.prior.sign_bytes == b"vote-att1"


def test_consensus_conflicting_message() -> None:
    with pytest.raises(ConflictingConsensusMessage):
        check_consensus(consensus(10, 2, ConsensusStep.PREVOTE, b"other-block"), STATE)


def test_consensus_state_without_sign_bytes_refuses_same_hrs() -> None:
    state = ConsensusState(10, 2, 2, None, None, None)
    with pytest.raises(ConflictingConsensusMessage):
        check_consensus(consensus(10, 2, ConsensusStep.PREVOTE, b"vote-at"), state)
