"""Issue 13.4 end to end: a signer whose every gRPC worker is held busy says it is not ready, refuses
calls beyond ``server.maximum_concurrent_rpcs`` at once, and recovers when the workers are freed.

A real ``signer serve --config`` with few workers (``grpc_workers = 3``, ``max_concurrent_rpcs = 5``,
``limits.max_streams = 1``) on a real PostgreSQL store. The test holds the advisory lock of one
validator's history in a connection of its own (what a slow replica or a stuck transaction does), so
signing calls for that validator wait in the database. One gRPC health Watch (a stream: it holds a
worker and sees every status change) and two signing calls then take all three workers, and two more
calls wait for a worker inside gRPC: five held, the cap. Then:

* ``/readyz`` answers 503 "gRPC server cannot take calls" and the Watch reports NOT_SERVING (the
  store itself answers: the reason is the workers);
* a sixth call, for another validator, is refused at once with RESOURCE_EXHAUSTED, not queued;
* once the lock is released every held call is answered SUCCEEDED, the Watch reports SERVING,
  ``/readyz`` answers 200 and a new call signs.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from signer.api._proto.v1 import responsestate_pb2, signer_pb2_grpc
from signer.keys.dev import DEV_PIN, create_dev_module
from signer.protection.postgres import eth2_lock_key
from tests.e2e.harness import SignerProcess, init_protection
from tests.e2e.test_eth2_e2e import att, public_key
from tests.e2e.test_metrics_e2e import http_get
from tests.postgres import PostgresServer, postgres_server  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = responsestate_pb2.SUCCEEDED
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WORKERS = 3
MAX_CONCURRENT_RPCS = 5
HELD_ON_WORKERS = WORKERS - 1
"""Signing calls that take the workers the Watch stream leaves."""
QUEUED = MAX_CONCURRENT_RPCS - WORKERS
"""Signing calls that wait inside gRPC for a worker."""
CALL_TIMEOUT_S = 120.0
STATE_TIMEOUT_S = 20.0
OVER_CAP_TIMEOUT_S = 10.0
"""A call over the cap that was queued instead of refused ends DEADLINE_EXCEEDED after this."""


def _config(tmp_path: Path, dsn: str) -> Path:
    data_dir = tmp_path / "data"
    create_dev_module(data_dir, 2, scrypt_n=2**10).close()
    pin_file = tmp_path / "module.pin"
    pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[server]
grpc_workers = {WORKERS}
max_concurrent_rpcs = {MAX_CONCURRENT_RPCS}
shutdown_grace_s = 2.0

[limits]
max_streams = 1

[keys]
module = "emulated"
data_dir = "{data_dir}"
pin = {{ file = "{pin_file}" }}

[protection]
backend = "postgres"
dsn = "{dsn}"
timeout_s = 60.0   # a held lock is waited for, not given up on, within this test

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_attestation"]
""",
        encoding="utf-8",
    )
    return config


def _readyz(proc: SignerProcess) -> tuple[int, str]:
    status, _, body = http_get(f"{proc.http_url}/readyz")
    return status, body


def _wait_for(what: str, predicate: object, proc: SignerProcess) -> None:
    deadline = time.monotonic() + STATE_TIMEOUT_S
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {STATE_TIMEOUT_S} s:\n{proc.logs}"
        time.sleep(0.2)


def _next_status(statuses: queue.Queue[object], wanted: int) -> None:
    """Read the Watch's statuses until ``wanted`` arrives (bounded)."""
    deadline = time.monotonic() + STATE_TIMEOUT_S
    while True:
        status = statuses.get(timeout=max(0.1, deadline - time.monotonic()))
        if isinstance(status, BaseException):
            raise AssertionError(f"the health Watch ended: {status}")
        if status == wanted:
            return


def test_every_worker_busy_is_not_ready_refuses_calls_over_the_cap_and_recovers(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    dsn = postgres_server.new_database()
    config = _config(tmp_path, dsn)
    init_protection(config)
    with SignerProcess.from_config(config) as proc:
        channel = proc.channel()
        stub = signer_pb2_grpc.SignerStub(channel)
        assert stub.SignBeaconAttestation(att(0, 1, 2).request(), timeout=CALL_TIMEOUT_S).state == SUCCEEDED
        assert _readyz(proc)[0] == 200

        statuses: queue.Queue[object] = queue.Queue()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=300)

        def read_watch() -> None:
            try:
                for answer in watch:
                    statuses.put(answer.status)
            except grpc.RpcError as exc:
                statuses.put(exc)

        reader = threading.Thread(target=read_watch, daemon=True)
        reader.start()
        _next_status(statuses, SERVING)

        with psycopg.connect(dsn, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (eth2_lock_key(public_key(0)),))
            held = [
                stub.SignBeaconAttestation.future(att(0, 2 + n, 3 + n).request(), timeout=CALL_TIMEOUT_S)
                for n in range(HELD_ON_WORKERS + QUEUED)
            ]
            try:
                _wait_for("/readyz 503", lambda: _readyz(proc)[0] == 503, proc)
                status, body = _readyz(proc)
                assert (status, body.strip()) == (503, "gRPC server cannot take calls"), body
                _next_status(statuses, NOT_SERVING)
                changed = proc.wait_for_log(lambda r: r.get("msg") == "readiness changed" and r.get("ready") is False)
                assert changed["reason"] == "gRPC server cannot take calls"
                assert f"all {WORKERS} gRPC worker threads busy" in changed["detail"]
                assert not any(f.done() for f in held), "a call went through while the lock was held"

                # One more call, for another validator: over the cap, refused at once, not queued.
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as refused:
                    stub.SignBeaconAttestation(att(1, 1, 2).request(), timeout=OVER_CAP_TIMEOUT_S)
                assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
                assert time.monotonic() - started < 5.0
            finally:
                holder.execute("SELECT pg_advisory_unlock(%s)", (eth2_lock_key(public_key(0)),))

        assert [f.result(timeout=CALL_TIMEOUT_S).state for f in held] == [SUCCEEDED] * len(held)
        _next_status(statuses, SERVING)
        _wait_for("/readyz 200", lambda: _readyz(proc)[0] == 200, proc)
        assert stub.SignBeaconAttestation(att(1, 1, 2).request(), timeout=CALL_TIMEOUT_S).state == SUCCEEDED
        watch.cancel()
        reader.join(timeout=10)
