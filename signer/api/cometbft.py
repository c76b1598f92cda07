"""Servicer of CometBFT/Tendermint's privval gRPC API: tendermint.privval.PrivValidatorAPI.

Translation only: every decision (chain -> key, height/round/step protection, what to sign) is the
SigningService's. A refusal travels in the response's RemoteSignerError, with the gRPC status code
number of the refusal as ``code`` and a description that names it.
"""

from __future__ import annotations

import time

import grpc
from google.protobuf import timestamp_pb2

from signer import errors
from signer.api import status
from signer.api._proto.tendermint.crypto import keys_pb2
from signer.api._proto.tendermint.privval import service_pb2_grpc, types_pb2
from signer.api._proto.tendermint.types import types_pb2 as tm_types
from signer.api.context import CallContext
from signer.cometbft.messages import (
    GO_ZERO_TIME,
    BlockID,
    PartSetHeader,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
)
from signer.service import ConsensusRequest, Outcome, Refused, Signed, SigningService
from signer.types import Scheme


def _block_id(msg: tm_types.BlockID) -> BlockID:
    psh = msg.part_set_header
    return BlockID(hash=bytes(msg.hash), part_set_header=PartSetHeader(total=psh.total, hash=bytes(psh.hash)))


def _timestamp(has: bool, msg: timestamp_pb2.Timestamp) -> Timestamp:
    # gogoproto non-nullable stdtime: an absent timestamp is Go's zero time, as CometBFT reads it.
    if not has:
        return GO_ZERO_TIME
    return Timestamp(seconds=msg.seconds, nanos=msg.nanos)


def vote_from_proto(msg: tm_types.Vote) -> Vote:
    return Vote(
        type=SignedMsgType(msg.type) if msg.type in (1, 2) else msg.type,  # type: ignore[arg-type]
        height=msg.height,
        round=msg.round,
        block_id=_block_id(msg.block_id),
        timestamp=_timestamp(msg.HasField("timestamp"), msg.timestamp),
        validator_address=bytes(msg.validator_address),
        validator_index=msg.validator_index,
        extension=bytes(msg.extension),
    )


def proposal_from_proto(msg: tm_types.Proposal) -> Proposal:
    return Proposal(
        type=SignedMsgType(msg.type) if msg.type == 32 else msg.type,  # type: ignore[arg-type]
        height=msg.height,
        round=msg.round,
        pol_round=msg.pol_round,
        block_id=_block_id(msg.block_id),
        timestamp=_timestamp(msg.HasField("timestamp"), msg.timestamp),
    )


def remote_error(error: errors.SignerError) -> types_pb2.RemoteSignerError:
    return types_pb2.RemoteSignerError(code=status.grpc_code(error).value[0], description=status.describe(error))


class PrivValidatorServicer(service_pb2_grpc.PrivValidatorAPIServicer):
    def __init__(self, service: SigningService, calls: CallContext) -> None:
        self.service = service
        self.calls = calls

    def _sign_one(
        self, context: grpc.ServicerContext, method: str, started: float, request: ConsensusRequest | errors.SignerError
    ) -> Outcome:
        client = self.calls.client(context)
        if isinstance(request, errors.SignerError):
            outcome: Outcome = Refused(request)
        else:
            (outcome,) = self.calls.sign(client, [request])
        self.calls.report(context, method, [outcome], time.perf_counter() - started, client)
        return outcome

    def GetPubKey(self, request: types_pb2.PubKeyRequest, context: grpc.ServicerContext) -> types_pb2.PubKeyResponse:
        started = time.perf_counter()
        client = self.calls.client(context)
        try:
            key = self.service.comet_public_key(client, request.chain_id)
        except errors.SignerError as exc:
            self.calls.report(context, "GetPubKey", [Refused(exc)], time.perf_counter() - started, client)
            return types_pb2.PubKeyResponse(error=remote_error(exc))
        self.calls.report(context, "GetPubKey", [Signed(b"", key)], time.perf_counter() - started, client)
        if key.scheme == Scheme.ED25519:
            return types_pb2.PubKeyResponse(pub_key=keys_pb2.PublicKey(ed25519=key.public_key))
        return types_pb2.PubKeyResponse(pub_key=keys_pb2.PublicKey(secp256k1=key.public_key))

    def SignVote(
        self, request: types_pb2.SignVoteRequest, context: grpc.ServicerContext
    ) -> types_pb2.SignedVoteResponse:
        started = time.perf_counter()
        req: ConsensusRequest | errors.SignerError
        try:
            if not request.HasField("vote"):
                raise errors.MalformedRequest("the request has no vote")
            req = ConsensusRequest(
                chain_id=request.chain_id,
                message=vote_from_proto(request.vote),
                skip_extension_signing=request.skip_extension_signing,
            )
        except errors.SignerError as exc:
            req = exc
        outcome = self._sign_one(context, "SignVote", started, req)
        if isinstance(outcome, Refused):
            return types_pb2.SignedVoteResponse(error=remote_error(outcome.error))
        vote = tm_types.Vote()
        vote.CopyFrom(request.vote)
        vote.signature = outcome.signature
        if outcome.extension_signature is not None:
            vote.extension_signature = outcome.extension_signature
        if outcome.timestamp is not None:
            vote.timestamp.seconds, vote.timestamp.nanos = outcome.timestamp
        return types_pb2.SignedVoteResponse(vote=vote)

    def SignProposal(
        self, request: types_pb2.SignProposalRequest, context: grpc.ServicerContext
    ) -> types_pb2.SignedProposalResponse:
        started = time.perf_counter()
        req: ConsensusRequest | errors.SignerError
        try:
            if not request.HasField("proposal"):
                raise errors.MalformedRequest("the request has no proposal")
            req = ConsensusRequest(chain_id=request.chain_id, message=proposal_from_proto(request.proposal))
        except errors.SignerError as exc:
            req = exc
        outcome = self._sign_one(context, "SignProposal", started, req)
        if isinstance(outcome, Refused):
            return types_pb2.SignedProposalResponse(error=remote_error(outcome.error))
        proposal = tm_types.Proposal()
        proposal.CopyFrom(request.proposal)
        proposal.signature = outcome.signature
        if outcome.timestamp is not None:
            proposal.timestamp.seconds, proposal.timestamp.nanos = outcome.timestamp
        return types_pb2.SignedProposalResponse(proposal=proposal)
