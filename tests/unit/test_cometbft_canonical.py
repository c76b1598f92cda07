"""CometBFT sign bytes: proto3 omission rules, timestamp-only differences, reading sign bytes back,
vote extensions, and the protection check handed to the signing service."""

from __future__ import annotations

from typing import Any

import pytest

from signer.cometbft import (
    GO_ZERO_TIME,
    NIL_BLOCK_ID,
    UNIX_EPOCH,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
    clear_timestamp,
    consensus_check,
    encode_canonical_vote_extension,
    proposal_sign_bytes,
    proposal_sign_bytes_without_timestamp,
    sign_bytes_pair,
    step_of,
    timestamp_from_sign_bytes,
    vote_extension_sign_bytes,
    vote_sign_bytes,
    vote_sign_bytes_without_timestamp,
    with_timestamp,
)
from signer.cometbft.wire import decode_fields, undelimit, uvarint
from signer.errors import MalformedRequest
from signer.types import ConsensusStep
from tests.fakes import H32, OTHER_BLOCK, P32, TS, proposal, vote

CHAIN = "test-chain-1"
LATER = Timestamp(1_700_000_005, 0)
PUBLIC_KEY = b"\x03" + bytes(range(32))


def field_numbers(sign_bytes: bytes) -> list[int]:
    return [f.number for f in decode_fields(undelimit(sign_bytes))]


# --- encoding rules -------------------------------------------------------------------------


def test_round_zero_is_omitted_and_the_rest_is_in_field_order() -> None:
    assert field_numbers(vote_sign_bytes(CHAIN, vote(round=0))) == [1, 2, 4, 5, 6]
    assert field_numbers(vote_sign_bytes(CHAIN, vote(round=3))) == [1, 2, 3, 4, 5, 6]


def test_a_nil_vote_has_no_block_id_field() -> None:
    assert field_numbers(vote_sign_bytes(CHAIN, vote(block_id=NIL_BLOCK_ID))) == [1, 2, 5, 6]


def test_a_zero_timestamp_is_still_written_as_an_empty_message() -> None:
    sign_bytes = vote_sign_bytes(CHAIN, vote(timestamp=UNIX_EPOCH))
    timestamp = next(f for f in decode_fields(undelimit(sign_bytes)) if f.number == 5)
    assert timestamp.value == b""
    assert b"\x2a\x00\x32" in sign_bytes


def test_the_part_set_header_is_written_inside_a_block_id() -> None:
    sign_bytes = vote_sign_bytes(CHAIN, vote())
    block_id = next(f for f in decode_fields(undelimit(sign_bytes)) if f.number == 4)
    assert isinstance(block_id.value, bytes)
    inner = decode_fields(block_id.value)
    assert [(f.number, f.value) for f in inner] == [(1, H32), (2, b"\x08\x03\x12\x20" + P32)]


def test_pol_round_minus_one_takes_ten_bytes_and_zero_is_omitted() -> None:
    minus_one = proposal_sign_bytes(CHAIN, proposal(pol_round=-1))
    assert b"\x20" + b"\xff" * 9 + b"\x01" in minus_one
    assert field_numbers(minus_one) == [1, 2, 3, 4, 5, 6, 7]
    assert field_numbers(proposal_sign_bytes(CHAIN, proposal(pol_round=0))) == [1, 2, 3, 5, 6, 7]


def test_the_length_prefix_is_a_multi_byte_uvarint_for_long_messages() -> None:
    sign_bytes = proposal_sign_bytes("c" * 200, proposal())
    body = undelimit(sign_bytes)
    assert len(body) > 127
    assert sign_bytes[: len(sign_bytes) - len(body)] == uvarint(len(body))
    assert len(uvarint(len(body))) == 2


def test_a_proposal_and_a_vote_of_the_same_height_and_round_differ() -> None:
    assert vote_sign_bytes(CHAIN, vote(round=1)) != proposal_sign_bytes(CHAIN, proposal(round=1))


def test_the_chain_id_is_bound() -> None:
    assert vote_sign_bytes("chain-a", vote()) != vote_sign_bytes("chain-b", vote())


@pytest.mark.parametrize(
    ("chain_id", "reason"),
    [("\ud800", "not valid UTF-8"), (b"chain", "chain_id must be a string")],
    ids=["lone-surrogate", "bytes"],
)
def test_a_chain_id_that_cannot_be_encoded_is_refused(chain_id: Any, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        vote_sign_bytes(chain_id, vote())


# --- timestamp-only differences -------------------------------------------------------------


def test_votes_differing_only_in_timestamp_have_equal_bytes_without_timestamp() -> None:
    a, b = vote(timestamp=TS), vote(timestamp=LATER)
    assert vote_sign_bytes(CHAIN, a) != vote_sign_bytes(CHAIN, b)
    assert vote_sign_bytes_without_timestamp(CHAIN, a) == vote_sign_bytes_without_timestamp(CHAIN, b)


def test_proposals_differing_only_in_timestamp_have_equal_bytes_without_timestamp() -> None:
    a, b = proposal(timestamp=TS), proposal(timestamp=LATER)
    assert proposal_sign_bytes(CHAIN, a) != proposal_sign_bytes(CHAIN, b)
    assert proposal_sign_bytes_without_timestamp(CHAIN, a) == proposal_sign_bytes_without_timestamp(CHAIN, b)


@pytest.mark.parametrize(
    "other",
    [
        vote(block_id=OTHER_BLOCK),
        vote(block_id=NIL_BLOCK_ID),
        vote(round=1),
        vote(height=11),
        vote(type=SignedMsgType.PREVOTE),
    ],
    ids=["other-block", "nil", "other-round", "other-height", "other-type"],
)
def test_votes_differing_in_more_than_timestamp_differ_without_timestamp(other: Vote) -> None:
    assert vote_sign_bytes_without_timestamp(CHAIN, vote()) != vote_sign_bytes_without_timestamp(CHAIN, other)


def test_a_proposal_for_another_block_differs_without_timestamp() -> None:
    assert proposal_sign_bytes_without_timestamp(CHAIN, proposal()) != proposal_sign_bytes_without_timestamp(
        CHAIN, proposal(block_id=OTHER_BLOCK)
    )


def test_sign_bytes_pair_matches_the_single_functions() -> None:
    v, p = vote(), proposal()
    assert sign_bytes_pair(CHAIN, v) == (
        vote_sign_bytes(CHAIN, v),
        vote_sign_bytes_without_timestamp(CHAIN, v),
    )
    assert sign_bytes_pair(CHAIN, p) == (
        proposal_sign_bytes(CHAIN, p),
        proposal_sign_bytes_without_timestamp(CHAIN, p),
    )


@pytest.mark.parametrize(
    "timestamp",
    [TS, UNIX_EPOCH, GO_ZERO_TIME, Timestamp(253_402_300_799, 999_999_999), Timestamp(-1, 5)],
    ids=["recent", "epoch", "go-zero-time", "max", "before-epoch"],
)
def test_the_timestamp_reads_back_and_clears(timestamp: Timestamp) -> None:
    for msg in (vote(timestamp=timestamp), proposal(timestamp=timestamp)):
        sign_bytes, without = sign_bytes_pair(CHAIN, msg)
        assert timestamp_from_sign_bytes(sign_bytes) == timestamp
        assert clear_timestamp(sign_bytes) == without
        assert timestamp_from_sign_bytes(without) == UNIX_EPOCH


def test_with_timestamp_gives_back_the_earlier_signed_message() -> None:
    earlier = vote(timestamp=TS)
    request = vote(timestamp=LATER)
    prior_timestamp = timestamp_from_sign_bytes(vote_sign_bytes(CHAIN, earlier))
    answer = with_timestamp(request, prior_timestamp)
    assert answer == earlier
    assert request.timestamp == LATER
    assert isinstance(with_timestamp(proposal(), LATER), Proposal)
    with pytest.raises(MalformedRequest, match="must be a Timestamp"):
        with_timestamp(request, 5)  # type: ignore[arg-type]


def _delimited(body: bytes) -> bytes:
    return uvarint(len(body)) + body


MALFORMED = [
    ("empty", b"", "varint is truncated"),
    ("prefix-too-long", b"\x05\x08\x01", "length prefix says 5 bytes but 2 follow"),
    ("trailing-bytes", _delimited(b"\x08\x01") + b"\x00", "length prefix says 2 bytes but 3 follow"),
    ("truncated-varint", _delimited(b"\x08\x81"), "varint is truncated"),
    ("varint-over-10-bytes", _delimited(b"\x08" + b"\xff" * 10 + b"\x01"), "longer than 10 bytes"),
    ("truncated-sfixed64", _delimited(b"\x08\x01\x11\x01\x00"), "64-bit field 2 is truncated"),
    ("truncated-message", _delimited(b"\x08\x01\x2a\x05\x08"), "field 5 is truncated"),
    ("fixed32-wire-type", _delimited(b"\x08\x01\x15\x00\x00\x00\x00"), "wire type 5"),
    ("field-number-zero", _delimited(b"\x00\x01"), "field number 0"),
    ("no-type", _delimited(b"\x2a\x00"), "no message type"),
    ("unknown-type", _delimited(b"\x08\x03\x2a\x00"), "message type 3"),
    ("vote-without-timestamp", _delimited(b"\x08\x01\x32\x01A"), r"no timestamp \(field 5\)"),
    ("proposal-without-timestamp", _delimited(b"\x08\x20\x2a\x00"), r"no timestamp \(field 6\)"),
    ("timestamp-not-a-message", _delimited(b"\x08\x01\x28\x01"), r"no timestamp \(field 5\)"),
    ("repeated-field", _delimited(b"\x08\x01\x2a\x00\x2a\x00"), "repeat a field"),
    ("timestamp-unknown-field", _delimited(b"\x08\x01\x2a\x02\x18\x01"), "unexpected field 3"),
    ("timestamp-nanos-out-of-range", _delimited(b"\x08\x01\x2a\x06\x10\x80\x94\xeb\xdc\x03"), "nanos"),
]


@pytest.mark.parametrize(("sign_bytes", "reason"), [(b, r) for _, b, r in MALFORMED], ids=[i for i, _, _ in MALFORMED])
def test_malformed_sign_bytes_are_refused(sign_bytes: bytes, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        timestamp_from_sign_bytes(sign_bytes)
    with pytest.raises(MalformedRequest):
        clear_timestamp(sign_bytes)


# --- vote extensions ------------------------------------------------------------------------


def test_vote_extension_sign_bytes_by_hand() -> None:
    # CanonicalVoteExtension{extension=1 "ext", height=2 sfixed64 1, round=3 omitted, chain_id=4 "A"}
    v = vote(height=1, round=0, extension=b"ext")
    want = bytes.fromhex("110a03657874110100000000000000220141")
    assert vote_extension_sign_bytes("A", v) == want


def test_an_empty_extension_on_a_precommit_for_a_block_is_still_signed() -> None:
    sign_bytes = vote_extension_sign_bytes(CHAIN, vote(round=2, extension=b""))
    assert field_numbers(sign_bytes) == [2, 3, 4]


def test_the_vote_extension_binds_height_round_and_chain_but_not_the_block() -> None:
    base = vote_extension_sign_bytes(CHAIN, vote(extension=b"x"))
    assert base == vote_extension_sign_bytes(CHAIN, vote(extension=b"x", block_id=OTHER_BLOCK))
    assert base != vote_extension_sign_bytes(CHAIN, vote(extension=b"x", round=1))
    assert base != vote_extension_sign_bytes(CHAIN, vote(extension=b"x", height=11))
    assert base != vote_extension_sign_bytes("other", vote(extension=b"x"))
    assert base == encode_canonical_vote_extension(CHAIN, extension=b"x", height=10, round=0)


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (vote(type=SignedMsgType.PREVOTE), "not for a prevote"),
        (vote(block_id=NIL_BLOCK_ID), "not for a nil precommit"),
        (vote(type=SignedMsgType.PREVOTE, block_id=NIL_BLOCK_ID), "not for a nil prevote"),
    ],
    ids=["prevote", "nil-precommit", "nil-prevote"],
)
def test_vote_extension_sign_bytes_only_for_a_precommit_for_a_block(msg: Vote, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        vote_extension_sign_bytes(CHAIN, msg)


# --- step and protection check --------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "step"),
    [
        (proposal(), ConsensusStep.PROPOSAL),
        (vote(type=SignedMsgType.PREVOTE), ConsensusStep.PREVOTE),
        (vote(), ConsensusStep.PRECOMMIT),
    ],
    ids=["proposal", "prevote", "precommit"],
)
def test_step_of(msg: Vote | Proposal, step: ConsensusStep) -> None:
    assert step_of(msg) is step
    assert int(step_of(msg)) == {"proposal": 1, "prevote": 2, "precommit": 3}[step.name.lower()]


def test_step_of_something_else_is_refused() -> None:
    with pytest.raises(MalformedRequest, match="expected a Vote or a Proposal, got str"):
        step_of("vote")  # type: ignore[arg-type]


@pytest.mark.parametrize("msg", [vote(round=7), proposal(round=7, pol_round=3)], ids=["vote", "proposal"])
def test_consensus_check_carries_what_the_store_needs(msg: Vote | Proposal) -> None:
    check = consensus_check(CHAIN, PUBLIC_KEY, msg)
    assert (check.chain_id, check.public_key, check.height, check.round) == (CHAIN, PUBLIC_KEY, 10, 7)
    assert check.step is step_of(msg)
    assert (check.sign_bytes, check.sign_bytes_without_timestamp) == sign_bytes_pair(CHAIN, msg)


@pytest.mark.parametrize(
    ("chain_id", "public_key", "reason"),
    [
        ("", PUBLIC_KEY, "chain_id is empty"),
        ("c" * 51, PUBLIC_KEY, "longer than 50 bytes"),
        ("é" * 26, PUBLIC_KEY, "longer than 50 bytes"),
        ("chain\n1", PUBLIC_KEY, "non-printable"),
        (5, PUBLIC_KEY, "chain_id must be a string"),
        (CHAIN, b"", "public_key must be non-empty bytes"),
        (CHAIN, "03ab", "public_key must be non-empty bytes"),
    ],
    ids=["empty-chain", "long-chain", "long-utf8-chain", "newline-chain", "int-chain", "no-key", "str-key"],
)
def test_consensus_check_refuses(chain_id: Any, public_key: Any, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason):
        consensus_check(chain_id, public_key, vote())


def test_a_fifty_byte_chain_id_is_accepted() -> None:
    assert consensus_check("c" * 50, PUBLIC_KEY, vote()).chain_id == "c" * 50
