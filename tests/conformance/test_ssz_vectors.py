"""consensus-spec-tests ssz_static (minimal preset, phase0) for the containers the signer hashes.

Each case: hash_tree_root(value.yaml) == roots.yaml:root and serialize(value) == serialized.ssz.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from signer.eth2 import containers
from tests.support import vector_path

SSZ_STATIC = Path("ssz/consensus-spec-tests/tests/minimal/phase0/ssz_static")

TYPES: dict[str, type[Any]] = {
    name: getattr(containers, name)
    for name in (
        "AggregateAndProof",
        "AttestationData",
        "BeaconBlockHeader",
        "Checkpoint",
        "DepositData",
        "DepositMessage",
        "Fork",
        "ForkData",
        "SigningData",
        "VoluntaryExit",
    )
}


def build(cls: type[Any], value: dict[str, Any]) -> Any:
    """Build a container dataclass from the vectors' YAML/JSON form (ints; 0x-hex bytes)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw, hint = value[f.name], hints[f.name]
        if hint is int:
            kwargs[f.name] = int(raw)
        elif hint is bytes:
            kwargs[f.name] = bytes.fromhex(str(raw).removeprefix("0x"))
        else:
            kwargs[f.name] = build(hint, raw)
    assert set(value) == {f.name for f in dataclasses.fields(cls)}, f"{cls.__name__}: field names differ"
    return cls(**kwargs)


def _cases() -> list[Any]:
    root = vector_path(*SSZ_STATIC.parts)
    cases = sorted(p.relative_to(root) for p in root.glob("*/*/case_*") if p.is_dir())
    return [pytest.param(c, id=str(c)) for c in cases]


CASES = _cases()


def test_every_type_has_cases() -> None:
    seen = {c.values[0].parts[0] for c in CASES}
    assert seen == set(TYPES), f"vector types {sorted(seen)} differ from {sorted(TYPES)}"
    assert len(CASES) == 220


@pytest.mark.parametrize("case", CASES)
def test_ssz_static(vectors: Path, case: Path) -> None:
    folder = vectors / SSZ_STATIC / case
    value = yaml.safe_load((folder / "value.yaml").read_text())
    expected_root = yaml.safe_load((folder / "roots.yaml").read_text())["root"]
    obj = build(TYPES[case.parts[0]], value)
    assert "0x" + obj.hash_tree_root().hex() == expected_root
    assert obj.serialize() == (folder / "serialized.ssz").read_bytes()
