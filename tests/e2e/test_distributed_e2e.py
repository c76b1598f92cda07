"""Distributed (threshold) accounts across three real ``signer serve --dev`` processes (issue 17).

A 2-of-3 cluster on loopback: AccountManager.Generate on signer 1 runs the DKG over the v1.DKG
service of all three; every signer then lists the account with the same composite key and its own
share, signs its partial signature under its own slashing protection, and any two partials combine
(signer.distributed.combine) into a signature under the composite key. A second cluster has a fake
third participant (an in-process gRPC server) that answers with a bad contribution.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    dkg_pb2,
    dkg_pb2_grpc,
    eth2_pb2,
    lister_pb2,
    lister_pb2_grpc,
    responsestate_pb2,
    signer_pb2,
    signer_pb2_grpc,
)
from signer.api.distributed_client import RemoteAccount, find_account, sign_distributed
from signer.crypto import bls
from signer.crypto import threshold as th
from signer.errors import NotEnoughShares
from signer.keys.dev import DEV_PIN
from tests.e2e.harness import (
    DOMAIN_BEACON_ATTESTER,
    DOMAIN_RANDAO,
    SignerProcess,
    ref_attestation_data_root,
    ref_domain,
    ref_signing_root,
)

pytestmark = pytest.mark.e2e

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
FAILED = responsestate_pb2.FAILED
ATTESTER = ref_domain(DOMAIN_BEACON_ATTESTER)
ACCOUNT = "dist/validator"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peers_flag(ports: dict[int, int]) -> str:
    return ",".join(f"{i}=127.0.0.1:{port}" for i, port in sorted(ports.items()))


def start_signer(data_dir: Path, peer_id: int, ports: dict[int, int]) -> SignerProcess:
    return SignerProcess.dev(
        data_dir,
        dev_keys=1,
        extra_args=[
            "--grpc-listen",
            f"127.0.0.1:{ports[peer_id]}",
            "--peer-id",
            str(peer_id),
            "--peers",
            peers_flag(ports),
        ],
    ).start()


def generate(
    proc: SignerProcess, account: str, participants: int, threshold: int
) -> accountmanager_pb2.GenerateResponse:
    stub = accountmanager_pb2_grpc.AccountManagerStub(proc.channel())
    return stub.Generate(
        accountmanager_pb2.GenerateRequest(
            account=account, passphrase=DEV_PIN.encode(), participants=participants, signing_threshold=threshold
        ),
        timeout=60,
    )


def distributed_accounts(proc: SignerProcess) -> list[lister_pb2.DistributedAccount]:
    stub = lister_pb2_grpc.ListerStub(proc.channel())
    response = stub.ListAccounts(lister_pb2.ListAccountsRequest(paths=["dist"]), timeout=10)
    assert response.state == SUCCEEDED
    return list(response.DistributedAccounts)


def checkpoint_root(epoch: int) -> bytes:
    return bytes([epoch % 256]) * 32


@dataclass(frozen=True)
class Attestation:
    target_epoch: int
    block: int
    account: str = ACCOUNT

    def request(self, *, public_key: bytes | None = None) -> signer_pb2.SignBeaconAttestationRequest:
        data = eth2_pb2.AttestationData(
            slot=self.target_epoch * 32,
            committee_index=0,
            beacon_block_root=bytes([self.block]) * 32,
            source=eth2_pb2.Checkpoint(epoch=self.target_epoch - 1, root=checkpoint_root(self.target_epoch - 1)),
            target=eth2_pb2.Checkpoint(epoch=self.target_epoch, root=checkpoint_root(self.target_epoch)),
        )
        if public_key is not None:
            return signer_pb2.SignBeaconAttestationRequest(public_key=public_key, domain=ATTESTER, data=data)
        return signer_pb2.SignBeaconAttestationRequest(account=self.account, domain=ATTESTER, data=data)

    def signing_root(self) -> bytes:
        data_root = ref_attestation_data_root(
            self.target_epoch * 32,
            0,
            bytes([self.block]) * 32,
            (self.target_epoch - 1, checkpoint_root(self.target_epoch - 1)),
            (self.target_epoch, checkpoint_root(self.target_epoch)),
        )
        return ref_signing_root(data_root, ATTESTER)


@dataclass
class Cluster:
    signers: dict[int, SignerProcess]
    composite_public_key: bytes

    def channels(self) -> dict[int, grpc.Channel]:
        return {i: p.channel() for i, p in self.signers.items() if p.running}

    def account(self) -> RemoteAccount:
        return find_account(self.signers[1].channel(), ACCOUNT)

    def partial(self, peer_id: int, attestation: Attestation) -> signer_pb2.SignResponse:
        stub = signer_pb2_grpc.SignerStub(self.signers[peer_id].channel())
        return stub.SignBeaconAttestation(attestation.request(), timeout=10)

    def combine(self, attestation: Attestation) -> bytes:
        channels = {i: p.channel(ready_timeout_s=0) for i, p in self.signers.items()}
        combined = sign_distributed(
            self.account(),
            channels,
            lambda stub, timeout: stub.SignBeaconAttestation(attestation.request(), timeout=timeout),
            attestation.signing_root(),
            timeout_s=10,
        )
        return combined.signature


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    ports = {i: free_port() for i in (1, 2, 3)}
    signers: dict[int, SignerProcess] = {}
    try:
        for i in ports:
            signers[i] = start_signer(base / f"signer{i}", i, ports)
        response = generate(signers[1], ACCOUNT, participants=3, threshold=2)
        assert response.state == SUCCEEDED, response.message
        yield Cluster(signers, bytes(response.public_key))
    finally:
        for proc in signers.values():
            proc.stop()


def test_every_participant_lists_the_same_composite_key_and_a_share_of_its_own(cluster: Cluster) -> None:
    listed = {i: distributed_accounts(p) for i, p in cluster.signers.items()}
    shares = {}
    for i, accounts in listed.items():
        (account,) = accounts
        assert account.name == ACCOUNT
        assert account.composite_public_key == cluster.composite_public_key
        assert account.signing_threshold == 2
        assert sorted(e.id for e in account.participants) == [1, 2, 3]
        assert {e.port for e in account.participants} == {p.grpc_port for p in cluster.signers.values()}
        shares[i] = bytes(account.public_key)
    assert len(set(shares.values())) == 3, "every participant holds a different share"
    assert cluster.composite_public_key not in shares.values()
    # The shares are points of one polynomial whose constant term is the composite key.
    for subset in itertools.combinations(shares, 2):
        assert th.combine_public_keys({i: shares[i] for i in subset}, 2) == cluster.composite_public_key


def test_every_two_subset_of_partial_signatures_combines_into_a_valid_signature(cluster: Cluster) -> None:
    attestation = Attestation(target_epoch=10, block=1)
    partials = {}
    for i in cluster.signers:
        response = cluster.partial(i, attestation)
        assert response.state == SUCCEEDED
        partials[i] = bytes(response.signature)
    message = attestation.signing_root()
    for subset in itertools.combinations(partials, 2):
        signature = th.combine_signatures({i: partials[i] for i in subset}, 2)
        assert bls.verify(cluster.composite_public_key, message, signature), subset
    for i, partial in partials.items():  # a single partial is no signature under the composite key
        assert not bls.verify(cluster.composite_public_key, message, partial), i
    # The combiner asks everyone and stops at two.
    assert bls.verify(cluster.composite_public_key, message, cluster.combine(attestation))


def test_a_participant_signs_for_its_share_when_asked_by_the_composite_key(cluster: Cluster) -> None:
    attestation = Attestation(target_epoch=12, block=1)
    stub = signer_pb2_grpc.SignerStub(cluster.signers[2].channel())
    response = stub.SignBeaconAttestation(attestation.request(public_key=cluster.composite_public_key), timeout=10)
    assert response.state == SUCCEEDED
    by_name = cluster.partial(2, attestation)  # the same history: the same data signs again
    assert by_name.state == SUCCEEDED
    assert by_name.signature == response.signature


def test_a_double_vote_is_refused_by_each_participant_so_it_never_reaches_a_threshold(cluster: Cluster) -> None:
    first = Attestation(target_epoch=20, block=1)
    assert bls.verify(cluster.composite_public_key, first.signing_root(), cluster.combine(first))
    conflicting = Attestation(target_epoch=20, block=2)
    for i in cluster.signers:
        assert cluster.partial(i, conflicting).state == DENIED, f"participant {i} signed a double vote"
    with pytest.raises(NotEnoughShares, match="0 of 3 participants signed, 2 needed"):
        cluster.combine(conflicting)


def test_a_threshold_of_half_or_less_is_refused_and_generates_nothing(cluster: Cluster) -> None:
    for participants, threshold in ((3, 1), (2, 1)):
        response = generate(cluster.signers[1], f"dist/low{participants}", participants, threshold)
        assert response.state == DENIED
        assert "more than half" in response.message
    for proc in cluster.signers.values():
        assert [a.name for a in distributed_accounts(proc)] == [ACCOUNT]


def test_signer_distributed_sign_combines_through_the_cluster_for_an_operator(cluster: Cluster) -> None:
    domain = ref_domain(DOMAIN_RANDAO)
    epoch_root = (7).to_bytes(8, "little") + bytes(24)
    run = subprocess.run(
        [sys.executable, "-m", "signer", "distributed", "sign", "--endpoint", cluster.signers[2].address,
         "--account", ACCOUNT, "--domain", "0x" + domain.hex(), "--data", "0x" + epoch_root.hex()],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["composite_public_key"] == "0x" + cluster.composite_public_key.hex()
    assert len(result["signers"]) == 2
    signature = bytes.fromhex(result["signature"][2:])
    assert bls.verify(cluster.composite_public_key, ref_signing_root(epoch_root, domain), signature)


def test_with_one_signer_down_the_other_two_still_produce_valid_attestations(cluster: Cluster) -> None:
    down = cluster.signers[3]
    down.kill()
    try:
        for epoch in (30, 31):
            attestation = Attestation(target_epoch=epoch, block=1)
            signature = cluster.combine(attestation)
            assert bls.verify(cluster.composite_public_key, attestation.signing_root(), signature)
    finally:
        down.restart()
    # Back up: it lists its share again and signs under its own (persisted) history.
    assert [a.name for a in distributed_accounts(down)] == [ACCOUNT]
    assert cluster.partial(3, Attestation(target_epoch=20, block=2)).state == DENIED


# --- a participant that sends a bad contribution ---------------------------------------------


class BadParticipant(dkg_pb2_grpc.DKGServicer):
    """Participant 3, in-process: takes part in the session, but every contribution it answers with
    does not match its verification vector."""

    def __init__(self) -> None:
        self.prepared: list[str] = []
        self.aborted: list[str] = []
        self.threshold = 0

    def Prepare(self, request: dkg_pb2.PrepareRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self.prepared.append(request.account)
        self.threshold = request.threshold
        return empty_pb2.Empty()

    def Execute(self, request: dkg_pb2.ExecuteRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        return empty_pb2.Empty()  # the highest id: it initiates no swap

    def Contribute(
        self, request: dkg_pb2.ContributeRequest, context: grpc.ServicerContext
    ) -> dkg_pb2.ContributeResponse:
        polynomial = th.Polynomial.random(self.threshold)
        wrong = th.Polynomial.random(self.threshold).share(1)  # not what the vector commits to
        return dkg_pb2.ContributeResponse(
            secret=wrong.to_bytes(), verification_vector=list(polynomial.verification_vector().commitments)
        )

    def Commit(self, request: dkg_pb2.CommitRequest, context: grpc.ServicerContext) -> dkg_pb2.CommitResponse:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "never reached")
        raise AssertionError  # pragma: no cover

    def Abort(self, request: dkg_pb2.AbortRequest, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self.aborted.append(request.account)
        return empty_pb2.Empty()


def test_a_bad_contribution_aborts_everywhere_and_leaves_no_account(tmp_path: Path) -> None:
    ports = {i: free_port() for i in (1, 2, 3)}
    fake = BadParticipant()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    dkg_pb2_grpc.add_DKGServicer_to_server(fake, server)
    assert server.add_insecure_port(f"127.0.0.1:{ports[3]}") == ports[3]
    server.start()
    signers: list[SignerProcess] = []
    try:
        signers = [start_signer(tmp_path / f"signer{i}", i, ports) for i in (1, 2)]
        response = generate(signers[0], "dist/spoiled", participants=3, threshold=2)
        assert response.state == FAILED
        assert "bad contribution from participant 3" in response.message, response.message
        assert fake.prepared == ["dist/spoiled"]
        assert fake.aborted == ["dist/spoiled"], "the initiator told every participant to abort"
        for proc in signers:
            assert distributed_accounts(proc) == []
            assert not (proc_data_dir(proc) / "distributed.json").exists()
        # Nothing is left open either: the same account can be generated again at once (and fails
        # the same way, at the same participant, not on a session still in progress).
        again = generate(signers[0], "dist/spoiled", participants=3, threshold=2)
        assert "bad contribution from participant 3" in again.message, again.message
    finally:
        for proc in signers:
            proc.stop()
        server.stop(0)


def proc_data_dir(proc: SignerProcess) -> Path:
    return Path(proc.args[proc.args.index("--data-dir") + 1])


def test_an_imported_share_is_served_as_a_distributed_account_without_peers_configured(tmp_path: Path) -> None:
    """A signer without [distributed] (no DKG service) still lists and signs a share it holds as a
    distributed account, under the composite key's history; a distributed Generate is refused."""
    from signer.keys.eip2335 import default_kdf, encrypt_keystore  # noqa: PLC0415

    data_dir = tmp_path / "signer"
    signer_cli = [sys.executable, "-m", "signer"]
    subprocess.run([*signer_cli, "keys", "dev", "--data-dir", str(data_dir), "--count", "1"], check=True, timeout=120)
    polynomial = th.Polynomial.random(2)
    vector = polynomial.verification_vector().commitments
    keystore = tmp_path / "share.json"
    keystore.write_text(json.dumps(encrypt_keystore(polynomial.share(1).to_bytes(), "pw", kdf=default_kdf("pbkdf2"))))
    (tmp_path / "password").write_text("pw\n")
    (tmp_path / "pin").write_text(DEV_PIN + "\n")
    done = subprocess.run(
        [*signer_cli, "distributed", "import", "--data-dir", str(data_dir), "--pin-file", str(tmp_path / "pin"),
         "--account", ACCOUNT, "--keystore", str(keystore), "--password-file", str(tmp_path / "password"),
         "--id", "1", "--threshold", "2", "--participants", "1=127.0.0.1:1,2=127.0.0.1:2,3=127.0.0.1:3",
         "--verification-vector", ",".join("0x" + c.hex() for c in vector)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The module was made before the store: declare that these keys never signed (issue 13.2).
    init = [*signer_cli, "protection", "init", "--data-dir", str(data_dir), "--keys-never-signed"]
    subprocess.run(init, check=True, timeout=120, capture_output=True)
    proc = SignerProcess.dev(data_dir, dev_keys=1).start()
    try:
        (account,) = distributed_accounts(proc)
        assert account.public_key == polynomial.share(1).public_key()
        assert account.composite_public_key == vector[0]
        attestation = Attestation(target_epoch=40, block=1)
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        signed = stub.SignBeaconAttestation(attestation.request(public_key=vector[0]), timeout=10)
        assert signed.state == SUCCEEDED
        combined = th.combine_signatures(
            {1: bytes(signed.signature), 2: polynomial.share(2).sign(attestation.signing_root())}, 2
        )
        assert bls.verify(vector[0], attestation.signing_root(), combined)
        refused = generate(proc, "dist/other", participants=3, threshold=2)
        assert refused.state == DENIED
        assert "[distributed]" in refused.message
    finally:
        proc.stop()
