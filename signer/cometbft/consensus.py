"""What the signing service needs from a vote or proposal: its step, its protection check, and a
way to hand back the earlier timestamp when a request differs from a signed one only in time."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from signer.cometbft.canonical import sign_bytes_pair
from signer.cometbft.messages import Proposal, SignedMsgType, Timestamp, Vote
from signer.errors import MalformedRequest
from signer.types import ConsensusCheck, ConsensusStep

MAX_CHAIN_ID_LEN = 50
"""types.MaxChainIDLen (cometbft types/genesis.go)."""

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


def check_chain_id(chain_id: str) -> None:
    """The signer signs only for a named chain: non-empty, at most 50 bytes, printable."""
    if not isinstance(chain_id, str):
        raise MalformedRequest(f"chain_id must be a string, got {type(chain_id).__name__}")
    if not chain_id:
        raise MalformedRequest("chain_id is empty: refusing to sign a message bound to no chain")
    if len(chain_id.encode("utf-8", "replace")) > MAX_CHAIN_ID_LEN:
        raise MalformedRequest(f"chain_id is longer than {MAX_CHAIN_ID_LEN} bytes")
    if not chain_id.isprintable():
        raise MalformedRequest("chain_id contains non-printable characters")


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
