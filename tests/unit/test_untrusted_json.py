"""Untrusted JSON documents go through one guarded loader (signer.jsondoc): a nesting bomb, an
oversized or a broken document is a named refusal from every parser and every CLI command, never a
RecursionError traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.cli import PIN_ENV, main
from signer.errors import InterchangeError, MalformedDocument, MalformedKeystore, MalformedRequest
from signer.jsondoc import MAX_DEPTH, load_json, nesting_depth
from signer.keys import eip2335
from signer.protection.cometbft_state import parse_cometbft_state
from signer.protection.interchange import parse_interchange

BOMB_DEPTH = 200_000
BOMB = "[" * BOMB_DEPTH + "]" * BOMB_DEPTH


def refusal(depth: int = BOMB_DEPTH) -> str:
    return f"nests arrays and objects {depth} deep, over the limit of {MAX_DEPTH}"


def bomb_in(field: str) -> str:
    """A JSON object whose ``field`` holds the nesting bomb."""
    return "{" + json.dumps(field) + ": " + BOMB + "}"


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [{"b": []}]}', 4),
        ('["[[[[", "]]", {"x": "\\"[{"}]', 2),  # brackets inside strings, escaped quotes
        ('"unterminated [[[', 0),
        ("[" * 40, 40),
    ],
)
def test_nesting_depth_ignores_strings(text: str, depth: int) -> None:
    assert nesting_depth(text.encode()) == depth


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BOMB, refusal()),
        ("[" * 33 + "]" * 33, "nests arrays and objects 33 deep, over the limit of 32"),
        ("{", r"is not valid JSON: Expecting property name enclosed in double quotes \(line 1, column 2\)"),
        ('{"a": NaN}', r"is not valid JSON \(ValueError\)"),
        (b'{"a": "\xff"}', r"is not valid JSON \(UnicodeDecodeError\)"),
        ("1" * 5000, r"is not valid JSON \(ValueError\)"),
        ("[" + " " * 1_000_000 + "]", "is 1,000,002 bytes, over the limit of 1,000,000"),
    ],
    ids=["bomb", "depth-33", "broken", "nan", "not-utf8", "huge-integer", "too-large"],
)
def test_load_json_refuses_with_a_named_error(document: str | bytes, message: str) -> None:
    with pytest.raises(MalformedDocument, match="^the document " + message):
        load_json(document, what="the document", max_bytes=1_000_000)
    assert issubclass(MalformedDocument, MalformedRequest)


def test_load_json_parses_what_json_does() -> None:
    assert load_json(b'\xef\xbb\xbf{"a": [1, "[", {"b": null}]}', what="d", max_bytes=100) == {
        "a": [1, "[", {"b": None}]
    }


@pytest.mark.parametrize(
    ("parse", "error"),
    [
        (parse_interchange, InterchangeError),
        (parse_cometbft_state, InterchangeError),
        (lambda doc: eip2335.parse_keystore(doc, source="ks"), MalformedKeystore),
    ],
    ids=["interchange", "priv_validator_state", "keystore"],
)
def test_every_parser_refuses_a_nesting_bomb_by_name(parse: Any, error: type[Exception]) -> None:
    for document, depth in ((BOMB, BOMB_DEPTH), (bomb_in("metadata"), BOMB_DEPTH + 1), (BOMB.encode(), BOMB_DEPTH)):
        with pytest.raises(error, match=refusal(depth)):
            parse(document)


# --- the CLI: one line on stderr, a non-zero exit, no traceback -------------------------------


def _one_line_refusal(capsys: pytest.CaptureFixture[str], code: int, expected: int) -> str:
    out = capsys.readouterr()
    assert code == expected, out
    assert "Traceback" not in out.err
    return out.err


def test_protection_import_of_a_bomb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "bomb.json"
    bomb.write_text(bomb_in("data"))
    code = main(["protection", "import", "--data-dir", str(tmp_path / "data"), str(bomb)])
    err = _one_line_refusal(capsys, code, 1)
    assert err.splitlines() == [f"error: the interchange document {refusal(BOMB_DEPTH + 1)}"]


def test_import_cometbft_state_of_a_bomb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "state.json"
    bomb.write_text(BOMB)
    target = ["--chain-id", "c", "--public-key", "0x" + "02" * 33]
    code = main(["protection", "import-cometbft-state", "--data-dir", str(tmp_path / "d"), *target, str(bomb)])
    err = _one_line_refusal(capsys, code, 1)
    assert err.splitlines() == [f"error: the priv_validator_state document {refusal()}"]


@pytest.mark.slow  # a keystore through the CLI
def test_keys_import_of_a_bomb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(PIN_ENV, "bomb-test-module-pin")
    bomb = tmp_path / "keystore-bomb.json"
    bomb.write_text(bomb_in("crypto"))
    (tmp_path / "pw").write_text("pw\n")
    args = ["keys", "import", "--quiet", "--data-dir", str(tmp_path / "data"), "--password-file", str(tmp_path / "pw")]
    code = main([*args, str(bomb)])
    out = capsys.readouterr()
    assert code == 1 and "Traceback" not in out.err
    assert out.out.splitlines() == [f"malformed       ({bomb}): the keystore {refusal(BOMB_DEPTH + 1)}"]


@pytest.mark.slow  # a subprocess
def test_check_config_of_a_deeply_nested_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signer.toml"
    path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    code = main(["check-config", str(path)])
    err = _one_line_refusal(capsys, code, 2)
    assert err.splitlines() == [f"error: config file {path} nests arrays or tables too deep to be a signer config"]
