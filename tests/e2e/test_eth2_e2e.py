"""End to end, Ethereum: a real ``signer serve`` process with the dev keys spoken to over gRPC (eth2-signer-api).

Every test runs on both key modules (``key_module``: "emulated" is ``signer serve --dev``; "pkcs11" is
the same dev keys, names and PIN on a SoftHSM2 token of its own through a config file, see
``SignerProcess.pkcs11_dev``). A missing SoftHSM fails under CI=true and skips elsewhere.

Signing roots are computed here independently (hashlib SSZ in tests.e2e.harness, never
signer.eth2) and signatures are verified with py_ecc (and, for the batch, blspy as well).
Tests on the shared server each use their own dev key, so they do not depend on each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blspy
import grpc
import pytest
from eth_typing import BLSPubkey, BLSSignature
from prometheus_client.parser import text_string_to_metric_families
from py_ecc.bls import G2ProofOfPossession

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    eth2_pb2,
    lister_pb2,
    lister_pb2_grpc,
    responsestate_pb2,
    signer_pb2,
    signer_pb2_grpc,
)
from signer.crypto import bls
from signer.keys.dev import DEV_PIN, dev_bls_secret
from tests.e2e.harness import (
    DOMAIN_BEACON_ATTESTER,
    DOMAIN_BEACON_PROPOSER,
    DOMAIN_RANDAO,
    KEY_MODULES,
    MAINNET_GENESIS_FORK_VERSION,
    SEPOLIA_GENESIS_VALIDATORS_ROOT,
    SignerProcess,
    ref_attestation_data_root,
    ref_block_header_root,
    ref_domain,
    ref_signing_root,
)

pytestmark = pytest.mark.e2e

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
SHARED_KEYS = 16
ATTESTER = ref_domain(DOMAIN_BEACON_ATTESTER)
PROPOSER = ref_domain(DOMAIN_BEACON_PROPOSER)


def root(tag: int | str) -> bytes:
    import hashlib  # noqa: PLC0415

    return hashlib.sha256(str(tag).encode()).digest()


@dataclass(frozen=True)
class Att:
    """An attestation as the test sees it: the request and its independently computed signing root."""

    account: str
    slot: int
    source_epoch: int
    target_epoch: int
    block_root: bytes
    domain: bytes = ATTESTER

    def request(self) -> signer_pb2.SignBeaconAttestationRequest:
        return signer_pb2.SignBeaconAttestationRequest(
            account=self.account,
            domain=self.domain,
            data=eth2_pb2.AttestationData(
                slot=self.slot,
                committee_index=0,
                beacon_block_root=self.block_root,
                source=eth2_pb2.Checkpoint(epoch=self.source_epoch, root=root(f"cp{self.source_epoch}")),
                target=eth2_pb2.Checkpoint(epoch=self.target_epoch, root=root(f"cp{self.target_epoch}")),
            ),
        )

    def signing_root(self) -> bytes:
        data_root = ref_attestation_data_root(
            self.slot,
            0,
            self.block_root,
            (self.source_epoch, root(f"cp{self.source_epoch}")),
            (self.target_epoch, root(f"cp{self.target_epoch}")),
        )
        return ref_signing_root(data_root, self.domain)


def att(
    index: int,
    source_epoch: int,
    target_epoch: int,
    block: int | str = 0,
    *,
    domain: bytes = ATTESTER,
    account: str | None = None,
) -> Att:
    """An attestation by ``dev/index`` (or ``account``) at the first slot of ``target_epoch``."""
    name = account or f"dev/{index}"
    return Att(name, target_epoch * 32, source_epoch, target_epoch, root(f"block{block}"), domain)


def public_key(index: int) -> bytes:
    return bytes(G2ProofOfPossession.SkToPk(int.from_bytes(dev_bls_secret(index), "big")))


def py_ecc_verifies_key(public: bytes, message: bytes, signature: bytes) -> bool:
    """The reference check: py_ecc's G2ProofOfPossession.Verify (0.3 s each)."""
    return bool(G2ProofOfPossession.Verify(BLSPubkey(public), message, BLSSignature(signature)))


def py_ecc_verifies(index: int, message: bytes, signature: bytes) -> bool:
    return py_ecc_verifies_key(public_key(index), message, signature)


def refusals(proc: SignerProcess, offence: str) -> float:
    with urllib.request.urlopen(proc.metrics_url, timeout=10) as resp:  # noqa: S310 - loopback http
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "signer_protection_refusals_total" and sample.labels.get("offence") == offence:
                return sample.value
    raise AssertionError(f"no refusal series for {offence}")


@pytest.fixture(scope="module", params=KEY_MODULES)
def key_module(request: pytest.FixtureRequest) -> str:
    """The key module every server of this file runs on: "emulated" (--dev) or "pkcs11" (SoftHSM2)."""
    return str(request.param)


@pytest.fixture(scope="module")
def server(key_module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignerProcess]:
    root = tmp_path_factory.mktemp(f"eth2-shared-{key_module}")
    proc = SignerProcess.dev_on(key_module, root / "data", dev_keys=SHARED_KEYS).start()
    yield proc
    assert proc.terminate() == 0, proc.logs


@pytest.fixture(scope="module")
def signer(server: SignerProcess) -> signer_pb2_grpc.SignerStub:
    return signer_pb2_grpc.SignerStub(server.channel())


def sign(stub: signer_pb2_grpc.SignerStub, a: Att) -> signer_pb2.SignResponse:
    return stub.SignBeaconAttestation(a.request(), timeout=30)


# --- on the shared server ----------------------------------------------------------------------


def keys_loaded(proc: SignerProcess) -> dict[tuple[str, str], float]:
    """signer_keys_loaded: (module, scheme) -> count."""
    with urllib.request.urlopen(proc.metrics_url, timeout=10) as resp:  # noqa: S310 - loopback http
        text = resp.read().decode()
    return {
        (sample.labels["module"], sample.labels["scheme"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "signer_keys_loaded"
    }


def test_server_runs_on_its_key_module(server: SignerProcess, key_module: str) -> None:
    """The parametrization is real: the server reports the module it was given, with the dev keys."""
    loaded = {key: n for key, n in keys_loaded(server).items() if n}
    assert loaded == {(key_module, "bls"): SHARED_KEYS, (key_module, "secp256k1"): 1, (key_module, "ed25519"): 1}


def test_list_accounts(server: SignerProcess) -> None:
    lister = lister_pb2_grpc.ListerStub(server.channel())
    resp = lister.ListAccounts(lister_pb2.ListAccountsRequest(paths=["dev"]), timeout=30)
    assert resp.state == SUCCEEDED
    accounts = {a.name: bytes(a.public_key) for a in resp.Accounts}
    assert set(accounts) == {f"dev/{i}" for i in range(SHARED_KEYS)}  # BLS only: no CometBFT keys
    for index in (0, 7, SHARED_KEYS - 1):
        assert accounts[f"dev/{index}"] == public_key(index)
    narrowed = lister.ListAccounts(lister_pb2.ListAccountsRequest(paths=["dev/1[0-9]"]), timeout=30)
    assert sorted(a.name for a in narrowed.Accounts) == [f"dev/{i}" for i in range(10, SHARED_KEYS)]


def test_attestation_verifies_and_same_data_gives_same_signature(signer: signer_pb2_grpc.SignerStub) -> None:
    a = att(0, 1, 2, block="a")
    first = sign(signer, a)
    assert first.state == SUCCEEDED
    assert len(first.signature) == 96
    assert py_ecc_verifies(0, a.signing_root(), bytes(first.signature))
    assert not py_ecc_verifies(1, a.signing_root(), bytes(first.signature))  # the check can fail
    again = sign(signer, a)
    assert again.state == SUCCEEDED
    assert again.signature == first.signature


def test_double_vote_denied(server: SignerProcess, signer: signer_pb2_grpc.SignerStub) -> None:
    before = refusals(server, "double_vote")
    assert sign(signer, att(1, 1, 2, block="a")).state == SUCCEEDED
    assert sign(signer, att(1, 1, 2, block="b")).state == DENIED
    assert refusals(server, "double_vote") == before + 1
    assert sign(signer, att(1, 2, 3, block="c")).state == SUCCEEDED  # the key still signs new data


def test_surrounding_vote_denied(server: SignerProcess, signer: signer_pb2_grpc.SignerStub) -> None:
    before = refusals(server, "surrounding_vote")
    assert sign(signer, att(2, 2, 3)).state == SUCCEEDED
    assert sign(signer, att(2, 10, 11)).state == SUCCEEDED
    assert sign(signer, att(2, 4, 12)).state == DENIED  # surrounds (10, 11), above both lower bounds
    assert refusals(server, "surrounding_vote") == before + 1


def test_surrounded_vote_denied(server: SignerProcess, signer: signer_pb2_grpc.SignerStub) -> None:
    before = refusals(server, "surrounded_vote")
    assert sign(signer, att(3, 2, 3)).state == SUCCEEDED
    assert sign(signer, att(3, 4, 10)).state == SUCCEEDED
    assert sign(signer, att(3, 5, 9)).state == DENIED  # inside (4, 10)
    assert refusals(server, "surrounded_vote") == before + 1


def proposal(
    index: int, slot: int, body: str, domain: bytes = PROPOSER
) -> tuple[signer_pb2.SignBeaconProposalRequest, bytes]:
    parent, state, body_root = root("parent"), root("state"), root(body)
    request = signer_pb2.SignBeaconProposalRequest(
        account=f"dev/{index}",
        domain=domain,
        data=eth2_pb2.BeaconBlockHeader(
            slot=slot, proposer_index=index, parent_root=parent, state_root=state, body_root=body_root
        ),
    )
    return request, ref_signing_root(ref_block_header_root(slot, index, parent, state, body_root), domain)


def test_double_proposal_denied(server: SignerProcess, signer: signer_pb2_grpc.SignerStub) -> None:
    before = refusals(server, "double_block_proposal")
    request, signing_root = proposal(4, 100, "body-a")
    first = signer.SignBeaconProposal(request, timeout=30)
    assert first.state == SUCCEEDED
    assert py_ecc_verifies(4, signing_root, bytes(first.signature))
    conflicting, _ = proposal(4, 100, "body-b")
    assert signer.SignBeaconProposal(conflicting, timeout=30).state == DENIED
    assert refusals(server, "double_block_proposal") == before + 1
    repeat = signer.SignBeaconProposal(request, timeout=30)
    assert repeat.state == SUCCEEDED
    assert repeat.signature == first.signature


def test_sign_refuses_proposer_and_attester_domains(signer: signer_pb2_grpc.SignerStub) -> None:
    data = root("some object")
    for domain in (PROPOSER, ATTESTER):
        resp = signer.Sign(signer_pb2.SignRequest(account="dev/5", data=data, domain=domain), timeout=30)
        assert resp.state == DENIED
        assert not resp.signature
    randao = ref_domain(DOMAIN_RANDAO)
    ok = signer.Sign(signer_pb2.SignRequest(account="dev/5", data=data, domain=randao), timeout=30)
    assert ok.state == SUCCEEDED
    assert py_ecc_verifies(5, ref_signing_root(data, randao), bytes(ok.signature))


def test_domain_of_another_network_denied(signer: signer_pb2_grpc.SignerStub) -> None:
    sepolia = ref_domain(DOMAIN_BEACON_ATTESTER, MAINNET_GENESIS_FORK_VERSION, SEPOLIA_GENESIS_VALIDATORS_ROOT)
    foreign = att(6, 1, 2, domain=sepolia)
    assert sign(signer, foreign).state == DENIED
    sepolia_randao = ref_domain(DOMAIN_RANDAO, MAINNET_GENESIS_FORK_VERSION, SEPOLIA_GENESIS_VALIDATORS_ROOT)
    resp = signer.Sign(signer_pb2.SignRequest(account="dev/6", data=root("x"), domain=sepolia_randao), timeout=30)
    assert resp.state == DENIED
    # The refusal left no record: the same attestation under this network's domain signs.
    assert sign(signer, att(6, 1, 2)).state == SUCCEEDED


def test_lock_and_unlock_through_account_manager(server: SignerProcess, signer: signer_pb2_grpc.SignerStub) -> None:
    manager = accountmanager_pb2_grpc.AccountManagerStub(server.channel())
    assert sign(signer, att(7, 1, 2)).state == SUCCEEDED
    lock = manager.Lock(accountmanager_pb2.LockAccountRequest(account="dev/7"), timeout=30)
    assert lock.state == SUCCEEDED
    assert sign(signer, att(7, 2, 3)).state == DENIED
    assert sign(signer, att(8, 2, 3)).state == SUCCEEDED  # only that account is locked
    wrong = manager.Unlock(accountmanager_pb2.UnlockAccountRequest(account="dev/7", passphrase=b"not the pin"))
    assert wrong.state == DENIED
    assert sign(signer, att(7, 2, 3)).state == DENIED
    unlock = manager.Unlock(
        accountmanager_pb2.UnlockAccountRequest(account="dev/7", passphrase=DEV_PIN.encode()), timeout=30
    )
    assert unlock.state == SUCCEEDED
    a = att(7, 2, 3)
    resp = sign(signer, a)
    assert resp.state == SUCCEEDED
    assert py_ecc_verifies(7, a.signing_root(), bytes(resp.signature))


# --- servers of their own ----------------------------------------------------------------------


@pytest.mark.slow  # own server(s); 2-8 s depending on load
def test_batch_of_100_attestations_for_100_keys(key_module: str, tmp_path: Path) -> None:
    with SignerProcess.dev_on(key_module, tmp_path / "data", dev_keys=100) as proc:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        atts = [att(i, 5, 6, block=i) for i in range(100)]
        started = time.perf_counter()
        resp = stub.SignBeaconAttestations(
            signer_pb2.SignBeaconAttestationsRequest(requests=[a.request() for a in atts]), timeout=60
        )
        elapsed = time.perf_counter() - started
        assert [r.state for r in resp.responses] == [SUCCEEDED] * 100
        for index in (0, 57, 99):  # py_ecc is the reference, at 0.3 s per verify: a few of them
            assert py_ecc_verifies(index, atts[index].signing_root(), bytes(resp.responses[index].signature))
        # Every signature, with an independent fast library (blspy), over the keys the server lists.
        lister = lister_pb2_grpc.ListerStub(proc.channel())
        keys = {a.name: bytes(a.public_key) for a in lister.ListAccounts(lister_pb2.ListAccountsRequest()).Accounts}
        for a, r in zip(atts, resp.responses, strict=True):
            pk = blspy.G1Element.from_bytes(keys[a.account])
            signature = blspy.G2Element.from_bytes(bytes(r.signature))
            assert blspy.PopSchemeMPL.verify(pk, a.signing_root(), signature), a.account
        # The whole batch was recorded: a double vote by any of them is refused, in a batch too.
        again = stub.SignBeaconAttestations(
            signer_pb2.SignBeaconAttestationsRequest(
                requests=[att(i, 5, 6, block="other").request() for i in range(100)]
            ),
            timeout=60,
        )
        assert [r.state for r in again.responses] == [DENIED] * 100
        print(f"batch of 100 attestations: {elapsed * 1000:.0f} ms")


@dataclass
class Received:
    att: Att
    signature: bytes


def _stream(
    stub: signer_pb2_grpc.SignerStub, index: int, got: list[Received], errors: list[str], stop: threading.Event
) -> None:
    """Send attestations with rising epochs for dev/index until the server goes away."""
    epoch = 1
    while not stop.is_set():
        a = att(index, epoch, epoch + 1, block=f"stream{epoch}")
        try:
            resp = stub.SignBeaconAttestation(a.request(), timeout=10)
        except grpc.RpcError as exc:
            errors.append(str(exc.code()))
            return
        if resp.state != SUCCEEDED:
            errors.append(f"state {resp.state} at epoch {epoch}")
            return
        got.append(Received(a, bytes(resp.signature)))
        epoch += 1


@pytest.mark.slow  # own server(s); 2-8 s depending on load
def test_sigkill_while_streaming_loses_no_record(key_module: str, tmp_path: Path) -> None:
    threads_n = 4
    proc = SignerProcess.dev_on(key_module, tmp_path / "data", dev_keys=threads_n).start()
    try:
        channel = proc.channel()
        stub = signer_pb2_grpc.SignerStub(channel)
        got: list[list[Received]] = [[] for _ in range(threads_n)]
        errors: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=_stream, args=(stub, i, got[i], errors, stop)) for i in range(threads_n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while min(len(g) for g in got) < 20 and time.monotonic() < deadline and not errors:
            time.sleep(0.05)
        assert proc.kill() == -9
        for t in threads:
            t.join(timeout=30)
        stop.set()
        assert all(len(g) >= 20 for g in got), (errors, [len(g) for g in got])
        assert len(errors) == threads_n  # every streaming client saw the server die mid-stream
        assert all(e in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED") for e in errors), errors

        proc.restart()
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        received = [r for g in got for r in g]
        # A few of them verify with py_ecc over the independent signing root.
        for r in (got[0][0], got[-1][-1]):
            assert py_ecc_verifies(int(r.att.account.split("/")[1]), r.att.signing_root(), r.signature)
        # Every signature the client received has its record: a conflicting vote is refused.
        for r in received:
            conflicting = Att(r.att.account, r.att.slot, r.att.source_epoch, r.att.target_epoch, root("conflict"))
            assert sign(stub, conflicting).state == DENIED, r.att
        # And a retry of what was signed gets the same signature back (the record knows its root).
        for g in got:
            last = g[-1]
            resp = sign(stub, last.att)
            assert resp.state == SUCCEEDED
            assert bytes(resp.signature) == last.signature
        print(f"signatures received before SIGKILL: {len(received)}")
    finally:
        proc.stop()


def _attested_targets(data_dir: Path) -> dict[bytes, set[int]]:
    """The target epochs the stopped signer's history holds for each key (its complete export)."""
    done = subprocess.run(
        [sys.executable, "-m", "signer", "protection", "export", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {
        bytes.fromhex(v["pubkey"][2:]): {int(a["target_epoch"]) for a in v["signed_attestations"]}
        for v in json.loads(done.stdout)["data"]
    }


@pytest.mark.slow  # own server(s); 2-8 s depending on load
def test_sigterm_is_graceful(key_module: str, tmp_path: Path) -> None:
    proc = SignerProcess.dev_on(key_module, tmp_path / "data", dev_keys=100).start()
    try:
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        results: list[tuple[float, float, str, int, int]] = []  # (sent, done, outcome, worker, target epoch)
        lock = threading.Lock()
        stop = threading.Event()

        def batches(worker: int) -> None:
            epoch = 1
            while not stop.is_set():
                # Each worker signs for its own 50 keys, so the two never conflict.
                reqs = [att(worker * 50 + i, epoch, epoch + 1, block=epoch).request() for i in range(50)]
                sent = time.monotonic()
                try:
                    resp = stub.SignBeaconAttestations(
                        signer_pb2.SignBeaconAttestationsRequest(requests=reqs), timeout=30
                    )
                    outcome = "ok" if all(r.state == SUCCEEDED for r in resp.responses) else "not signed"
                except grpc.RpcError as exc:
                    outcome = str(exc.code())
                with lock:
                    results.append((sent, time.monotonic(), outcome, worker, epoch + 1))
                if outcome != "ok":
                    return
                epoch += 1

        workers = [threading.Thread(target=batches, args=(w,)) for w in range(2)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 20
        while len(results) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        sigterm_at = time.monotonic()
        proc.send_sigterm()
        code = proc.wait(30)
        stop.set()
        for w in workers:
            w.join(timeout=30)
        assert code == 0, proc.logs
        outcomes = {o for _, _, o, _, _ in results}
        # A call either completed with every signature or never started: refused or unreachable
        # (UNAVAILABLE), or cancelled by grpc itself (CANCELLED) when it reached the server just as
        # it stopped and before the servicer took it -- which the history below shows.
        assert outcomes <= {"ok", "StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}, outcomes
        signed = _attested_targets(tmp_path / "data")
        for _, _, outcome, worker, target in results:
            keys = [bls.secret_to_public(dev_bls_secret(worker * 50 + i)) for i in range(50)]
            recorded = [target in signed.get(key, set()) for key in keys]
            assert all(recorded) if outcome == "ok" else not any(recorded), (outcome, worker, target)
        # In-flight calls finished: some call sent before SIGTERM was answered in full after it.
        assert any(sent < sigterm_at < done and o == "ok" for sent, done, o, _, _ in results), results[-4:]
        messages = [r.get("msg") for r in proc.log_records()]
        assert "shutting down" in messages
        assert "signer stopped" in messages
    finally:
        proc.stop()
