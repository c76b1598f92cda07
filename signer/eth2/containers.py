"""Consensus containers the signer hashes: frozen, slotted dataclasses with hash_tree_root/serialize.

Field names and types follow the consensus-specs (phase0, altair, the builder API). Every value is
validated when it is built (uint64 range, byte lengths, bitlist delimiter and limit) and a bad field
raises ``MalformedRequest`` naming it. Bitlists and bitvectors are held in their SSZ encoding (the
bytes the APIs carry as hex; a bitlist ends with its delimiter bit).

A ``Checkpoint`` is validated as a field of the ``AttestationData`` that holds it (once per
attestation, where the data enters), not on its own.

Presets. ``MAX_VALIDATORS_PER_COMMITTEE`` (the Attestation bitlist limit) is 2048 in both the
mainnet and the minimal preset, so phase0 ``Attestation``/``AggregateAndProof`` roots do not depend
on the preset. ``SyncCommitteeContribution.aggregation_bits`` is 128 bits on mainnet, 8 in the
minimal preset; both fit in one chunk, so we accept either length and serialize what we were given.
``AttestationElectra`` / ``AggregateAndProofElectra`` (EIP-7549) use the mainnet
``MAX_COMMITTEES_PER_SLOT`` (64), as every built-in network does; they are tested against an
independent reference merkleization (tests/unit/test_eth2_ssz.py).

``AttestationData.hash_tree_root`` is unrolled (8 SHA-256 calls, the hot path of an attestation;
figures in bench/RESULTS.md, "AttestationData hash_tree_root").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from signer.errors import MalformedRequest
from signer.eth2.ssz import (
    UINT64_MAX,
    ZERO_CHUNK,
    ZERO_HASHES,
    bitlist_length,
    bitlist_root,
    bitvector_root,
    bytes_root,
    check_bitvector,
    check_bytes,
    check_uint64,
    list_root,
    merkleize,
    offset_bytes,
    uint64_bytes,
    uint64_list_root,
    uint64_root,
)

MAX_VALIDATORS_PER_COMMITTEE = 2048
"""Attestation.aggregation_bits limit (phase0..deneb); the same in the mainnet and minimal presets."""

SYNC_SUBCOMMITTEE_BITS = {"mainnet": 128, "minimal": 8}
"""SYNC_COMMITTEE_SIZE // SYNC_COMMITTEE_SUBNET_COUNT per preset."""

_sha256 = hashlib.sha256
_ZERO_PAIR = ZERO_HASHES[1]
_PAD24 = b"\x00" * 24


def _root32(name: str, value: bytes) -> None:
    check_bytes(name, value, 32)


# --- phase0 -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Validated where it enters: as a field of ``AttestationData`` (the only container that holds one)."""

    epoch: int
    root: bytes

    def hash_tree_root(self) -> bytes:
        return _sha256(self.epoch.to_bytes(8, "little") + _PAD24 + self.root).digest()

    def serialize(self) -> bytes:
        return uint64_bytes(self.epoch) + self.root


@dataclass(frozen=True, slots=True)
class AttestationData:
    slot: int
    index: int
    beacon_block_root: bytes
    source: Checkpoint
    target: Checkpoint

    def __post_init__(self) -> None:
        # The one validation of an attestation's data, its checkpoints included, inline: this object
        # is built once per attestation on the hot path (the helpers only name the bad field).
        slot, index, root, source, target = self.slot, self.index, self.beacon_block_root, self.source, self.target
        if type(slot) is not int or not 0 <= slot <= UINT64_MAX:
            check_uint64("attestation_data.slot", slot)
        if type(index) is not int or not 0 <= index <= UINT64_MAX:
            check_uint64("attestation_data.index", index)
        if type(root) is not bytes or len(root) != 32:
            _root32("attestation_data.beacon_block_root", root)
        if type(source) is not Checkpoint or type(target) is not Checkpoint:
            raise MalformedRequest("attestation_data.source and .target must be Checkpoints")
        if type(source.epoch) is not int or not 0 <= source.epoch <= UINT64_MAX:
            check_uint64("attestation_data.source.epoch", source.epoch)
        if type(source.root) is not bytes or len(source.root) != 32:
            _root32("attestation_data.source.root", source.root)
        if type(target.epoch) is not int or not 0 <= target.epoch <= UINT64_MAX:
            check_uint64("attestation_data.target.epoch", target.epoch)
        if type(target.root) is not bytes or len(target.root) != 32:
            _root32("attestation_data.target.root", target.root)

    def hash_tree_root(self) -> bytes:
        sha = _sha256
        s, t = self.source, self.target
        src = sha(s.epoch.to_bytes(8, "little") + _PAD24 + s.root).digest()
        tgt = sha(t.epoch.to_bytes(8, "little") + _PAD24 + t.root).digest()
        a = sha(self.slot.to_bytes(32, "little") + self.index.to_bytes(32, "little")).digest()
        b = sha(self.beacon_block_root + src).digest()
        c = sha(tgt + ZERO_CHUNK).digest()
        ab = sha(a + b).digest()
        cd = sha(c + _ZERO_PAIR).digest()
        return sha(ab + cd).digest()

    def serialize(self) -> bytes:
        return (
            uint64_bytes(self.slot)
            + uint64_bytes(self.index)
            + self.beacon_block_root
            + self.source.serialize()
            + self.target.serialize()
        )


@dataclass(frozen=True, slots=True)
class BeaconBlockHeader:
    slot: int
    proposer_index: int
    parent_root: bytes
    state_root: bytes
    body_root: bytes

    def __post_init__(self) -> None:
        check_uint64("beacon_block_header.slot", self.slot)
        check_uint64("beacon_block_header.proposer_index", self.proposer_index)
        _root32("beacon_block_header.parent_root", self.parent_root)
        _root32("beacon_block_header.state_root", self.state_root)
        _root32("beacon_block_header.body_root", self.body_root)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                uint64_root(self.slot),
                uint64_root(self.proposer_index),
                self.parent_root,
                self.state_root,
                self.body_root,
            ]
        )

    def serialize(self) -> bytes:
        return (
            uint64_bytes(self.slot)
            + uint64_bytes(self.proposer_index)
            + self.parent_root
            + self.state_root
            + self.body_root
        )


@dataclass(frozen=True, slots=True)
class Fork:
    previous_version: bytes
    current_version: bytes
    epoch: int

    def __post_init__(self) -> None:
        check_bytes("fork.previous_version", self.previous_version, 4)
        check_bytes("fork.current_version", self.current_version, 4)
        check_uint64("fork.epoch", self.epoch)

    def hash_tree_root(self) -> bytes:
        return merkleize([bytes_root(self.previous_version), bytes_root(self.current_version), uint64_root(self.epoch)])

    def serialize(self) -> bytes:
        return self.previous_version + self.current_version + uint64_bytes(self.epoch)


@dataclass(frozen=True, slots=True)
class ForkData:
    current_version: bytes
    genesis_validators_root: bytes

    def __post_init__(self) -> None:
        check_bytes("fork_data.current_version", self.current_version, 4)
        _root32("fork_data.genesis_validators_root", self.genesis_validators_root)

    def hash_tree_root(self) -> bytes:
        return _sha256(self.current_version + ZERO_CHUNK[4:] + self.genesis_validators_root).digest()

    def serialize(self) -> bytes:
        return self.current_version + self.genesis_validators_root


@dataclass(frozen=True, slots=True)
class SigningData:
    object_root: bytes
    domain: bytes

    def __post_init__(self) -> None:
        _root32("signing_data.object_root", self.object_root)
        _root32("signing_data.domain", self.domain)

    def hash_tree_root(self) -> bytes:
        return _sha256(self.object_root + self.domain).digest()

    def serialize(self) -> bytes:
        return self.object_root + self.domain


@dataclass(frozen=True, slots=True)
class VoluntaryExit:
    epoch: int
    validator_index: int

    def __post_init__(self) -> None:
        check_uint64("voluntary_exit.epoch", self.epoch)
        check_uint64("voluntary_exit.validator_index", self.validator_index)

    def hash_tree_root(self) -> bytes:
        return _sha256(uint64_root(self.epoch) + uint64_root(self.validator_index)).digest()

    def serialize(self) -> bytes:
        return uint64_bytes(self.epoch) + uint64_bytes(self.validator_index)


@dataclass(frozen=True, slots=True)
class DepositMessage:
    pubkey: bytes
    withdrawal_credentials: bytes
    amount: int

    def __post_init__(self) -> None:
        check_bytes("deposit_message.pubkey", self.pubkey, 48)
        _root32("deposit_message.withdrawal_credentials", self.withdrawal_credentials)
        check_uint64("deposit_message.amount", self.amount)

    def hash_tree_root(self) -> bytes:
        return merkleize([bytes_root(self.pubkey), self.withdrawal_credentials, uint64_root(self.amount)])

    def serialize(self) -> bytes:
        return self.pubkey + self.withdrawal_credentials + uint64_bytes(self.amount)


@dataclass(frozen=True, slots=True)
class DepositData:
    pubkey: bytes
    withdrawal_credentials: bytes
    amount: int
    signature: bytes

    def __post_init__(self) -> None:
        check_bytes("deposit_data.pubkey", self.pubkey, 48)
        _root32("deposit_data.withdrawal_credentials", self.withdrawal_credentials)
        check_uint64("deposit_data.amount", self.amount)
        check_bytes("deposit_data.signature", self.signature, 96)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                bytes_root(self.pubkey),
                self.withdrawal_credentials,
                uint64_root(self.amount),
                bytes_root(self.signature),
            ]
        )

    def serialize(self) -> bytes:
        return self.pubkey + self.withdrawal_credentials + uint64_bytes(self.amount) + self.signature


@dataclass(frozen=True, slots=True)
class Attestation:
    """phase0..deneb Attestation. ``aggregation_bits``: SSZ-encoded Bitlist[2048] (with delimiter)."""

    aggregation_bits: bytes
    data: AttestationData
    signature: bytes

    def __post_init__(self) -> None:
        bitlist_length("attestation.aggregation_bits", self.aggregation_bits, MAX_VALIDATORS_PER_COMMITTEE)
        if type(self.data) is not AttestationData:
            raise MalformedRequest("attestation.data must be AttestationData")
        check_bytes("attestation.signature", self.signature, 96)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                bitlist_root(self.aggregation_bits, MAX_VALIDATORS_PER_COMMITTEE),
                self.data.hash_tree_root(),
                bytes_root(self.signature),
            ]
        )

    def serialize(self) -> bytes:
        fixed = 4 + 128 + 96
        return offset_bytes(fixed) + self.data.serialize() + self.signature + self.aggregation_bits


def _aggregate_and_proof_root(aggregator_index: int, aggregate_root: bytes, selection_proof: bytes) -> bytes:
    """AggregateAndProof (phase0 and electra share the shape; only the aggregate differs)."""
    return merkleize([uint64_root(aggregator_index), aggregate_root, bytes_root(selection_proof)])


def _aggregate_and_proof_bytes(aggregator_index: int, aggregate: bytes, selection_proof: bytes) -> bytes:
    fixed = 8 + 4 + 96
    return uint64_bytes(aggregator_index) + offset_bytes(fixed) + selection_proof + aggregate


@dataclass(frozen=True, slots=True)
class AggregateAndProof:
    aggregator_index: int
    aggregate: Attestation
    selection_proof: bytes

    def __post_init__(self) -> None:
        check_uint64("aggregate_and_proof.aggregator_index", self.aggregator_index)
        if type(self.aggregate) is not Attestation:
            raise MalformedRequest("aggregate_and_proof.aggregate must be an Attestation")
        check_bytes("aggregate_and_proof.selection_proof", self.selection_proof, 96)

    def hash_tree_root(self) -> bytes:
        return _aggregate_and_proof_root(self.aggregator_index, self.aggregate.hash_tree_root(), self.selection_proof)

    def serialize(self) -> bytes:
        return _aggregate_and_proof_bytes(self.aggregator_index, self.aggregate.serialize(), self.selection_proof)


# --- electra (EIP-7549): committee index moves out of AttestationData ---------------------------

MAX_COMMITTEES_PER_SLOT = 64
"""Mainnet preset (the minimal preset has 4); electra Attestation roots depend on it."""
MAX_ATTESTATION_BITS_ELECTRA = MAX_VALIDATORS_PER_COMMITTEE * MAX_COMMITTEES_PER_SLOT


@dataclass(frozen=True, slots=True)
class AttestationElectra:
    """electra Attestation, mainnet preset: aggregation_bits Bitlist[131072], committee_bits Bitvector[64]."""

    aggregation_bits: bytes
    data: AttestationData
    signature: bytes
    committee_bits: bytes

    def __post_init__(self) -> None:
        bitlist_length("attestation.aggregation_bits", self.aggregation_bits, MAX_ATTESTATION_BITS_ELECTRA)
        if type(self.data) is not AttestationData:
            raise MalformedRequest("attestation.data must be AttestationData")
        check_bytes("attestation.signature", self.signature, 96)
        check_bitvector("attestation.committee_bits", self.committee_bits, MAX_COMMITTEES_PER_SLOT)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                bitlist_root(self.aggregation_bits, MAX_ATTESTATION_BITS_ELECTRA),
                self.data.hash_tree_root(),
                bytes_root(self.signature),
                bitvector_root(self.committee_bits),
            ]
        )

    def serialize(self) -> bytes:
        fixed = 4 + 128 + 96 + MAX_COMMITTEES_PER_SLOT // 8
        return (
            offset_bytes(fixed) + self.data.serialize() + self.signature + self.committee_bits + self.aggregation_bits
        )


@dataclass(frozen=True, slots=True)
class AggregateAndProofElectra:
    aggregator_index: int
    aggregate: AttestationElectra
    selection_proof: bytes

    def __post_init__(self) -> None:
        check_uint64("aggregate_and_proof.aggregator_index", self.aggregator_index)
        if type(self.aggregate) is not AttestationElectra:
            raise MalformedRequest("aggregate_and_proof.aggregate must be an electra Attestation")
        check_bytes("aggregate_and_proof.selection_proof", self.selection_proof, 96)

    def hash_tree_root(self) -> bytes:
        return _aggregate_and_proof_root(self.aggregator_index, self.aggregate.hash_tree_root(), self.selection_proof)

    def serialize(self) -> bytes:
        return _aggregate_and_proof_bytes(self.aggregator_index, self.aggregate.serialize(), self.selection_proof)


# --- altair: sync committee -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncAggregatorSelectionData:
    slot: int
    subcommittee_index: int

    def __post_init__(self) -> None:
        check_uint64("sync_aggregator_selection_data.slot", self.slot)
        check_uint64("sync_aggregator_selection_data.subcommittee_index", self.subcommittee_index)

    def hash_tree_root(self) -> bytes:
        return _sha256(uint64_root(self.slot) + uint64_root(self.subcommittee_index)).digest()

    def serialize(self) -> bytes:
        return uint64_bytes(self.slot) + uint64_bytes(self.subcommittee_index)


@dataclass(frozen=True, slots=True)
class SyncCommitteeContribution:
    """``aggregation_bits``: Bitvector[128] (mainnet, 16 bytes) or Bitvector[8] (minimal, 1 byte)."""

    slot: int
    beacon_block_root: bytes
    subcommittee_index: int
    aggregation_bits: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_uint64("sync_committee_contribution.slot", self.slot)
        _root32("sync_committee_contribution.beacon_block_root", self.beacon_block_root)
        check_uint64("sync_committee_contribution.subcommittee_index", self.subcommittee_index)
        bits = len(self.aggregation_bits) * 8 if isinstance(self.aggregation_bits, bytes) else -1
        if bits not in SYNC_SUBCOMMITTEE_BITS.values():
            raise MalformedRequest(
                "sync_committee_contribution.aggregation_bits must be 16 bytes (mainnet Bitvector[128]) "
                "or 1 byte (minimal Bitvector[8])"
            )
        check_bitvector("sync_committee_contribution.aggregation_bits", self.aggregation_bits, bits)
        check_bytes("sync_committee_contribution.signature", self.signature, 96)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                uint64_root(self.slot),
                self.beacon_block_root,
                uint64_root(self.subcommittee_index),
                bitvector_root(self.aggregation_bits),
                bytes_root(self.signature),
            ]
        )

    def serialize(self) -> bytes:
        return (
            uint64_bytes(self.slot)
            + self.beacon_block_root
            + uint64_bytes(self.subcommittee_index)
            + self.aggregation_bits
            + self.signature
        )


@dataclass(frozen=True, slots=True)
class ContributionAndProof:
    aggregator_index: int
    contribution: SyncCommitteeContribution
    selection_proof: bytes

    def __post_init__(self) -> None:
        check_uint64("contribution_and_proof.aggregator_index", self.aggregator_index)
        if type(self.contribution) is not SyncCommitteeContribution:
            raise MalformedRequest("contribution_and_proof.contribution must be a SyncCommitteeContribution")
        check_bytes("contribution_and_proof.selection_proof", self.selection_proof, 96)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                uint64_root(self.aggregator_index),
                self.contribution.hash_tree_root(),
                bytes_root(self.selection_proof),
            ]
        )

    def serialize(self) -> bytes:
        return uint64_bytes(self.aggregator_index) + self.contribution.serialize() + self.selection_proof


# --- builder API ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidatorRegistration:
    """builder-specs ValidatorRegistrationV1 (signed with DOMAIN_APPLICATION_BUILDER)."""

    fee_recipient: bytes
    gas_limit: int
    timestamp: int
    pubkey: bytes

    def __post_init__(self) -> None:
        check_bytes("validator_registration.fee_recipient", self.fee_recipient, 20)
        check_uint64("validator_registration.gas_limit", self.gas_limit)
        check_uint64("validator_registration.timestamp", self.timestamp)
        check_bytes("validator_registration.pubkey", self.pubkey, 48)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                bytes_root(self.fee_recipient),
                uint64_root(self.gas_limit),
                uint64_root(self.timestamp),
                bytes_root(self.pubkey),
            ]
        )

    def serialize(self) -> bytes:
        return self.fee_recipient + uint64_bytes(self.gas_limit) + uint64_bytes(self.timestamp) + self.pubkey


# --- basic values signed directly (RANDAO reveal, selection proof, sync committee message) -----


def epoch_root(epoch: int) -> bytes:
    """hash_tree_root(Epoch): the RANDAO reveal's object root."""
    check_uint64("epoch", epoch)
    return uint64_root(epoch)


def slot_root(slot: int) -> bytes:
    """hash_tree_root(Slot): the attestation-aggregation selection proof's object root."""
    check_uint64("slot", slot)
    return uint64_root(slot)


def block_root(beacon_block_root: bytes) -> bytes:
    """hash_tree_root(Root) is the root itself: the sync committee message's object root."""
    _root32("beacon_block_root", beacon_block_root)
    return beacon_block_root


# --- phase0 and altair beacon blocks (Web3Signer BLOCK_V2 sends them whole) ----------------------
#
# From bellatrix on, remote signers get only the BeaconBlockHeader; for phase0/altair blocks the
# signer builds the header itself (body_root = hash_tree_root(body)). hash_tree_root(BeaconBlock)
# equals hash_tree_root of that header, so the header is both what is signed and what slashing
# protection records. These containers are only hashed (no serialize()).

MAX_PROPOSER_SLASHINGS = 16
MAX_ATTESTER_SLASHINGS = 2
MAX_ATTESTATIONS = 128
MAX_DEPOSITS = 16
MAX_VOLUNTARY_EXITS = 16
"""phase0 block body list limits: the same in the mainnet and minimal presets."""
DEPOSIT_PROOF_LENGTH = 32 + 1
"""Deposit.proof: Vector[Bytes32, DEPOSIT_CONTRACT_TREE_DEPTH + 1]."""
SYNC_COMMITTEE_BITS = {"mainnet": 512, "minimal": 32}
"""SyncAggregate.sync_committee_bits is a Bitvector[SYNC_COMMITTEE_SIZE] per preset."""


def _sig(name: str, value: bytes) -> None:
    check_bytes(name, value, 96)


def _typed(name: str, value: object, cls: type) -> None:
    if type(value) is not cls:
        raise MalformedRequest(f"{name} must be a {cls.__name__}")


def _typed_items(name: str, values: object, cls: type) -> None:
    if type(values) is not tuple or any(type(v) is not cls for v in values):
        raise MalformedRequest(f"{name} must be a tuple of {cls.__name__}")


@dataclass(frozen=True, slots=True)
class Eth1Data:
    deposit_root: bytes
    deposit_count: int
    block_hash: bytes

    def __post_init__(self) -> None:
        _root32("eth1_data.deposit_root", self.deposit_root)
        check_uint64("eth1_data.deposit_count", self.deposit_count)
        _root32("eth1_data.block_hash", self.block_hash)

    def hash_tree_root(self) -> bytes:
        return merkleize([self.deposit_root, uint64_root(self.deposit_count), self.block_hash])


@dataclass(frozen=True, slots=True)
class SignedBeaconBlockHeader:
    message: BeaconBlockHeader
    signature: bytes

    def __post_init__(self) -> None:
        _typed("signed_beacon_block_header.message", self.message, BeaconBlockHeader)
        _sig("signed_beacon_block_header.signature", self.signature)

    def hash_tree_root(self) -> bytes:
        return merkleize([self.message.hash_tree_root(), bytes_root(self.signature)])


@dataclass(frozen=True, slots=True)
class ProposerSlashing:
    signed_header_1: SignedBeaconBlockHeader
    signed_header_2: SignedBeaconBlockHeader

    def __post_init__(self) -> None:
        _typed("proposer_slashing.signed_header_1", self.signed_header_1, SignedBeaconBlockHeader)
        _typed("proposer_slashing.signed_header_2", self.signed_header_2, SignedBeaconBlockHeader)

    def hash_tree_root(self) -> bytes:
        return merkleize([self.signed_header_1.hash_tree_root(), self.signed_header_2.hash_tree_root()])


@dataclass(frozen=True, slots=True)
class IndexedAttestation:
    """phase0..deneb IndexedAttestation: attesting_indices is a List[ValidatorIndex, 2048]."""

    attesting_indices: tuple[int, ...]
    data: AttestationData
    signature: bytes

    def __post_init__(self) -> None:
        if type(self.attesting_indices) is not tuple:
            raise MalformedRequest("indexed_attestation.attesting_indices must be a tuple")
        if len(self.attesting_indices) > MAX_VALIDATORS_PER_COMMITTEE:
            raise MalformedRequest(
                f"indexed_attestation.attesting_indices: more than {MAX_VALIDATORS_PER_COMMITTEE} indices"
            )
        for index in self.attesting_indices:
            check_uint64("indexed_attestation.attesting_indices", index)
        _typed("indexed_attestation.data", self.data, AttestationData)
        _sig("indexed_attestation.signature", self.signature)

    def hash_tree_root(self) -> bytes:
        return merkleize(
            [
                uint64_list_root(
                    "indexed_attestation.attesting_indices", list(self.attesting_indices), MAX_VALIDATORS_PER_COMMITTEE
                ),
                self.data.hash_tree_root(),
                bytes_root(self.signature),
            ]
        )


@dataclass(frozen=True, slots=True)
class AttesterSlashing:
    attestation_1: IndexedAttestation
    attestation_2: IndexedAttestation

    def __post_init__(self) -> None:
        _typed("attester_slashing.attestation_1", self.attestation_1, IndexedAttestation)
        _typed("attester_slashing.attestation_2", self.attestation_2, IndexedAttestation)

    def hash_tree_root(self) -> bytes:
        return merkleize([self.attestation_1.hash_tree_root(), self.attestation_2.hash_tree_root()])


@dataclass(frozen=True, slots=True)
class Deposit:
    proof: tuple[bytes, ...]
    data: DepositData

    def __post_init__(self) -> None:
        if type(self.proof) is not tuple or len(self.proof) != DEPOSIT_PROOF_LENGTH:
            raise MalformedRequest(f"deposit.proof must be {DEPOSIT_PROOF_LENGTH} roots")
        for node in self.proof:
            _root32("deposit.proof", node)
        _typed("deposit.data", self.data, DepositData)

    def hash_tree_root(self) -> bytes:
        return merkleize([merkleize(list(self.proof)), self.data.hash_tree_root()])


@dataclass(frozen=True, slots=True)
class SignedVoluntaryExit:
    message: VoluntaryExit
    signature: bytes

    def __post_init__(self) -> None:
        _typed("signed_voluntary_exit.message", self.message, VoluntaryExit)
        _sig("signed_voluntary_exit.signature", self.signature)

    def hash_tree_root(self) -> bytes:
        return merkleize([self.message.hash_tree_root(), bytes_root(self.signature)])


@dataclass(frozen=True, slots=True)
class SyncAggregate:
    """``sync_committee_bits``: Bitvector[512] (mainnet, 64 bytes) or Bitvector[32] (minimal, 4 bytes)."""

    sync_committee_bits: bytes
    sync_committee_signature: bytes

    def __post_init__(self) -> None:
        bits = len(self.sync_committee_bits) * 8 if isinstance(self.sync_committee_bits, bytes) else -1
        if bits not in SYNC_COMMITTEE_BITS.values():
            raise MalformedRequest(
                "sync_aggregate.sync_committee_bits must be 64 bytes (mainnet Bitvector[512]) "
                "or 4 bytes (minimal Bitvector[32])"
            )
        check_bitvector("sync_aggregate.sync_committee_bits", self.sync_committee_bits, bits)
        _sig("sync_aggregate.sync_committee_signature", self.sync_committee_signature)

    def hash_tree_root(self) -> bytes:
        return merkleize([bitvector_root(self.sync_committee_bits), bytes_root(self.sync_committee_signature)])


@dataclass(frozen=True, slots=True)
class BeaconBlockBody:
    """phase0 BeaconBlockBody; ``sync_aggregate`` set makes it the altair body (one more field)."""

    randao_reveal: bytes
    eth1_data: Eth1Data
    graffiti: bytes
    proposer_slashings: tuple[ProposerSlashing, ...] = ()
    attester_slashings: tuple[AttesterSlashing, ...] = ()
    attestations: tuple[Attestation, ...] = ()
    deposits: tuple[Deposit, ...] = ()
    voluntary_exits: tuple[SignedVoluntaryExit, ...] = ()
    sync_aggregate: SyncAggregate | None = None

    def __post_init__(self) -> None:
        _sig("beacon_block_body.randao_reveal", self.randao_reveal)
        _typed("beacon_block_body.eth1_data", self.eth1_data, Eth1Data)
        _root32("beacon_block_body.graffiti", self.graffiti)
        _typed_items("beacon_block_body.proposer_slashings", self.proposer_slashings, ProposerSlashing)
        _typed_items("beacon_block_body.attester_slashings", self.attester_slashings, AttesterSlashing)
        _typed_items("beacon_block_body.attestations", self.attestations, Attestation)
        _typed_items("beacon_block_body.deposits", self.deposits, Deposit)
        _typed_items("beacon_block_body.voluntary_exits", self.voluntary_exits, SignedVoluntaryExit)
        limits = (
            ("proposer_slashings", self.proposer_slashings, MAX_PROPOSER_SLASHINGS),
            ("attester_slashings", self.attester_slashings, MAX_ATTESTER_SLASHINGS),
            ("attestations", self.attestations, MAX_ATTESTATIONS),
            ("deposits", self.deposits, MAX_DEPOSITS),
            ("voluntary_exits", self.voluntary_exits, MAX_VOLUNTARY_EXITS),
        )
        for name, items, limit in limits:
            if len(items) > limit:
                raise MalformedRequest(f"beacon_block_body.{name}: {len(items)} items exceed the limit of {limit}")
        if self.sync_aggregate is not None:
            _typed("beacon_block_body.sync_aggregate", self.sync_aggregate, SyncAggregate)

    def hash_tree_root(self) -> bytes:
        fields = [
            bytes_root(self.randao_reveal),
            self.eth1_data.hash_tree_root(),
            self.graffiti,
            list_root(
                "proposer_slashings", [x.hash_tree_root() for x in self.proposer_slashings], MAX_PROPOSER_SLASHINGS
            ),
            list_root(
                "attester_slashings", [x.hash_tree_root() for x in self.attester_slashings], MAX_ATTESTER_SLASHINGS
            ),
            list_root("attestations", [x.hash_tree_root() for x in self.attestations], MAX_ATTESTATIONS),
            list_root("deposits", [x.hash_tree_root() for x in self.deposits], MAX_DEPOSITS),
            list_root("voluntary_exits", [x.hash_tree_root() for x in self.voluntary_exits], MAX_VOLUNTARY_EXITS),
        ]
        if self.sync_aggregate is not None:
            fields.append(self.sync_aggregate.hash_tree_root())
        return merkleize(fields)


@dataclass(frozen=True, slots=True)
class BeaconBlock:
    """phase0 or altair BeaconBlock (the body says which)."""

    slot: int
    proposer_index: int
    parent_root: bytes
    state_root: bytes
    body: BeaconBlockBody

    def __post_init__(self) -> None:
        check_uint64("beacon_block.slot", self.slot)
        check_uint64("beacon_block.proposer_index", self.proposer_index)
        _root32("beacon_block.parent_root", self.parent_root)
        _root32("beacon_block.state_root", self.state_root)
        _typed("beacon_block.body", self.body, BeaconBlockBody)

    def header(self) -> BeaconBlockHeader:
        """The block's header: what is signed (same root as the block) and what protection records."""
        return BeaconBlockHeader(
            slot=self.slot,
            proposer_index=self.proposer_index,
            parent_root=self.parent_root,
            state_root=self.state_root,
            body_root=self.body.hash_tree_root(),
        )

    def hash_tree_root(self) -> bytes:
        return self.header().hash_tree_root()
