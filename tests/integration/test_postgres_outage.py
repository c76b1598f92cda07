"""The database goes away under load (``pg_ctl stop -m immediate``: a crash) and comes back: while it
is down every call refuses quickly with ProtectionStoreError (never hangs, never fails open); after
the restart the same store signs again by itself, and every accepted record survived the crash."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from signer.errors import ProtectionStoreError
from signer.protection.postgres import PostgresStore
from signer.types import ZERO_ROOT, AttestationCheck
from tests.postgres import PostgresServer, postgres_server  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 1.0
THREADS = 4


@dataclass(frozen=True, slots=True)
class Call:
    thread: int
    epoch: int
    started: float
    ended: float
    outcome: str
    """"accepted", "refused" (NotSafeToSign: must not happen here) or "unavailable"."""


def test_stop_and_restart_under_load(postgres_server: PostgresServer) -> None:  # noqa: F811, C901 -- one outage scenario read top to bottom
    if not postgres_server.owned:
        postgres_server.stop()  # calls missing_component: a foreign server cannot be stopped
    dsn = postgres_server.new_database()
    store = PostgresStore(dsn, ZERO_ROOT, timeout_s=TIMEOUT_S, pool_size=4)
    keys = [bytes([0xC0 + t]) * 48 for t in range(THREADS)]
    calls: list[Call] = []
    guard = threading.Lock()
    finish = threading.Event()
    recovered = [threading.Event() for _ in range(THREADS)]
    marks: dict[str, float] = {}

    def load(t: int) -> None:
        epoch = 0
        while not finish.is_set():
            epoch += 1
            started = time.monotonic()
            try:
                (verdict,) = store.check_and_record([AttestationCheck(keys[t], epoch, epoch + 1, bytes([t]) * 32)])
                outcome = "accepted" if verdict.ok else "refused"
            except ProtectionStoreError:
                outcome = "unavailable"
            ended = time.monotonic()
            with guard:
                calls.append(Call(t, epoch, started, ended, outcome))
            if outcome == "accepted" and "restarted" in marks and started > marks["restarted"]:
                recovered[t].set()
            if outcome == "unavailable":
                time.sleep(0.02)

    threads = [threading.Thread(target=load, args=(t,)) for t in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        marks["stopping"] = time.monotonic()
        postgres_server.stop("immediate")
        marks["stopped"] = time.monotonic()
        time.sleep(2.5 * TIMEOUT_S)
        with pytest.raises(ProtectionStoreError):
            store.ping()
        marks["starting"] = time.monotonic()
    finally:
        postgres_server.start()
        marks["restarted"] = time.monotonic()
    try:
        deadline = time.monotonic() + 20
        for event in recovered:
            assert event.wait(max(0.0, deadline - time.monotonic())), "a thread never signed again after restart"
        store.ping()
    finally:
        finish.set()
        for thread in threads:
            thread.join()

    assert not [c for c in calls if c.outcome == "refused"]
    before = [c for c in calls if c.ended < marks["stopping"]]
    down = [c for c in calls if c.started > marks["stopped"] and c.ended < marks["starting"]]
    after = [c for c in calls if c.started > marks["restarted"]]
    assert before and all(c.outcome == "accepted" for c in before)
    assert len(down) >= THREADS, "no load while the database was down"
    assert all(c.outcome == "unavailable" for c in down), [c for c in down if c.outcome != "unavailable"]
    # never hangs: a refusal comes within the pool/connect timeout (plus one retry on a broken
    # connection), not after the outage
    slowest = max(c.ended - c.started for c in calls if c.outcome == "unavailable")
    assert slowest < 2 * TIMEOUT_S + 2.5, slowest
    assert any(c.outcome == "accepted" for c in after)

    # durable: everything accepted is stored; nothing refused while down was recorded
    exported = {
        bytes.fromhex(v["pubkey"][2:]): {int(a["source_epoch"]) for a in v["signed_attestations"]}
        for v in store.export_interchange()["data"]
    }
    for call in calls:
        if call.outcome == "accepted":
            assert call.epoch in exported[keys[call.thread]], call
    for call in down:
        assert call.epoch not in exported[keys[call.thread]], call
    store.close()
