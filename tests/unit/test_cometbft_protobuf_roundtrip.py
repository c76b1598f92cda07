"""Property: our hand-written sign bytes are exactly what the protobuf runtime makes of them.

For random valid votes, proposals and vote extensions, the bytes (length prefix stripped) parse
with real protobuf classes into the same field values, and re-serialise (upb, field order, proto3
defaults omitted) to the very same bytes; building the message from the fields gives them too.

Two sources of classes, both always run when available:
- "descriptor": built here from a FileDescriptorProto written from the upstream
  proto/tendermint/types/canonical.proto, in a private descriptor pool, so this test does not
  depend on generated code;
- "generated": signer.api._proto.tendermint.types.canonical_pb2, when it is present.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.cometbft import (
    NIL_BLOCK_ID,
    BlockID,
    PartSetHeader,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
    clear_timestamp,
    encode_canonical_vote_extension,
    proposal_sign_bytes,
    sign_bytes_pair,
    timestamp_from_sign_bytes,
    vote_extension_sign_bytes,
    vote_sign_bytes,
)
from signer.cometbft.messages import MAX_INT32, MAX_INT64, MAX_TIMESTAMP_SECONDS, MIN_TIMESTAMP_SECONDS
from signer.cometbft.wire import undelimit

pytestmark = pytest.mark.slow  # hypothesis against the protobuf runtime: the full suite runs it, not make test-fast

FDP = descriptor_pb2.FieldDescriptorProto


@dataclass(frozen=True)
class Classes:
    vote: Any
    proposal: Any
    vote_extension: Any


def _field(name: str, number: int, kind: int, type_name: str = "") -> FDP:
    field = FDP(name=name, number=number, type=kind, label=FDP.LABEL_OPTIONAL)  # type: ignore[arg-type]
    if type_name:
        field.type_name = type_name
    return field


def _descriptor_classes() -> Classes:
    """CanonicalVote & co. from upstream canonical.proto, without protoc or generated code."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(timestamp_pb2.DESCRIPTOR.serialized_pb))
    f = descriptor_pb2.FileDescriptorProto(
        name="test/tendermint/types/canonical.proto",
        package="tendermint.types",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    enum = f.enum_type.add(name="SignedMsgType")
    for name, number in [("UNKNOWN", 0), ("PREVOTE", 1), ("PRECOMMIT", 2), ("PROPOSAL", 32)]:
        enum.value.add(name=f"SIGNED_MSG_TYPE_{name}", number=number)
    ts, msg_type = ".google.protobuf.Timestamp", ".tendermint.types.SignedMsgType"
    block_id, psh = ".tendermint.types.CanonicalBlockID", ".tendermint.types.CanonicalPartSetHeader"
    messages = {
        "CanonicalBlockID": [
            _field("hash", 1, FDP.TYPE_BYTES),
            _field("part_set_header", 2, FDP.TYPE_MESSAGE, psh),
        ],
        "CanonicalPartSetHeader": [_field("total", 1, FDP.TYPE_UINT32), _field("hash", 2, FDP.TYPE_BYTES)],
        "CanonicalProposal": [
            _field("type", 1, FDP.TYPE_ENUM, msg_type),
            _field("height", 2, FDP.TYPE_SFIXED64),
            _field("round", 3, FDP.TYPE_SFIXED64),
            _field("pol_round", 4, FDP.TYPE_INT64),
            _field("block_id", 5, FDP.TYPE_MESSAGE, block_id),
            _field("timestamp", 6, FDP.TYPE_MESSAGE, ts),
            _field("chain_id", 7, FDP.TYPE_STRING),
        ],
        "CanonicalVote": [
            _field("type", 1, FDP.TYPE_ENUM, msg_type),
            _field("height", 2, FDP.TYPE_SFIXED64),
            _field("round", 3, FDP.TYPE_SFIXED64),
            _field("block_id", 4, FDP.TYPE_MESSAGE, block_id),
            _field("timestamp", 5, FDP.TYPE_MESSAGE, ts),
            _field("chain_id", 6, FDP.TYPE_STRING),
        ],
        "CanonicalVoteExtension": [
            _field("extension", 1, FDP.TYPE_BYTES),
            _field("height", 2, FDP.TYPE_SFIXED64),
            _field("round", 3, FDP.TYPE_SFIXED64),
            _field("chain_id", 4, FDP.TYPE_STRING),
        ],
    }
    for name, fields in messages.items():
        f.message_type.add(name=name, field=fields)
    pool.Add(f)

    def cls(name: str) -> Any:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tendermint.types.{name}"))

    return Classes(cls("CanonicalVote"), cls("CanonicalProposal"), cls("CanonicalVoteExtension"))


def _generated_classes() -> Classes | None:
    try:
        module = importlib.import_module("signer.api._proto.tendermint.types.canonical_pb2")
    except ImportError:
        return None
    return Classes(module.CanonicalVote, module.CanonicalProposal, module.CanonicalVoteExtension)


SOURCES: dict[str, Classes] = {"descriptor": _descriptor_classes()}
_generated = _generated_classes()
if _generated is not None:
    SOURCES["generated"] = _generated

# --- strategies -----------------------------------------------------------------------------

hashes = st.binary(min_size=32, max_size=32)
complete_block_ids = st.builds(BlockID, hashes, st.builds(PartSetHeader, st.integers(1, 2**32 - 1), hashes))
timestamps = st.builds(
    Timestamp,
    st.one_of(st.just(0), st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS)),
    st.one_of(st.just(0), st.integers(0, 999_999_999)),
)
heights = st.one_of(st.integers(1, 2**20), st.integers(1, MAX_INT64))
rounds = st.one_of(st.just(0), st.integers(0, 5), st.integers(0, MAX_INT32))
chain_ids = st.text(max_size=60)  # any UTF-8 string encodes; consensus_check is stricter


@st.composite
def votes(draw: st.DrawFn) -> Vote:
    msg_type = draw(st.sampled_from([SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT]))
    block_id = draw(st.one_of(st.just(NIL_BLOCK_ID), complete_block_ids))
    extends = msg_type is SignedMsgType.PRECOMMIT and not block_id.is_nil
    return Vote(
        msg_type,
        draw(heights),
        draw(rounds),
        block_id,
        draw(timestamps),
        draw(st.binary(min_size=20, max_size=20)),
        draw(st.integers(0, MAX_INT32)),
        draw(st.binary(max_size=64)) if extends else b"",
    )


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    round_ = draw(rounds)
    pol_round = draw(st.integers(-1, round_ - 1)) if round_ > 0 else -1
    return Proposal(
        SignedMsgType.PROPOSAL, draw(heights), round_, pol_round, draw(complete_block_ids), draw(timestamps)
    )


def _fill_block_id(target: Any, block_id: BlockID) -> None:
    target.hash = block_id.hash
    target.part_set_header.total = block_id.part_set_header.total
    target.part_set_header.hash = block_id.part_set_header.hash
    target.part_set_header.SetInParent()


def _fill_timestamp(target: Any, timestamp: Timestamp) -> None:
    target.SetInParent()  # non-nullable: present even when zero
    target.seconds = timestamp.seconds
    target.nanos = timestamp.nanos


PROPERTY = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize("source", sorted(SOURCES))
@PROPERTY
@given(vote=votes(), chain_id=chain_ids)
def test_vote_sign_bytes_round_trip_through_protobuf(source: str, vote: Vote, chain_id: str) -> None:
    classes = SOURCES[source]
    body = undelimit(vote_sign_bytes(chain_id, vote))
    parsed = classes.vote.FromString(body)
    assert (parsed.type, parsed.height, parsed.round, parsed.chain_id) == (
        vote.type,
        vote.height,
        vote.round,
        chain_id,
    )
    assert parsed.HasField("block_id") == (not vote.block_id.is_nil)
    if not vote.block_id.is_nil:
        psh = parsed.block_id.part_set_header
        assert (parsed.block_id.hash, psh.total, psh.hash) == (
            vote.block_id.hash,
            vote.block_id.part_set_header.total,
            vote.block_id.part_set_header.hash,
        )
    assert parsed.HasField("timestamp")
    assert Timestamp(parsed.timestamp.seconds, parsed.timestamp.nanos) == vote.timestamp
    assert parsed.SerializeToString(deterministic=True) == body

    built = classes.vote(type=vote.type, height=vote.height, round=vote.round, chain_id=chain_id)
    if not vote.block_id.is_nil:
        _fill_block_id(built.block_id, vote.block_id)
    _fill_timestamp(built.timestamp, vote.timestamp)
    assert built.SerializeToString(deterministic=True) == body


@pytest.mark.parametrize("source", sorted(SOURCES))
@PROPERTY
@given(proposal=proposals(), chain_id=chain_ids)
def test_proposal_sign_bytes_round_trip_through_protobuf(source: str, proposal: Proposal, chain_id: str) -> None:
    classes = SOURCES[source]
    body = undelimit(proposal_sign_bytes(chain_id, proposal))
    parsed = classes.proposal.FromString(body)
    assert (parsed.type, parsed.height, parsed.round, parsed.pol_round, parsed.chain_id) == (
        32,
        proposal.height,
        proposal.round,
        proposal.pol_round,
        chain_id,
    )
    psh = parsed.block_id.part_set_header
    assert (parsed.block_id.hash, psh.total, psh.hash) == (
        proposal.block_id.hash,
        proposal.block_id.part_set_header.total,
        proposal.block_id.part_set_header.hash,
    )
    assert Timestamp(parsed.timestamp.seconds, parsed.timestamp.nanos) == proposal.timestamp
    assert parsed.SerializeToString(deterministic=True) == body

    built = classes.proposal(
        type=32, height=proposal.height, round=proposal.round, pol_round=proposal.pol_round, chain_id=chain_id
    )
    _fill_block_id(built.block_id, proposal.block_id)
    _fill_timestamp(built.timestamp, proposal.timestamp)
    assert built.SerializeToString(deterministic=True) == body


@pytest.mark.parametrize("source", sorted(SOURCES))
@PROPERTY
@given(
    extension=st.binary(max_size=200),
    height=st.one_of(st.just(0), st.integers(-(2**63), MAX_INT64)),
    round_=st.one_of(st.just(0), st.integers(-(2**63), MAX_INT64)),
    chain_id=chain_ids,
)
def test_vote_extension_sign_bytes_round_trip_through_protobuf(
    source: str, extension: bytes, height: int, round_: int, chain_id: str
) -> None:
    classes = SOURCES[source]
    body = undelimit(encode_canonical_vote_extension(chain_id, extension=extension, height=height, round=round_))
    parsed = classes.vote_extension.FromString(body)
    assert (parsed.extension, parsed.height, parsed.round, parsed.chain_id) == (
        extension,
        height,
        round_,
        chain_id,
    )
    assert parsed.SerializeToString(deterministic=True) == body
    built = classes.vote_extension(extension=extension, height=height, round=round_, chain_id=chain_id)
    assert built.SerializeToString(deterministic=True) == body


@PROPERTY
@given(vote=votes(), chain_id=chain_ids)
def test_a_precommit_extension_round_trips(vote: Vote, chain_id: str) -> None:
    if not vote.extends_block:
        return
    body = undelimit(vote_extension_sign_bytes(chain_id, vote))
    parsed = SOURCES["descriptor"].vote_extension.FromString(body)
    assert (parsed.extension, parsed.height, parsed.round) == (vote.extension, vote.height, vote.round)


@PROPERTY
@given(msg=st.one_of(votes(), proposals()), chain_id=chain_ids, other=timestamps)
def test_timestamp_reads_back_and_clearing_it_erases_only_the_time(
    msg: Vote | Proposal, chain_id: str, other: Timestamp
) -> None:
    sign_bytes, without = sign_bytes_pair(chain_id, msg)
    assert timestamp_from_sign_bytes(sign_bytes) == msg.timestamp
    assert clear_timestamp(sign_bytes) == without
    moved = sign_bytes_pair(chain_id, type(msg)(**{**_fields(msg), "timestamp": other}))
    assert moved[1] == without
    assert (moved[0] == sign_bytes) == (other == msg.timestamp)


def _fields(msg: Vote | Proposal) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in msg.__dataclass_fields__}
