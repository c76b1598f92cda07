"""CometBFT (Tendermint) consensus messages and their canonical sign bytes.

Public surface: the message types (``messages``), the sign bytes (``canonical``) and what the
signing service asks of a message (``consensus``). Imports nothing above ``signer.types``.
"""

from signer.cometbft.canonical import (
    clear_timestamp,
    encode_canonical_proposal,
    encode_canonical_vote,
    encode_canonical_vote_extension,
    proposal_sign_bytes,
    proposal_sign_bytes_without_timestamp,
    sign_bytes_pair,
    timestamp_from_sign_bytes,
    vote_extension_sign_bytes,
    vote_sign_bytes,
    vote_sign_bytes_without_timestamp,
)
from signer.cometbft.consensus import consensus_check, step_of, with_timestamp
from signer.cometbft.messages import (
    GO_ZERO_TIME,
    NIL_BLOCK_ID,
    UNIX_EPOCH,
    BlockID,
    ConsensusMessage,
    PartSetHeader,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
)

__all__ = [
    "GO_ZERO_TIME",
    "NIL_BLOCK_ID",
    "UNIX_EPOCH",
    "BlockID",
    "ConsensusMessage",
    "PartSetHeader",
    "Proposal",
    "SignedMsgType",
    "Timestamp",
    "Vote",
    "clear_timestamp",
    "consensus_check",
    "encode_canonical_proposal",
    "encode_canonical_vote",
    "encode_canonical_vote_extension",
    "proposal_sign_bytes",
    "proposal_sign_bytes_without_timestamp",
    "sign_bytes_pair",
    "step_of",
    "timestamp_from_sign_bytes",
    "vote_extension_sign_bytes",
    "vote_sign_bytes",
    "vote_sign_bytes_without_timestamp",
    "with_timestamp",
]
