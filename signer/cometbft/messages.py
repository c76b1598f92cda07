"""CometBFT consensus messages as the signer sees them: votes and proposals.

Frozen, slotted dataclasses that validate on construction, so a ``Vote`` or ``Proposal`` that
exists is one CometBFT's own ``ValidateBasic`` would accept (cometbft ``types/vote.go``,
``types/proposal.go``, ``types/block.go``), minus the signature fields the signer fills in.
Every refusal is a ``MalformedRequest`` that says which field is wrong and why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from signer.errors import MalformedRequest

HASH_SIZE = 32
"""tmhash.Size: block hashes and part-set hashes are SHA-256."""
ADDRESS_SIZE = 20
"""crypto.AddressSize: a validator address."""
MAX_VOTE_EXTENSION_SIZE = 1024 * 1024
"""types.MaxVoteExtensionSize."""

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1
MAX_UINT32 = 2**32 - 1

MIN_TIMESTAMP_SECONDS = -62_135_596_800
"""0001-01-01T00:00:00Z, the lowest google.protobuf.Timestamp (and Go's zero time.Time)."""
MAX_TIMESTAMP_SECONDS = 253_402_300_799
"""9999-12-31T23:59:59Z, the highest google.protobuf.Timestamp."""


class SignedMsgType(enum.IntEnum):
    """tendermint.types.SignedMsgType (types.proto); UNKNOWN (0) is never signed."""

    PREVOTE = 1
    PRECOMMIT = 2
    PROPOSAL = 32


def _int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedRequest(f"{name} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise MalformedRequest(f"{name} must be in [{low}, {high}], got {value}")
    return value


def _bytes(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedRequest(f"{name} must be bytes, got {type(value).__name__}")
    return value


def _hash(name: str, value: object) -> bytes:
    data = _bytes(name, value)
    if len(data) not in (0, HASH_SIZE):
        raise MalformedRequest(f"{name} must be empty or {HASH_SIZE} bytes, got {len(data)} bytes")
    return data


@dataclass(frozen=True, slots=True, order=True)
class Timestamp:
    """google.protobuf.Timestamp: UTC seconds since the Unix epoch and nanoseconds. Orders in time."""

    seconds: int
    nanos: int = 0

    def __post_init__(self) -> None:
        _int("timestamp seconds", self.seconds, MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS)
        _int("timestamp nanos", self.nanos, 0, 999_999_999)


UNIX_EPOCH = Timestamp(0, 0)
"""The zero google.protobuf.Timestamp; still encoded (as an empty message) in sign bytes."""
GO_ZERO_TIME = Timestamp(MIN_TIMESTAMP_SECONDS, 0)
"""Go's zero ``time.Time``: what an unset timestamp becomes in CometBFT."""


@dataclass(frozen=True, slots=True)
class PartSetHeader:
    total: int = 0
    hash: bytes = b""

    def __post_init__(self) -> None:
        _int("part_set_header total", self.total, 0, MAX_UINT32)
        _hash("part_set_header hash", self.hash)

    @property
    def is_zero(self) -> bool:
        return self.total == 0 and not self.hash


@dataclass(frozen=True, slots=True)
class BlockID:
    """A block hash and its part-set header. Empty hash and zero header is the nil block ID.

    Only field lengths are checked here (as BlockID.ValidateBasic does): a vote or proposal decides
    whether a partial block ID is acceptable (it never is).
    """

    hash: bytes = b""
    part_set_header: PartSetHeader = PartSetHeader()

    def __post_init__(self) -> None:
        _hash("block_id hash", self.hash)
        if not isinstance(self.part_set_header, PartSetHeader):
            raise MalformedRequest(
                f"block_id part_set_header must be a PartSetHeader, got {type(self.part_set_header).__name__}"
            )

    @property
    def is_nil(self) -> bool:
        """A vote for nil: empty hash and zero part-set header (BlockID.IsNil)."""
        return not self.hash and self.part_set_header.is_zero

    @property
    def is_complete(self) -> bool:
        """A real block: 32-byte hash, at least one part, 32-byte part-set hash (BlockID.IsComplete)."""
        psh = self.part_set_header
        return len(self.hash) == HASH_SIZE and psh.total > 0 and len(psh.hash) == HASH_SIZE


NIL_BLOCK_ID = BlockID()


def _msg_type(value: object, allowed: tuple[SignedMsgType, ...], what: str) -> SignedMsgType:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            msg_type = SignedMsgType(value)
        except ValueError:
            msg_type = None
        if msg_type in allowed:
            assert msg_type is not None
            return msg_type
    names = " or ".join(f"{t.name} ({t.value})" for t in allowed)
    raise MalformedRequest(f"{what} type must be {names}, got {value!r}")


def _timestamp(value: object) -> Timestamp:
    if not isinstance(value, Timestamp):
        raise MalformedRequest(f"timestamp must be a Timestamp, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Vote:
    """A prevote or precommit to sign. ``block_id`` is NIL_BLOCK_ID for a vote for nil.

    ``extension`` is the ABCI vote extension; only a precommit for a block may carry one.
    """

    type: SignedMsgType
    height: int
    round: int
    block_id: BlockID
    timestamp: Timestamp
    validator_address: bytes
    validator_index: int
    extension: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _msg_type(self.type, (SignedMsgType.PREVOTE, SignedMsgType.PRECOMMIT), "vote"))
        _int("vote height", self.height, 1, MAX_INT64)
        _int("vote round", self.round, 0, MAX_INT32)
        if not isinstance(self.block_id, BlockID):
            raise MalformedRequest(f"vote block_id must be a BlockID, got {type(self.block_id).__name__}")
        if not (self.block_id.is_nil or self.block_id.is_complete):
            raise MalformedRequest(
                "vote block_id must be either nil (empty hash, zero part set header) or complete "
                f"({HASH_SIZE}-byte hash, total > 0, {HASH_SIZE}-byte part set hash)"
            )
        _timestamp(self.timestamp)
        address = _bytes("vote validator_address", self.validator_address)
        if len(address) != ADDRESS_SIZE:
            raise MalformedRequest(f"vote validator_address must be {ADDRESS_SIZE} bytes, got {len(address)} bytes")
        _int("vote validator_index", self.validator_index, 0, MAX_INT32)
        extension = _bytes("vote extension", self.extension)
        if extension and not self.extends_block:
            raise MalformedRequest(
                f"vote extension is only allowed on a precommit for a block, not on a "
                f"{'nil ' if self.block_id.is_nil else ''}{self.type.name.lower()}"
            )
        if len(extension) > MAX_VOTE_EXTENSION_SIZE:
            raise MalformedRequest(
                f"vote extension is {len(extension)} bytes, more than the {MAX_VOTE_EXTENSION_SIZE} allowed"
            )

    @property
    def extends_block(self) -> bool:
        """A precommit for a block: the only vote whose extension CometBFT has signed as well."""
        return self.type is SignedMsgType.PRECOMMIT and not self.block_id.is_nil


@dataclass(frozen=True, slots=True)
class Proposal:
    """A block proposal to sign. ``pol_round`` is -1 when there is no proof-of-lock round."""

    type: SignedMsgType
    height: int
    round: int
    pol_round: int
    block_id: BlockID
    timestamp: Timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _msg_type(self.type, (SignedMsgType.PROPOSAL,), "proposal"))
        _int("proposal height", self.height, 1, MAX_INT64)
        _int("proposal round", self.round, 0, MAX_INT32)
        _int("proposal pol_round", self.pol_round, -1, MAX_INT32)
        if self.pol_round >= self.round:
            raise MalformedRequest(
                f"proposal pol_round must be below round (or -1), got pol_round {self.pol_round} at round {self.round}"
            )
        if not isinstance(self.block_id, BlockID):
            raise MalformedRequest(f"proposal block_id must be a BlockID, got {type(self.block_id).__name__}")
        if not self.block_id.is_complete:
            raise MalformedRequest(
                f"proposal block_id must be complete ({HASH_SIZE}-byte hash, total > 0, {HASH_SIZE}-byte part set hash)"
            )
        _timestamp(self.timestamp)


ConsensusMessage = Vote | Proposal
