"""EIP-3076 interchange conformance: all 38 generated test files, each run twice per backend.

Procedure (vectors README): one fresh database per file bound to the file's genesis_validators_root;
per step import the interchange (it must fail iff ``should_succeed`` is false), then try each block,
then each attestation, in order; every accepted signing is recorded.
- ``complete``: the interchange as given; every check must match ``should_succeed_complete``, except
  in ``EITHER_WHERE_DIFFERENT``: there, where ``should_succeed`` and ``should_succeed_complete``
  differ, either outcome is accepted. docs/ARCHITECTURE.md ("Slashing rules"): every import raises
  the lower bounds to its minimum even above local history, so the gap between an earlier import
  and a later one is refused (the vector's conservative ``should_succeed``, false).
- ``minified``: each interchange minified first; every check with ``should_succeed`` true must be
  signed, every check with ``should_succeed_complete`` false refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from signer.errors import InterchangeError
from signer.protection.interchange import minify
from signer.types import AttestationCheck, BlockCheck
from tests.stores import StoreFactory, backend, store_factory  # noqa: F401 - fixtures
from tests.support import vector_path

GENERATED = vector_path("interchange", "tests", "generated")
FILES = sorted(GENERATED.glob("*.json"))
EITHER_WHERE_DIFFERENT = frozenset({"multiple_interchanges_single_validator_single_message_gap"})
"""Files whose checks with ``should_succeed != should_succeed_complete`` accept either outcome in the
``complete`` run (and only those checks, only in these files)."""


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def _run(case: dict[str, Any], store_factory: StoreFactory, minified: bool) -> list[str]:  # noqa: F811, C901 -- replays an interchange vector's steps, each kind of step in turn
    store = store_factory(_hex(case["genesis_validators_root"]))
    either_where_different = case["name"] in EITHER_WHERE_DIFFERENT
    problems: list[str] = []
    for number, step in enumerate(case["steps"]):
        document = step["interchange"]
        try:
            store.import_interchange(minify(document) if minified else document)
            imported = True
        except InterchangeError:
            imported = False
        if imported != step["should_succeed"]:
            problems.append(f"step {number}: import {'succeeded' if imported else 'failed'}")
        checks: list[tuple[str, Any, dict[str, Any]]] = []
        for block in step["blocks"]:
            checks.append(
                (
                    f"block slot {block['slot']} root ..{block['signing_root'][-4:]}",
                    BlockCheck(_hex(block["pubkey"]), int(block["slot"]), _hex(block["signing_root"])),
                    block,
                )
            )
        for att in step["attestations"]:
            checks.append(
                (
                    f"attestation {att['source_epoch']}->{att['target_epoch']} root ..{att['signing_root'][-4:]}",
                    AttestationCheck(
                        _hex(att["pubkey"]),
                        int(att["source_epoch"]),
                        int(att["target_epoch"]),
                        _hex(att["signing_root"]),
                    ),
                    att,
                )
            )
        for label, check, expected in checks:
            (verdict,) = store.check_and_record([check])
            where = f"step {number}: {label} of {expected['pubkey'][:10]}"
            reason = "" if verdict.ok else f" ({verdict.refusal})"
            if minified:
                if expected["should_succeed"] and not verdict.ok:
                    problems.append(f"{where}: refused{reason}, should be signed")
                if not expected["should_succeed_complete"] and verdict.ok:
                    problems.append(f"{where}: signed, should be refused")
            elif either_where_different and expected["should_succeed"] != expected["should_succeed_complete"]:
                continue
            elif verdict.ok != expected["should_succeed_complete"]:
                outcome = "signed" if verdict.ok else "refused" + reason
                problems.append(f"{where}: {outcome}, expected otherwise")
    return problems


def test_all_vector_files_present(vectors: Path) -> None:
    assert len(FILES) == 38, f"expected the 38 EIP-3076 test files in {GENERATED}, found {len(FILES)}"
    assert {p.stem for p in FILES} >= EITHER_WHERE_DIFFERENT


@pytest.mark.parametrize("mode", ["complete", "minified"])
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_interchange_vector(
    path: Path,
    mode: str,
    store_factory: StoreFactory,  # noqa: F811
    vectors: Path,
) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    problems = _run(case, store_factory, minified=mode == "minified")
    assert not problems, f"{case['name']} ({mode}):\n" + "\n".join(problems)
