"""ListAccounts paths (issue 13.3): Dirk's forms, matched by RE2 in linear time, with caps.

A path is ``wallet`` or ``wallet/REGEX`` (Dirk's lister: REGEX anchored with ^ and $ unless it
already is). The client writes REGEX, so it must never backtrack: RE2 rejects what it cannot run in
linear time (backreferences, lookaround) and runs the rest without backtracking.
"""

from __future__ import annotations

import time

import pytest

from signer.api.eth2 import MAX_LIST_PATHS, MAX_PATH_CHARS, path_matcher, path_matchers
from signer.errors import MalformedRequest

NAMES = ("w/0", "w/1", "w/10", "w/validator-7", "x/0", "w/" + "a" * 60 + "-")


def listed(path: str) -> list[str]:
    match = path_matcher(path)
    return [n for n in NAMES if match(n)]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("w", ["w/0", "w/1", "w/10", "w/validator-7", "w/" + "a" * 60 + "-"]),  # a bare wallet (what Vouch sends)
        ("w/", ["w/0", "w/1", "w/10", "w/validator-7", "w/" + "a" * 60 + "-"]),
        ("w/1", ["w/1"]),  # anchored: not w/10
        ("w/1.*", ["w/1", "w/10"]),
        ("w/^1$", ["w/1"]),
        ("w/validator-[0-9]+", ["w/validator-7"]),
        ("w/(?i)VALIDATOR-7", ["w/validator-7"]),
        ("x/.*", ["x/0"]),
        ("nowallet/.*", []),
    ],
)
def test_dirk_path_forms(path: str, expected: list[str]) -> None:
    assert listed(path) == expected


def test_a_backtracking_pattern_runs_in_linear_time() -> None:
    started = time.perf_counter()
    for pattern in ("w/(a+)+", "w/(a|aa)+", "w/(a*)*b", "w/(.*a){20}"):
        assert listed(pattern) == [], pattern
    assert time.perf_counter() - started < 1.0  # Python's re takes minutes for the first one


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/0", "names no wallet"),
        ("w/(a)\\1", "is not a valid pattern: invalid escape sequence"),
        ("w/(?=a)", "is not a valid pattern: invalid perl operator"),
        ("w/((a{100}){100}){100}", "is not a valid pattern"),
        ("w/[", "is not a valid pattern: missing ]"),
        ("w/" + "a" * MAX_PATH_CHARS, f"over the limit of {MAX_PATH_CHARS}"),
    ],
)
def test_a_bad_path_is_refused_naming_what_is_wrong(path: str, reason: str) -> None:
    with pytest.raises(MalformedRequest, match=reason.replace("[", "\\[").replace("(", "\\(")):
        path_matcher(path)


def test_the_number_of_paths_is_capped() -> None:
    assert len(path_matchers(["w"] * MAX_LIST_PATHS)) == MAX_LIST_PATHS
    with pytest.raises(MalformedRequest, match=f"over the limit of {MAX_LIST_PATHS}"):
        path_matchers(["w"] * (MAX_LIST_PATHS + 1))
