"""PostgreSQL goes down under load and comes back: the signer refuses, reports not-ready, and recovers
by itself (issue 6 "Done when", and issue 7: ``/readyz`` follows the protection store).

One real ``signer serve --dev --protection-dsn DSN`` process signs a steady load of fresh
attestations (unary calls for some validators, ``SignBeaconAttestations`` batches for others) while
the test crashes PostgreSQL (``pg_ctl stop -m immediate``), waits for the refusals and the not-ready
signals, starts PostgreSQL again, and waits for signing and readiness to come back, all without
restarting the signer. Shown:

- while PostgreSQL is down every request is FAILED (Dirk's ResponseState for a backend failure) and
  carries no signature; ``/readyz`` answers 503 naming the protection store; gRPC health says
  NOT_SERVING (overall and for v1.Signer);
- after the restart ``/readyz`` answers 200, gRPC health SERVING, and every load client is signed
  again, by the same process (same pid, started once);
- every signature received during the whole run has its record: each load client's attestation n
  is (2n, 2n+1), so a different vote at (2n, 2n+1) is refused only because of that record (no
  neighbour surrounds it, it is above the lower bound); every one is DENIED. As a control, a vote
  in a gap, (2n+1, 2n+2), is still signed: the probe is not a blanket refusal.

A second test freezes PostgreSQL instead (SIGSTOP: the kernel still acknowledges TCP, so nothing but
a client-side deadline ends a call): a signing request is FAILED within the store's transaction
deadline (3 x timeout_s) instead of hanging, ``/readyz`` is 503 and gRPC health NOT_SERVING (the
readiness ping has a deadline too), and after SIGCONT signing and readiness come back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import blspy
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api._proto.v1 import lister_pb2, lister_pb2_grpc, responsestate_pb2, signer_pb2, signer_pb2_grpc
from tests.e2e.harness import SignerProcess
from tests.e2e.test_eth2_e2e import Att, att
from tests.postgres import PostgresServer, postgres_server  # noqa: F401
from tests.support import missing_component

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
FAILED = responsestate_pb2.FAILED
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNARY_CLIENTS = 4
BATCH_CLIENTS = 2
BATCH_SIZE = 4
DEV_KEYS = UNARY_CLIENTS + BATCH_CLIENTS * BATCH_SIZE
PACE_S = 0.02
CALL_TIMEOUT_S = 30.0
WAIT_S = 60.0


@dataclass(frozen=True)
class Answer:
    attestation: Att
    sent: float
    received: float
    state: int
    signature: bytes


@dataclass
class LoadClient:
    """One client thread: attestation n of each of its validators is (2n, 2n+1), n = 1, 2, ..."""

    name: str
    stub: signer_pb2_grpc.SignerStub
    validators: list[int]
    stop: threading.Event
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            atts = [att(i, 2 * n, 2 * n + 1, block=f"load/{n}") for i in self.validators]
            sent = time.monotonic()
            try:
                if len(atts) == 1:
                    responses = [self.stub.SignBeaconAttestation(atts[0].request(), timeout=CALL_TIMEOUT_S)]
                else:
                    request = signer_pb2.SignBeaconAttestationsRequest(requests=[a.request() for a in atts])
                    responses = list(self.stub.SignBeaconAttestations(request, timeout=CALL_TIMEOUT_S).responses)
            except grpc.RpcError as exc:
                with self.lock:
                    self.errors.append(f"{self.name} n={n}: {exc.code()} {exc.details()}")
                self.stop.wait(PACE_S)
                continue
            received = time.monotonic()
            with self.lock:
                self.answers += [
                    Answer(a, sent, received, r.state, bytes(r.signature)) for a, r in zip(atts, responses, strict=True)
                ]
            self.stop.wait(PACE_S)

    def count(self, state: int, sent_after: float = 0.0) -> int:
        with self.lock:
            return sum(1 for x in self.answers if x.state == state and x.sent > sent_after)


def readyz(proc: SignerProcess) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(proc.http_url + "/readyz", timeout=30) as resp:  # noqa: S310 - loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def health_states(stub: health_pb2_grpc.HealthStub) -> set[int]:
    """The gRPC health status, overall and for v1.Signer."""
    return {stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status for name in ("", "v1.Signer")}


def wait_until(what: str, condition: Callable[[], bool], proc: SignerProcess, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}\n{proc.logs[-6000:]}")
        time.sleep(0.1)


def test_postgres_outage_refuses_reports_not_ready_and_recovers_without_restart(  # noqa: C901 -- one outage scenario read top to bottom
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    if not postgres_server.owned:
        missing_component("a throwaway PostgreSQL server that the test may stop (not SIGNER_TEST_POSTGRES_DSN)")
    dsn = postgres_server.new_database()
    proc = SignerProcess.dev(tmp_path / "signer", dev_keys=DEV_KEYS, extra_args=["--protection-dsn", dsn])
    stop_load = threading.Event()
    threads: list[threading.Thread] = []
    postgres_down = False
    try:
        proc.start()
        pid = proc.pid
        health = health_pb2_grpc.HealthStub(proc.channel())
        assert readyz(proc) == (200, "ready\n")
        assert health_states(health) == {SERVING}

        groups = [[i] for i in range(UNARY_CLIENTS)] + [
            list(range(UNARY_CLIENTS + b * BATCH_SIZE, UNARY_CLIENTS + (b + 1) * BATCH_SIZE))
            for b in range(BATCH_CLIENTS)
        ]
        options = [("grpc.use_local_subchannel_pool", 1)]
        clients = [
            LoadClient(f"client{c}", signer_pb2_grpc.SignerStub(proc.channel(options=options)), group, stop_load)
            for c, group in enumerate(groups)
        ]
        threads = [threading.Thread(target=c.run, name=c.name, daemon=True) for c in clients]
        for thread in threads:
            thread.start()
        wait_until("every load client signed 3 times", lambda: all(c.count(SUCCEEDED) >= 3 for c in clients), proc)

        # --- PostgreSQL crashes ---------------------------------------------------------------
        postgres_down = True
        postgres_server.stop("immediate")
        stopped = time.monotonic()  # pg_ctl -w returned: the server is gone from here on
        not_ready: list[tuple[int, str]] = []

        def readyz_503() -> bool:
            answer = readyz(proc)
            not_ready.append(answer)
            return answer[0] == 503

        wait_until("/readyz 503 while PostgreSQL is down", readyz_503, proc)
        seen_503 = time.monotonic()
        # What failed, never where: the metrics port is unauthenticated (issue 13.16).
        assert not_ready[-1] == (503, "protection store unreachable\n"), not_ready[-1]
        detail = proc.wait_for_log(lambda r: r.get("msg") == "readiness changed" and r.get("ready") is False)
        assert detail["reason"] == "protection store unreachable" and detail["detail"], detail
        wait_until("gRPC health NOT_SERVING", lambda: health_states(health) == {NOT_SERVING}, proc)
        seen_not_serving = time.monotonic()
        wait_until("every load client refused (FAILED) while PostgreSQL is down",
                   lambda: all(c.count(FAILED, sent_after=stopped) >= 1 for c in clients), proc)  # fmt: skip
        assert proc.running

        # --- PostgreSQL comes back --------------------------------------------------------------
        restarting = time.monotonic()
        postgres_server.start()
        postgres_down = False
        restarted = time.monotonic()
        wait_until("/readyz 200 after PostgreSQL is back", lambda: readyz(proc) == (200, "ready\n"), proc)
        wait_until("gRPC health SERVING", lambda: health_states(health) == {SERVING}, proc)
        wait_until("every load client signed again",
                   lambda: all(c.count(SUCCEEDED, sent_after=restarted) >= 3 for c in clients), proc)  # fmt: skip
        recovered = time.monotonic()
        stop_load.set()
        for thread in threads:
            thread.join(timeout=2 * CALL_TIMEOUT_S)
            assert not thread.is_alive(), thread.name

        # The same process throughout: never restarted.
        assert proc.running
        assert proc.pid == pid
        assert proc.starts == 1

        answers = [a for c in clients for a in c.answers]
        assert [e for c in clients for e in c.errors] == []
        for x in answers:
            label = f"{x.attestation.account} ({x.attestation.source_epoch},{x.attestation.target_epoch})"
            assert x.state in (SUCCEEDED, FAILED), f"{label}: state {x.state}"
            assert (len(x.signature) == 96) == (x.state == SUCCEEDED), f"{label}: a FAILED answer with a signature"
            if stopped < x.sent and x.received < restarting:
                assert x.state == FAILED, f"{label}: signed while PostgreSQL was down"
        signed = [x for x in answers if x.state == SUCCEEDED]
        failed = [x for x in answers if x.state == FAILED]
        print(f"\n{len(answers)} answers: {len(signed)} signed, {len(failed)} FAILED; "
              f"PostgreSQL down {restarting - stopped:.1f} s (/readyz 503 after {seen_503 - stopped:.1f} s, health "
              f"NOT_SERVING after {seen_not_serving - stopped:.1f} s); signing and readiness back "
              f"{recovered - restarted:.1f} s after it started")  # fmt: skip

        lister = lister_pb2_grpc.ListerStub(proc.channel())
        keys = {
            a.name: blspy.G1Element.from_bytes(bytes(a.public_key))
            for a in lister.ListAccounts(lister_pb2.ListAccountsRequest(paths=["dev"]), timeout=30).Accounts
        }
        for x in signed:
            signature = blspy.G2Element.from_bytes(x.signature)
            assert blspy.PopSchemeMPL.verify(keys[x.attestation.account], x.attestation.signing_root(), signature)

        # Every signature has its record: a different vote at the same (source, target) is DENIED.
        stub = signer_pb2_grpc.SignerStub(proc.channel())
        probes = [
            att(int(x.attestation.account.split("/")[1]), x.attestation.source_epoch, x.attestation.target_epoch,
                block="probe")
            for x in signed
        ]  # fmt: skip
        for start in range(0, len(probes), 100):
            chunk = probes[start : start + 100]
            request = signer_pb2.SignBeaconAttestationsRequest(requests=[p.request() for p in chunk])
            states = [r.state for r in stub.SignBeaconAttestations(request, timeout=CALL_TIMEOUT_S).responses]
            unrecorded = [f"{p.account} ({p.source_epoch},{p.target_epoch})" for p, s in zip(chunk, states, strict=True)
                          if s != DENIED]  # fmt: skip
            assert unrecorded == [], f"signed without a record: {unrecorded}"
        # Control: a vote between two records, conflicting with none, is still signed.
        for index in range(DEV_KEYS):
            first = min(x.attestation.source_epoch for x in signed if x.attestation.account == f"dev/{index}")
            gap = att(index, first + 1, first + 2, block="gap")
            assert stub.SignBeaconAttestation(gap.request(), timeout=CALL_TIMEOUT_S).state == SUCCEEDED, gap
    finally:
        stop_load.set()
        for thread in threads:
            thread.join(timeout=2 * CALL_TIMEOUT_S)
        proc.stop()
        if postgres_down:
            postgres_server.start()


# --- a frozen database: a deadline, not a hang ---------------------------------------------------


def server_processes(server: PostgresServer) -> list[int]:
    """The postmaster of the throwaway server and its children (from /proc)."""
    assert server.root is not None
    postmaster = int((server.root / "data" / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ")".
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry.name))
    return [postmaster, *children]


STORE_TIMEOUT_S = 2.0
"""ProtectionConfig.timeout_s default; the signing transaction deadline is 3 x this."""


def test_frozen_postgres_refuses_within_the_deadline_and_recovers(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    if not postgres_server.owned:
        missing_component("a throwaway PostgreSQL server that the test may freeze (not SIGNER_TEST_POSTGRES_DSN)")
    dsn = postgres_server.new_database()
    frozen: list[int] = []
    with SignerProcess.dev(tmp_path / "signer", dev_keys=2, extra_args=["--protection-dsn", dsn]) as proc:
        try:
            stub = signer_pb2_grpc.SignerStub(proc.channel())
            health = health_pb2_grpc.HealthStub(proc.channel())
            assert stub.SignBeaconAttestation(att(0, 2, 3).request(), timeout=CALL_TIMEOUT_S).state == SUCCEEDED
            frozen = server_processes(postgres_server)
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            started = time.monotonic()
            answer = stub.SignBeaconAttestation(att(0, 4, 5).request(), timeout=CALL_TIMEOUT_S)
            elapsed = time.monotonic() - started
            assert answer.state == FAILED
            assert not answer.signature
            assert elapsed < 3 * STORE_TIMEOUT_S + 5, f"refused only after {elapsed:.1f} s"
            status, reason = readyz(proc)
            assert status == 503 and "protection store" in reason, (status, reason)
            # The readiness poller's ping is bounded too, so gRPC health follows (it would hang on SERVING).
            wait_until("gRPC health NOT_SERVING while frozen", lambda: health_states(health) == {NOT_SERVING}, proc)
            print(f"\nfrozen PostgreSQL: FAILED after {elapsed:.1f} s")
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        wait_until("/readyz 200 after SIGCONT", lambda: readyz(proc) == (200, "ready\n"), proc)
        wait_until("gRPC health SERVING after SIGCONT", lambda: health_states(health) == {SERVING}, proc)
        assert stub.SignBeaconAttestation(att(0, 6, 7).request(), timeout=CALL_TIMEOUT_S).state == SUCCEEDED
        # The vote signed before the freeze is on record.
        assert stub.SignBeaconAttestation(att(0, 2, 3, block="other").request(), timeout=CALL_TIMEOUT_S).state == DENIED
        assert proc.starts == 1
