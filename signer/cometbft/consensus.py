"""What the signing service needs from a vote or proposal: its step, its protection check, and a
way to hand back the earlier timestamp when a request differs from a signed one only in time."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from signer.cometbft.canonical import sign_bytes_pair
from signer.cometbft.messages import Proposal, SignedMsgType, Timestamp, Vote
from signer.errors import MalformedRequest
from signer.types import ConsensusCheck, ConsensusStep, check_chain_id

_STEPS = {
    SignedMsgType.PROPOSAL: ConsensusStep.PROPOSAL,
    SignedMsgType.PREVOTE: ConsensusStep.PREVOTE,
    SignedMsgType.PRECOMMIT: ConsensusStep.PRECOMMIT,
}

_Msg = TypeVar("_Msg", Vote, Proposal)


def step_of(msg: Vote | Proposal) -> ConsensusStep:
    """The FilePV step: proposal 1, prevote 2, precommit 3."""
    if not isinstance(msg, Vote | Proposal):
        raise MalformedRequest(f"expected a Vote or a Proposal, got {type(msg).__name__}")
    return _STEPS[msg.type]


def with_timestamp(msg: _Msg, timestamp: Timestamp) -> _Msg:
    """The same vote or proposal carrying ``timestamp`` (e.g. the one signed earlier)."""
    if not isinstance(timestamp, Timestamp):
        raise MalformedRequest(f"timestamp must be a Timestamp, got {type(timestamp).__name__}")
    return dataclasses.replace(msg, timestamp=timestamp)


def consensus_check(chain_id: str, public_key: bytes, msg: Vote | Proposal) -> ConsensusCheck:
    """The height/round/step protection check for signing ``msg`` with ``public_key``."""
    check_chain_id(chain_id)
    if not isinstance(public_key, bytes) or not public_key:
        raise MalformedRequest("public_key must be non-empty bytes")
    step = step_of(msg)
    sign_bytes, without_timestamp = sign_bytes_pair(chain_id, msg)
    return ConsensusCheck(
        chain_id=chain_id,
        public_key=public_key,
        height=msg.height,
        round=msg.round,
        step=step,
        sign_bytes=sign_bytes,
        sign_bytes_without_timestamp=without_timestamp,
    )
