"""End to end, CometBFT: a real ``signer serve --dev`` process over tendermint.privval.PrivValidatorAPI.

Sign bytes are built here independently, from the generated CanonicalVote / CanonicalVoteExtension
classes plus the uvarint length prefix (never signer.cometbft). secp256k1 signatures are checked with
coincurve (ECDSA over SHA-256, 64-byte r||s, low S), ed25519 ones with ``cryptography``.

Height/round/step protection is state per chain and key, so tests on the shared server each take
their heights from ``heights`` (a fresh range above every range handed out before, whatever the
test order).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import coincurve
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from google.protobuf.timestamp_pb2 import Timestamp

from signer.api._proto.tendermint.privval import service_pb2_grpc, types_pb2
from signer.api._proto.tendermint.types import canonical_pb2
from signer.api._proto.tendermint.types import types_pb2 as tm
from signer.keys.dev import dev_ed25519_secret, dev_secp256k1_secret
from tests.e2e.harness import SignerProcess

pytestmark = pytest.mark.e2e

CHAIN = "dev-chain"
ED_CHAIN = "dev-chain-ed25519"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PREVOTE = tm.SIGNED_MSG_TYPE_PREVOTE
PRECOMMIT = tm.SIGNED_MSG_TYPE_PRECOMMIT
T0 = Timestamp(seconds=1_700_000_000, nanos=123_456_789)
_next_base = itertools.count(1)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def delimited(msg: bytes) -> bytes:
    return uvarint(len(msg)) + msg


def block_id(tag: str) -> tm.BlockID:
    return tm.BlockID(
        hash=hashlib.sha256(tag.encode()).digest(),
        part_set_header=tm.PartSetHeader(total=1, hash=hashlib.sha256(b"parts" + tag.encode()).digest()),
    )


def vote(  # noqa: PLR0917 - reads like the Vote it builds
    vote_type: int, height: int, round_: int, block: str, ts: Timestamp = T0, extension: bytes = b""
) -> tm.Vote:
    return tm.Vote(
        type=vote_type,  # type: ignore[arg-type]
        height=height,
        round=round_,
        block_id=block_id(block),
        timestamp=ts,
        validator_address=b"\x01" * 20,
        validator_index=0,
        extension=extension,
    )


def vote_sign_bytes(chain_id: str, v: tm.Vote) -> bytes:
    canonical = canonical_pb2.CanonicalVote(
        type=v.type,
        height=v.height,
        round=v.round,
        block_id=canonical_pb2.CanonicalBlockID(
            hash=v.block_id.hash,
            part_set_header=canonical_pb2.CanonicalPartSetHeader(
                total=v.block_id.part_set_header.total, hash=v.block_id.part_set_header.hash
            ),
        ),
        timestamp=v.timestamp,
        chain_id=chain_id,
    )
    return delimited(canonical.SerializeToString())


def extension_sign_bytes(chain_id: str, v: tm.Vote) -> bytes:
    canonical = canonical_pb2.CanonicalVoteExtension(
        extension=v.extension, height=v.height, round=v.round, chain_id=chain_id
    )
    return delimited(canonical.SerializeToString())


def secp_public_key() -> bytes:
    return coincurve.PrivateKey(dev_secp256k1_secret()).public_key.format(compressed=True)


def secp_verifies(public_key: bytes, sign_bytes: bytes, signature: bytes) -> bool:
    assert len(signature) == 64
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert s <= SECP256K1_ORDER // 2, "high S"
    der = encode_dss_signature(r, s)
    return bool(coincurve.PublicKey(public_key).verify(der, sign_bytes, hasher=lambda m: hashlib.sha256(m).digest()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignerProcess]:
    proc = SignerProcess.dev(tmp_path_factory.mktemp("cometbft-shared")).start()
    yield proc
    assert proc.terminate() == 0, proc.logs


@pytest.fixture(scope="module")
def privval(server: SignerProcess) -> service_pb2_grpc.PrivValidatorAPIStub:
    return service_pb2_grpc.PrivValidatorAPIStub(server.channel())


@pytest.fixture
def heights() -> int:
    """The first of 1000 heights no other test on the shared server uses, above all earlier ones."""
    return next(_next_base) * 1000


def sign_vote(
    stub: service_pb2_grpc.PrivValidatorAPIStub, v: tm.Vote, chain_id: str = CHAIN
) -> types_pb2.SignedVoteResponse:
    return stub.SignVote(types_pb2.SignVoteRequest(vote=v, chain_id=chain_id), timeout=30)


def test_get_pub_key_is_the_configured_key(privval: service_pb2_grpc.PrivValidatorAPIStub) -> None:
    resp = privval.GetPubKey(types_pb2.PubKeyRequest(chain_id=CHAIN), timeout=30)
    assert not resp.HasField("error"), resp.error
    assert resp.pub_key.WhichOneof("sum") == "secp256k1"
    assert bytes(resp.pub_key.secp256k1) == secp_public_key()
    ed = privval.GetPubKey(types_pb2.PubKeyRequest(chain_id=ED_CHAIN), timeout=30)
    assert ed.pub_key.WhichOneof("sum") == "ed25519"
    expected = Ed25519PrivateKey.from_private_bytes(dev_ed25519_secret()).public_key().public_bytes_raw()
    assert bytes(ed.pub_key.ed25519) == expected


def test_prevote_signature_verifies(privval: service_pb2_grpc.PrivValidatorAPIStub, heights: int) -> None:
    v = vote(PREVOTE, heights + 1, 0, "block-a")
    resp = sign_vote(privval, v)
    assert not resp.HasField("error"), resp.error
    signature = bytes(resp.vote.signature)
    assert secp_verifies(secp_public_key(), vote_sign_bytes(CHAIN, v), signature)
    assert not secp_verifies(secp_public_key(), vote_sign_bytes("other-chain", v), signature)


def test_ed25519_prevote_signature_verifies(privval: service_pb2_grpc.PrivValidatorAPIStub, heights: int) -> None:
    v = vote(PREVOTE, heights + 1, 0, "block-a")
    resp = sign_vote(privval, v, ED_CHAIN)
    assert not resp.HasField("error"), resp.error
    public = Ed25519PublicKey.from_public_bytes(
        Ed25519PrivateKey.from_private_bytes(dev_ed25519_secret()).public_key().public_bytes_raw()
    )
    public.verify(bytes(resp.vote.signature), vote_sign_bytes(ED_CHAIN, v))  # raises if invalid
    with pytest.raises(InvalidSignature):
        public.verify(bytes(resp.vote.signature), vote_sign_bytes(CHAIN, v))


def test_conflicting_prevote_and_lower_height_refused(
    privval: service_pb2_grpc.PrivValidatorAPIStub, heights: int
) -> None:
    h = heights + 10
    assert not sign_vote(privval, vote(PREVOTE, h, 0, "block-a")).HasField("error")
    other = sign_vote(privval, vote(PREVOTE, h, 0, "block-b"))
    assert other.HasField("error")
    assert not other.vote.signature
    assert "conflicting_consensus_message" in other.error.description
    lower = sign_vote(privval, vote(PREVOTE, h - 1, 0, "block-c"))
    assert lower.HasField("error")
    assert "height_regression" in lower.error.description
    higher = sign_vote(privval, vote(PREVOTE, h + 1, 0, "block-c"))  # the chain goes on
    assert not higher.HasField("error"), higher.error


def test_timestamp_only_change_returns_first_signature_and_timestamp(
    privval: service_pb2_grpc.PrivValidatorAPIStub, heights: int
) -> None:
    h = heights + 1
    first_vote = vote(PREVOTE, h, 0, "block-a")
    first = sign_vote(privval, first_vote)
    assert not first.HasField("error"), first.error
    later = Timestamp(seconds=T0.seconds + 5, nanos=1)
    second = sign_vote(privval, vote(PREVOTE, h, 0, "block-a", ts=later))
    assert not second.HasField("error"), second.error
    assert second.vote.signature == first.vote.signature
    assert (second.vote.timestamp.seconds, second.vote.timestamp.nanos) == (T0.seconds, T0.nanos)
    # The answer is consistent: the returned signature is over the returned vote.
    assert secp_verifies(secp_public_key(), vote_sign_bytes(CHAIN, second.vote), bytes(second.vote.signature))


def test_precommit_extension_signature(privval: service_pb2_grpc.PrivValidatorAPIStub, heights: int) -> None:
    v = vote(PRECOMMIT, heights + 1, 0, "block-a", extension=b"app data for the extension")
    resp = sign_vote(privval, v)
    assert not resp.HasField("error"), resp.error
    assert secp_verifies(secp_public_key(), vote_sign_bytes(CHAIN, v), bytes(resp.vote.signature))
    ext_sig = bytes(resp.vote.extension_signature)
    assert secp_verifies(secp_public_key(), extension_sign_bytes(CHAIN, v), ext_sig)
    assert not secp_verifies(secp_public_key(), vote_sign_bytes(CHAIN, v), ext_sig)


def test_unknown_chain_refused(privval: service_pb2_grpc.PrivValidatorAPIStub, heights: int) -> None:
    resp = sign_vote(privval, vote(PREVOTE, heights + 1, 0, "block-a"), chain_id="no-such-chain")
    assert resp.HasField("error")
    assert "no-such-chain" in resp.error.description
    assert not resp.vote.signature
    pub = privval.GetPubKey(types_pb2.PubKeyRequest(chain_id="no-such-chain"), timeout=30)
    assert pub.HasField("error")


@pytest.mark.slow  # three server starts
def test_refusal_survives_restart(tmp_path: Path) -> None:
    with SignerProcess.dev(tmp_path / "data") as proc:
        stub = service_pb2_grpc.PrivValidatorAPIStub(proc.channel())
        signed = sign_vote(stub, vote(PREVOTE, 50, 1, "block-a"))
        assert not signed.HasField("error"), signed.error
        proc.restart()
        stub = service_pb2_grpc.PrivValidatorAPIStub(proc.channel())
        conflicting = sign_vote(stub, vote(PREVOTE, 50, 1, "block-b"))
        assert conflicting.HasField("error")
        assert "conflicting_consensus_message" in conflicting.error.description
        lower = sign_vote(stub, vote(PREVOTE, 49, 0, "block-b"))
        assert "height_regression" in lower.error.description
        repeat = sign_vote(stub, vote(PREVOTE, 50, 1, "block-a"))
        assert repeat.vote.signature == signed.vote.signature
        proc.kill()  # and after a crash as well
        proc.restart()
        stub = service_pb2_grpc.PrivValidatorAPIStub(proc.channel())
        assert "conflicting_consensus_message" in sign_vote(stub, vote(PREVOTE, 50, 1, "block-c")).error.description
