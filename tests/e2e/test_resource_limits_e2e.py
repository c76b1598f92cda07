"""End to end: one client cannot stop the others (issue 13: items 3, 4 and 13).

Each test runs a real ``signer serve`` and checks that a signing call from another client still
succeeds, in bounded time, while someone tries to stop the signer:

* a ListAccounts path whose regular expression backtracks catastrophically (``(a+)+`` against a
  long account name) is matched in linear time (RE2), after the caller is authorized;
* idle streaming calls (gRPC health Watch, server reflection) as many as there are worker threads
  are identified and capped, so they cannot take every worker: a signing call is answered, and
  ``/readyz`` never says ready while calls go unanswered;
* a stdout and stderr that nobody reads (the audit log and the log on full pipes) stop no
  signature: lines are dropped and counted, an audit file keeps every line, shutdown does not hang.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    lister_pb2,
    lister_pb2_grpc,
    responsestate_pb2,
    signer_pb2,
    signer_pb2_grpc,
)
from signer.keys.dev import DEV_PIN, create_dev_module
from tests.e2e.harness import DOMAIN_RANDAO, SignerProcess, ref_domain
from tests.e2e.test_eth2_e2e import root

pytestmark = pytest.mark.e2e

SUCCEEDED = responsestate_pb2.SUCCEEDED
RANDAO = ref_domain(DOMAIN_RANDAO)
SIGN_TIMEOUT_S = 10.0
"""A signing call that takes longer than this was stopped by someone else's call."""


def _sign(channel: grpc.Channel, tag: str, timeout_s: float = SIGN_TIMEOUT_S) -> signer_pb2.SignResponse:
    request = signer_pb2.SignRequest(account="dev/0", data=root(tag), domain=RANDAO)
    response: signer_pb2.SignResponse = signer_pb2_grpc.SignerStub(channel).Sign(request, timeout=timeout_s)
    return response


# --- item 3: ListAccounts paths ------------------------------------------------------------------

LONG_ACCOUNT = "w/" + "a" * 30 + "-"
"""Python's backtracking ``re`` needs ~2**30 steps to reject this name for ``w/(a+)+``."""
HUNG_PATH = "w/(a+)+"


def test_a_backtracking_list_path_answers_in_bounded_time_while_signing_goes_on(tmp_path: Path) -> None:
    with SignerProcess.dev(tmp_path / "signer") as proc:
        channel = proc.channel()
        generated = accountmanager_pb2_grpc.AccountManagerStub(channel).Generate(
            accountmanager_pb2.GenerateRequest(account=LONG_ACCOUNT, passphrase=DEV_PIN.encode()), timeout=60
        )
        assert generated.state == SUCCEEDED, generated.message
        lister = lister_pb2_grpc.ListerStub(channel)
        answer: dict[str, object] = {}

        def list_accounts() -> None:
            started = time.monotonic()
            try:
                answer["response"] = lister.ListAccounts(lister_pb2.ListAccountsRequest(paths=[HUNG_PATH]), timeout=120)
            except grpc.RpcError as exc:
                answer["error"] = exc.code()
            answer["seconds"] = time.monotonic() - started

        lister_thread = threading.Thread(target=list_accounts)
        lister_thread.start()
        time.sleep(0.3)  # the listing is under way
        started = time.monotonic()
        signed = _sign(channel, "during a listing")
        sign_s = time.monotonic() - started
        lister_thread.join(timeout=130)
        assert signed.state == SUCCEEDED
        assert sign_s < SIGN_TIMEOUT_S
        assert "error" not in answer, answer
        assert float(answer["seconds"]) < 5.0, answer  # type: ignore[arg-type]
        response = answer["response"]
        assert isinstance(response, lister_pb2.ListAccountsResponse)
        assert response.state == SUCCEEDED
        assert [a.name for a in response.Accounts] == []  # "(a+)+" does not match "aaa...a-"
        # Dirk's path forms still work: a bare wallet, a literal account, a pattern.
        for path, names in (("w", [LONG_ACCOUNT]), (LONG_ACCOUNT, [LONG_ACCOUNT]), ("w/a+-", [LONG_ACCOUNT]),
                            ("dev/[01]", ["dev/0", "dev/1"])):  # fmt: skip
            listed = lister.ListAccounts(lister_pb2.ListAccountsRequest(paths=[path]), timeout=30)
            assert listed.state == SUCCEEDED
            assert sorted(a.name for a in listed.Accounts) == names, path


# --- item 4: streaming calls ----------------------------------------------------------------------

DEV_GRPC_WORKERS = 64
"""server.grpc_workers of ``serve --dev`` (the config default)."""


def _readyz(proc: SignerProcess) -> int:
    try:
        with urllib.request.urlopen(proc.http_url + "/readyz", timeout=10) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_idle_streams_as_many_as_workers_do_not_stop_signing(tmp_path: Path) -> None:
    with SignerProcess.dev(tmp_path / "signer") as proc:
        channel = proc.channel()
        assert _sign(channel, "before the streams").state == SUCCEEDED
        release = threading.Event()
        opened: list[str] = []
        refused: list[grpc.StatusCode] = []
        streams: list[object] = []

        def idle_requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
            release.wait(120)  # the stream stays open, saying nothing
            return
            yield  # pragma: no cover

        health = health_pb2_grpc.HealthStub(channel)
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        for _ in range(DEV_GRPC_WORKERS):
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
            streams.append(watch)
            try:
                next(watch)  # the server answers the current status and then holds the stream
                opened.append("watch")
            except grpc.RpcError as exc:
                refused.append(exc.code())
        for _ in range(DEV_GRPC_WORKERS):
            streams.append(reflection.ServerReflectionInfo(idle_requests(), timeout=120))
        time.sleep(1.0)  # let the reflection streams reach the server

        # Every idle stream holds a worker on the server: signing is still answered, promptly.
        started = time.monotonic()
        try:
            answer: object = _sign(channel, "while streams are open").state
        except grpc.RpcError as exc:
            answer = exc.code()
        elapsed = time.monotonic() - started
        ready = _readyz(proc)
        release.set()
        for stream in streams:
            stream.cancel()  # type: ignore[attr-defined]
        assert answer in (SUCCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED), (answer, elapsed, ready)
        assert elapsed < SIGN_TIMEOUT_S
        if answer != SUCCEEDED:
            assert ready == 503  # refused: then the signer does not claim to be ready
        # The streams beyond the cap were refused with RESOURCE_EXHAUSTED, not queued.
        assert refused and set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, (len(opened), refused[:3])
        assert _sign(channel, "after the streams").state == SUCCEEDED


def _production_config(tmp_path: Path) -> Path:
    """A ``serve --config`` signer (production form) on the dev keys, every client allowed."""
    data_dir = tmp_path / "data"
    create_dev_module(data_dir, 2, scrypt_n=2**10).close()
    pin_file = tmp_path / "pin"
    pin_file.write_text(DEV_PIN + "\n", encoding="utf-8")
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{data_dir}"
pin = {{ file = "{pin_file}" }}

[[clients]]
name = "local"
allow_accounts = ["*"]
operations = ["sign_generic", "sign_attestation"]
""",
        encoding="utf-8",
    )
    return config


def _list_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    [answer] = list(
        stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30)
    )
    return [s.name for s in answer.list_services_response.service]


def test_reflection_is_off_in_production_and_on_with_dev(tmp_path: Path) -> None:
    with SignerProcess.from_config(_production_config(tmp_path / "prod")) as proc:
        with pytest.raises(grpc.RpcError) as info:
            _list_services(proc.channel())
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with SignerProcess.dev(tmp_path / "dev") as proc:
        assert "v1.Signer" in _list_services(proc.channel())


# --- item 13: a stdout and stderr nobody reads --------------------------------------------------


def _serve_on_unread_pipes(args: list[str]) -> tuple[subprocess.Popen[bytes], int, int]:
    """``signer serve ARGS`` with stdout and stderr on pipes this test stops reading after the
    "signer ready" line. Returns the process and its gRPC and metrics ports."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "signer", "serve", *args,
         "--grpc-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith(b"{") and json.loads(line).get("msg") == "signer ready":
            record = json.loads(line)
            return proc, int(record["grpc_port"]), int(record["metrics_port"])
    raise AssertionError(f"signer not ready (exit {_stop(proc)})")


def _metric(metrics_port: int, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{labels}}} not exposed")


def _sign_many(grpc_port: int, count: int, tag: str, keys: int = 1) -> list[float]:
    """``count`` calls one after the other, each signing one RANDAO-domain root with each of
    ``keys`` dev keys (Sign, or Multisign for more than one); returns each call's duration. Every
    item must succeed."""
    durations: list[float] = []
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = signer_pb2_grpc.SignerStub(channel)
        for n in range(count):
            started = time.monotonic()
            if keys == 1:
                states = [_sign(channel, f"{tag}-{n}").state]
            else:
                requests = [
                    signer_pb2.SignRequest(account=f"dev/{k}", data=root(f"{tag}-{n}"), domain=RANDAO)
                    for k in range(keys)
                ]
                answer = stub.Multisign(signer_pb2.MultisignRequest(requests=requests), timeout=SIGN_TIMEOUT_S)
                states = [r.state for r in answer.responses]
            durations.append(time.monotonic() - started)
            assert states == [SUCCEEDED] * keys, n
    return durations


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM and the exit code; a shutdown that hangs on the unread pipes fails the test. The
    pipes are closed here (left to the garbage collector, their ResourceWarning fails a later test)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_unread_stdout_and_stderr_stop_no_signature_and_drops_are_counted(tmp_path: Path) -> None:
    data_dir = tmp_path / "signer"
    keys = 10
    proc, grpc_port, metrics_port = _serve_on_unread_pipes(
        ["--dev", "--data-dir", str(data_dir), "--dev-keys", str(keys)]
    )
    try:
        # One audit line (~350 bytes) per item on stdout: the 64 KiB pipe is full after ~190 lines,
        # the writer's queue (10,000 lines) after ~1,000 calls of 10 items; the rest is dropped.
        durations = _sign_many(grpc_port, 1200, "unread", keys=keys)
        assert max(durations) < SIGN_TIMEOUT_S
        assert _metric(metrics_port, "signer_log_lines_dropped_total", 'stream="audit"') > 0
        assert _readyz_port(metrics_port) == 200
    finally:
        code = _stop(proc)
    assert code == 0  # shutdown flushed what it could and did not hang on the full pipes

    # The same data directory through a config file with an audit FILE: stdout and stderr stall
    # again, the audit file keeps every line.
    audit = tmp_path / "audit.jsonl"
    config = tmp_path / "signer.toml"
    config.write_text(
        f"""
[keys]
module = "emulated"
data_dir = "{data_dir}"
pin = {{ file = "{data_dir / "dev.pin"}" }}

[[clients]]
name = "local"
allow_accounts = ["dev/*"]
operations = ["sign_generic"]

[audit]
path = "{audit}"
""",
        encoding="utf-8",
    )
    proc, grpc_port, metrics_port = _serve_on_unread_pipes(["--config", str(config)])
    try:
        _sign_many(grpc_port, 1100, "audit-file")

        def signed() -> int:
            lines = audit.read_text(encoding="utf-8").splitlines() if audit.exists() else []
            records = [json.loads(line) for line in lines]
            return sum(1 for r in records if r.get("method") == "Sign" and r.get("outcome") == "succeeded")

        deadline = time.monotonic() + 10
        while signed() < 1100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert signed() == 1100
        assert _metric(metrics_port, "signer_log_lines_dropped_total", 'stream="audit"') == 0
    finally:
        assert _stop(proc) == 0


def _readyz_port(metrics_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
