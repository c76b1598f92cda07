"""CometBFT votes and proposals: what is accepted, and every refusal saying why."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from signer.cometbft import (
    GO_ZERO_TIME,
    NIL_BLOCK_ID,
    BlockID,
    PartSetHeader,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
)
from signer.errors import MalformedRequest
from tests import fakes
from tests.fakes import BLOCK, H32, P32, TS


def vote(**changes: Any) -> Vote:
    """The shared precommit, carrying a vote extension (the refusal cases take it away or misuse it)."""
    return fakes.vote(**{"extension": b"ext", **changes})


def proposal(**changes: Any) -> Proposal:
    """The shared proposal at round 2, so that a proof-of-lock round can be at, above or below it."""
    return fakes.proposal(**{"round": 2, **changes})


def test_a_precommit_for_a_block_with_an_extension_is_accepted() -> None:
    v = vote()
    assert v.type is SignedMsgType.PRECOMMIT
    assert v.extends_block


def test_a_nil_prevote_is_accepted() -> None:
    v = vote(type=SignedMsgType.PREVOTE, block_id=NIL_BLOCK_ID, extension=b"")
    assert v.block_id.is_nil
    assert not v.extends_block


def test_a_plain_int_type_becomes_the_enum() -> None:
    assert vote(type=1, extension=b"").type is SignedMsgType.PREVOTE
    assert proposal(type=32).type is SignedMsgType.PROPOSAL


def test_a_proposal_with_a_proof_of_lock_round_below_its_round_is_accepted() -> None:
    assert proposal(round=5, pol_round=4).pol_round == 4


def test_block_id_nil_and_complete() -> None:
    assert NIL_BLOCK_ID.is_nil and not NIL_BLOCK_ID.is_complete
    assert BLOCK.is_complete and not BLOCK.is_nil
    partial = BlockID(b"", PartSetHeader(1, P32))
    assert not partial.is_nil and not partial.is_complete
    assert not BlockID(H32, PartSetHeader()).is_complete


def test_timestamps_order_in_time() -> None:
    assert GO_ZERO_TIME < Timestamp(0) < Timestamp(0, 1) < Timestamp(1, 0) < TS


def test_messages_are_frozen() -> None:
    v = vote()
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.height = 11  # type: ignore[misc]


REFUSED: list[tuple[str, Callable[[], object], str]] = [
    ("vote-type-unknown", lambda: vote(type=0), "vote type must be PREVOTE .1. or PRECOMMIT .2., got 0"),
    ("vote-type-3", lambda: vote(type=3), "vote type must be"),
    ("vote-type-proposal", lambda: vote(type=SignedMsgType.PROPOSAL), "vote type must be"),
    ("vote-type-bool", lambda: vote(type=True), "vote type must be"),
    ("vote-height-zero", lambda: vote(height=0), r"vote height must be in \[1, "),
    ("vote-height-negative", lambda: vote(height=-1), "vote height must be in"),
    ("vote-height-over-int64", lambda: vote(height=2**63), "vote height must be in"),
    ("vote-height-not-int", lambda: vote(height="10"), "vote height must be an integer, got str"),
    ("vote-round-negative", lambda: vote(round=-1), r"vote round must be in \[0, 2147483647\], got -1"),
    ("vote-round-over-int32", lambda: vote(round=2**31), "vote round must be in"),
    ("vote-block-id-partial-no-header", lambda: vote(block_id=BlockID(H32)), "either nil .* or complete"),
    (
        "vote-block-id-partial-no-hash",
        lambda: vote(block_id=BlockID(b"", PartSetHeader(1, P32))),
        "either nil .* or complete",
    ),
    ("vote-block-id-not-a-block-id", lambda: vote(block_id=H32), "block_id must be a BlockID"),
    ("vote-timestamp-not-a-timestamp", lambda: vote(timestamp=1_700_000_000), "must be a Timestamp"),
    ("vote-address-short", lambda: vote(validator_address=bytes(19)), "must be 20 bytes, got 19 bytes"),
    ("vote-address-empty", lambda: vote(validator_address=b""), "must be 20 bytes, got 0 bytes"),
    ("vote-address-not-bytes", lambda: vote(validator_address="ab" * 10), "must be bytes, got str"),
    ("vote-index-negative", lambda: vote(validator_index=-1), "vote validator_index must be in"),
    (
        "vote-extension-on-prevote",
        lambda: vote(type=SignedMsgType.PREVOTE),
        "only allowed on a precommit for a block, not on a prevote",
    ),
    (
        "vote-extension-on-nil-precommit",
        lambda: vote(block_id=NIL_BLOCK_ID),
        "only allowed on a precommit for a block, not on a nil precommit",
    ),
    ("vote-extension-too-big", lambda: vote(extension=bytes(1024 * 1024 + 1)), "than the 1048576 allowed"),
    ("vote-extension-not-bytes", lambda: vote(extension="ext"), "vote extension must be bytes"),
    ("block-hash-31-bytes", lambda: BlockID(bytes(31)), "block_id hash must be empty or 32 bytes, got 31"),
    ("block-hash-33-bytes", lambda: BlockID(bytes(33)), "block_id hash must be empty or 32 bytes, got 33"),
    (
        "part-set-hash-wrong-length",
        lambda: PartSetHeader(1, bytes(20)),
        "part_set_header hash must be empty or 32 bytes, got 20",
    ),
    ("part-set-total-negative", lambda: PartSetHeader(-1, P32), "part_set_header total must be in"),
    ("part-set-total-over-uint32", lambda: PartSetHeader(2**32, P32), "part_set_header total must be in"),
    ("part-set-header-wrong-type", lambda: BlockID(H32, (1, P32)), "must be a PartSetHeader"),  # type: ignore[arg-type]
    ("timestamp-nanos-too-big", lambda: Timestamp(0, 1_000_000_000), "timestamp nanos must be in"),
    ("timestamp-nanos-negative", lambda: Timestamp(0, -1), "timestamp nanos must be in"),
    ("timestamp-before-year-1", lambda: Timestamp(-62_135_596_801), "timestamp seconds must be in"),
    ("timestamp-after-year-9999", lambda: Timestamp(253_402_300_800), "timestamp seconds must be in"),
    ("proposal-type-prevote", lambda: proposal(type=SignedMsgType.PREVOTE), "type must be PROPOSAL .32."),
    ("proposal-height-zero", lambda: proposal(height=0), "proposal height must be in"),
    ("proposal-round-negative", lambda: proposal(round=-1), "proposal round must be in"),
    ("proposal-pol-round-below-minus-one", lambda: proposal(pol_round=-2), "proposal pol_round must be in"),
    (
        "proposal-pol-round-equals-round",
        lambda: proposal(pol_round=2),
        "pol_round must be below round .or -1., got pol_round 2 at round 2",
    ),
    ("proposal-pol-round-above-round", lambda: proposal(pol_round=3), "pol_round must be below round"),
    ("proposal-nil-block", lambda: proposal(block_id=NIL_BLOCK_ID), "proposal block_id must be complete"),
    (
        "proposal-partial-block",
        lambda: proposal(block_id=BlockID(b"", PartSetHeader(1, P32))),
        "proposal block_id must be complete",
    ),
    ("proposal-timestamp-missing", lambda: proposal(timestamp=None), "timestamp must be a Timestamp"),
]


@pytest.mark.parametrize(("build", "reason"), [(b, r) for _, b, r in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_refused_with_a_reason(build: Callable[[], object], reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        build()
