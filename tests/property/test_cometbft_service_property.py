"""Property: CometBFT signing through SigningService never double-signs and never goes back.

Random sequences of votes and proposals (height 1..4, round 0..2, every step, block IDs from a small
set including nil, timestamps from a small set, extensions on precommits), sent one at a time or as a
two-key batch, with store restarts in between, through the real SigningService, the real emulated key
module (secp256k1 + ed25519) and the real store of every backend in tests/stores.py. Every example
uses fresh chain ids on one store, so no example sees another's state.

Checked for every answer: its signature verifies (independently, tests/unit/test_cometbft_filepv_cases.py
helpers); the outcome is exactly what FilePV's rules give (a small reference model); and, stated on
their own, the two safety properties: no two different non-timestamp sign bytes are ever signed for
one (chain, key, height, round, step), and the height/round/step signed for a key never goes back.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer import errors
from signer.cometbft.messages import Proposal, SignedMsgType, Timestamp, Vote
from signer.eth2.networks import MAINNET
from signer.keys.emulated import MIN_SCRYPT_N
from signer.keys.keyring import KeyRing
from signer.protection.store import ProtectionStore
from signer.service import ConsensusRequest, SigningService
from signer.types import LOCAL_CLIENT, ZERO_ROOT
from tests.fakes import CountingModule, block_id
from tests.stores import backend, keys_never_signed, make_store  # noqa: F401 - fixture
from tests.unit.test_cometbft_filepv_cases import (
    ADDRESS,
    KEY_CASES,
    PIN,
    KeyCase,
    at,
    extension_sign_bytes,
    sign_bytes,
)

EXAMPLES = {"sqlite": 100, "postgres": 40}
STEPS = {SignedMsgType.PROPOSAL: 1, SignedMsgType.PREVOTE: 2, SignedMsgType.PRECOMMIT: 3}
EPOCH = Timestamp(0, 0)
_chains = itertools.count()

# --- strategies -----------------------------------------------------------------------------


@st.composite
def messages(draw: st.DrawFn) -> Vote | Proposal:
    height = draw(st.integers(1, 4))
    round_ = draw(st.integers(0, 2))
    ts = at(draw(st.sampled_from([0, 1, 1_000_000])))
    kind = draw(st.sampled_from(list(STEPS)))
    if kind is SignedMsgType.PROPOSAL:
        pol_round = draw(st.integers(-1, round_ - 1))
        return Proposal(kind, height, round_, pol_round, block_id(draw(st.sampled_from("AB"))), ts)
    tag = draw(st.sampled_from(["nil", "A", "B"]))
    extension = b""
    if kind is SignedMsgType.PRECOMMIT and tag != "nil":
        extension = draw(st.sampled_from([b"", b"ext"]))
    return Vote(kind, height, round_, block_id(tag), ts, ADDRESS, 0, extension)


@dataclass(frozen=True)
class Sign:
    """Requests for one batch: (key index, message, skip_extension_signing); at most one per key."""

    requests: tuple[tuple[int, Vote | Proposal, bool], ...]


@dataclass(frozen=True)
class Restart:
    """Close the store and open a new instance on the same database."""


single = st.builds(
    lambda k, m, skip: Sign(((k, m, skip),)), st.integers(0, len(KEY_CASES) - 1), messages(), st.booleans()
)
pair = st.builds(lambda a, b: Sign(((0, a, False), (1, b, False))), messages(), messages())
operations = st.lists(st.one_of(single, single, single, pair, st.just(Restart())), min_size=1, max_size=25)

# --- the reference model: FilePV's rules -----------------------------------------------------


@dataclass
class Last:
    hrs: tuple[int, int, int]
    message: Vote | Proposal
    """What was signed at ``hrs`` (with the timestamp that was signed)."""
    signature: bytes


@dataclass
class Model:
    last: dict[int, Last] = field(default_factory=dict)
    signed_at: dict[tuple[int, tuple[int, int, int]], set[bytes]] = field(default_factory=dict)
    """(key index, hrs) -> the non-timestamp sign bytes ever answered with a signature."""
    history: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    """key index -> the height/round/step of every answered signature, in order."""


def hrs_of(msg: Vote | Proposal) -> tuple[int, int, int]:
    return (msg.height, msg.round, STEPS[msg.type])


def without_timestamp(key: KeyCase, msg: Vote | Proposal) -> bytes:
    return sign_bytes(key.chain_id, dataclasses.replace(msg, timestamp=EPOCH))


def expected_refusal(last: Last | None, key: KeyCase, msg: Vote | Proposal) -> type[errors.NotSafeToSign] | None:
    if last is None:
        return None
    (h, r, s), (lh, lr, ls) = hrs_of(msg), last.hrs
    if h != lh:
        return errors.HeightRegression if h < lh else None
    if r != lr:
        return errors.RoundRegression if r < lr else None
    if s != ls:
        return errors.StepRegression if s < ls else None
    if without_timestamp(key, msg) == without_timestamp(key, last.message):
        return None
    return errors.ConflictingConsensusMessage


def run(
    ops: list[Sign | Restart], *, keys: list[KeyCase], module: CountingModule, opened: list[ProtectionStore],
    where: Path, backend_name: str,
) -> None:  # fmt: skip
    """Run ``ops`` on fresh chains; ``opened[-1]`` is the open store (a restart appends the new one)."""
    chains = [dataclasses.replace(k, chain_id=f"prop-{k.scheme.value}-{next(_chains)}") for k in keys]
    service = SigningService(MAINNET, KeyRing(module, chains={k.chain_id: k.account for k in chains}), opened[-1])
    model = Model()
    for op in ops:
        if isinstance(op, Restart):
            opened[-1].close()
            opened.append(keys_never_signed(make_store(backend_name, where, ZERO_ROOT)))
            service = SigningService(
                MAINNET, KeyRing(module, chains={k.chain_id: k.account for k in chains}), opened[-1]
            )
            continue
        requests = [ConsensusRequest(chains[i].chain_id, msg, skip) for i, msg, skip in op.requests]
        outcomes = service.sign(LOCAL_CLIENT, requests)
        assert len(outcomes) == len(requests)
        for (index, msg, skip), outcome in zip(op.requests, outcomes, strict=True):
            key, last = chains[index], model.last.get(index)
            refusal = expected_refusal(last, key, msg)
            if refusal is not None:
                assert isinstance(outcome.error, refusal), (msg, last, outcome.error)
                assert outcome.signature is None and outcome.extension_signature is None
                continue
            assert outcome.error is None, (msg, last, outcome.error)
            assert outcome.signature is not None
            repeat = last is not None and last.hrs == hrs_of(msg)
            answered = msg
            if repeat:
                assert last is not None
                assert outcome.signature == last.signature, "a repeat answers the earlier signature"
                answered = dataclasses.replace(msg, timestamp=last.message.timestamp)
                if last.message.timestamp != msg.timestamp:
                    assert outcome.timestamp == (last.message.timestamp.seconds, last.message.timestamp.nanos)
                else:
                    assert outcome.timestamp is None
            else:
                assert outcome.timestamp is None
            assert key.verifies(sign_bytes(key.chain_id, answered), outcome.signature)
            if isinstance(msg, Vote) and msg.extends_block and not skip:
                assert outcome.extension_signature is not None
                assert key.verifies(extension_sign_bytes(key.chain_id, msg), outcome.extension_signature)
            else:
                assert outcome.extension_signature is None
            if not repeat:
                model.last[index] = Last(hrs_of(msg), msg, outcome.signature)
            # the two safety properties, on their own
            signed = model.signed_at.setdefault((index, hrs_of(msg)), set())
            signed.add(without_timestamp(key, answered))
            assert len(signed) == 1, f"two different messages signed at {hrs_of(msg)}"
            history = model.history.setdefault(index, [])
            assert not history or hrs_of(msg) >= history[-1], f"went back from {history[-1]} to {hrs_of(msg)}"
            history.append(hrs_of(msg))


@pytest.mark.slow
def test_never_two_messages_at_one_hrs_and_never_back(backend: str, tmp_path: Path) -> None:  # noqa: F811
    module = CountingModule(tmp_path / "keys", PIN, create=True, scrypt_n=MIN_SCRYPT_N)
    module.import_secrets([(k.account, k.scheme, k.secret) for k in KEY_CASES])
    where = tmp_path / "store"
    where.mkdir()
    opened: list[ProtectionStore] = [keys_never_signed(make_store(backend, where, ZERO_ROOT))]

    @settings(
        max_examples=EXAMPLES[backend],
        deadline=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=operations)
    def check(ops: list[Sign | Restart]) -> None:
        run(ops, keys=KEY_CASES, module=module, opened=opened, where=where, backend_name=backend)

    try:
        check()
    finally:
        opened[-1].close()  # the others were closed at their restart
