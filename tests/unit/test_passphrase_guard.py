"""PassphraseGuard: failures counted per client and overall, lockouts that double, one check at a
time (issue 13, items 5 and 6). A fake clock; the guard never sleeps."""

from __future__ import annotations

import pytest

from signer.errors import RateLimited
from signer.passphrase import PASSPHRASE_LOCKOUT, WRONG_PASSPHRASE, GuardPolicy, PassphraseGuard
from tests.fakes import FakeClock, RecordingMonitor


def guard(**policy: float) -> tuple[PassphraseGuard, FakeClock, RecordingMonitor]:
    clock, events = FakeClock(), RecordingMonitor()
    return PassphraseGuard(GuardPolicy(**policy), monitor=events, clock=clock), clock, events  # type: ignore[arg-type]


def test_free_failures_then_a_lockout_that_doubles() -> None:
    g, clock, events = guard()
    for n in range(3):
        g.check("vc-1")
        assert g.failed("vc-1") == n + 1
    with pytest.raises(RateLimited, match="client 'vc-1' gave 3 wrong passphrases in a row") as info:
        g.check("vc-1")
    assert info.value.retry_after_s == 1.0
    assert events.events == [WRONG_PASSPHRASE] * 3 + [PASSPHRASE_LOCKOUT]
    g.check("vc-2")  # another client is not locked out
    clock.now += 1.0
    g.check("vc-1")
    g.failed("vc-1")  # the 4th: 2 s
    with pytest.raises(RateLimited) as info:
        g.check("vc-1")
    assert info.value.retry_after_s == 2.0
    clock.now += 2.0
    g.check("vc-1")
    g.failed("vc-1")  # the 5th: 4 s
    clock.now += 3.5
    with pytest.raises(RateLimited) as info:
        g.check("vc-1")
    assert info.value.retry_after_s == pytest.approx(0.5)


def test_the_lockout_is_capped_and_forgotten() -> None:
    g, clock, _ = guard(max_delay_s=60.0, forget_s=3600.0)
    for _ in range(20):
        g.failed("vc-1")
    with pytest.raises(RateLimited) as info:
        g.check("vc-1")
    assert info.value.retry_after_s == 60.0
    clock.now += 3601.0
    g.check("vc-1")  # forgotten an hour after the last failure
    g.failed("vc-1")
    g.check("vc-1")  # and counting starts over


def test_a_right_passphrase_clears_the_count() -> None:
    g, _, _ = guard()
    g.failed("vc-1")
    g.failed("vc-1")
    g.succeeded("vc-1")
    g.failed("vc-1")
    g.failed("vc-1")
    g.check("vc-1")


def test_many_clients_fill_the_global_bucket_and_lock_everyone_out() -> None:
    g, clock, _ = guard(global_limit=5, global_leak_s=10.0)
    for n in range(5):  # one failure each: no client reaches its own lockout
        g.failed(f"vc-{n}")
    with pytest.raises(RateLimited, match="too many wrong passphrases from all clients") as info:
        g.check("vc-new")
    assert info.value.retry_after_s == pytest.approx(10.0)
    clock.now += 10.0  # one failure leaked out
    g.check("vc-new")


def test_one_check_at_a_time() -> None:
    g, _, _ = guard()
    with g.gate(), pytest.raises(RateLimited, match="another passphrase check is running"), g.gate():
        pass  # pragma: no cover
    with g.gate():  # released after use
        pass
