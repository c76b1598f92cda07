"""Shared test doubles and builders: one copy of each, so a protocol change is made once.

The doubles wrap or subclass the real thing where there is one (``CountingModule`` is the real
emulated module; ``RecordingMonitor`` is the real no-op monitor) and only record what they are asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from signer.cometbft.messages import NIL_BLOCK_ID, BlockID, PartSetHeader, Proposal, SignedMsgType, Timestamp, Vote
from signer.keys.emulated import EmulatedKeyModule
from signer.types import AuditEvent, NullMonitor

# --- clocks, monitors, audit -----------------------------------------------------------------


class FakeClock:
    """A clock that moves only when told: ``clock()`` is the time, ``clock.now`` may be set."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingMonitor(NullMonitor):
    """The no-op monitor, recording the events tests look at (everything else stays a no-op)."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str]] = []
        self.limited: list[str] = []
        self.denied: list[tuple[str, str]] = []
        self.events: list[str] = []

    def request_done(self, method: str, outcome: str, duration_s: float) -> None:
        assert duration_s >= 0
        self.done.append((method, outcome))

    def rate_limited(self, client: str) -> None:
        self.limited.append(client)

    def access_denied(self, client: str, operation: str) -> None:
        self.denied.append((client, operation))

    def security_event(self, event: str) -> None:
        self.events.append(event)


class RecordingAudit:
    """An audit sink that keeps the events it is given, in order."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


# --- key modules ------------------------------------------------------------------------------


class CountingModule(EmulatedKeyModule):
    """The real emulated module, remembering what it was asked to sign (to tell a stored signature
    returned from a fresh one: the schemes are deterministic, so the values alone cannot);
    ``fail`` makes sign_many raise it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.signed: list[tuple[bytes, bytes]] = []
        self.fail: BaseException | None = None

    def sign_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        if self.fail is not None:
            raise self.fail
        self.signed.extend(items)
        return super().sign_many(items)


# --- CometBFT messages -------------------------------------------------------------------------

H32 = bytes(range(32))
P32 = bytes(range(32, 64))
BLOCK = BlockID(H32, PartSetHeader(3, P32))
OTHER_BLOCK = BlockID(P32, PartSetHeader(3, H32))
ADDRESS = bytes(range(20))
TS = Timestamp(1_700_000_000, 123_456_789)


def block_id(tag: str, total: int = 5) -> BlockID:
    """A block id derived from ``tag`` (equal tags, equal ids); ``"nil"`` is the nil block id."""
    if tag == "nil":
        return NIL_BLOCK_ID
    digest = hashlib.sha256(tag.encode()).digest()
    return BlockID(digest, PartSetHeader(total, hashlib.sha256(b"parts/" + tag.encode()).digest()))


def vote(**changes: Any) -> Vote:
    """A valid precommit for BLOCK at height 10 round 0 (no extension), with ``changes`` applied."""
    fields: dict[str, Any] = {
        "type": SignedMsgType.PRECOMMIT,
        "height": 10,
        "round": 0,
        "block_id": BLOCK,
        "timestamp": TS,
        "validator_address": ADDRESS,
        "validator_index": 4,
    }
    fields.update(changes)
    return Vote(**fields)


def proposal(**changes: Any) -> Proposal:
    """A valid proposal of BLOCK at height 10 round 1 (no proof-of-lock round), with ``changes`` applied."""
    fields: dict[str, Any] = {
        "type": SignedMsgType.PROPOSAL,
        "height": 10,
        "round": 1,
        "pol_round": -1,
        "block_id": BLOCK,
        "timestamp": TS,
    }
    fields.update(changes)
    return Proposal(**fields)
