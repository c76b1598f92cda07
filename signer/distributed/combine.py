"""A Vouch-style combiner: ask every participant of a distributed account for its partial signature,
combine a threshold of them, verify the result under the composite public key.

As go-eth2-wallet-dirk does, every participant is asked at once; the answers are counted as they
come: a partial signature (SUCCEEDED), a refusal or a failure. The combiner stops as soon as
``threshold`` partial signatures are in, or as soon as so many participants have refused or failed
that a threshold can no longer be reached (Vouch waits for every answer then). It combines exactly
``threshold`` of them by Lagrange interpolation at 0 (signer.crypto.threshold) and, unlike Vouch,
checks the result under the composite public key before returning it; a participant whose partial
signature spoils the result is named.

No transport here: ``ask(participant_id)`` returns that participant's partial signature or raises
(a SignerError saying why; anything else is reported by its type). signer.api.distributed_client
asks over gRPC; tests may ask anything.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from signer.crypto import bls
from signer.crypto import threshold as th
from signer.errors import NotEnoughShares, SignerError


@dataclass(frozen=True, slots=True)
class Combined:
    """A signature under the composite key, with the participants whose partials made it and what
    the others answered (the ones still pending when the threshold was reached are not listed)."""

    signature: bytes
    signers: tuple[int, ...]
    refusals: dict[int, str] = field(default_factory=dict)


class Refused(Exception):
    """What ``ask`` raises for a participant that answered without a signature: DENIED or FAILED
    and its message (no secret: what a participant tells any client)."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SignerError):
        return exc.message
    return str(exc) if isinstance(exc, Refused) else type(exc).__name__


def threshold_sign(
    participants: Iterable[int],
    threshold: int,
    composite_public_key: bytes,
    message: bytes,
    ask: Callable[[int], bytes],
    *,
    timeout_s: float | None = None,
) -> Combined:
    """Collect ``threshold`` partial signatures of ``message`` (the signing root) and combine them.

    Raises NotEnoughShares naming every participant's refusal when a threshold cannot be reached
    (or is not reached within ``timeout_s``), and when no ``threshold`` of the partial signatures
    received combine to a signature that verifies under ``composite_public_key``."""
    ids = th.check_participant_ids(participants)
    th.check_threshold(threshold, len(ids))
    partials: dict[int, bytes] = {}
    refusals: dict[int, str] = {}
    pool = ThreadPoolExecutor(max_workers=len(ids), thread_name_prefix="combine")
    try:
        pending: dict[Future[bytes], int] = {pool.submit(ask, i): i for i in ids}
        while pending and len(partials) < threshold and len(refusals) <= len(ids) - threshold:
            done, _ = wait(pending, timeout=timeout_s, return_when=FIRST_COMPLETED)
            if not done:
                for i in pending.values():
                    refusals[i] = f"no answer within {timeout_s} s"
                break
            for future in done:
                participant = pending.pop(future)
                try:
                    partials[participant] = bytes(future.result())
                except Exception as exc:  # a refusal of one participant is an answer, not our failure
                    refusals[participant] = _reason(exc)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if len(partials) < threshold:
        described = "; ".join(f"participant {i}: {why}" for i, why in sorted(refusals.items()))
        raise NotEnoughShares(
            f"{len(partials)} of {len(ids)} participants signed, {threshold} needed ({described or 'no answers'})"
        )
    # Normally the first threshold verify; with more partials than needed (none here, as the
    # combiner stops at the threshold) a spoiled one could be left out, so every subset is tried.
    for subset in itertools.combinations(sorted(partials), threshold):
        try:
            signature = th.combine_signatures({i: partials[i] for i in subset}, threshold)
        except SignerError:
            continue
        if bls.verify(composite_public_key, message, signature):
            return Combined(signature, subset, refusals)
    raise NotEnoughShares(
        f"the partial signatures of participants {sorted(partials)} do not combine into a signature under "
        f"the composite key 0x{composite_public_key.hex()[:16]}..."
    )
