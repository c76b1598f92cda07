"""End to end: AccountManager passphrase checks are cheap, one at a time, and locked out after
failures (issue 13, items 5 and 6), on both key modules.

The passphrase of Unlock and Generate is the module PIN. Before: every check ran a fresh scrypt on
the gRPC thread (64 concurrent wrong ones took the process to 8 GiB) and nothing counted failures
(~1,470 guesses/s); on PKCS#11 the guess was compared in software, so the token never saw it. Now:

* a check is a keyed HMAC against a verifier kept at unlock (no KDF), one check at a time;
* after 3 wrong passphrases in a row a client is locked out, 1 s doubling per further failure:
  RESOURCE_EXHAUSTED with ``retry-after-ms`` (as the rate limiter answers), before the passphrase is
  even looked at; each wrong passphrase and each refusal is a security event (log and metric);
* on PKCS#11 a wrong guess reaches the token's C_Login, which records it (SoftHSM2 sets the token
  flag CKF_USER_PIN_COUNT_LOW; a hardware token counts down its retries).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from signer.api._proto.v1 import accountmanager_pb2, accountmanager_pb2_grpc, responsestate_pb2
from signer.keys.dev import DEV_PIN
from tests.e2e.harness import KEY_MODULES, SignerProcess
from tests.support import trailers

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUCCEEDED = responsestate_pb2.SUCCEEDED
DENIED = responsestate_pb2.DENIED
CONCURRENT = 64
CKF_USER_PIN_COUNT_LOW = 0x00010000


@pytest.fixture(params=KEY_MODULES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, SignerProcess]]:
    with SignerProcess.dev_on(request.param, tmp_path / "data", dev_keys=2) as proc:
        yield request.param, proc


def _unlock(proc: SignerProcess, passphrase: str) -> object:
    """The Unlock answer's state, or the gRPC status code (and retry-after-ms) of a refusal."""
    stub = accountmanager_pb2_grpc.AccountManagerStub(proc.channel())
    request = accountmanager_pb2.UnlockAccountRequest(account="dev/0", passphrase=passphrase.encode())
    try:
        return stub.Unlock(request, timeout=30).state
    except grpc.RpcError as exc:
        trailing = trailers(exc)
        return exc.code(), int(trailing.get("retry-after-ms", "-1"))


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _metric(proc: SignerProcess, event: str) -> float:
    with urllib.request.urlopen(proc.metrics_url, timeout=10) as resp:  # noqa: S310 - loopback http
        for line in resp.read().decode().splitlines():
            if line.startswith(f'signer_security_events_total{{event="{event}"}} '):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"signer_security_events_total{{event={event!r}}} not exposed")


def _token_flags(proc: SignerProcess) -> int:
    """The token's flags as a fresh process sees them (SoftHSM reads its state per process)."""
    config = proc.args[proc.args.index("--config") + 1]
    text = Path(config).read_text(encoding="utf-8")
    library = text.split('library_path = "', 1)[1].split('"', 1)[0]
    label = text.split('token_label = "', 1)[1].split('"', 1)[0]
    code = "import sys, pkcs11; print(int(pkcs11.lib(sys.argv[1]).get_token(token_label=sys.argv[2]).flags))"
    done = subprocess.run(
        [sys.executable, "-c", code, library, label], env={**os.environ, **proc.env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return int(done.stdout.strip())


def test_passphrase_checks_are_cheap_counted_and_locked_out(server: tuple[str, SignerProcess]) -> None:
    module, proc = server
    # The right passphrase: a keyed HMAC against the verifier kept at unlock, no KDF.
    started = time.monotonic()
    assert _unlock(proc, DEV_PIN) == SUCCEEDED
    assert time.monotonic() - started < 5.0
    if module == "pkcs11":
        assert not _token_flags(proc) & CKF_USER_PIN_COUNT_LOW

    # Three wrong ones are refused (DENIED) and counted ...
    for n in range(3):
        assert _unlock(proc, f"wrong-{n}") == DENIED, n
    assert _metric(proc, "wrong_passphrase") == 3
    # ... on PKCS#11 the token itself saw them (its C_Login counts wrong PINs).
    if module == "pkcs11":
        assert _token_flags(proc) & CKF_USER_PIN_COUNT_LOW
    # ... then the client is locked out, even with the right passphrase, which is not looked at.
    refusal = _unlock(proc, DEV_PIN)
    assert isinstance(refusal, tuple), refusal
    code, retry_after_ms = refusal
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < retry_after_ms <= 1000
    assert _metric(proc, "passphrase_lockout") >= 1
    records = proc.log_records()
    assert [r["failures"] for r in records if r.get("msg") == "wrong passphrase"] == [1, 2, 3]
    assert all(r.get("client") == "local" for r in records if r.get("msg") == "wrong passphrase")
    assert DEV_PIN not in proc.logs and "wrong-0" not in proc.logs

    # After the wait the right passphrase works again and clears the count.
    time.sleep(retry_after_ms / 1000 + 0.1)
    assert _unlock(proc, DEV_PIN) == SUCCEEDED
    assert _unlock(proc, "wrong-again") == DENIED  # one failure after a success: no lockout yet
    time.sleep(0.1)
    assert _unlock(proc, DEV_PIN) == SUCCEEDED


def test_concurrent_wrong_passphrases_run_no_kdf_in_parallel(server: tuple[str, SignerProcess]) -> None:
    """64 wrong passphrases at once: answered at once, the process does not grow (each scrypt of the
    old check took ~128 MiB; 64 at once took 8 GiB)."""
    _module, proc = server
    before_kib = _peak_rss_kib(proc.pid)
    answers: list[object] = []
    barrier = threading.Barrier(CONCURRENT)

    def guess(n: int) -> None:
        barrier.wait(timeout=30)
        answers.append(_unlock(proc, f"guess-{n}"))

    started = time.monotonic()
    threads = [threading.Thread(target=guess, args=(n,)) for n in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.monotonic() - started
    grown_mib = (_peak_rss_kib(proc.pid) - before_kib) / 1024
    assert len(answers) == CONCURRENT
    assert grown_mib < 256, f"the signer grew by {grown_mib:.0f} MiB"
    assert elapsed < 30, elapsed
    # Each is a wrong passphrase (DENIED) or refused at once: locked out or another check running.
    refused = [a for a in answers if a != DENIED]
    assert all(isinstance(a, tuple) and a[0] == grpc.StatusCode.RESOURCE_EXHAUSTED for a in refused), refused[:3]
    assert len(answers) - len(refused) <= 3 + 1  # at most the free failures (and one racing the lockout)
    print(json.dumps({"concurrent": CONCURRENT, "seconds": round(elapsed, 2), "grown_mib": round(grown_mib)}))
