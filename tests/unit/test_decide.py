"""decide_batch: one batch's verdicts and rows from what a store fetched. Pure: the stores' behaviour on
real databases is tests/unit/test_store_contract.py; this checks the rows a decision asks for, and
that the stores leave every decision to it."""

from __future__ import annotations

import ast

import pytest

from signer.errors import DoubleBlockProposal, InternalError, SurroundingVote
from signer.protection.decide import BatchDecision, BatchHistory, ConsensusRow, decide_batch
from signer.protection.rules import AttestationRecord, BlockRecord, ConsensusState, LowerBounds
from signer.protection.store import ordered_batch
from signer.types import AttestationCheck, BlockCheck, ConsensusCheck, ConsensusStep, ProtectionCheck, Safe
from tests.support import REPO_ROOT

PK_A = b"\xa1" * 48
PK_B = b"\xb2" * 48
R1 = b"\x01" * 32
R2 = b"\x02" * 32


def decide(checks: list[ProtectionCheck], history: BatchHistory | None = None) -> BatchDecision:
    return decide_batch(checks, ordered_batch(checks), history or BatchHistory())


def test_a_new_validators_first_block_and_attestation_make_one_row_and_set_every_bound() -> None:
    checks: list[ProtectionCheck] = [BlockCheck(PK_A, 64, R1), AttestationCheck(PK_A, 1, 2, R1)]
    decision = decide(checks)
    assert [v.safe for v in decision.verdicts] == [Safe.VALID, Safe.VALID]
    writes = decision.writes
    assert writes.new_validators == (PK_A,)
    assert writes.blocks == (checks[0],) and writes.attestations == (checks[1],)
    assert writes.first_bounds == {PK_A: LowerBounds(slot=64, source_epoch=1, target_epoch=2)}
    assert writes.consensus == ()


def test_a_known_validator_with_bounds_gets_records_only() -> None:
    checks: list[ProtectionCheck] = [BlockCheck(PK_A, 65, R1), AttestationCheck(PK_B, 3, 4, R1)]
    history = BatchHistory(bounds={0: LowerBounds(slot=64), 1: LowerBounds(source_epoch=1, target_epoch=2)})
    writes = decide(checks, history).writes
    assert writes.new_validators == ()
    assert writes.first_bounds == {}
    assert writes.blocks == (checks[0],) and writes.attestations == (checks[1],)


def test_a_known_validators_first_record_of_a_kind_sets_only_that_kinds_bounds() -> None:
    checks: list[ProtectionCheck] = [AttestationCheck(PK_A, 3, 4, R1)]
    writes = decide(checks, BatchHistory(bounds={0: LowerBounds(slot=64)})).writes
    assert writes.new_validators == ()
    assert writes.first_bounds == {PK_A: LowerBounds(source_epoch=3, target_epoch=4)}


def test_refusals_and_repeats_write_nothing_and_keep_their_place() -> None:
    checks: list[ProtectionCheck] = [
        BlockCheck(PK_B, 10, R2),  # another block at a signed slot
        AttestationCheck(PK_A, 1, 2, R1),  # a repeat of known data
        AttestationCheck(PK_B, 0, 9, R1),  # surrounds (2, 3)
    ]
    history = BatchHistory(
        bounds={0: LowerBounds(slot=10), 1: LowerBounds(source_epoch=1, target_epoch=2), 2: LowerBounds(0, 0, 1)},
        blocks={0: [BlockRecord(10, R1)]},
        attestations={1: [AttestationRecord(1, 2, R1)], 2: [AttestationRecord(2, 3, R1)]},
    )
    decision = decide(checks, history)
    assert isinstance(decision.verdicts[0].refusal, DoubleBlockProposal)
    assert decision.verdicts[1].safe is Safe.SAME_DATA
    assert isinstance(decision.verdicts[2].refusal, SurroundingVote)
    writes = decision.writes
    assert (writes.new_validators, writes.blocks, writes.attestations, writes.first_bounds) == ((), (), (), {})


def test_consensus_items_record_their_state_and_a_repeat_returns_the_prior_signature() -> None:
    new = ConsensusCheck("chain-A", PK_A, 5, 0, ConsensusStep.PREVOTE, b"vote", b"vote")
    repeat = ConsensusCheck("chain-A", PK_B, 5, 0, ConsensusStep.PREVOTE, b"same", b"same")
    stored = ConsensusState(5, 0, int(ConsensusStep.PREVOTE), b"same", b"same", b"sig")
    decision = decide([new, repeat], BatchHistory(consensus={1: stored}))
    assert decision.verdicts[0].safe is Safe.VALID
    prior = decision.verdicts[1].prior
    assert decision.verdicts[1].safe is Safe.SAME_DATA and prior is not None and prior.signature == b"sig"
    assert decision.writes.consensus == (
        ConsensusRow("chain-A", PK_A, ConsensusState(5, 0, int(ConsensusStep.PREVOTE), b"vote", b"vote", None)),
    )
    assert decision.writes.new_validators == ()


def test_rows_come_in_sorted_key_order() -> None:
    checks: list[ProtectionCheck] = [BlockCheck(PK_B, 1, R1), BlockCheck(PK_A, 1, R1)]
    writes = decide(checks).writes
    assert [c.public_key for c in writes.blocks] == [PK_A, PK_B]
    assert writes.new_validators == (PK_A, PK_B)


def test_an_order_that_leaves_an_item_out_is_refused_not_answered_short() -> None:
    checks: list[ProtectionCheck] = [BlockCheck(PK_A, 1, R1), BlockCheck(PK_B, 1, R1)]
    with pytest.raises(InternalError, match="does not name every item"):
        decide_batch(checks, [1], BatchHistory())
    with pytest.raises(InternalError, match="does not name every item"):
        decide_batch(checks, [1, 1], BatchHistory())
    assert len(decide_batch(checks, [1, 0], BatchHistory()).verdicts) == 2


def test_the_stores_fetch_and_write_and_leave_every_decision_to_decide() -> None:
    deciding = {"check_block", "check_attestation", "check_consensus", "decide_batch"}
    for name in ("sqlite.py", "postgres.py"):
        tree = ast.parse((REPO_ROOT / "signer" / "protection" / name).read_text(encoding="utf-8"))
        called = {
            node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name)
        }
        assert called & deciding == {"decide_batch"}, name
