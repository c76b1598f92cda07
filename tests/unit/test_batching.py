"""The coalescing Batcher over a real SigningService (emulated keys, SQLite protection).

The only thing added to the real components is observation: the store subclass records the size
and keys of every protection transaction, and can hold a transaction at a gate so that requests
pile up behind it deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from signer import errors
from signer.batching import Batcher
from signer.cometbft.consensus import consensus_check
from signer.cometbft.messages import BlockID, PartSetHeader, SignedMsgType, Timestamp, Vote
from signer.config import NetworkConfig
from signer.crypto import bls, secp256k1
from signer.eth2.containers import AttestationData, Checkpoint
from signer.eth2.networks import Network, network_from_config
from signer.eth2.signing import DomainType, compute_signing_root
from signer.keys.emulated import EmulatedKeyModule
from signer.keys.keyring import KeyRing
from signer.protection.sqlite import SqliteStore
from signer.protection.store import ConsensusSignature
from signer.service import (
    AttestationRequest,
    ConsensusRequest,
    GenericRequest,
    KeyRef,
    Outcome,
    Prepared,
    SigningService,
    Staged,
)
from signer.types import LOCAL_CLIENT, ClientIdentity, KeyInfo, ProtectionCheck, Scheme, Verdict
from tests.stores import keys_never_signed

KEYS = 12
PIN = "unit-test-module-pin"


class ObservedStore(SqliteStore):
    """The real SQLite store; remembers each transaction's public keys; optionally waits at a gate."""

    def __init__(self, path: Path, genesis_validators_root: bytes) -> None:
        super().__init__(path, genesis_validators_root)
        self.transactions: list[list[bytes]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        self.transactions.append([c.public_key for c in checks])
        self.entered.set()
        self.gate.wait(10)
        return super().check_and_record(checks)


@pytest.fixture(scope="module")
def network() -> Network:
    return network_from_config(NetworkConfig())


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedKeyModule]:
    m = EmulatedKeyModule(tmp_path_factory.mktemp("keys"), PIN, create=True, scrypt_n=1024)
    m.generate_many([f"w/{i}" for i in range(KEYS)], Scheme.BLS)
    yield m
    m.close()


@pytest.fixture
def keys(module: EmulatedKeyModule) -> list[KeyInfo]:
    return sorted(module.list_keys(), key=lambda k: int(k.name.split("/")[1]))


@pytest.fixture
def store(tmp_path: Path, network: Network) -> Iterator[ObservedStore]:
    s = ObservedStore(tmp_path / "protection.sqlite", network.genesis_validators_root)
    keys_never_signed(s)
    yield s
    s.gate.set()
    s.close()


@pytest.fixture
def service(network: Network, module: EmulatedKeyModule, store: ObservedStore) -> SigningService:
    return SigningService(network, KeyRing(module), store)


def request(network: Network, key: KeyInfo, source_epoch: int, target_epoch: int) -> AttestationRequest:
    data = AttestationData(
        slot=target_epoch * 32,
        index=0,
        beacon_block_root=bytes([target_epoch % 256]) * 32,
        source=Checkpoint(epoch=source_epoch, root=b"\x01" * 32),
        target=Checkpoint(epoch=target_epoch, root=b"\x02" * 32),
    )
    return AttestationRequest(
        KeyRef(public_key=key.public_key), network.domain(DomainType.BEACON_ATTESTER, target_epoch), data
    )


def verifies(key: KeyInfo, req: AttestationRequest, outcome: Outcome) -> bool:
    root = compute_signing_root(req.data.hash_tree_root(), req.domain)
    return outcome.signature is not None and bls.verify(key.public_key, root, outcome.signature)


def submit_all(
    batcher: Batcher, reqs: list[AttestationRequest], client: ClientIdentity = LOCAL_CLIENT
) -> list[Outcome | BaseException]:
    """Submit each request from its own thread (as gRPC workers do); results in request order."""
    results: list[Outcome | BaseException | None] = [None] * len(reqs)

    def one(n: int) -> None:
        try:
            results[n] = batcher.sign(client, [reqs[n]])[0]
        except BaseException as exc:
            results[n] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def hold_first(batcher: Batcher, store: ObservedStore, req: AttestationRequest) -> threading.Thread:
    """Start one request that runs alone and blocks inside its protection transaction."""
    store.gate.clear()
    store.entered.clear()
    t = threading.Thread(target=batcher.sign, args=(LOCAL_CLIENT, [req]))
    t.start()
    assert store.entered.wait(10)
    return t


def wait_pending(batcher: Batcher, count: int) -> None:
    deadline = time.monotonic() + 10
    while batcher.pending < count:
        assert time.monotonic() < deadline, f"only {batcher.pending} of {count} requests queued"
        time.sleep(0.002)


def test_lone_request_does_not_wait_for_the_window(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=100)  # the maximum window: waiting it would show
    try:
        for n in range(3):
            started = time.monotonic()
            (outcome,) = batcher.sign(LOCAL_CLIENT, [request(network, keys[0], 0, n + 1)])
            assert time.monotonic() - started < 0.09
            assert verifies(keys[0], request(network, keys[0], 0, n + 1), outcome)
        assert [len(t) for t in store.transactions] == [1, 1, 1]
    finally:
        batcher.close()


class Breaking(SigningService):
    """The real service; ``breaks`` makes its commit, or the finish of what it staged, raise a bug."""

    breaks: str | None = None

    def commit(self, items: Sequence[Prepared]) -> Staged:
        if self.breaks == "commit":
            raise RuntimeError("a bug")
        staged = super().commit(items)
        if self.breaks != "finish":
            return staged

        def finish() -> list[Outcome]:
            raise RuntimeError("a bug")

        return Staged(finish)


@pytest.mark.parametrize("where", ["commit", "finish"])
def test_a_bug_in_a_lone_request_refuses_it_and_frees_both_stages(
    network: Network, module: EmulatedKeyModule, store: ObservedStore, keys: list[KeyInfo], where: str
) -> None:
    service = Breaking(network, KeyRing(module), store)
    batcher = Batcher(service, window_ms=1, max_running=1)
    try:
        service.breaks = where
        (broken,) = batcher.sign(LOCAL_CLIENT, [request(network, keys[0], 0, 1)])
        assert isinstance(broken.error, errors.InternalError) and "RuntimeError" in broken.error.message
        service.breaks = None
        # Both stages were given back: the next requests, alone or queued, sign (a stage kept
        # would leave the queued ones waiting for ever).
        results = submit_all(batcher, [request(network, keys[n], 0, 2) for n in range(1, 4)])
        assert all(isinstance(r, Outcome) and r.ok for r in results), results
    finally:
        batcher.close()


def test_concurrent_requests_share_one_transaction_each_gets_its_own_outcome(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=50, max_batch=256)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        reqs = [request(network, keys[n], 0, 1) for n in range(1, KEYS)]
        results: list[Outcome | BaseException] = []
        runner = threading.Thread(target=lambda: results.extend(submit_all(batcher, reqs)))
        runner.start()
        wait_pending(batcher, len(reqs))
        store.gate.set()
        runner.join(30)
        first.join(30)
        assert [len(t) for t in store.transactions] == [1, len(reqs)]
        for n, outcome in enumerate(results, start=1):
            assert isinstance(outcome, Outcome)
            assert verifies(keys[n], reqs[n - 1], outcome), f"request {n} got another request's signature"
    finally:
        batcher.close()


def test_window_closes_the_batch_after_the_oldest_request(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=60, max_batch=256, max_running=2)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        started = time.monotonic()
        second = threading.Thread(
            target=batcher.sign,
            args=(LOCAL_CLIENT, [request(network, keys[1], 0, 1)]),
        )
        second.start()
        wait_pending(batcher, 1)
        store.gate.set()  # the protect stage is free: the batch starts when its window closes
        while len(store.transactions) < 2:
            assert time.monotonic() - started < 10
            time.sleep(0.001)
        waited = time.monotonic() - started
        second.join(10)
        first.join(10)
        assert 0.055 <= waited < 1.0
        assert [len(t) for t in store.transactions] == [1, 1]
    finally:
        batcher.close()


class GatedKeys:
    """The real key module; ``sign_many`` can wait at a gate (a batch held in its signing stage)."""

    def __init__(self, module: EmulatedKeyModule) -> None:
        self.module = module
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        self.entered.set()
        self.gate.wait(10)
        return self.module.sign_many(items)

    def __getattr__(self, name: str) -> object:
        return getattr(self.module, name)


def test_next_batch_is_committed_while_one_signs_and_nothing_is_answered_before_its_commit(
    network: Network, module: EmulatedKeyModule, store: ObservedStore, keys: list[KeyInfo]
) -> None:
    gated = GatedKeys(module)
    service = SigningService(network, KeyRing(gated), store)  # type: ignore[arg-type]
    batcher = Batcher(service, window_ms=1, max_batch=256, max_running=2)
    try:
        gated.gate.clear()
        results: list[Outcome | BaseException] = []
        first = threading.Thread(target=lambda: results.extend(submit_all(batcher, [request(network, keys[0], 0, 1)])))
        first.start()
        assert gated.entered.wait(10)  # committed, now held while signing
        assert [len(t) for t in store.transactions] == [1]
        # The protect stage is free: the next request is checked and committed at once, while the
        # first batch still signs; neither has an answer before its own signature exists.
        store.entered.clear()
        second = threading.Thread(target=lambda: results.extend(submit_all(batcher, [request(network, keys[1], 0, 1)])))
        second.start()
        assert store.entered.wait(10)
        assert not results
        gated.gate.set()
        first.join(10)
        second.join(10)
        assert [len(t) for t in store.transactions] == [1, 1]
        assert all(isinstance(r, Outcome) and r.ok for r in results)
    finally:
        gated.gate.set()
        batcher.close()


def test_max_batch_cuts_early(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=100, max_batch=4, max_running=1)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        reqs = [request(network, keys[n], 0, 1) for n in range(1, 9)]
        results: list[Outcome | BaseException] = []
        runner = threading.Thread(target=lambda: results.extend(submit_all(batcher, reqs)))
        runner.start()
        wait_pending(batcher, 8)
        store.gate.set()
        runner.join(30)
        first.join(30)
        assert [len(t) for t in store.transactions] == [1, 4, 4]
        assert all(isinstance(r, Outcome) and r.ok for r in results)
    finally:
        batcher.close()


def test_two_requests_for_one_key_go_to_different_batches(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=20, max_batch=256, max_running=1)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        same = request(network, keys[1], 0, 1)
        # keys[1] three times (by public key and by account name), keys[2] once.
        by_name = AttestationRequest(KeyRef(account=keys[1].name), same.domain, same.data)
        reqs = [same, request(network, keys[2], 0, 1), same, by_name]
        results: list[Outcome | BaseException] = []
        runner = threading.Thread(target=lambda: results.extend(submit_all(batcher, reqs)))
        runner.start()
        wait_pending(batcher, len(reqs))
        store.gate.set()
        runner.join(30)
        first.join(30)
        for keys_in_tx in store.transactions:
            assert len(keys_in_tx) == len(set(keys_in_tx)), "a batch named a key twice"
        assert sorted(len(t) for t in store.transactions) == [1, 1, 1, 2]
        outcomes = [r for r in results if isinstance(r, Outcome)]
        assert len(outcomes) == 4 and all(o.ok for o in outcomes), [o.error for o in outcomes]
        # Re-signing identical data answers the same signature.
        assert outcomes[0].signature == outcomes[2].signature == outcomes[3].signature
    finally:
        batcher.close()


def test_full_queue_raises_rate_limited(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=1, max_batch=256, queue_size=2, max_running=1)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        reqs = [request(network, keys[n], 0, 1) for n in (1, 2)]
        results: list[Outcome | BaseException] = []
        runner = threading.Thread(target=lambda: results.extend(submit_all(batcher, reqs)))
        runner.start()
        wait_pending(batcher, 2)
        with pytest.raises(errors.RateLimited, match="queue is full") as refused:
            batcher.sign(LOCAL_CLIENT, [request(network, keys[3], 0, 1)])
        assert refused.value.retry_after_s > 0
        store.gate.set()
        runner.join(30)
        first.join(30)
        assert all(isinstance(r, Outcome) and r.ok for r in results)
        # Once the queue drains, the refused request goes through.
        (again,) = batcher.sign(LOCAL_CLIENT, [request(network, keys[3], 0, 1)])
        assert again.ok
    finally:
        batcher.close()


def test_refused_items_do_not_fail_the_others(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    # keys[1] has a record at target 5: an attestation at target 3 is below the lower bound.
    (setup,) = service.sign(LOCAL_CLIENT, [request(network, keys[1], 0, 5)])
    assert setup.ok
    store.transactions.clear()
    batcher = Batcher(service, window_ms=20, max_batch=256, max_running=1)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        bad_domain = request(network, keys[3], 0, 1)
        reqs = [
            request(network, keys[2], 0, 1),
            request(network, keys[1], 0, 3),  # refused by protection
            AttestationRequest(KeyRef(account="w/nobody"), bad_domain.domain, bad_domain.data),  # unknown key
            AttestationRequest(bad_domain.key, b"\x00" * 32, bad_domain.data),  # wrong domain
            request(network, keys[4], 0, 1),
        ]
        results: list[Outcome | BaseException] = []
        runner = threading.Thread(target=lambda: results.extend(submit_all(batcher, reqs)))
        runner.start()
        wait_pending(batcher, len(reqs))
        store.gate.set()
        runner.join(30)
        first.join(30)
        assert len(store.transactions) == 2  # the held one, then all five in one batch
        ok_a, slashable, unknown, wrong_domain, ok_b = (r if isinstance(r, Outcome) else None for r in results)
        assert ok_a is not None and verifies(keys[2], reqs[0], ok_a)
        assert ok_b is not None and verifies(keys[4], reqs[4], ok_b)
        assert slashable is not None and isinstance(slashable.error, errors.TargetNotAboveLowerBound)
        assert unknown is not None and isinstance(unknown.error, errors.UnknownKey)
        assert wrong_domain is not None and isinstance(wrong_domain.error, errors.RequestError)
    finally:
        batcher.close()


def test_explicit_batches_pass_straight_through_in_order(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=100)
    try:
        reqs = [request(network, keys[n], 0, 2) for n in (5, 3, 7)]
        outcomes = batcher.sign(LOCAL_CLIENT, reqs)
        assert [verifies(keys[n], r, o) for n, r, o in zip((5, 3, 7), reqs, outcomes, strict=True)] == [True] * 3
        assert [len(t) for t in store.transactions] == [3]
    finally:
        batcher.close()


def test_requests_of_several_clients_share_one_transaction(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    # Each request was authorized for its own client when it was prepared: one queue serves all.
    batcher = Batcher(service, window_ms=20, max_batch=256, max_running=1)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        results: list[Outcome | BaseException] = []
        clients = [ClientIdentity("vc-a"), ClientIdentity("vc-b"), ClientIdentity("vc-c")]
        runners = [
            threading.Thread(
                target=lambda n=n: results.extend(
                    submit_all(batcher, [request(network, keys[n + 1], 0, 1)], clients[n])
                )
            )
            for n in range(3)
        ]
        for runner in runners:
            runner.start()
        wait_pending(batcher, 3)
        store.gate.set()
        for runner in runners:
            runner.join(30)
        first.join(30)
        assert [len(t) for t in store.transactions] == [1, 3]
        assert len(results) == 3 and all(isinstance(r, Outcome) and r.ok for r in results)
    finally:
        store.gate.set()
        batcher.close()


def test_a_request_with_nothing_to_protect_is_signed_while_the_store_is_held(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=100, max_running=1)
    try:
        first = hold_first(batcher, store, request(network, keys[0], 0, 1))
        randao = GenericRequest(KeyRef(public_key=keys[1].public_key), network.domain(DomainType.RANDAO, 1), b"\5" * 32)
        started = time.monotonic()
        (outcome,) = batcher.sign(LOCAL_CLIENT, [randao])  # queued, it would wait for the gate (10 s)
        assert time.monotonic() - started < 5
        assert not store.gate.is_set()  # the first batch is still held in its transaction
        assert outcome.ok and outcome.signature is not None
        root = compute_signing_root(randao.data, randao.domain)
        assert bls.verify(keys[1].public_key, root, outcome.signature)
        assert batcher.pending == 0 and len(store.transactions) == 1
        store.gate.set()
        first.join(10)
    finally:
        store.gate.set()
        batcher.close()


def test_close_refuses_queued_requests(
    service: SigningService, store: ObservedStore, network: Network, keys: list[KeyInfo]
) -> None:
    batcher = Batcher(service, window_ms=1, max_running=1)
    first = hold_first(batcher, store, request(network, keys[0], 0, 1))
    results: list[Outcome | BaseException] = []
    runner = threading.Thread(target=lambda: results.extend(submit_all(batcher, [request(network, keys[1], 0, 1)])))
    runner.start()
    wait_pending(batcher, 1)
    closer = threading.Thread(target=batcher.close)
    closer.start()
    runner.join(10)
    store.gate.set()
    closer.join(10)
    first.join(10)
    (queued,) = results
    assert isinstance(queued, Outcome) and isinstance(queued.error, errors.RateLimited)
    with pytest.raises(errors.RateLimited, match="shutting down"):
        batcher.sign(LOCAL_CLIENT, [request(network, keys[2], 0, 1)])


def comet_vote(height: int, block: int = 1) -> Vote:
    return Vote(
        type=SignedMsgType.PREVOTE,
        height=height,
        round=0,
        block_id=BlockID(hash=bytes([block]) * 32, part_set_header=PartSetHeader(total=1, hash=b"\x09" * 32)),
        timestamp=Timestamp(seconds=1_700_000_000 + height),
        validator_address=b"\1" * 20,
        validator_index=0,
    )


def test_votes_of_several_chains_share_one_transaction_and_one_signature_record(
    tmp_path: Path, network: Network, store: ObservedStore
) -> None:
    chains = [f"chain-{n}" for n in range(4)]
    comet = EmulatedKeyModule(tmp_path / "comet", PIN, create=True, scrypt_n=1024)
    try:
        infos = {c: comet.generate(f"comet/{c}", Scheme.SECP256K1) for c in [*chains, "chain-hold"]}
        shared = comet.generate("comet/shared", Scheme.ED25519)
        service = SigningService(
            network, KeyRing(comet, chains={**{c: f"comet/{c}" for c in infos}, "shared-a": "comet/shared",
                                                 "shared-b": "comet/shared"}), store)  # fmt: skip
        signature_records: list[int] = []
        record = store.record_consensus_signatures

        def counted(signatures: Sequence[ConsensusSignature]) -> None:
            signature_records.append(len(signatures))
            record(signatures)

        store.record_consensus_signatures = counted  # type: ignore[method-assign]
        batcher = Batcher(service, window_ms=20, max_batch=256, max_running=1)
        try:
            store.gate.clear()
            store.entered.clear()
            held = ConsensusRequest("chain-hold", comet_vote(7))
            first = threading.Thread(target=batcher.sign, args=(LOCAL_CLIENT, [held]))
            first.start()
            assert store.entered.wait(10)
            reqs = [ConsensusRequest(c, comet_vote(7)) for c in chains]
            reqs += [ConsensusRequest("shared-a", comet_vote(7)), ConsensusRequest("shared-b", comet_vote(7))]
            results: list[Outcome | None] = [None] * len(reqs)

            def one(n: int) -> None:
                results[n] = batcher.sign(LOCAL_CLIENT, [reqs[n]])[0]

            threads = [threading.Thread(target=one, args=(n,)) for n in range(len(reqs))]
            for t in threads:
                t.start()
            wait_pending(batcher, len(reqs))
            store.gate.set()
            for t in threads:
                t.join(30)
            first.join(30)
            # The held vote alone; the four chains plus the first vote of the shared key in one
            # transaction, the second vote of the shared key in the next (one key per batch).
            assert sorted(len(t) for t in store.transactions) == [1, 1, 5]
            assert sorted(signature_records) == [1, 1, 5]
            for req, outcome in zip(reqs, results, strict=True):
                assert outcome is not None and outcome.ok, outcome
                assert outcome.signature is not None
                if req.chain_id in infos:
                    digest = secp256k1.sha256(consensus_check(req.chain_id, infos[req.chain_id].public_key,
                                                              req.message).sign_bytes)  # fmt: skip
                    assert secp256k1.verify_digest(infos[req.chain_id].public_key, digest, outcome.signature)
            # A repeat answers the recorded signature (read back from the store, not re-signed).
            (again,) = batcher.sign(LOCAL_CLIENT, [reqs[0]])
            assert again.signature == results[0].signature  # type: ignore[union-attr]
            (conflict,) = batcher.sign(LOCAL_CLIENT, [ConsensusRequest(chains[0], comet_vote(7, 2))])
            assert isinstance(conflict.error, errors.ConflictingConsensusMessage)
            assert shared.public_key not in {i.public_key for i in infos.values()}
        finally:
            batcher.close()
    finally:
        comet.close()
