"""End to end: one client cannot stop the others (issue 13: items 3, 4 and 13).

Each test runs a real ``signer serve`` and checks that a signing call from another client still
succeeds, in bounded time, while someone tries to stop the signer:

* a ListAccounts path whose regular expression backtracks catastrophically (``(a+)+`` against a
  long account name) is matched in linear time (RE2), after the caller is authorized;
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from signer.api._proto.v1 import (
    accountmanager_pb2,
    accountmanager_pb2_grpc,
    lister_pb2,
    lister_pb2_grpc,
    responsestate_pb2,
    signer_pb2,
    signer_pb2_grpc,
)
from signer.keys.dev import DEV_PIN
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
