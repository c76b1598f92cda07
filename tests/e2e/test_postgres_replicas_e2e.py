"""Two real ``signer serve`` replicas on one PostgreSQL database, under concurrent conflicting load.

Issue 6, "Done when": two ``signer serve --dev --protection-dsn DSN`` processes (separate data dirs,
the same dev keys, one protection history) receive, from 16 concurrent clients split across both,
conflicting attestations and proposals for the same validators: double votes, surrounding and
surrounded votes, double proposals, and identical retries, in a seeded random order. For every
conflict set exactly one signing root is signed, and the EIP-3076 export taken afterwards
(``signer protection export --protection-dsn``) holds no slashable pair and exactly the signed
messages.

How the load makes the replicas race: each validator has one attestation conflict set (nested
intervals ``(b+k, b+7-k)`` for k = 0..3, so every pair is a surround, plus 2-3 block roots at one or
two of the levels, so there are double votes too) and one proposal conflict set (3-4 bodies at one
slot); every pair inside a set is slashable and, since each validator starts with an empty history,
the first one to take the validator's lock must win. The items of a set are consecutive in the
stream, and the stream is dealt job by job to the 16 clients round robin (even clients talk to
replica A, odd ones to replica B), so the members of one set are in flight at the same time on
both replicas. Some jobs are ``SignBeaconAttestations`` batches of 2-3 attestations of different
validators (nearby in the stream; a batch may name each key once, the service refuses later items
of a key); some items are sent twice (a client retry), which must get the same answer both times.

Signing roots are computed independently (tests.e2e.harness, hashlib SSZ) and every signature is
verified with blspy against the public key both replicas list.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blspy
import pytest

from signer.api._proto.v1 import lister_pb2, lister_pb2_grpc, responsestate_pb2, signer_pb2, signer_pb2_grpc
from tests.e2e.harness import MAINNET_GENESIS_VALIDATORS_ROOT, SignerProcess
from tests.e2e.test_eth2_e2e import Att, att, proposal
from tests.postgres import PostgresServer, postgres_server  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
SEED = int(os.environ.get("SIGNER_E2E_SEED", "20060006"))
"""The order of the load; every failure message names it (``SIGNER_E2E_SEED=N`` replays another)."""
VALIDATORS = 32
CLIENTS = 16
CALL_TIMEOUT_S = 60.0
ROUNDS = 3
BATCH_LOOKAHEAD = 12


@dataclass(frozen=True, eq=False)
class Item:
    """One message of a conflict set, as the test sees it (request built on demand)."""

    conflict_set: str
    index: int
    label: str
    signing_root: bytes
    attestation: Att | None = None
    block: tuple[int, str] | None = None

    @property
    def account(self) -> str:
        return f"dev/{self.index}"

    def attestation_request(self) -> signer_pb2.SignBeaconAttestationRequest:
        assert self.attestation is not None
        return self.attestation.request()

    def proposal_request(self) -> signer_pb2.SignBeaconProposalRequest:
        assert self.block is not None
        return proposal(self.index, *self.block)[0]


@dataclass(frozen=True)
class Answer:
    item: Item
    replica: str
    state: int
    signature: bytes


def attestation_set(rng: random.Random, rnd: int, index: int) -> list[Item]:
    """Nested votes (every pair surrounds) with double votes at one or two levels.

    Round ``rnd`` lies in epochs [1000 rnd, 1000 rnd + 1000): above every vote of earlier rounds, so
    sets of different rounds never conflict, whichever of their members won.
    """
    base = 1_000 * rnd + rng.randrange(1, 990)
    doubled = set(rng.sample(range(4), k=rng.randint(1, 2)))
    items = []
    for level in range(4):
        for variant in range(rng.randint(2, 3) if level in doubled else 1):
            a = att(index, base + level, base + 7 - level, block=f"v{index}/l{level}/b{variant}")
            label = f"att({a.source_epoch},{a.target_epoch},b{variant})"
            items.append(Item(f"r{rnd}/attestations/dev/{index}", index, label, a.signing_root(), attestation=a))
    return items


def block_set(rng: random.Random, rnd: int, index: int) -> list[Item]:
    """Proposals of different bodies at one slot (every pair a double proposal), above earlier rounds."""
    slot = 100_000 * rnd + rng.randrange(1, 99_000)
    items = []
    for variant in range(rng.randint(3, 4)):
        body = f"body/{index}/{variant}"
        _, signing_root = proposal(index, slot, body)
        label = f"block({slot},{body})"
        items.append(Item(f"r{rnd}/blocks/dev/{index}", index, label, signing_root, block=(slot, body)))
    return items


def build_jobs(rng: random.Random, rnd: int) -> list[list[Item]]:
    """The seeded stream of jobs of one round (a job: one unary call, or one batch call of 2-3
    attestations): an attestation set and a block set per validator."""
    sets = [attestation_set(rng, rnd, i) for i in range(VALIDATORS)]
    sets += [block_set(rng, rnd, i) for i in range(VALIDATORS)]
    rng.shuffle(sets)
    stream: list[Item] = []
    for conflict_set in sets:
        items = list(conflict_set)
        if rng.random() < 0.5:  # a client retry: the identical request once more
            items.append(rng.choice(items))
        rng.shuffle(items)
        stream.extend(items)
    # A batch names each key at most once (the service refuses later items of a key): a batch takes
    # the next item and attestations of other validators from the next few positions of the stream.
    jobs: list[list[Item]] = []
    while stream:
        job = [stream.pop(0)]
        if job[0].attestation is not None and rng.random() < 0.25:
            size = rng.choice((2, 3))
            for candidate in list(stream[:BATCH_LOOKAHEAD]):
                if (
                    len(job) < size
                    and candidate.attestation is not None
                    and candidate.index not in {i.index for i in job}
                ):
                    job.append(candidate)
                    stream.remove(candidate)
        jobs.append(job)
    return jobs


def run_client(
    name: str, stub: signer_pb2_grpc.SignerStub, rounds: list[list[list[Item]]], start: threading.Barrier
) -> list[Answer]:
    """One client: the jobs of each round, every round started together with the other clients."""
    answers: list[Answer] = []
    try:
        for jobs in rounds:
            start.wait(timeout=CALL_TIMEOUT_S)
            for job in jobs:
                answers += call(name, stub, job)
    except BaseException:
        start.abort()  # the other clients stop waiting for this one
        raise
    return answers


def call(name: str, stub: signer_pb2_grpc.SignerStub, job: list[Item]) -> list[Answer]:
    if len(job) > 1:
        request = signer_pb2.SignBeaconAttestationsRequest(requests=[i.attestation_request() for i in job])
        responses = list(stub.SignBeaconAttestations(request, timeout=CALL_TIMEOUT_S).responses)
    elif job[0].attestation is not None:
        responses = [stub.SignBeaconAttestation(job[0].attestation_request(), timeout=CALL_TIMEOUT_S)]
    else:
        responses = [stub.SignBeaconProposal(job[0].proposal_request(), timeout=CALL_TIMEOUT_S)]
    assert len(responses) == len(job), f"{name}: {len(responses)} answers for {len(job)} requests"
    return [Answer(i, name, r.state, bytes(r.signature)) for i, r in zip(job, responses, strict=True)]


# --- the slashable-pair check of an EIP-3076 document (independent of signer.protection) -----------


def slashable_pairs(document: dict[str, Any]) -> list[str]:
    """Every slashable pair in an interchange document: double blocks, double votes, surrounds."""
    found: list[str] = []
    for entry in document["data"]:
        key = entry["pubkey"][:12]
        slots = Counter(int(b["slot"]) for b in entry["signed_blocks"])
        found += [f"{key}: double block at slot {slot}" for slot, n in slots.items() if n > 1]
        votes = [(int(a["source_epoch"]), int(a["target_epoch"])) for a in entry["signed_attestations"]]
        for i, (s1, t1) in enumerate(votes):
            for s2, t2 in votes[i + 1 :]:
                if t1 == t2:
                    found.append(f"{key}: double vote at target {t1}: ({s1},{t1}) ({s2},{t2})")
                elif (s1 < s2 and t2 < t1) or (s2 < s1 and t1 < t2):
                    found.append(f"{key}: surround: ({s1},{t1}) ({s2},{t2})")
    return found


def test_slashable_pair_check_finds_every_offence() -> None:
    """The export check below can fail: each offence, in either order, is found; a safe history is not."""

    def doc(blocks: list[int], votes: list[tuple[int, int]]) -> dict[str, Any]:
        return {"data": [{
            "pubkey": "0x" + "aa" * 48,
            "signed_blocks": [{"slot": str(s)} for s in blocks],
            "signed_attestations": [{"source_epoch": str(s), "target_epoch": str(t)} for s, t in votes],
        }]}  # fmt: skip

    assert slashable_pairs(doc([1, 2, 3], [(1, 2), (2, 3), (2, 5), (5, 6)])) == []
    assert len(slashable_pairs(doc([4, 4], []))) == 1
    assert len(slashable_pairs(doc([], [(1, 3), (2, 3)]))) == 1
    assert len(slashable_pairs(doc([], [(1, 6), (2, 5)]))) == 1  # surrounding first
    assert len(slashable_pairs(doc([], [(2, 5), (1, 6)]))) == 1  # surrounded first


# --- the test ------------------------------------------------------------------------------------


@pytest.fixture
def replicas(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[tuple[str, SignerProcess, SignerProcess]]:  # noqa: F811
    dsn = postgres_server.new_database()
    args = ["--protection-dsn", dsn]
    a = SignerProcess.dev(tmp_path / "replica-a", dev_keys=VALIDATORS, extra_args=args)
    b = SignerProcess.dev(tmp_path / "replica-b", dev_keys=VALIDATORS, extra_args=args)
    try:
        with ThreadPoolExecutor(2) as pool:  # both start at once (each waits ~1-2 s for "signer ready")
            for started in [pool.submit(a.start), pool.submit(b.start)]:
                started.result()
        yield dsn, a, b
    finally:
        a.stop()
        b.stop()


def listed_keys(proc: SignerProcess) -> dict[str, bytes]:
    lister = lister_pb2_grpc.ListerStub(proc.channel())
    resp = lister.ListAccounts(lister_pb2.ListAccountsRequest(paths=["dev"]), timeout=30)
    return {a.name: bytes(a.public_key) for a in resp.Accounts}


def test_two_replicas_sign_exactly_one_of_each_conflict_set(
    replicas: tuple[str, SignerProcess, SignerProcess], tmp_path: Path
) -> None:
    dsn, a, b = replicas
    assert a.ready["protection"] == b.ready["protection"] == "postgres"
    keys = listed_keys(a)
    assert keys == listed_keys(b), "the dev replicas must hold the same keys"
    assert len(keys) == VALIDATORS

    rng = random.Random(SEED)
    rounds = [build_jobs(rng, rnd) for rnd in range(ROUNDS)]
    jobs = [job for jobs_of_round in rounds for job in jobs_of_round]
    per_client = [[jobs_of_round[c::CLIENTS] for jobs_of_round in rounds] for c in range(CLIENTS)]
    # Every client its own connection (a local subchannel pool), as separate validator clients have.
    options = [("grpc.use_local_subchannel_pool", 1)]
    clients = [
        (f"client{c}->{'AB'[c % 2]}", signer_pb2_grpc.SignerStub((a, b)[c % 2].channel(options=options)))
        for c in range(CLIENTS)
    ]
    barrier = threading.Barrier(CLIENTS)
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(run_client, name, stub, per_client[c], barrier) for c, (name, stub) in enumerate(clients)
        ]
        answers = [answer for future in futures for answer in future.result()]
    elapsed = time.perf_counter() - started
    requests = sum(len(j) for j in jobs)
    assert len(answers) == requests
    print(f"\n{requests} requests ({len(jobs)} calls) from {CLIENTS} clients over 2 replicas: "
          f"{elapsed:.2f} s, {requests / elapsed:.0f} requests/s (seed {SEED})")  # fmt: skip

    # Every answer is a decision: signed with a signature, or denied without one. Nothing FAILED.
    for answer in answers:
        where = f"{answer.item.label} on {answer.replica} (seed {SEED})"
        assert answer.state in (SUCCEEDED, DENIED), f"{where}: state {answer.state}"
        assert (len(answer.signature) == 96) == (answer.state == SUCCEEDED), f"{where}: signature vs state"

    by_set: dict[str, list[Answer]] = {}
    for answer in answers:
        by_set.setdefault(answer.item.conflict_set, []).append(answer)
    assert len(by_set) == 2 * VALIDATORS * ROUNDS
    winners: dict[str, Item] = {}
    cross_replica_denials = 0
    for conflict_set, got in sorted(by_set.items()):
        assert {x.replica[-1] for x in got} == {"A", "B"}, f"{conflict_set} was not split across both replicas"
        signed = {x.item.signing_root for x in got if x.state == SUCCEEDED}
        detail = ", ".join(f"{x.item.label}@{x.replica[-1]}={'signed' if x.state == SUCCEEDED else 'denied'}"
                           for x in got)  # fmt: skip
        assert len(signed) == 1, f"{conflict_set}: {len(signed)} signed (seed {SEED}): {detail}"
        # An identical retry gets the same answer (and, signed, the same deterministic signature).
        for signing_root in {x.item.signing_root for x in got}:
            same = {(x.state, x.signature) for x in got if x.item.signing_root == signing_root}
            assert len(same) == 1, f"{conflict_set}: identical requests answered differently: {detail}"
        winner = next(x for x in got if x.state == SUCCEEDED)
        winners[conflict_set] = winner.item
        cross_replica_denials += sum(1 for x in got if x.state == DENIED and x.replica[-1] != winner.replica[-1])
        public_key = blspy.G1Element.from_bytes(keys[winner.item.account])
        signature = blspy.G2Element.from_bytes(winner.signature)
        assert blspy.PopSchemeMPL.verify(public_key, winner.item.signing_root, signature), winner.item.label
    # The replicas share one history: a replica denied what only the other one had signed.
    assert cross_replica_denials > 0
    assert {x.replica[-1] for x in answers if x.state == SUCCEEDED} == {"A", "B"}

    # The EIP-3076 export afterwards: no slashable pair, and exactly the signed messages.
    exported = tmp_path / "export.json"
    done = subprocess.run(
        [sys.executable, "-m", "signer", "protection", "export", "--data-dir", str(tmp_path / "cli"),
         "--protection-dsn", dsn, "--output", str(exported)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    document = json.loads(exported.read_text())
    assert document["metadata"]["genesis_validators_root"] == "0x" + MAINNET_GENESIS_VALIDATORS_ROOT.hex()
    assert slashable_pairs(document) == []
    history = {entry["pubkey"]: entry for entry in document["data"]}
    assert set(history) == {"0x" + key.hex() for key in keys.values()}
    for index in range(VALIDATORS):
        entry = history["0x" + keys[f"dev/{index}"].hex()]
        blocks = [winners[f"r{rnd}/blocks/dev/{index}"] for rnd in range(ROUNDS)]
        votes = [winners[f"r{rnd}/attestations/dev/{index}"] for rnd in range(ROUNDS)]
        assert sorted((int(x["slot"]), x["signing_root"]) for x in entry["signed_blocks"]) == sorted(
            (b.block[0], "0x" + b.signing_root.hex()) for b in blocks if b.block is not None
        ), f"dev/{index}"
        assert sorted(
            (int(x["source_epoch"]), int(x["target_epoch"]), x["signing_root"]) for x in entry["signed_attestations"]
        ) == sorted(
            (v.attestation.source_epoch, v.attestation.target_epoch, "0x" + v.signing_root.hex())
            for v in votes
            if v.attestation is not None
        ), f"dev/{index}"
