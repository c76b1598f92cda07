"""Domains and signing roots (consensus-specs phase0 ``compute_domain``/``compute_signing_root``).

fork_data_root = hash_tree_root(ForkData(current_version, genesis_validators_root))
domain         = domain_type (4 bytes) || fork_data_root[:28]
signing_root   = hash_tree_root(SigningData(object_root, domain)) = SHA-256(object_root || domain)
"""

from __future__ import annotations

import enum
import hashlib

from signer.errors import MalformedRequest
from signer.eth2.ssz import ZERO_CHUNK

_sha256 = hashlib.sha256


class DomainType(bytes, enum.Enum):
    """The 4-byte domain types the signer knows (phase0, altair, builder-specs)."""

    BEACON_PROPOSER = bytes.fromhex("00000000")
    BEACON_ATTESTER = bytes.fromhex("01000000")
    RANDAO = bytes.fromhex("02000000")
    DEPOSIT = bytes.fromhex("03000000")
    VOLUNTARY_EXIT = bytes.fromhex("04000000")
    SELECTION_PROOF = bytes.fromhex("05000000")
    AGGREGATE_AND_PROOF = bytes.fromhex("06000000")
    SYNC_COMMITTEE = bytes.fromhex("07000000")
    SYNC_COMMITTEE_SELECTION_PROOF = bytes.fromhex("08000000")
    CONTRIBUTION_AND_PROOF = bytes.fromhex("09000000")
    APPLICATION_BUILDER = bytes.fromhex("00000001")


DOMAIN_BEACON_PROPOSER = DomainType.BEACON_PROPOSER
DOMAIN_BEACON_ATTESTER = DomainType.BEACON_ATTESTER
DOMAIN_RANDAO = DomainType.RANDAO
DOMAIN_DEPOSIT = DomainType.DEPOSIT
DOMAIN_VOLUNTARY_EXIT = DomainType.VOLUNTARY_EXIT
DOMAIN_SELECTION_PROOF = DomainType.SELECTION_PROOF
DOMAIN_AGGREGATE_AND_PROOF = DomainType.AGGREGATE_AND_PROOF
DOMAIN_SYNC_COMMITTEE = DomainType.SYNC_COMMITTEE
DOMAIN_SYNC_COMMITTEE_SELECTION_PROOF = DomainType.SYNC_COMMITTEE_SELECTION_PROOF
DOMAIN_CONTRIBUTION_AND_PROOF = DomainType.CONTRIBUTION_AND_PROOF
DOMAIN_APPLICATION_BUILDER = DomainType.APPLICATION_BUILDER


def compute_fork_data_root(current_version: bytes, genesis_validators_root: bytes) -> bytes:
    if len(current_version) != 4:
        raise MalformedRequest(f"fork version must be 4 bytes, got {len(current_version)}")
    if len(genesis_validators_root) != 32:
        got = len(genesis_validators_root)
        raise MalformedRequest(f"genesis_validators_root must be 32 bytes, got {got}")
    return _sha256(bytes(current_version) + ZERO_CHUNK[4:] + bytes(genesis_validators_root)).digest()


def compute_domain(domain_type: bytes, fork_version: bytes, genesis_validators_root: bytes = ZERO_CHUNK) -> bytes:
    """The 32-byte domain. Deposits and builder registrations use the genesis fork version and a zero root."""
    if len(domain_type) != 4:
        raise MalformedRequest(f"domain type must be 4 bytes, got {len(domain_type)}")
    return bytes(domain_type) + compute_fork_data_root(fork_version, genesis_validators_root)[:28]


def compute_signing_root(object_root: bytes, domain: bytes) -> bytes:
    """hash_tree_root(SigningData(object_root, domain))."""
    if len(object_root) != 32 or len(domain) != 32:
        raise MalformedRequest(
            f"object_root and domain must be 32 bytes each, got {len(object_root)} and {len(domain)}"
        )
    return _sha256(object_root + domain).digest()
