"""A clone of the repository stands on its own: nothing it needs or points to lies outside it.

- the conformance vectors are read from tests/vectors (SIGNER_VECTORS_DIR may point elsewhere, on
  purpose only), and missing vectors fail the run: never a skip, with CI=true or without;
- no file names a path outside the repository (a sibling folder, the machine's layout, a document
  that is not here), and every relative Markdown link resolves to a file inside the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO_ROOT, VECTORS_ENV, VENDORED_VECTORS, markdown_anchors, vectors_dir

pytestmark = pytest.mark.slow  # runs pytest in subprocesses: the full suite runs it, not make test-fast

SKIPPED_DIRS = {
    ".git",
    ".tools",
    ".venv",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "dev-data",
    "signer-data",
    "build",
}
"""Not part of the source: tool caches, local data, installed tools (see .gitignore)."""

TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".sh", ".txt", ".tpl", ".proto", ".cfg", ".ini"}
TEXT_NAMES = {"Makefile", "Dockerfile", ".dockerignore", ".gitignore", ".gitattributes", "run"}

# Spelled in pieces so that this file does not match itself.
OUTSIDE = [
    ("a sibling folder of the clone", re.compile(r"\.\./" + "shared" + r"\b")),
    ("the shared folder's vectors, design or notes", re.compile("shared" + r"/(vectors|DESIGN|notes)\b")),
    ("the design brief, which is not in the repository", re.compile("DESIGN" + r"\.md")),
    ("the parent of the repository root", re.compile(r"\bREPO_ROOT" + r"\.parent\b")),
    ("this machine's layout", re.compile(r"/" + "work" + r"/(main|shared|h\d+)\b")),
]

MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _source_files() -> Iterator[Path]:
    """Every text file we wrote; of the vendored vectors only our READMEs (the rest is upstream data)."""
    for root, dirs, files in os.walk(REPO_ROOT):
        here = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIPPED_DIRS and not d.endswith(".egg-info") and here / d != REPO_ROOT / "bench" / "out"
        )
        vendored = here.is_relative_to(VENDORED_VECTORS)
        for name in sorted(files):
            path = here / name
            if vendored and name != "README.md":
                continue
            if path.suffix in TEXT_SUFFIXES or name in TEXT_NAMES:
                yield path


def test_vectors_are_read_from_inside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VECTORS_ENV, raising=False)
    assert vectors_dir() == VENDORED_VECTORS == REPO_ROOT / "tests" / "vectors"
    assert VENDORED_VECTORS.is_dir()


def test_the_override_still_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(VECTORS_ENV, str(tmp_path))
    assert vectors_dir() == tmp_path


@pytest.mark.parametrize("ci", ["", "true"], ids=["CI-unset", "CI=true"])
def test_missing_vectors_fail_the_run_and_never_skip(tmp_path: Path, ci: str) -> None:
    """Point the vector-reading tests at an empty folder: the run must fail, with no skip at all."""
    empty = tmp_path / "no-vectors"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"CI", VECTORS_ENV}}
    env[VECTORS_ENV] = str(empty)
    if ci:
        env["CI"] = ci
    targets = [
        "tests/conformance",
        "tests/unit/test_cli_keys.py",
        "tests/integration/test_admin_api.py",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "vector", *targets],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout + result.stderr
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    assert result.returncode != 0, f"the run passed without vectors:\n{out[-3000:]}"
    assert "skipped" not in summary and "SKIPPED" not in out, f"vectors missing gave skips:\n{out[-3000:]}"
    assert str(empty) in out, "the failure names the folder it looked in"


@pytest.mark.parametrize(("what", "pattern"), OUTSIDE, ids=[w for w, _ in OUTSIDE])
def test_no_file_points_outside_the_repository(what: str, pattern: re.Pattern[str]) -> None:
    hits = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}"
        for path in _source_files()
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, f"{what}:\n" + "\n".join(hits)


def test_the_scan_sees_the_tree() -> None:
    """Guard the walk above: it reads the sources, the docs and CI, not the vendored data."""
    seen = {path.relative_to(REPO_ROOT).as_posix() for path in _source_files()}
    for expected in ("README.md", ".ci/run", "Makefile", "signer/service.py", "tests/support.py", "Dockerfile"):
        assert expected in seen, expected
    vendored = {name for name in seen if name.startswith("tests/vectors/")}
    assert "tests/vectors/README.md" in vendored and "tests/vectors/interchange/README.md" in vendored
    assert all(name.endswith("/README.md") for name in vendored), "upstream data is not ours to scan"


def test_heading_anchors_follow_github() -> None:
    anchors = markdown_anchors(REPO_ROOT / "docs" / "OPERATIONS.md")
    assert {"first-start", "recovering-from-a-lost-protection-database", "signernotready"} <= anchors


def test_markdown_links_resolve_inside_the_repository() -> None:
    problems = []
    markdown = [p for p in _source_files() if p.suffix == ".md"]
    assert len(markdown) >= 3
    for path in markdown:
        for target in MD_LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            if target.startswith("#"):
                if target[1:] not in markdown_anchors(path):
                    problems.append(f"{path.relative_to(REPO_ROOT)}: {target} names no heading in it")
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve()
            if not resolved.is_relative_to(REPO_ROOT):
                problems.append(f"{path.relative_to(REPO_ROOT)}: {target} leaves the repository")
            elif not resolved.exists():
                problems.append(f"{path.relative_to(REPO_ROOT)}: {target} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in markdown_anchors(resolved):
                problems.append(f"{path.relative_to(REPO_ROOT)}: {target} names no heading there")
    assert not problems, "\n".join(problems)


def test_tests_named_in_the_docs_exist() -> None:
    """docs/ARCHITECTURE.md says where each invariant is tested: those tests must exist."""
    problems = []
    named = 0
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for path in set(re.findall(r"\btests/[\w/]+\.py\b", text)):
            if not (REPO_ROOT / path).is_file():
                problems.append(f"{page.name}: {path} does not exist")
        for path, name in re.findall(r"\b(tests/[\w/]+\.py)::(\w+)", text):
            named += 1
            if (REPO_ROOT / path).is_file() and f"def {name}(" not in (REPO_ROOT / path).read_text(encoding="utf-8"):
                problems.append(f"{page.name}: {path}::{name} does not exist")
    assert named >= 10, "the invariants table names its tests"
    assert not problems, "\n".join(problems)
