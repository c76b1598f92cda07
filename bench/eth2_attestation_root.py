"""How much the attestation hot path costs: build AttestationData, hash_tree_root, signing root.

Run: python bench/eth2_attestation_root.py   (never collected by pytest)
Prints the median and best of 5 runs in microseconds per operation; compare figures within one run.
"""

from __future__ import annotations

import statistics
import timeit

from signer.eth2 import AttestationData, Checkpoint, DomainType, compute_signing_root
from signer.eth2.networks import MAINNET
from signer.eth2.ssz import merkleize, uint64_root

N = 200_000
ROOT = bytes(range(32))
DOMAIN = MAINNET.domain(DomainType.BEACON_ATTESTER, 400_000)


def build() -> AttestationData:
    return AttestationData(
        slot=12_800_000,
        index=3,
        beacon_block_root=ROOT,
        source=Checkpoint(epoch=399_998, root=ROOT),
        target=Checkpoint(epoch=399_999, root=ROOT),
    )


DATA = build()


def generic(d: AttestationData) -> bytes:
    return merkleize(
        [
            uint64_root(d.slot),
            uint64_root(d.index),
            d.beacon_block_root,
            merkleize([uint64_root(d.source.epoch), d.source.root]),
            merkleize([uint64_root(d.target.epoch), d.target.root]),
        ]
    )


def full() -> bytes:
    return compute_signing_root(build().hash_tree_root(), DOMAIN)


def check_domain() -> object:
    return MAINNET.check_domain(DOMAIN, 399_999)


def main() -> None:
    assert generic(DATA) == DATA.hash_tree_root()
    cases = {
        "build AttestationData (validated)": build,
        "hash_tree_root": DATA.hash_tree_root,
        "build + hash_tree_root + signing root": full,
        "Network.check_domain (with epoch)": check_domain,
        "generic merkleize (same root, reference)": lambda: generic(DATA),
    }
    for name, fn in cases.items():
        runs = [r / N * 1e6 for r in timeit.repeat(fn, number=N, repeat=5)]
        print(f"{name:<44} median {statistics.median(runs):6.2f}  best {min(runs):6.2f} us/op")


if __name__ == "__main__":
    main()
