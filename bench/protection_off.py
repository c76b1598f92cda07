"""Benchmark build only: a protection store that records nothing, to price slashing protection.

It exists under bench/ and nowhere in the product: the signer has no way to turn protection off.
bench/run.py builds an in-process server with it and the same server with the SQLite store, and
reports the ratio of their end-to-end times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from signer.protection.store import ImportReport, Initialization, InitializedBy
from signer.types import Accepted, ProtectionCheck, Safe, Verdict

_VALID = Accepted(Safe.VALID)


class RecordsNothing:
    """Every check is VALID; nothing is stored. NEVER a product component."""

    def check_and_record(self, checks: Sequence[ProtectionCheck]) -> list[Verdict]:
        return [_VALID] * len(checks)

    def record_consensus_signatures(self, signatures: object) -> None:
        pass

    def initialization(self) -> Initialization:
        return Initialization("1970-01-01T00:00:00Z", InitializedBy.KEYS_NEVER_SIGNED.value, "benchmark stub")

    def initialize(self, how: InitializedBy, who: str) -> Initialization:
        return self.initialization()

    def import_interchange(self, document: bytes | str | Mapping[str, Any], *, who: str = "") -> ImportReport:
        raise NotImplementedError("benchmark stub")

    def export_interchange(self, public_keys: Sequence[bytes] | None = None) -> dict[str, Any]:
        raise NotImplementedError("benchmark stub")

    def import_cometbft_state(self, *args: object, **kwargs: object) -> ImportReport:
        raise NotImplementedError("benchmark stub")

    def export_cometbft_state(self, chain_id: str, public_key: bytes) -> dict[str, Any]:
        raise NotImplementedError("benchmark stub")

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass
