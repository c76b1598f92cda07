"""The emulated module's PIN policy (issue 16.3): a minimum length, no common or published PIN, at
creation and at a PIN change; the dev module is exempt; an old weak PIN still opens, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from signer.config import parse_config
from signer.errors import ConfigError, WeakPin
from signer.keys import dev
from signer.keys.emulated import MODULE_FILE, EmulatedKeyModule
from signer.keys.pin_policy import (
    COMMON_PINS,
    DEFAULT_MIN_PIN_LENGTH,
    DEFAULT_PIN_POLICY,
    PUBLIC_KEYS_ONLY,
    PinPolicy,
    generate_pin,
)

FAST_N = 2**10
GOOD_PIN = "k3Jq-u8Tz-Wm2r-Yp7x"


def test_the_default_minimum_is_16_characters() -> None:
    assert DEFAULT_MIN_PIN_LENGTH == 16
    assert DEFAULT_PIN_POLICY.problem("x9Tq2mKp7vLr4wZa") is None  # 16
    problem = DEFAULT_PIN_POLICY.problem("x9Tq2mKp7vLr4wZ")  # 15
    assert problem is not None and "15 characters" in problem and "at least 16" in problem


def test_length_counts_characters_not_bytes() -> None:
    assert DEFAULT_PIN_POLICY.problem("ä" * 8 + "Zq9!xW2p") is None  # 16 characters, more bytes


@pytest.mark.parametrize(
    "pin",
    [
        "1234567890123456",
        "passwordpassword",
        "Correct Horse Battery Staple",
        "correct-horse-battery-staple",
        "ABCDEFGHIJKLMNOP",
        dev.DEV_PIN,
        "validator-signer",
        "aaaaaaaaaaaaaaaaaaaa",
        "abcabcabcabcabcabcab",
        "1212121212121212",
    ],
)
def test_common_published_and_repeated_pins_are_refused_whatever_their_length(pin: str) -> None:
    with pytest.raises(WeakPin) as refused:
        DEFAULT_PIN_POLICY.check(pin)
    message = refused.value.message
    assert "common or published" in message or "pattern repeated" in message
    assert pin not in message  # the rule, never the PIN


def test_a_configured_minimum_applies_and_the_list_still_does() -> None:
    policy = PinPolicy(min_length=24)
    with pytest.raises(WeakPin, match="at least 24"):
        policy.check(GOOD_PIN)
    assert PinPolicy(min_length=8).problem("Zq9!xW2p") is None
    with pytest.raises(WeakPin, match="common"):
        PinPolicy(min_length=8).check("password1")


def test_the_list_is_stored_canonical() -> None:
    assert all(p == p.casefold() and not set(p) & set(" .-_") for p in COMMON_PINS)


def test_generated_pins_are_long_random_and_pass() -> None:
    pins = {generate_pin() for _ in range(50)}
    assert len(pins) == 50
    for pin in pins:
        assert len(pin) >= 32 and pin.isascii() and pin.strip() == pin
        DEFAULT_PIN_POLICY.check(pin)


def test_min_pin_length_config_default_and_floor() -> None:
    keys = {"pin": {"env": "X"}}
    assert parse_config({"keys": keys}).keys.min_pin_length == 16
    assert parse_config({"keys": {**keys, "min_pin_length": 24}}).keys.min_pin_length == 24
    with pytest.raises(ConfigError, match=r"keys\.min_pin_length"):
        parse_config({"keys": {**keys, "min_pin_length": 7}})


# --- the module applies it ------------------------------------------------------------------------


def test_a_module_is_not_created_with_a_short_pin(tmp_path: Path) -> None:
    with pytest.raises(WeakPin, match="at least 16"):
        EmulatedKeyModule(tmp_path / "data", "short-pin", create=True, scrypt_n=FAST_N)
    assert not (tmp_path / "data" / MODULE_FILE).exists()


def test_a_module_is_not_created_with_the_published_dev_pin(tmp_path: Path) -> None:
    with pytest.raises(WeakPin, match="published"):
        EmulatedKeyModule(tmp_path / "data", dev.DEV_PIN, create=True, scrypt_n=FAST_N)
    assert not (tmp_path / "data" / MODULE_FILE).exists()


def test_the_module_uses_the_policy_it_is_given(tmp_path: Path) -> None:
    strict = PinPolicy(min_length=32)
    with pytest.raises(WeakPin, match="at least 32"):
        EmulatedKeyModule(tmp_path / "a", GOOD_PIN, create=True, scrypt_n=FAST_N, pin_policy=strict)
    EmulatedKeyModule(tmp_path / "b", GOOD_PIN, create=True, scrypt_n=FAST_N).close()


def test_the_dev_module_is_exempt_because_its_keys_are_public(tmp_path: Path) -> None:
    module = dev.create_dev_module(tmp_path / "dev", 1, scrypt_n=FAST_N)
    assert module.pin_policy is PUBLIC_KEYS_ONLY
    module.close()
    again = dev.create_dev_module(tmp_path / "dev", 1)  # reopened, exempt again
    assert len(again.list_keys()) == 3
    again.close()


def test_a_weak_pin_set_before_the_policy_still_opens_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    EmulatedKeyModule(data, "old-pin", create=True, scrypt_n=FAST_N, pin_policy=PUBLIC_KEYS_ONLY).close()
    module = EmulatedKeyModule(data, "old-pin")
    with caplog.at_level(logging.WARNING, logger="signer.keys.emulated"):
        module.unlock()
    assert module.unlocked
    warnings = [r for r in caplog.records if "PIN policy" in r.getMessage()]
    assert len(warnings) == 1
    assert "signer keys change-pin" in warnings[0].getMessage()
    assert "at least 16" in str(warnings[0].__dict__["rule"])
    assert "old-pin" not in caplog.text
