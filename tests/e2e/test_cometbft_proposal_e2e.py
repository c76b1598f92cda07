"""End to end, CometBFT proposals: ``PrivValidatorAPI/SignProposal`` on a real ``signer serve --dev``.

tests/e2e/test_cometbft_e2e.py covers votes; this covers the proposal path (issue 5, item 1):
signatures verify (coincurve, ``cryptography``) over CanonicalProposal sign bytes built here
independently (generated CanonicalProposal class + uvarint prefix, never signer.cometbft); a
different block at the same height/round is refused, a timestamp-only change answers the first
signature and timestamp, a lower height is refused, and after a prevote at that height/round a
proposal (an earlier step) is refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from signer.api._proto.tendermint.privval import service_pb2_grpc, types_pb2
from signer.api._proto.tendermint.types import canonical_pb2
from signer.api._proto.tendermint.types import types_pb2 as tm
from signer.keys.dev import dev_ed25519_secret
from tests.e2e.harness import SignerProcess
from tests.e2e.test_cometbft_e2e import (
    CHAIN,
    ED_CHAIN,
    PREVOTE,
    T0,
    block_id,
    delimited,
    secp_public_key,
    secp_verifies,
    vote,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a server of its own

PROPOSAL = tm.SIGNED_MSG_TYPE_PROPOSAL


def proposal(height: int, round_: int, block: str, *, pol_round: int = -1, ts: Timestamp = T0) -> tm.Proposal:
    return tm.Proposal(
        type=PROPOSAL, height=height, round=round_, pol_round=pol_round, block_id=block_id(block), timestamp=ts
    )


def proposal_sign_bytes(chain_id: str, p: tm.Proposal) -> bytes:
    canonical = canonical_pb2.CanonicalProposal(
        type=p.type,
        height=p.height,
        round=p.round,
        pol_round=p.pol_round,
        block_id=canonical_pb2.CanonicalBlockID(
            hash=p.block_id.hash,
            part_set_header=canonical_pb2.CanonicalPartSetHeader(
                total=p.block_id.part_set_header.total, hash=p.block_id.part_set_header.hash
            ),
        ),
        timestamp=p.timestamp,
        chain_id=chain_id,
    )
    return delimited(canonical.SerializeToString())


@pytest.fixture(scope="module")
def privval(tmp_path_factory: pytest.TempPathFactory) -> Iterator[service_pb2_grpc.PrivValidatorAPIStub]:
    with SignerProcess.dev(tmp_path_factory.mktemp("cometbft-proposals"), dev_keys=1) as proc:
        yield service_pb2_grpc.PrivValidatorAPIStub(proc.channel())


def sign(
    stub: service_pb2_grpc.PrivValidatorAPIStub, p: tm.Proposal, chain_id: str = CHAIN
) -> types_pb2.SignedProposalResponse:
    return stub.SignProposal(types_pb2.SignProposalRequest(proposal=p, chain_id=chain_id), timeout=30)


def test_secp256k1_proposal_verifies_over_independent_sign_bytes(
    privval: service_pb2_grpc.PrivValidatorAPIStub,
) -> None:
    for p in (proposal(10, 0, "block-a"), proposal(11, 2, "block-b", pol_round=1)):
        resp = sign(privval, p)
        assert not resp.HasField("error"), resp.error
        assert secp_verifies(secp_public_key(), proposal_sign_bytes(CHAIN, p), bytes(resp.proposal.signature))


def test_ed25519_proposal_verifies_over_independent_sign_bytes(
    privval: service_pb2_grpc.PrivValidatorAPIStub,
) -> None:
    p = proposal(10, 0, "block-ed")
    resp = sign(privval, p, ED_CHAIN)
    assert not resp.HasField("error"), resp.error
    public = Ed25519PrivateKey.from_private_bytes(dev_ed25519_secret()).public_key()
    public.verify(bytes(resp.proposal.signature), proposal_sign_bytes(ED_CHAIN, p))  # raises if invalid


def test_conflicts_timestamp_only_changes_and_regressions(privval: service_pb2_grpc.PrivValidatorAPIStub) -> None:
    first = sign(privval, proposal(100, 0, "block-a"))
    assert not first.HasField("error"), first.error

    other = sign(privval, proposal(100, 0, "block-b"))
    assert other.HasField("error") and not other.proposal.signature
    assert "conflicting_consensus_message" in other.error.description

    later = Timestamp(seconds=T0.seconds + 7, nanos=5)
    again = sign(privval, proposal(100, 0, "block-a", ts=later))
    assert not again.HasField("error"), again.error
    assert again.proposal.signature == first.proposal.signature
    assert (again.proposal.timestamp.seconds, again.proposal.timestamp.nanos) == (T0.seconds, T0.nanos)
    assert secp_verifies(secp_public_key(), proposal_sign_bytes(CHAIN, again.proposal), bytes(again.proposal.signature))

    lower = sign(privval, proposal(99, 0, "block-a"))
    assert lower.HasField("error") and "height_regression" in lower.error.description

    # A prevote at (101, 0) is a later step than a proposal at (101, 0): after it, the proposal is refused.
    prevote = privval.SignVote(
        types_pb2.SignVoteRequest(vote=vote(PREVOTE, 101, 0, "block-c"), chain_id=CHAIN), timeout=30
    )
    assert not prevote.HasField("error"), prevote.error
    late = sign(privval, proposal(101, 0, "block-c"))
    assert late.HasField("error") and "step_regression" in late.error.description
