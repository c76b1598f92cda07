"""Canonical sign bytes for CometBFT votes, proposals and vote extensions.

What a CometBFT validator signs is ``protoio.MarshalDelimited`` (uvarint length, then the message)
of a canonical protobuf message (cometbft ``proto/tendermint/types/canonical.proto``,
``types/canonical.go``, ``types/vote.go`` VoteSignBytes, ``types/proposal.go`` ProposalSignBytes)::

    CanonicalVote          { SignedMsgType type = 1; sfixed64 height = 2; sfixed64 round = 3;
                             CanonicalBlockID block_id = 4; Timestamp timestamp = 5; string chain_id = 6 }
    CanonicalProposal      { SignedMsgType type = 1; sfixed64 height = 2; sfixed64 round = 3;
                             int64 pol_round = 4; CanonicalBlockID block_id = 5; Timestamp timestamp = 6;
                             string chain_id = 7 }
    CanonicalVoteExtension { bytes extension = 1; sfixed64 height = 2; sfixed64 round = 3;
                             string chain_id = 4 }
    CanonicalBlockID       { bytes hash = 1; CanonicalPartSetHeader part_set_header = 2 (non-nullable) }
    CanonicalPartSetHeader { uint32 total = 1; bytes hash = 2 }

Proto3 rules as gogoproto applies them: every scalar equal to its default (0, empty) is omitted,
sfixed64 included, so round 0 writes nothing. ``block_id`` is a pointer: it is omitted for a nil
block ID (CanonicalizeBlockID returns nil). ``part_set_header`` and ``timestamp`` are non-nullable:
always written, a zero value as an empty embedded message (``12 00``, ``2a 00``).

The ``*_without_timestamp`` variants encode the same message with its timestamp set to the Unix
epoch; two messages that differ only in their timestamp have equal such bytes, which is how the
signer recognises a re-request it may answer with the earlier signature.
"""

from __future__ import annotations

from signer.cometbft.messages import (
    BlockID,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
)
from signer.cometbft.wire import (
    LEN,
    VARINT,
    Field,
    bytes_field,
    decode_fields,
    delimited,
    message_field,
    sfixed64_field,
    tag,
    to_int64,
    undelimit,
    varint_field,
)
from signer.errors import MalformedRequest

# Field keys, (field_number << 3) | wire_type, computed once.
_K1_VARINT = tag(1, VARINT)
_K1_LEN = tag(1, LEN)
_K2_VARINT = tag(2, VARINT)
_K2_I64 = tag(2, 1)
_K2_LEN = tag(2, LEN)
_K3_I64 = tag(3, 1)
_K4_VARINT = tag(4, VARINT)
_K4_LEN = tag(4, LEN)
_K5_LEN = tag(5, LEN)
_K6_LEN = tag(6, LEN)
_K7_LEN = tag(7, LEN)

VOTE_TIMESTAMP_FIELD = 5
PROPOSAL_TIMESTAMP_FIELD = 6

_EMPTY_TIMESTAMP = b""


def _chain_id(chain_id: str) -> bytes:
    if not isinstance(chain_id, str):
        raise MalformedRequest(f"chain_id must be a string, got {type(chain_id).__name__}")
    try:
        return chain_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedRequest("chain_id is not valid UTF-8") from exc


def _timestamp_body(timestamp: Timestamp) -> bytes:
    return varint_field(_K1_VARINT, timestamp.seconds) + varint_field(_K2_VARINT, timestamp.nanos)


def _block_id_body(block_id: BlockID) -> bytes:
    psh = block_id.part_set_header
    psh_body = varint_field(_K1_VARINT, psh.total) + bytes_field(_K2_LEN, psh.hash)
    return bytes_field(_K1_LEN, block_id.hash) + message_field(_K2_LEN, psh_body)


def _block_id_field(key: bytes, block_id: BlockID | None) -> bytes:
    if block_id is None or block_id.is_nil:
        return b""
    return message_field(key, _block_id_body(block_id))


# --- the unvalidated encoders ---------------------------------------------------------------


def encode_canonical_vote(
    chain_id: str,
    *,
    msg_type: int,
    height: int,
    round: int,
    block_id: BlockID | None,
    timestamp: Timestamp,
) -> bytes:
    """Length-delimited CanonicalVote of exactly these values, whatever they are.

    No validation: this is the encoding alone, for conformance checks against upstream vectors
    (some of which encode votes CometBFT itself would refuse). Sign only what
    ``vote_sign_bytes`` returns for a validated ``Vote``.
    """
    return delimited(
        varint_field(_K1_VARINT, msg_type)
        + sfixed64_field(_K2_I64, height)
        + sfixed64_field(_K3_I64, round)
        + _block_id_field(_K4_LEN, block_id)
        + message_field(_K5_LEN, _timestamp_body(timestamp))
        + bytes_field(_K6_LEN, _chain_id(chain_id))
    )


def encode_canonical_proposal(
    chain_id: str,
    *,
    msg_type: int,
    height: int,
    round: int,
    pol_round: int,
    block_id: BlockID | None,
    timestamp: Timestamp,
) -> bytes:
    """Length-delimited CanonicalProposal of exactly these values (unvalidated; see above)."""
    return delimited(
        _proposal_head(msg_type, height, round, pol_round, block_id)
        + message_field(_K6_LEN, _timestamp_body(timestamp))
        + bytes_field(_K7_LEN, _chain_id(chain_id))
    )


def encode_canonical_vote_extension(chain_id: str, *, extension: bytes, height: int, round: int) -> bytes:
    """Length-delimited CanonicalVoteExtension of exactly these values (unvalidated)."""
    return delimited(
        bytes_field(_K1_LEN, extension)
        + sfixed64_field(_K2_I64, height)
        + sfixed64_field(_K3_I64, round)
        + bytes_field(_K4_LEN, _chain_id(chain_id))
    )


def _vote_head(vote: Vote) -> bytes:
    return (
        varint_field(_K1_VARINT, vote.type)
        + sfixed64_field(_K2_I64, vote.height)
        + sfixed64_field(_K3_I64, vote.round)
        + _block_id_field(_K4_LEN, vote.block_id)
    )


def _proposal_head(msg_type: int, height: int, round: int, pol_round: int, block_id: BlockID | None) -> bytes:
    return (
        varint_field(_K1_VARINT, msg_type)
        + sfixed64_field(_K2_I64, height)
        + sfixed64_field(_K3_I64, round)
        + varint_field(_K4_VARINT, pol_round)
        + _block_id_field(_K5_LEN, block_id)
    )


def _proposal_head_of(proposal: Proposal) -> bytes:
    return _proposal_head(proposal.type, proposal.height, proposal.round, proposal.pol_round, proposal.block_id)


# --- sign bytes of validated messages -------------------------------------------------------


def vote_sign_bytes(chain_id: str, vote: Vote) -> bytes:
    """What a validator signs for ``vote`` on ``chain_id`` (VoteSignBytes)."""
    tail = bytes_field(_K6_LEN, _chain_id(chain_id))
    return delimited(_vote_head(vote) + message_field(_K5_LEN, _timestamp_body(vote.timestamp)) + tail)


def vote_sign_bytes_without_timestamp(chain_id: str, vote: Vote) -> bytes:
    """``vote_sign_bytes`` with the timestamp cleared: equal for votes differing only in time."""
    tail = bytes_field(_K6_LEN, _chain_id(chain_id))
    return delimited(_vote_head(vote) + message_field(_K5_LEN, _EMPTY_TIMESTAMP) + tail)


def proposal_sign_bytes(chain_id: str, proposal: Proposal) -> bytes:
    """What a validator signs for ``proposal`` on ``chain_id`` (ProposalSignBytes)."""
    tail = bytes_field(_K7_LEN, _chain_id(chain_id))
    return delimited(_proposal_head_of(proposal) + message_field(_K6_LEN, _timestamp_body(proposal.timestamp)) + tail)


def proposal_sign_bytes_without_timestamp(chain_id: str, proposal: Proposal) -> bytes:
    """``proposal_sign_bytes`` with the timestamp cleared."""
    tail = bytes_field(_K7_LEN, _chain_id(chain_id))
    return delimited(_proposal_head_of(proposal) + message_field(_K6_LEN, _EMPTY_TIMESTAMP) + tail)


def vote_extension_sign_bytes(chain_id: str, vote: Vote) -> bytes:
    """What a validator signs for the extension of a precommit for a block (VoteExtensionSignBytes).

    CometBFT signs an extension (even an empty one) only for a precommit for a block; asking for
    any other vote is refused.
    """
    if not vote.extends_block:
        raise MalformedRequest(
            "vote extensions are signed only for a precommit for a block, not for a "
            f"{'nil ' if vote.block_id.is_nil else ''}{vote.type.name.lower()}"
        )
    return encode_canonical_vote_extension(chain_id, extension=vote.extension, height=vote.height, round=vote.round)


def sign_bytes_pair(chain_id: str, msg: Vote | Proposal) -> tuple[bytes, bytes]:
    """(sign bytes, sign bytes without timestamp) of a vote or proposal, sharing the work."""
    if isinstance(msg, Vote):
        head = _vote_head(msg)
        ts_key, tail = _K5_LEN, bytes_field(_K6_LEN, _chain_id(chain_id))
    elif isinstance(msg, Proposal):
        head = _proposal_head_of(msg)
        ts_key, tail = _K6_LEN, bytes_field(_K7_LEN, _chain_id(chain_id))
    else:
        raise MalformedRequest(f"expected a Vote or a Proposal, got {type(msg).__name__}")
    return (
        delimited(head + message_field(ts_key, _timestamp_body(msg.timestamp)) + tail),
        delimited(head + message_field(ts_key, _EMPTY_TIMESTAMP) + tail),
    )


# --- reading sign bytes back ----------------------------------------------------------------


def _timestamp_field(body: bytes) -> Field:
    """The timestamp field of a canonical vote or proposal body, found through its type field."""
    fields = decode_fields(body)
    numbers = [f.number for f in fields]
    if len(set(numbers)) != len(numbers):
        raise MalformedRequest("sign bytes repeat a field: not a canonical vote or proposal")
    by_number = {f.number: f for f in fields}
    type_field = by_number.get(1)
    if type_field is None or type_field.wire_type != VARINT:
        raise MalformedRequest("sign bytes carry no message type: not a canonical vote or proposal")
    if type_field.value in (SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT):
        number = VOTE_TIMESTAMP_FIELD
    elif type_field.value == SignedMsgType.PROPOSAL:
        number = PROPOSAL_TIMESTAMP_FIELD
    else:
        raise MalformedRequest(f"sign bytes carry message type {type_field.value!r}, not a vote or proposal")
    ts_field = by_number.get(number)
    if ts_field is None or ts_field.wire_type != LEN:
        raise MalformedRequest(f"sign bytes have no timestamp (field {number})")
    return ts_field


def _parse_timestamp(ts_field: Field) -> Timestamp:
    assert isinstance(ts_field.value, bytes)
    seconds = 0
    nanos = 0
    for field in decode_fields(ts_field.value):
        if field.wire_type != VARINT or field.number not in (1, 2):
            raise MalformedRequest(f"timestamp has an unexpected field {field.number}")
        assert isinstance(field.value, int)
        if field.number == 1:
            seconds = to_int64(field.value)
        else:
            nanos = to_int64(field.value)
    return Timestamp(seconds, nanos)


def timestamp_from_sign_bytes(sign_bytes: bytes) -> Timestamp:
    """The timestamp inside canonical vote or proposal sign bytes (ours, or CometBFT's)."""
    return _parse_timestamp(_timestamp_field(undelimit(sign_bytes)))


def clear_timestamp(sign_bytes: bytes) -> bytes:
    """The ``*_without_timestamp`` form of existing sign bytes (e.g. imported from a node's state).

    For canonical input this equals what ``sign_bytes_pair`` returns second; non-canonical input
    simply never compares equal to anything the signer produces.
    """
    body = undelimit(sign_bytes)
    ts_field = _timestamp_field(body)
    _parse_timestamp(ts_field)  # refuse a malformed timestamp here too
    cleared = message_field(tag(ts_field.number, LEN), _EMPTY_TIMESTAMP)
    return delimited(body[: ts_field.start] + cleared + body[ts_field.end :])


__all__ = [
    "clear_timestamp",
    "encode_canonical_proposal",
    "encode_canonical_vote",
    "encode_canonical_vote_extension",
    "proposal_sign_bytes",
    "proposal_sign_bytes_without_timestamp",
    "sign_bytes_pair",
    "timestamp_from_sign_bytes",
    "vote_extension_sign_bytes",
    "vote_sign_bytes",
    "vote_sign_bytes_without_timestamp",
]
