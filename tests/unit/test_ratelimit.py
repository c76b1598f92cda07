"""RateLimiter: token buckets per client and per key, the in-flight cap, the batch cap, --rate-limit."""

from __future__ import annotations

import threading

import pytest

from signer.api.ratelimit import IN_FLIGHT_RETRY_S, RateLimiter, TokenBucket, parse_rate_limit
from signer.config import ClientConfig, LimitsConfig, RateConfig
from signer.errors import ConfigError, MalformedRequest, RateLimited
from signer.types import ClientIdentity
from tests.fakes import FakeClock

VC1 = ClientIdentity("vc-1")
VC2 = ClientIdentity("vc-2")
TEN_PER_S = RateConfig(per_second=10, burst=5)


def limiter(
    *,
    default: RateConfig | None = TEN_PER_S,
    clients: tuple[ClientConfig, ...] = (),
    clock: FakeClock | None = None,
    **limits: object,
) -> tuple[RateLimiter, FakeClock]:
    clock = clock or FakeClock()
    config = LimitsConfig.model_validate({"default_rate": default, **limits})
    return RateLimiter(config, clients, clock=clock), clock


def take(rl: RateLimiter, client: ClientIdentity, items: int = 1) -> None:
    with rl.acquire(client, items):
        pass


def test_burst_then_refused_with_retry_after_from_the_bucket() -> None:
    rl, _ = limiter()
    for _ in range(5):
        take(rl, VC1)
    with pytest.raises(RateLimited) as info:
        take(rl, VC1)
    assert info.value.retry_after_s == pytest.approx(0.1)  # one token at 10/s
    assert "client 'vc-1' is over its rate limit (10/s, burst 5)" in info.value.message


def test_refill_follows_the_clock() -> None:
    rl, clock = limiter()
    for _ in range(5):
        take(rl, VC1)
    clock.advance(0.05)
    with pytest.raises(RateLimited) as info:
        take(rl, VC1)
    assert info.value.retry_after_s == pytest.approx(0.05)
    clock.advance(0.05)
    take(rl, VC1)
    with pytest.raises(RateLimited):
        take(rl, VC1)
    clock.advance(10.0)  # refills to the burst, not beyond
    for _ in range(5):
        take(rl, VC1)
    with pytest.raises(RateLimited):
        take(rl, VC1)


def test_two_clients_are_independent() -> None:
    rl, _ = limiter()
    for _ in range(5):
        take(rl, VC1)
    with pytest.raises(RateLimited):
        take(rl, VC1)
    for _ in range(5):
        take(rl, VC2)


def test_client_rate_overrides_the_default_and_matches_by_an_opted_in_san() -> None:
    clients = (ClientConfig(name="vc-fast", sans=("dns:host-7.example",), rate=RateConfig(per_second=100, burst=20)),)
    rl, _ = limiter(clients=clients)
    fast = ClientIdentity("dns:host-7.example", alt_names=("dns:host-7.example",), has_cn=False)
    for _ in range(20):
        take(rl, fast)
    with pytest.raises(RateLimited) as info:
        take(rl, fast)
    assert info.value.retry_after_s == pytest.approx(0.01)
    assert "client 'vc-fast'" in info.value.message


def test_the_remembered_bucket_is_per_identity_not_per_name() -> None:
    """The bucket name and rate are worked out once per identity: a certificate WITH the CN
    "dns:host-7.example" is not the SAN-matched client of the same name (it has its own default-rate
    bucket), whichever of the two called first."""
    clients = (ClientConfig(name="vc-fast", sans=("dns:host-7.example",), rate=RateConfig(per_second=100, burst=20)),)
    rl, _ = limiter(clients=clients)  # default: 10/s, burst 5
    by_san = ClientIdentity("dns:host-7.example", alt_names=("dns:host-7.example",), has_cn=False)
    by_cn = ClientIdentity("dns:host-7.example", alt_names=("dns:host-7.example",))
    take(rl, by_san)  # remembered: bucket 'vc-fast'
    for _ in range(5):
        take(rl, by_cn)
    with pytest.raises(RateLimited) as info:
        take(rl, by_cn)
    assert "client 'dns:host-7.example'" in info.value.message
    for _ in range(19):
        take(rl, by_san)  # its own burst of 20, untouched by the other identity
    with pytest.raises(RateLimited) as info:
        take(rl, by_san)
    assert "client 'vc-fast'" in info.value.message


def test_admit_and_release_hold_one_in_flight_slot_per_request() -> None:
    rl, _ = limiter(default=None, max_in_flight=1)
    rl.admit(VC1)
    assert rl.in_flight == 1
    with pytest.raises(RateLimited, match="requests in flight"):
        rl.admit(VC2)
    rl.release()
    assert rl.in_flight == 0
    rl.admit(VC2, items=3, rate=False)
    rl.release()
    assert rl.in_flight == 0


def test_no_rate_configured_means_no_limit() -> None:
    rl, _ = limiter(default=None)
    for _ in range(1000):
        take(rl, VC1)


def test_items_cost_tokens_and_a_batch_over_the_burst_borrows() -> None:
    rl, clock = limiter()  # 10/s, burst 5
    take(rl, VC1, items=3)
    take(rl, VC1, items=2)
    with pytest.raises(RateLimited):
        take(rl, VC1)
    clock.advance(0.5)  # full again
    take(rl, VC1, items=25)  # admitted on a full bucket; now 20 tokens in debt
    with pytest.raises(RateLimited) as info:
        take(rl, VC1)
    assert info.value.retry_after_s == pytest.approx(2.1)  # repay 20, then one token
    clock.advance(2.1)
    take(rl, VC1)


def test_in_flight_cap_is_global_and_released_by_the_permit() -> None:
    rl, _ = limiter(default=None, max_in_flight=2)
    first = rl.acquire(VC1)
    second = rl.acquire(VC2)
    assert rl.in_flight == 2
    with pytest.raises(RateLimited) as info:
        rl.acquire(VC1)
    assert info.value.retry_after_s == IN_FLIGHT_RETRY_S
    assert "cap of 2 requests in flight" in info.value.message
    with first:
        pass
    first.release()  # idempotent
    assert rl.in_flight == 1
    with rl.acquire(VC1):
        assert rl.in_flight == 2
    second.release()
    assert rl.in_flight == 0


def test_a_rate_limited_request_does_not_keep_an_in_flight_slot() -> None:
    rl, _ = limiter(default=RateConfig(per_second=1, burst=1), max_in_flight=1)
    take(rl, VC1)
    with pytest.raises(RateLimited):
        take(rl, VC1)
    assert rl.in_flight == 0
    take(rl, VC2)


def test_batch_over_max_batch_items_is_malformed() -> None:
    rl, _ = limiter(default=None, max_batch_items=100)
    take(rl, VC1, items=100)
    with pytest.raises(MalformedRequest, match=r"batch of 101 items is over limits\.max_batch_items = 100"):
        rl.acquire(VC1, items=101)
    assert rl.in_flight == 0


def test_per_key_limit() -> None:
    rl, clock = limiter(default=None, per_key_rate=RateConfig(per_second=2, burst=2))
    key_a, key_b = b"\xaa" * 48, b"\xbb" * 48
    rl.check_key(key_a)
    rl.check_key(key_a)
    with pytest.raises(RateLimited) as info:
        rl.check_key(key_a)
    assert info.value.retry_after_s == pytest.approx(0.5)
    rl.check_key(key_b)
    clock.advance(0.5)
    rl.check_key(key_a)


def test_per_key_limit_unset_never_refuses() -> None:
    rl, _ = limiter(default=None)
    for _ in range(100):
        rl.check_key(b"\xaa" * 48)


def test_a_limited_client_never_blocks_another() -> None:
    """While vc-1 hammers its empty bucket from many threads, vc-2 keeps getting through."""
    rl, _ = limiter(default=RateConfig(per_second=0.001, burst=1))
    take(rl, VC1)
    stop = threading.Event()
    refused = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                take(rl, VC1)
            except RateLimited:
                refused.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for n in range(200):
            take(rl, ClientIdentity(f"other-{n}"))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert refused


def test_token_bucket_ignores_a_clock_going_back() -> None:
    bucket = TokenBucket(RateConfig(per_second=1, burst=1), now=10.0)
    assert bucket.take(1, 10.0) == 0.0
    assert bucket.take(1, 5.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "per_second", "burst"),
    [("50", 50.0, 50), ("50:200", 50.0, 200), ("0.5", 0.5, 1), ("2.5:3", 2.5, 3), (" 7 ", 7.0, 7)],
    ids=["rate-only", "rate-and-burst", "fractional-rate", "fractional-with-burst", "spaces"],
)
def test_parse_rate_limit(text: str, per_second: float, burst: int) -> None:
    assert parse_rate_limit(text) == RateConfig(per_second=per_second, burst=burst)


@pytest.mark.parametrize(
    "text",
    ["", "0", "-1", "abc", "nan", "inf", "10:", "10:0", "10:1.5", "10:x", ":5"],
    ids=[
        "empty",
        "zero",
        "negative",
        "word",
        "nan",
        "inf",
        "empty-burst",
        "zero-burst",
        "fractional-burst",
        "word-burst",
        "no-rate",
    ],
)
def test_parse_rate_limit_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--rate-limit"):
        parse_rate_limit(text)
