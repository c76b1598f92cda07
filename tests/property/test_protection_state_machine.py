"""Stateful property tests of the protection store (every backend in tests/stores.py).

Random sequences of block/attestation requests, EIP-3076 imports and store restarts: the accepted
set never holds a slashable pair (with itself or with imported records), identical repeats of
accepted data are accepted, and nothing at or below an imported minimum (block slot; attestation
source below, target at or below) is newly signed, whatever local history lies below it (issue
13.1: every import raises the lower bounds); only identical, known data repeats there. Same for
CometBFT: never two different non-timestamp sign bytes accepted for one height/round/step.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from signer.protection.store import ProtectionStore
from signer.types import ZERO_ROOT, AttestationCheck, BlockCheck, ConsensusCheck, ConsensusStep, Safe
from tests.stores import backend, make_store  # noqa: F401 - fixture

KEYS = [bytes([0xA0 + i]) * 48 for i in range(2)]
ROOTS = [None, ZERO_ROOT, b"\x01" * 32, b"\x02" * 32]
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

keys = st.sampled_from(KEYS)
roots = st.sampled_from(ROOTS)
epochs = st.integers(min_value=0, max_value=12)

_counter = itertools.count()


def _slashable_attestations(a: tuple[int, int, Any], b: tuple[int, int, Any]) -> bool:
    (s1, t1, r1), (s2, t2, r2) = a, b
    if t1 == t2:
        return not (s1 == s2 and r1 is not None and r1 == r2)
    return (s1 < s2 and t2 < t1) or (s2 < s1 and t1 < t2)


def _slashable_blocks(a: tuple[int, Any], b: tuple[int, Any]) -> bool:
    return a[0] == b[0] and not (a[1] is not None and a[1] == b[1])


def machine_for(backend_name: str, base: Path) -> type[RuleBasedStateMachine]:  # noqa: C901 -- the state machine's rules are closures over one backend
    class ProtectionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.where = base / f"run{next(_counter)}"
            self.where.mkdir()
            self.store: ProtectionStore = make_store(backend_name, self.where, ZERO_ROOT)
            self.blocks: dict[bytes, list[tuple[int, Any]]] = {k: [] for k in KEYS}
            self.attestations: dict[bytes, list[tuple[int, int, Any]]] = {k: [] for k in KEYS}
            self.imported_blocks: dict[bytes, list[tuple[int, Any]]] = {k: [] for k in KEYS}
            self.imported_attestations: dict[bytes, list[tuple[int, int, Any]]] = {k: [] for k in KEYS}
            self.consensus: dict[tuple[int, int, int], set[bytes]] = {}
            self.floor_slot: dict[bytes, int] = {}
            """Per key: the highest minimum slot of any import (nothing at or below is signed anew)."""
            self.floor_source: dict[bytes, int] = {}
            self.floor_target: dict[bytes, int] = {}

        def teardown(self) -> None:
            self.store.close()

        @rule(key=keys, slot=st.integers(min_value=0, max_value=20), root=roots)
        def propose(self, key: bytes, slot: int, root: bytes | None) -> None:
            (verdict,) = self.store.check_and_record([BlockCheck(key, slot, root)])
            known = [b for b in self.blocks[key] if b[0] == slot]
            if verdict.safe is Safe.SAME_DATA:
                assert known and all(b[1] is not None and b[1] == root for b in known)
            if verdict.safe is Safe.VALID:
                assert slot > self.floor_slot.get(key, -1), (slot, self.floor_slot[key])
                new = (slot, root)
                for other in self.blocks[key] + self.imported_blocks[key]:
                    assert not _slashable_blocks(new, other), (new, other)
                self.blocks[key].append(new)

        @rule(key=keys, source=epochs, span=st.integers(min_value=-1, max_value=5), root=roots)
        def attest(self, key: bytes, source: int, span: int, root: bytes | None) -> None:
            target = max(source + span, 0)
            (verdict,) = self.store.check_and_record([AttestationCheck(key, source, target, root)])
            if source > target:
                assert not verdict.ok
            if verdict.safe is Safe.SAME_DATA:
                assert root is not None and (source, target, root) in self.attestations[key], (source, target, root)
            if verdict.safe is Safe.VALID:
                assert source >= self.floor_source.get(key, -1), (source, self.floor_source[key])
                assert target > self.floor_target.get(key, -1), (target, self.floor_target[key])
                new = (source, target, root)
                for other in self.attestations[key] + self.imported_attestations[key]:
                    assert not _slashable_attestations(new, other), (new, other)
                self.attestations[key].append(new)

        @rule(key=keys, data=st.data())
        def repeat_accepted(self, key: bytes, data: st.DataObject) -> None:
            """An identical repeat of accepted data with a known root is accepted as SAME_DATA."""
            known_blocks = [b for b in self.blocks[key] if b[1] is not None]
            if known_blocks:
                slot, root = data.draw(st.sampled_from(known_blocks))
                if not any(b[0] == slot and b[1] != root for b in self.imported_blocks[key]):
                    (verdict,) = self.store.check_and_record([BlockCheck(key, slot, root)])
                    assert verdict.safe is Safe.SAME_DATA, verdict
            known_atts = [a for a in self.attestations[key] if a[2] is not None]
            if known_atts:
                source, target, root = data.draw(st.sampled_from(known_atts))
                if not any(a[1] == target for a in self.imported_attestations[key]):
                    (verdict,) = self.store.check_and_record([AttestationCheck(key, source, target, root)])
                    assert verdict.safe is Safe.SAME_DATA, verdict

        @rule(
            key=keys,
            slots=st.lists(st.integers(min_value=0, max_value=20), max_size=3),
            pairs=st.lists(st.tuples(epochs, st.integers(min_value=0, max_value=4)), max_size=3),
            with_roots=st.booleans(),
        )
        def import_interchange(
            self, key: bytes, slots: list[int], pairs: list[tuple[int, int]], with_roots: bool
        ) -> None:
            root = "0x" + (b"\x03" * 32).hex()
            blocks = [{"slot": str(s)} | ({"signing_root": root} if with_roots else {}) for s in slots]
            atts = [{"source_epoch": str(s), "target_epoch": str(s + d)} for s, d in pairs]
            self.store.import_interchange(
                {
                    "metadata": {
                        "interchange_format_version": "5",
                        "genesis_validators_root": "0x" + "00" * 32,
                    },
                    "data": [{"pubkey": "0x" + key.hex(), "signed_blocks": blocks, "signed_attestations": atts}],
                }
            )
            stored_root = b"\x03" * 32 if with_roots else None
            self.imported_blocks[key].extend((s, stored_root) for s in slots)
            self.imported_attestations[key].extend((s, s + d, None) for s, d in pairs)
            if slots:
                self.floor_slot[key] = max(self.floor_slot.get(key, -1), min(slots))
            if pairs:
                self.floor_source[key] = max(self.floor_source.get(key, -1), min(s for s, _ in pairs))
                self.floor_target[key] = max(self.floor_target.get(key, -1), min(s + d for s, d in pairs))

        @rule()
        def restart(self) -> None:
            self.store.close()
            self.store = make_store(backend_name, self.where, ZERO_ROOT)

        @rule(
            height=st.integers(min_value=1, max_value=3),
            round_=st.integers(min_value=0, max_value=1),
            step=st.sampled_from(list(ConsensusStep)),
            block=st.sampled_from([b"A", b"B"]),
            timestamp=st.sampled_from([b"1", b"2"]),
        )
        def consensus_vote(self, height: int, round_: int, step: ConsensusStep, block: bytes, timestamp: bytes) -> None:
            check = ConsensusCheck("chain", KEYS[0], height, round_, step, block + timestamp, block)
            (verdict,) = self.store.check_and_record([check])
            hrs = (height, round_, int(step))
            if verdict.ok:
                self.consensus.setdefault(hrs, set()).add(block)
                if verdict.safe is Safe.SAME_DATA:
                    assert verdict.prior is not None
                    assert verdict.prior.sign_bytes[:-1] == block
                else:
                    # VALID means progress: nothing at or above this H/R/S was signed before
                    assert all(other <= hrs for other in self.consensus), (hrs, sorted(self.consensus))

        @invariant()
        def one_block_id_per_hrs(self) -> None:
            for hrs, blocks in self.consensus.items():
                assert len(blocks) == 1, (hrs, blocks)

    return ProtectionMachine


def test_protection_state_machine(backend: str, tmp_path: Path) -> None:  # noqa: F811
    run_state_machine_as_test(machine_for(backend, tmp_path), settings=SETTINGS)  # type: ignore[no-untyped-call]
