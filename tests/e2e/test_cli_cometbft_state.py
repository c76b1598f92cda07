"""``signer protection import-cometbft-state | export-cometbft-state`` with a real ``signer serve --dev``.

A CometBFT node's ``priv_validator_state.json`` ({"height": "N", "round": N, "step": N, "signature":
base64, "signbytes": HEX}) goes in, comes back out unchanged, and the server started on that data dir
afterwards refuses what the node's state forbids. Sign bytes and signatures are made here
independently (generated CanonicalVote classes, coincurve / cryptography), never by signer.cometbft.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.timestamp_pb2 import Timestamp

from signer import cli
from signer.api._proto.tendermint.privval import service_pb2_grpc
from signer.api._proto.tendermint.types import types_pb2 as tm
from signer.keys.dev import dev_ed25519_secret, dev_secp256k1_secret
from tests.e2e.harness import SignerProcess
from tests.e2e.test_cometbft_e2e import (
    CHAIN,
    ED_CHAIN,
    PRECOMMIT,
    PREVOTE,
    T0,
    secp_public_key,
    secp_verifies,
    sign_vote,
    vote,
    vote_sign_bytes,
)

pytestmark = pytest.mark.e2e

ED_PUBLIC_KEY = Ed25519PrivateKey.from_private_bytes(dev_ed25519_secret()).public_key().public_bytes_raw()


def protection(*args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m signer protection ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "signer", "protection", *map(str, args)],
        capture_output=True, text=True, timeout=120, check=False, input=stdin,
    )  # fmt: skip


def protection_here(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The same command through ``signer.cli.main`` in this process (0.6 s less per call), with its
    exit code, stdout and stderr; argparse's usage errors (SystemExit) count as exit codes too."""
    argv = ["protection", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def target(chain_id: str = CHAIN, public_key: bytes | None = None) -> list[str]:
    return ["--chain-id", chain_id, "--public-key", "0x" + (public_key or secp_public_key()).hex()]


def node_state(v: tm.Vote, chain_id: str = CHAIN, *, ed25519: bool = False) -> dict[str, Any]:
    """The priv_validator_state.json a CometBFT node writes after signing ``v`` (a real signature)."""
    data = vote_sign_bytes(chain_id, v)
    if ed25519:
        signature = Ed25519PrivateKey.from_private_bytes(dev_ed25519_secret()).sign(data)
    else:
        signature = bytes(coincurve.PrivateKey(dev_secp256k1_secret()).sign_recoverable(data)[:64])
    step = {PREVOTE: 2, PRECOMMIT: 3}[v.type]
    return {
        "height": str(v.height),
        "round": v.round,
        "step": step,
        "signature": base64.b64encode(signature).decode(),
        "signbytes": data.hex().upper(),
    }


def write(path: Path, document: dict[str, Any] | str) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2), encoding="utf-8")
    return path


def export(data_dir: Path, *extra: str) -> dict[str, Any]:
    done = protection_here("export-cometbft-state", "--data-dir", data_dir, *(extra or target()))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


NODE_VOTE = vote(PRECOMMIT, 100, 1, "block-a")
"""What the node signed last: a precommit at height 100, round 1 (step 3)."""


@pytest.mark.slow  # starts a server
def test_imported_state_round_trips_and_the_server_refuses_lower(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    state = node_state(NODE_VOTE)
    done = protection("import-cometbft-state", "--data-dir", data_dir, *target(), write(tmp_path / "state.json", state))
    assert done.returncode == 0, done.stderr
    assert "height 100 round 1 step 3" in done.stdout
    assert export(data_dir) == state  # the node's document, unchanged
    out = tmp_path / "out.json"
    done = protection("export-cometbft-state", "--data-dir", data_dir, *target(), "-o", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == state

    node_signature = base64.b64decode(state["signature"])
    with SignerProcess.dev(data_dir) as proc:
        stub = service_pb2_grpc.PrivValidatorAPIStub(proc.channel())
        lower = sign_vote(stub, vote(PREVOTE, 99, 5, "block-b"))
        assert lower.HasField("error") and not lower.vote.signature
        assert "height_regression" in lower.error.description
        lower_round = sign_vote(stub, vote(PRECOMMIT, 100, 0, "block-a"))
        assert "round_regression" in lower_round.error.description
        lower_step = sign_vote(stub, vote(PREVOTE, 100, 1, "block-a"))
        assert "step_regression" in lower_step.error.description
        conflicting = sign_vote(stub, vote(PRECOMMIT, 100, 1, "block-b"))
        assert "conflicting_consensus_message" in conflicting.error.description
        later = Timestamp(seconds=T0.seconds + 3, nanos=0)
        repeat = sign_vote(stub, vote(PRECOMMIT, 100, 1, "block-a", ts=later))
        assert not repeat.HasField("error"), repeat.error
        assert bytes(repeat.vote.signature) == node_signature, "the node's own signature is answered"
        assert (repeat.vote.timestamp.seconds, repeat.vote.timestamp.nanos) == (T0.seconds, T0.nanos)
        nxt = vote(PREVOTE, 101, 0, "block-c")
        signed = sign_vote(stub, nxt)
        assert not signed.HasField("error"), signed.error
        assert secp_verifies(secp_public_key(), vote_sign_bytes(CHAIN, nxt), bytes(signed.vote.signature))
        assert proc.terminate() == 0, proc.logs

    after = export(data_dir)
    assert (after["height"], after["round"], after["step"]) == ("101", 0, 2)
    assert bytes.fromhex(after["signbytes"]) == vote_sign_bytes(CHAIN, nxt)
    assert after["signature"] == base64.b64encode(bytes(signed.vote.signature)).decode()
    # An older node state changes nothing (exit 0, says so).
    done = protection("import-cometbft-state", "--data-dir", data_dir, *target(), write(tmp_path / "old.json", state))
    assert done.returncode == 0, done.stderr
    assert "nothing changed" in done.stdout
    assert export(data_dir) == after


@pytest.mark.parametrize(
    "document",
    [
        {"height": "0", "round": 0, "step": 0},  # a node that never signed
        {"height": "1", "round": 1, "step": 1},  # TestUnmarshalValidatorState
        "ed25519",
        "stdin",
    ],
    ids=["initial", "unmarshal-validator-state", "ed25519-full", "from-stdin"],
)
def test_round_trip_through_a_fresh_store(document: dict[str, Any] | str, tmp_path: Path) -> None:
    args = target()
    stdin = None
    if document == "ed25519":
        document = node_state(vote(PREVOTE, 7, 2, "block-e"), ED_CHAIN, ed25519=True)
        args = target(ED_CHAIN, ED_PUBLIC_KEY)
    elif document == "stdin":
        document = node_state(vote(PREVOTE, 8, 0, "block-s"))
        stdin = json.dumps(document)
    assert isinstance(document, dict)
    source = "-" if stdin is not None else write(tmp_path / "state.json", document)
    if stdin is not None:
        done = protection("import-cometbft-state", "--data-dir", tmp_path / "a", *args, source, stdin=stdin)
    else:
        done = protection_here("import-cometbft-state", "--data-dir", tmp_path / "a", *args, source)
    assert done.returncode == 0, done.stderr
    first = export(tmp_path / "a", *args)
    assert first == document
    again = write(tmp_path / "exported.json", first)
    done = protection_here("import-cometbft-state", "--data-dir", tmp_path / "b", *args, again)
    assert done.returncode == 0, done.stderr
    assert export(tmp_path / "b", *args) == document
    # another chain, or the other key, has its own (empty) state
    assert export(tmp_path / "a", *target("other-chain")) == {"height": "0", "round": 0, "step": 0}


BAD_INPUTS: list[tuple[str, str, list[str], int, str]] = [
    # (id, file content, extra args instead of the default target, exit code, stderr says)
    ("not-json", "{", [], 1, "not valid JSON"),
    ("height-as-number", '{"height": 5, "round": 0, "step": 1}', [], 1, "height"),
    ("step-out-of-range", '{"height": "5", "round": 0, "step": 4}', [], 1, "step"),
    ("negative-round", '{"height": "5", "round": -1, "step": 1}', [], 1, "round"),
    ("signbytes-not-hex", '{"height": "5", "round": 0, "step": 1, "signbytes": "ZZ"}', [], 1, "signbytes"),
    ("signbytes-not-a-vote", '{"height": "5", "round": 0, "step": 1, "signbytes": "0101"}', [], 1, "canonical"),
    ("signature-not-base64", "BAD_SIGNATURE", [], 1, "base64"),
    ("signature-of-another-key", "WRONG_KEY", target(CHAIN, ED_PUBLIC_KEY), 1, "does not verify"),
    ("public-key-not-hex", '{"height": "5", "round": 0, "step": 1}', ["--chain-id", CHAIN, "--public-key", "0xzz"],
     2, "--public-key"),
    ("public-key-without-0x", '{"height": "5", "round": 0, "step": 1}',
     ["--chain-id", CHAIN, "--public-key", secp_public_key().hex()], 2, "0x"),
    ("public-key-wrong-length", '{"height": "5", "round": 0, "step": 1}',
     ["--chain-id", CHAIN, "--public-key", "0x" + "ab" * 48], 2, "48 bytes"),
    ("empty-chain-id", '{"height": "5", "round": 0, "step": 1}',
     ["--chain-id", "", "--public-key", "0x" + secp_public_key().hex()], 2, "chain_id"),
]  # fmt: skip


def _bad_content(content: str) -> str:
    good = node_state(NODE_VOTE)
    if content == "BAD_SIGNATURE":
        return json.dumps({**good, "signature": "not base64!"})
    if content == "WRONG_KEY":
        return json.dumps(good)  # signed with the secp256k1 key, imported for the ed25519 key
    return content


@pytest.mark.parametrize(
    ("content", "args", "code", "says"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_fails_clearly_and_writes_nothing(
    content: str, args: list[str], code: int, says: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    source = write(tmp_path / "state.json", _bad_content(content))
    done = protection_here("import-cometbft-state", "--data-dir", data_dir, *(args or target()), source)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.startswith("error: ") and says in done.stderr, done.stderr
    assert not data_dir.exists(), "a refused document never even opens the store"


def test_conflicting_state_refused_and_stored_state_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = node_state(NODE_VOTE)
    done = protection_here("import-cometbft-state", "--data-dir", data_dir, *target(), write(tmp_path / "a", first))
    assert done.returncode == 0, done.stderr
    other = node_state(vote(PRECOMMIT, 100, 1, "block-b"))  # same height/round/step, another block
    done = protection_here("import-cometbft-state", "--data-dir", data_dir, *target(), write(tmp_path / "b", other))
    assert done.returncode == 1
    assert "conflicts" in done.stderr and "nothing was imported" in done.stderr
    assert export(data_dir) == first


def test_usage_errors(tmp_path: Path) -> None:
    state = write(tmp_path / "state.json", {"height": "1", "round": 0, "step": 1})
    no_store = protection_here("import-cometbft-state", *target(), state)
    assert no_store.returncode == 2 and "--data-dir" in no_store.stderr
    missing = protection_here("import-cometbft-state", "--data-dir", tmp_path / "d", *target(), tmp_path / "nope.json")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    no_chain = protection_here("export-cometbft-state", "--data-dir", tmp_path / "d", "--public-key", "0x" + "ab" * 33)
    assert no_chain.returncode == 2 and "--chain-id" in no_chain.stderr
    assert not (tmp_path / "d").exists()
