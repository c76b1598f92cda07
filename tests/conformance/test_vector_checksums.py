"""The vendored vectors are exactly the pinned upstream bytes (tests/vectors/README.md).

Every folder directly under tests/vectors is one set with its own README.md (source, version,
licence, how to consume it) and SHA256SUMS (``sha256sum`` format, paths relative to the set), and
has one row in the set table of tests/vectors/README.md.
Every file of a set other than those two is listed, and every listed file matches. A new set (a
new folder) is checked as soon as it exists, and fails until the table lists it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.support import VENDORED_VECTORS

SETS = sorted(p for p in VENDORED_VECTORS.iterdir() if p.is_dir())
OWN_FILES = {"README.md", "SHA256SUMS"}
"""Written by us, not upstream data: not in the checksums."""
SUM_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64}) [ *](?P<path>\S.*)$")


def _sums(vector_set: Path) -> dict[str, str]:
    listed: dict[str, str] = {}
    for number, line in enumerate((vector_set / "SHA256SUMS").read_text(encoding="utf-8").splitlines(), 1):
        match = SUM_LINE.match(line)
        assert match, f"{vector_set.name}/SHA256SUMS:{number}: not a sha256sum line: {line!r}"
        path = match["path"]
        assert not path.startswith(("/", "./")) and ".." not in Path(path).parts, f"{path}: not set-relative"
        assert path not in listed, f"{vector_set.name}/SHA256SUMS lists {path} twice"
        listed[path] = match["digest"]
    return listed


def _files(vector_set: Path) -> set[str]:
    return {
        p.relative_to(vector_set).as_posix()
        for p in vector_set.rglob("*")
        if p.is_file() and p.relative_to(vector_set).as_posix() not in OWN_FILES
    }


def test_the_six_sets_are_vendored() -> None:
    assert {"bls", "interchange", "keystore", "lodestar", "secp256k1", "ssz"} <= {s.name for s in SETS}


def readme_table_sets(readme: Path) -> list[str]:
    """The sets the table of tests/vectors/README.md lists: rows ``| [name](name/README.md) | ...``."""
    rows = re.findall(r"^\| \[([^\]]+)\]\(([^)]+)\) \|", readme.read_text(encoding="utf-8"), re.MULTILINE)
    for name, link in rows:
        assert link == f"{name}/README.md", f"the row of set {name!r} links to {link!r}"
    return [name for name, _ in rows]


def check_table(readme: Path, sets: list[Path]) -> None:
    listed = readme_table_sets(readme)
    assert len(listed) == len(set(listed)), f"a set is listed twice: {listed}"
    assert sorted(listed) == [s.name for s in sets], f"table {sorted(listed)} vs folders {[s.name for s in sets]}"


def test_the_readme_table_lists_every_set_once_and_nothing_else() -> None:
    check_table(VENDORED_VECTORS / "README.md", SETS)


def test_a_set_missing_from_the_table_is_caught(tmp_path: Path) -> None:
    """Guard the check above: the README without the lodestar row fails it."""
    readme = (VENDORED_VECTORS / "README.md").read_text(encoding="utf-8")
    copy = tmp_path / "README.md"
    copy.write_text("\n".join(line for line in readme.splitlines() if not line.startswith("| [lodestar]")))
    with pytest.raises(AssertionError, match="lodestar"):
        check_table(copy, SETS)


@pytest.mark.parametrize("vector_set", SETS, ids=[s.name for s in SETS])
def test_set_has_readme_naming_source_version_and_licence(vector_set: Path) -> None:
    readme = (vector_set / "README.md").read_text(encoding="utf-8")
    for heading in ("Source", "Version", "Licence", "How to consume"):
        assert re.search(rf"^#+ {heading}", readme, re.MULTILINE), f"{vector_set.name}/README.md: no '{heading}'"


@pytest.mark.parametrize("vector_set", SETS, ids=[s.name for s in SETS])
def test_every_file_is_listed_and_matches(vector_set: Path) -> None:
    listed = _sums(vector_set)
    present = _files(vector_set)
    assert not sorted(present - set(listed)), f"not in {vector_set.name}/SHA256SUMS: {sorted(present - set(listed))}"
    assert not sorted(set(listed) - present), f"listed but missing: {sorted(set(listed) - present)}"
    wrong = [p for p, digest in listed.items() if hashlib.sha256((vector_set / p).read_bytes()).hexdigest() != digest]
    assert not wrong, f"{vector_set.name}: content differs from SHA256SUMS: {wrong}"


def test_a_changed_byte_is_caught(tmp_path: Path) -> None:
    """Guard the check above: one flipped byte in a copy of a set is reported."""
    source = VENDORED_VECTORS / "secp256k1"
    copy = tmp_path / "secp256k1"
    for path in [source / "SHA256SUMS", *(source / p for p in _files(source))]:
        target = copy / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    test_every_file_is_listed_and_matches(copy)  # the faithful copy passes
    victim = copy / "tiny-secp256k1" / "ecdsa.json"
    original = victim.read_bytes()
    victim.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    with pytest.raises(AssertionError, match=re.escape("tiny-secp256k1/ecdsa.json")):
        test_every_file_is_listed_and_matches(copy)
    victim.write_bytes(original)
    (copy / "stray.json").write_text("{}")
    with pytest.raises(AssertionError, match=re.escape("stray.json")):
        test_every_file_is_listed_and_matches(copy)
