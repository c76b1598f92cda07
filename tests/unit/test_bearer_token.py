"""The Keymanager API's bearer token (signer.api.bearer): the token file is created once, 0600, with 256
random bits, never replaced; a weak or others-writable file is refused by name; a call's header is
checked (401 missing or malformed, 403 wrong)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from signer import errors
from signer.api import status
from signer.api.bearer import BearerToken, load_or_create, token_bits, token_problem


def test_a_missing_token_file_is_created_0600_with_256_random_bits(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keymanager-token"
    token = load_or_create(path)
    text = path.read_text()
    assert text.endswith("\n")
    value = text.strip()
    assert len(value) == 64 and int(value, 16) >= 0
    assert token_bits(value) >= 256
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token.check(f"Bearer {value}")
    other = tmp_path / "other-token"
    load_or_create(other)
    assert other.read_text() != text, "two files made independently hold the same token"


def test_an_existing_token_file_is_used_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keymanager-token"
    first = load_or_create(path).check
    before = path.read_text()
    again = load_or_create(path)
    assert path.read_text() == before
    value = before.strip()
    first(f"Bearer {value}")
    again.check(f"Bearer {value}")


def test_an_operator_chosen_token_is_accepted_when_strong_enough(tmp_path: Path) -> None:
    path = tmp_path / "token"
    base64_token = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV4cXV1eHF1dXo"  # noqa: S105 - 43 base64 characters: 258 bits
    path.write_text(base64_token + "\n")
    path.chmod(0o600)
    load_or_create(path).check(f"Bearer {base64_token}")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty"),
        ("abc123\n", "too short"),
        ("a" * 63 + "\n", "too short"),  # 63 hex characters: 252 bits
        ("token with spaces " * 4, "visible ASCII"),
    ],
)
def test_a_weak_token_file_is_refused_naming_the_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(errors.ConfigError, match=problem) as refused:
        load_or_create(path)
    assert str(path) in refused.value.message
    assert content.strip() == "" or content.strip() not in refused.value.message


def test_a_token_file_others_can_write_is_refused_and_one_they_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    load_or_create(path)
    path.chmod(0o620)
    with pytest.raises(errors.ConfigError, match="writable by others"):
        load_or_create(path)
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="signer.api.bearer"):
        load_or_create(path)
    assert any("readable by others" in r.getMessage() for r in caplog.records)


def test_an_unreadable_token_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "token").mkdir()
    with pytest.raises(errors.ConfigError, match=r"keymanager\.token_file"):
        load_or_create(tmp_path / "token")


TOKEN = "f" * 64


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", f"Bearer {TOKEN} extra", TOKEN],
    ids=["absent", "empty", "blank", "basic", "no-token", "no-token-space", "two-words", "no-scheme"],
)
def test_a_missing_or_malformed_authorization_header_is_401(header: str | None) -> None:
    with pytest.raises(errors.BearerTokenMissing, match="Bearer <token>") as refused:
        BearerToken(TOKEN).check(header)
    assert status.http_status(refused.value) == 401


def test_a_wrong_token_is_403_and_the_right_one_passes_in_any_scheme_case() -> None:
    token = BearerToken(TOKEN)
    for wrong in ("e" * 64, "f" * 63, "f" * 65, "\u00e9" * 64):
        with pytest.raises(errors.BearerTokenWrong, match="wrong bearer token") as refused:
            token.check(f"Bearer {wrong}")
        assert status.http_status(refused.value) == 403
        assert wrong not in refused.value.message
    token.check(f"Bearer {TOKEN}")
    token.check(f"bearer {TOKEN}")
    token.check(f"  BEARER   {TOKEN}  ")


def test_token_strength_is_counted_from_the_alphabet() -> None:
    assert token_bits("0" * 64) == 256
    assert token_bits("Z" * 43) == 258
    assert token_problem("0" * 64) is None
    assert token_problem("0" * 63) is not None
    assert token_problem("x" * 5000) is not None
