"""CometBFT double-sign protection, table-driven from the facts of CometBFT's ``privval/file_test.go``.

Each upstream test (TestSignVote, TestSignProposal, TestDifferByTimestamp,
TestVoteExtensionsAreSignedIfSignExtensionIsTrue / ...IsFalse, TestUnmarshalValidatorState) is
re-expressed here as rows of our own tables; the row names cite the upstream test. The facts carry
over (what FilePV signs, refuses, or answers with an earlier signature), the code does not.

Everything runs through ``SigningService.sign`` with the real emulated key module (one
secp256k1 and one ed25519 key) and the real protection store of EVERY backend in tests/stores.py.
Every signature that comes back is verified here, independently: sign bytes are built from the
generated ``CanonicalVote`` / ``CanonicalProposal`` / ``CanonicalVoteExtension`` protobuf classes (never
``signer.cometbft.canonical``), secp256k1 signatures with coincurve (ECDSA over SHA-256, 64-byte
r||s, low S), ed25519 ones with ``cryptography``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import coincurve
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from google.protobuf.timestamp_pb2 import Timestamp as PbTimestamp

from signer import errors
from signer.api._proto.tendermint.types import canonical_pb2
from signer.cometbft.canonical import clear_timestamp
from signer.cometbft.messages import (
    BlockID,
    Proposal,
    SignedMsgType,
    Timestamp,
    Vote,
)
from signer.eth2.networks import MAINNET
from signer.keys.dev import DEV_ED25519_ACCOUNT, DEV_SECP256K1_ACCOUNT, dev_ed25519_secret, dev_secp256k1_secret
from signer.keys.emulated import MIN_SCRYPT_N
from signer.keys.keyring import KeyRing
from signer.protection.store import ProtectionStore
from signer.service import ConsensusRequest, Outcome, SigningService
from signer.types import LOCAL_CLIENT, Scheme
from tests.fakes import CountingModule, block_id
from tests.stores import StoreFactory, backend, keys_never_signed, store, store_factory  # noqa: F401 - fixtures

PIN = "filepv-cases-pin"
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
T0 = Timestamp(1_700_000_000, 500_000_000)
ADDRESS = b"\x07" * 20

# --- the two keys: one chain each -----------------------------------------------------------


@dataclass(frozen=True)
class KeyCase:
    scheme: Scheme
    account: str
    secret: bytes
    chain_id: str

    @property
    def public_key(self) -> bytes:
        if self.scheme is Scheme.SECP256K1:
            return bytes(coincurve.PrivateKey(self.secret).public_key.format(compressed=True))
        return Ed25519PrivateKey.from_private_bytes(self.secret).public_key().public_bytes_raw()

    def verifies(self, message: bytes, signature: bytes) -> bool:
        """Independent verification of a CometBFT signature over ``message`` (the sign bytes)."""
        if self.scheme is Scheme.SECP256K1:
            assert len(signature) == 64, "secp256k1 signatures are 64 bytes r||s"
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            assert 0 < s <= SECP256K1_ORDER // 2, "high S: CometBFT refuses it"
            der = encode_dss_signature(r, s)
            return bool(
                coincurve.PublicKey(self.public_key).verify(der, message, hasher=lambda m: hashlib.sha256(m).digest())
            )
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def node_signature(self, message: bytes) -> bytes:
        """What a CometBFT node's FilePV would have signed (for a priv_validator_state.json)."""
        if self.scheme is Scheme.SECP256K1:
            return bytes(coincurve.PrivateKey(self.secret).sign_recoverable(message)[:64])
        return Ed25519PrivateKey.from_private_bytes(self.secret).sign(message)


KEY_CASES = [
    KeyCase(Scheme.SECP256K1, DEV_SECP256K1_ACCOUNT, dev_secp256k1_secret(), "filepv-secp256k1"),
    KeyCase(Scheme.ED25519, DEV_ED25519_ACCOUNT, dev_ed25519_secret(), "filepv-ed25519"),
]


@pytest.fixture(params=KEY_CASES, ids=[k.scheme.value for k in KEY_CASES])
def key(request: pytest.FixtureRequest) -> KeyCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def shared_module(tmp_path_factory: pytest.TempPathFactory) -> CountingModule:
    module = CountingModule(tmp_path_factory.mktemp("filepv-keys"), PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    module.import_secrets([(k.account, k.scheme, k.secret) for k in KEY_CASES])
    return module


@pytest.fixture
def module(shared_module: CountingModule) -> CountingModule:
    shared_module.signed.clear()
    return shared_module


def make_service(module: CountingModule, protection: ProtectionStore) -> SigningService:
    keys_never_signed(protection)
    return SigningService(MAINNET, KeyRing(module, chains={k.chain_id: k.account for k in KEY_CASES}), protection)


# --- messages and their independent sign bytes ----------------------------------------------


def at(offset_ns: int) -> Timestamp:
    total = T0.seconds * 1_000_000_000 + T0.nanos + offset_ns
    return Timestamp(total // 1_000_000_000, total % 1_000_000_000)


def prevote(height: int, round_: int, tag: str = "A", ts_ns: int = 0) -> Vote:
    return Vote(SignedMsgType.PREVOTE, height, round_, block_id(tag), at(ts_ns), ADDRESS, 0)


def precommit(height: int, round_: int, tag: str = "A", ts_ns: int = 0, extension: bytes = b"") -> Vote:
    return Vote(SignedMsgType.PRECOMMIT, height, round_, block_id(tag), at(ts_ns), ADDRESS, 0, extension)


def proposal(height: int, round_: int, tag: str = "A", ts_ns: int = 0, pol_round: int = -1) -> Proposal:
    return Proposal(SignedMsgType.PROPOSAL, height, round_, pol_round, block_id(tag), at(ts_ns))


def _delimited(body: bytes) -> bytes:
    out, n = bytearray(), len(body)
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def _pb_block_id(block_id: BlockID) -> canonical_pb2.CanonicalBlockID | None:
    if block_id.is_nil:
        return None  # CanonicalizeBlockID: a nil block ID is omitted
    psh = block_id.part_set_header
    return canonical_pb2.CanonicalBlockID(
        hash=block_id.hash, part_set_header=canonical_pb2.CanonicalPartSetHeader(total=psh.total, hash=psh.hash)
    )


def sign_bytes(chain_id: str, msg: Vote | Proposal) -> bytes:
    """VoteSignBytes / ProposalSignBytes, built from the generated protobuf classes."""
    ts = PbTimestamp(seconds=msg.timestamp.seconds, nanos=msg.timestamp.nanos)
    if isinstance(msg, Vote):
        canonical = canonical_pb2.CanonicalVote(
            type=int(msg.type),  # type: ignore[arg-type]  # the generated enum is an int on the wire
            height=msg.height,
            round=msg.round,
            timestamp=ts,
            chain_id=chain_id,
        )
    else:
        canonical = canonical_pb2.CanonicalProposal(  # type: ignore[assignment]
            type=int(msg.type), height=msg.height, round=msg.round, pol_round=msg.pol_round,  # type: ignore[arg-type]
            timestamp=ts, chain_id=chain_id,
        )  # fmt: skip
    pb_block = _pb_block_id(msg.block_id)
    if pb_block is not None:
        canonical.block_id.CopyFrom(pb_block)
    return _delimited(canonical.SerializeToString())


def extension_sign_bytes(chain_id: str, vote: Vote) -> bytes:
    """VoteExtensionSignBytes."""
    canonical = canonical_pb2.CanonicalVoteExtension(
        extension=vote.extension, height=vote.height, round=vote.round, chain_id=chain_id
    )
    return _delimited(canonical.SerializeToString())


# --- the table ------------------------------------------------------------------------------

SIGNED = "signed"
"""New data: a fresh signature over exactly the requested message."""


@dataclass(frozen=True)
class Step:
    message: Vote | Proposal
    expect: str | type[errors.SignerError] = SIGNED
    repeats: int | None = None
    """The earlier step whose signature (and timestamp) must come back; ``expect`` is ignored."""
    skip_extension_signing: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]


def case(name: str, *steps: Step) -> Case:
    return Case(name, steps)


# Upstream TestSignVote / TestSignProposal use height 10, round 1 and two blocks.
H, R = 10, 1

CASES = [
    # TestSignVote: sign once, the identical vote again, then each bad vote, then the timestamp variant.
    case("TestSignVote/identical-repeat", Step(prevote(H, R)), Step(prevote(H, R), repeats=0)),
    case("TestSignVote/round-regression", Step(prevote(H, R)), Step(prevote(H, R - 1), errors.RoundRegression)),
    case("TestSignVote/height-regression", Step(prevote(H, R)), Step(prevote(H - 1, R), errors.HeightRegression)),
    case(
        "TestSignVote/height-regression-higher-round",
        Step(prevote(H, R)),
        Step(prevote(H - 2, R + 4), errors.HeightRegression),
    ),
    case(
        "TestSignVote/different-block",
        Step(prevote(H, R, "A")),
        Step(prevote(H, R, "B"), errors.ConflictingConsensusMessage),
    ),
    case("TestSignVote/different-timestamp", Step(prevote(H, R)), Step(prevote(H, R, ts_ns=1000), repeats=0)),
    case(
        "TestSignVote/whole-sequence",
        Step(prevote(H, R)),
        Step(prevote(H, R), repeats=0),
        Step(prevote(H, R - 1), errors.RoundRegression),
        Step(prevote(H - 1, R), errors.HeightRegression),
        Step(prevote(H - 2, R + 4), errors.HeightRegression),
        Step(prevote(H, R, "B"), errors.ConflictingConsensusMessage),
        Step(prevote(H, R, ts_ns=1000), repeats=0),
        Step(prevote(H + 1, 0, "B")),  # refusals left the state where it was: the chain goes on
    ),
    # TestSignProposal: the same facts for proposals.
    case("TestSignProposal/identical-repeat", Step(proposal(H, R)), Step(proposal(H, R), repeats=0)),
    case("TestSignProposal/round-regression", Step(proposal(H, R)), Step(proposal(H, R - 1), errors.RoundRegression)),
    case(
        "TestSignProposal/height-regression",
        Step(proposal(H, R)),
        Step(proposal(H - 1, R), errors.HeightRegression),
    ),
    case(
        "TestSignProposal/height-regression-higher-round",
        Step(proposal(H, R)),
        Step(proposal(H - 2, R + 4), errors.HeightRegression),
    ),
    case(
        "TestSignProposal/different-block",
        Step(proposal(H, R, "A")),
        Step(proposal(H, R, "B"), errors.ConflictingConsensusMessage),
    ),
    case("TestSignProposal/different-timestamp", Step(proposal(H, R)), Step(proposal(H, R, ts_ns=1000), repeats=0)),
    # TestDifferByTimestamp: 1 ms later answers the earlier signature AND the earlier timestamp.
    case("TestDifferByTimestamp/proposal", Step(proposal(H, R)), Step(proposal(H, R, ts_ns=1_000_000), repeats=0)),
    case("TestDifferByTimestamp/vote", Step(prevote(H, R)), Step(prevote(H, R, ts_ns=1_000_000), repeats=0)),
    case(
        "TestDifferByTimestamp/earlier-timestamp-too",
        Step(prevote(H, R, ts_ns=5_000)),
        Step(prevote(H, R, ts_ns=0), repeats=0),
    ),
    case(
        "TestDifferByTimestamp/then-different-block-refused",
        Step(prevote(H, R)),
        Step(prevote(H, R, ts_ns=1_000_000), repeats=0),
        Step(prevote(H, R, "B", ts_ns=1_000_000), errors.ConflictingConsensusMessage),
    ),
    # TestVoteExtensionsAreSignedIfSignExtensionIsTrue: the vote repeats, its extension is re-signed.
    case(
        "TestVoteExtensionsAreSignedIfSignExtensionIsTrue",
        Step(precommit(H, R)),  # no extension yet: the empty extension is signed all the same
        Step(precommit(H, R, extension=b"new extension"), repeats=0),
        Step(precommit(H, R, ts_ns=1_000_000, extension=b"new extension"), repeats=0),
    ),
    case(
        "TestVoteExtensionsAreNotSignedIfSignExtensionIsFalse",
        Step(precommit(H, R), skip_extension_signing=True),
    ),
    case("extensions/nil-precommit-signs-none", Step(precommit(H, R, "nil"))),
    case("extensions/prevote-signs-none", Step(prevote(H, R))),
    case(
        "extensions/skip-then-sign-on-repeat",
        Step(precommit(H, R, extension=b"x"), skip_extension_signing=True),
        Step(precommit(H, R, extension=b"x"), repeats=0),
    ),
    # Height/round/step: FilePV's CheckHRS, one regression at a time, and the ways forward.
    case(
        "hrs/step-regression-prevote-after-precommit",
        Step(prevote(H, R)),
        Step(precommit(H, R)),
        Step(prevote(H, R), errors.StepRegression),  # even identical to what was signed: the step went on
    ),
    case(
        "hrs/step-regression-proposal-after-prevote",
        Step(prevote(H, R)),
        Step(proposal(H, R), errors.StepRegression),
    ),
    case(
        "hrs/ascending-steps-rounds-heights",
        Step(proposal(H, 0)),
        Step(prevote(H, 0)),
        Step(precommit(H, 0)),
        Step(proposal(H, 1, pol_round=0)),  # a new round starts at the lowest step again
        Step(prevote(H + 1, 0)),  # a new height at the lowest round
        Step(precommit(H + 1, 0, "nil")),
    ),
    case(
        "hrs/round-regression-across-steps",
        Step(prevote(H, 3)),
        Step(precommit(H, 2), errors.RoundRegression),
    ),
    # Conflicting block IDs at one height/round/step.
    case(
        "conflict/nil-then-block",
        Step(prevote(H, R, "nil")),
        Step(prevote(H, R, "A"), errors.ConflictingConsensusMessage),
    ),
    case(
        "conflict/block-then-nil",
        Step(precommit(H, R, "A")),
        Step(precommit(H, R, "nil"), errors.ConflictingConsensusMessage),
    ),
    case(
        "conflict/precommit-different-block",
        Step(precommit(H, R, "A")),
        Step(precommit(H, R, "B"), errors.ConflictingConsensusMessage),
    ),
    case(
        "conflict/same-hash-other-part-set-header",
        Step(prevote(H, R)),
        Step(
            dataclasses.replace(prevote(H, R), block_id=block_id("A", total=6)),
            errors.ConflictingConsensusMessage,
        ),
    ),
    case(
        "conflict/proposal-other-pol-round",
        Step(proposal(H, 2)),
        Step(proposal(H, 2, pol_round=1), errors.ConflictingConsensusMessage),
    ),
]


def sign_one(service: SigningService, key: KeyCase, step: Step) -> Outcome:
    request = ConsensusRequest(key.chain_id, step.message, skip_extension_signing=step.skip_extension_signing)
    outcomes = service.sign(LOCAL_CLIENT, [request])
    assert len(outcomes) == 1
    return outcomes[0]


def check_extension(key: KeyCase, step: Step, answered: Vote | Proposal, outcome: Outcome) -> None:
    """Extensions are signed only for non-nil precommits, and only unless skip_extension_signing."""
    msg = step.message
    if isinstance(msg, Vote) and msg.extends_block and not step.skip_extension_signing:
        assert outcome.extension_signature is not None, "a precommit for a block gets an extension signature"
        assert key.verifies(extension_sign_bytes(key.chain_id, msg), outcome.extension_signature)
        assert not key.verifies(sign_bytes(key.chain_id, answered), outcome.extension_signature)
    else:
        assert outcome.extension_signature is None


def run_steps(service: SigningService, key: KeyCase, steps: Sequence[Step]) -> list[Outcome]:
    """Run the steps one request at a time, checking each outcome against its row."""
    outcomes: list[Outcome] = []
    answered: list[Vote | Proposal | None] = []
    """Per step: the message whose signature came back (the request, or it with the earlier timestamp)."""
    for number, step in enumerate(steps):
        where = f"step {number}: {step}"
        outcome = sign_one(service, key, step)
        outcomes.append(outcome)
        if step.repeats is not None:
            earlier, first = outcomes[step.repeats], answered[step.repeats]
            assert first is not None, "a row may only repeat a step that was signed"
            assert outcome.error is None, f"{where}: {outcome.error}"
            assert outcome.signature == earlier.signature, f"{where}: the earlier signature must come back"
            if first.timestamp != step.message.timestamp:
                assert outcome.timestamp == (first.timestamp.seconds, first.timestamp.nanos), where
            else:
                assert outcome.timestamp is None, where
            msg = dataclasses.replace(step.message, timestamp=first.timestamp)
            assert sign_bytes(key.chain_id, msg) == sign_bytes(key.chain_id, first)
        elif step.expect == SIGNED:
            assert outcome.error is None, f"{where}: {outcome.error}"
            assert outcome.timestamp is None, where
            msg = step.message
        else:
            assert isinstance(step.expect, type)
            assert isinstance(outcome.error, step.expect), f"{where}: got {outcome.error!r}"
            assert outcome.signature is None and outcome.extension_signature is None, where
            assert outcome.error.message, "a refusal says why"
            answered.append(None)
            continue
        assert outcome.signature is not None, where
        assert key.verifies(sign_bytes(key.chain_id, msg), outcome.signature), f"{where}: signature does not verify"
        check_extension(key, step, msg, outcome)
        answered.append(msg)
    return outcomes


@pytest.mark.parametrize("row", CASES, ids=[c.name for c in CASES])
def test_filepv_case(row: Case, key: KeyCase, module: CountingModule, store: ProtectionStore) -> None:  # noqa: F811
    run_steps(make_service(module, store), key, row.steps)


def test_identical_repeat_returns_the_stored_signature_without_signing(
    key: KeyCase,
    module: CountingModule,
    store: ProtectionStore,  # noqa: F811
) -> None:
    """TestSignVote 'try to sign the same vote again': the stored signature, the module not asked."""
    service = make_service(module, store)
    run_steps(service, key, [Step(prevote(H, R))])
    asked = len(module.signed)
    run_steps(service, key, [Step(prevote(H, R)), Step(prevote(H, R, ts_ns=7), repeats=0)])
    assert len(module.signed) == asked


def test_partial_block_id_refused_as_malformed() -> None:
    """Upstream TestDifferByTimestamp votes for a block hash with an empty part-set header; FilePV signs
    it unchecked. Our Vote refuses it when it is built (BlockID neither nil nor complete)."""
    with pytest.raises(errors.MalformedRequest, match=r"nil .* or complete"):
        Vote(SignedMsgType.PREVOTE, H, R, BlockID(b"\x01" * 32), T0, ADDRESS, 0)


def test_extension_on_a_nil_precommit_refused() -> None:
    """FilePV: 'unexpected vote extension - extensions are only allowed in non-nil precommits'."""
    with pytest.raises(errors.MalformedRequest, match="extension"):
        precommit(H, R, "nil", extension=b"x")
    with pytest.raises(errors.MalformedRequest, match="extension"):
        Vote(SignedMsgType.PREVOTE, H, R, block_id("A"), T0, ADDRESS, 0, b"x")


# --- restart: a new store instance on the same database ---------------------------------------


def test_restart_keeps_refusals_and_stored_signature(
    key: KeyCase,
    module: CountingModule,
    store_factory: StoreFactory,  # noqa: F811
) -> None:
    first_store = store_factory()
    steps = [Step(prevote(H, R)), Step(precommit(H, R, extension=b"e"))]
    signed = run_steps(make_service(module, first_store), key, steps)
    first_store.close()

    module.signed.clear()
    service = make_service(module, store_factory())  # same database, new instance
    run_steps(
        service,
        key,
        [
            Step(precommit(H, R, "B"), errors.ConflictingConsensusMessage),
            Step(prevote(H, R), errors.StepRegression),
            Step(precommit(H, R - 1), errors.RoundRegression),
            Step(precommit(H - 1, R + 3), errors.HeightRegression),
        ],
    )
    assert module.signed == [], "refusals never reach the key module"
    repeat = sign_one(service, key, Step(precommit(H, R, ts_ns=1_000_000, extension=b"e")))
    assert repeat.signature == signed[1].signature
    assert repeat.timestamp == (T0.seconds, T0.nanos)
    assert len(module.signed) == 1, "only the extension is signed: the vote's signature was stored"
    assert repeat.extension_signature is not None
    assert key.verifies(extension_sign_bytes(key.chain_id, precommit(H, R, extension=b"e")), repeat.extension_signature)
    run_steps(service, key, [Step(prevote(H + 1, 0))])


# --- priv_validator_state.json: import, then lower H/R/S refused; export round trip ----------

IMPORTED = prevote(100, 2, "A")
"""What the node's FilePV signed last: a prevote at height 100, round 2 (step 2)."""


def node_state(key: KeyCase, msg: Vote | Proposal = IMPORTED, step: int = 2) -> dict[str, object]:
    """A priv_validator_state.json as CometBFT writes it, with a real signature by the node."""
    data = sign_bytes(key.chain_id, msg)
    return {
        "height": str(msg.height),
        "round": msg.round,
        "step": step,
        "signature": base64.b64encode(key.node_signature(data)).decode(),
        "signbytes": data.hex().upper(),
    }


IMPORT_CASES = [
    case("import/lower-height", Step(prevote(99, 5), errors.HeightRegression)),
    case("import/lower-round", Step(precommit(100, 1), errors.RoundRegression)),
    case("import/lower-step", Step(proposal(100, 2), errors.StepRegression)),
    case("import/same-hrs-other-block", Step(prevote(100, 2, "B"), errors.ConflictingConsensusMessage)),
    case("import/same-hrs-nil", Step(prevote(100, 2, "nil"), errors.ConflictingConsensusMessage)),
    case("import/next-step", Step(precommit(100, 2))),
    case("import/next-round", Step(proposal(100, 3))),
    case("import/next-height", Step(prevote(101, 0))),
]


@pytest.mark.parametrize("row", IMPORT_CASES, ids=[c.name for c in IMPORT_CASES])
def test_after_import(row: Case, key: KeyCase, module: CountingModule, store: ProtectionStore) -> None:  # noqa: F811
    document = node_state(key)
    without_timestamp = clear_timestamp(bytes.fromhex(str(document["signbytes"])))
    assert store.import_cometbft_state(key.chain_id, key.public_key, document, without_timestamp) is True
    run_steps(make_service(module, store), key, row.steps)


def test_after_import_a_repeat_returns_the_nodes_signature(
    key: KeyCase,
    module: CountingModule,
    store: ProtectionStore,  # noqa: F811
) -> None:
    document = node_state(key)
    without_timestamp = clear_timestamp(bytes.fromhex(str(document["signbytes"])))
    store.import_cometbft_state(key.chain_id, key.public_key, document, without_timestamp)
    service = make_service(module, store)
    node_signature = base64.b64decode(str(document["signature"]))
    same = sign_one(service, key, Step(IMPORTED))
    assert same.signature == node_signature and same.timestamp is None
    later = sign_one(service, key, Step(dataclasses.replace(IMPORTED, timestamp=at(1_000_000))))
    assert later.signature == node_signature
    assert later.timestamp == (IMPORTED.timestamp.seconds, IMPORTED.timestamp.nanos)
    assert module.signed == [], "the node's signature is answered, nothing is signed again"
    assert key.verifies(sign_bytes(key.chain_id, IMPORTED), node_signature)


def test_import_of_an_older_state_changes_nothing(
    key: KeyCase,
    module: CountingModule,
    store: ProtectionStore,  # noqa: F811
) -> None:
    service = make_service(module, store)
    run_steps(service, key, [Step(precommit(200, 0))])
    assert store.import_cometbft_state(key.chain_id, key.public_key, node_state(key)) is False
    run_steps(
        service, key, [Step(prevote(200, 0), errors.StepRegression), Step(prevote(150, 0), errors.HeightRegression)]
    )


def test_import_conflicting_state_refused(key: KeyCase, module: CountingModule, store: ProtectionStore) -> None:  # noqa: F811
    service = make_service(module, store)
    run_steps(service, key, [Step(IMPORTED)])
    before = store.export_cometbft_state(key.chain_id, key.public_key)
    conflicting = node_state(key, prevote(100, 2, "B"))
    with pytest.raises(errors.InterchangeError, match="conflicts"):
        store.import_cometbft_state(key.chain_id, key.public_key, conflicting)
    assert store.export_cometbft_state(key.chain_id, key.public_key) == before


def test_export_round_trip(key: KeyCase, module: CountingModule, store_factory: StoreFactory, tmp_path: Path) -> None:  # noqa: F811
    service = make_service(module, store_factory())
    outcomes = run_steps(service, key, [Step(prevote(H, R)), Step(precommit(H, R, extension=b"ext"))])
    exported = service.store.export_cometbft_state(key.chain_id, key.public_key)
    last = precommit(H, R)
    assert exported == {
        "height": str(H),
        "round": R,
        "step": 3,
        "signature": base64.b64encode(outcomes[1].signature or b"").decode(),
        "signbytes": sign_bytes(key.chain_id, last).hex().upper(),
    }
    assert key.verifies(bytes.fromhex(exported["signbytes"]), base64.b64decode(exported["signature"]))
    # The document is JSON as the node writes it, and imports into another store unchanged.
    document = json.loads(json.dumps(exported))
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = store_factory(where=other_dir)
    without_timestamp = clear_timestamp(bytes.fromhex(document["signbytes"]))
    assert other.import_cometbft_state(key.chain_id, key.public_key, document, without_timestamp) is True
    assert other.export_cometbft_state(key.chain_id, key.public_key) == exported
    module.signed.clear()
    moved = make_service(module, other)
    run_steps(
        moved,
        key,
        [
            Step(prevote(H, R), errors.StepRegression),
            Step(precommit(H, R, "B"), errors.ConflictingConsensusMessage),
        ],
    )
    repeat = sign_one(moved, key, Step(precommit(H, R, ts_ns=3)))
    assert repeat.signature == outcomes[1].signature
    assert len(module.signed) == 1, "only the (new) extension is signed; the vote's signature was imported"


def test_unmarshal_validator_state_round_trip(
    key: KeyCase,
    module: CountingModule,
    store: ProtectionStore,  # noqa: F811
) -> None:
    """TestUnmarshalValidatorState: {"height": "1", "round": 1, "step": 1} in, the same JSON out."""
    serialized = '{\n  "height": "1",\n  "round": 1,\n  "step": 1\n}'
    assert store.import_cometbft_state(key.chain_id, key.public_key, serialized) is True
    exported = store.export_cometbft_state(key.chain_id, key.public_key)
    assert exported == json.loads(serialized)
    assert json.dumps(exported, indent=2) == serialized
    # Without sign bytes, the same height/round/step is never a repeat (FilePV: "no SignBytes found").
    run_steps(
        make_service(module, store),
        key,
        [
            Step(proposal(1, 1), errors.ConflictingConsensusMessage),
            Step(proposal(1, 0), errors.RoundRegression),
            Step(prevote(1, 1)),
        ],
    )


def test_fresh_store_exports_the_initial_state(key: KeyCase, store: ProtectionStore) -> None:  # noqa: F811
    assert store.export_cometbft_state(key.chain_id, key.public_key) == {"height": "0", "round": 0, "step": 0}
