"""Interfaces are explicit: nothing in the key modules or protection stores probes an object for an
optional method (getattr/hasattr) or forwards unknown attributes (__getattr__); every module offers
the whole KeyModule protocol instead."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import REPO_ROOT

SIGNER = REPO_ROOT / "signer"
EXPLICIT = [SIGNER / "keys", SIGNER / "protection"]
"""The adapters behind the KeyModule and ProtectionStore protocols."""


def _python_files(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*.py") if "_proto" not in path.parts)


def _hits(path: Path, wanted: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in wanted:
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {node.func.id}")
        elif isinstance(node, ast.FunctionDef) and node.name in wanted:
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: def {node.name}")
    return found


def test_no_attribute_forwarding_anywhere_in_the_signer() -> None:
    assert [hit for path in _python_files(SIGNER) for hit in _hits(path, {"__getattr__"})] == []


def test_key_modules_and_stores_do_not_probe_for_attributes() -> None:
    wanted = {"getattr", "hasattr"}
    assert [hit for path in _python_files(*EXPLICIT) for hit in _hits(path, wanted)] == []
