"""Full phase0/altair BeaconBlock and body roots against remerkleable (an independent SSZ library), with
every list of the body filled (hypothesis), and both presets' sync committee sizes."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from remerkleable.basic import uint64
from remerkleable.bitfields import Bitlist, Bitvector
from remerkleable.byte_arrays import Bytes32, Bytes48, Bytes96
from remerkleable.complex import Container, List, Vector

from signer.errors import MalformedRequest
from signer.eth2 import containers as c

# --- the spec's containers in remerkleable (consensus-specs phase0/altair beacon-chain.md) ---------


class RCheckpoint(Container):
    epoch: uint64
    root: Bytes32


class RAttestationData(Container):
    slot: uint64
    index: uint64
    beacon_block_root: Bytes32
    source: RCheckpoint
    target: RCheckpoint


class RBeaconBlockHeader(Container):
    slot: uint64
    proposer_index: uint64
    parent_root: Bytes32
    state_root: Bytes32
    body_root: Bytes32


class RSignedBeaconBlockHeader(Container):
    message: RBeaconBlockHeader
    signature: Bytes96


class RProposerSlashing(Container):
    signed_header_1: RSignedBeaconBlockHeader
    signed_header_2: RSignedBeaconBlockHeader


class RIndexedAttestation(Container):
    attesting_indices: List[uint64, 2048]
    data: RAttestationData
    signature: Bytes96


class RAttesterSlashing(Container):
    attestation_1: RIndexedAttestation
    attestation_2: RIndexedAttestation


class RAttestation(Container):
    aggregation_bits: Bitlist[2048]
    data: RAttestationData
    signature: Bytes96


class RDepositData(Container):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: uint64
    signature: Bytes96


class RDeposit(Container):
    proof: Vector[Bytes32, 33]
    data: RDepositData


class RVoluntaryExit(Container):
    epoch: uint64
    validator_index: uint64


class RSignedVoluntaryExit(Container):
    message: RVoluntaryExit
    signature: Bytes96


class REth1Data(Container):
    deposit_root: Bytes32
    deposit_count: uint64
    block_hash: Bytes32


class RBodyPhase0(Container):
    randao_reveal: Bytes96
    eth1_data: REth1Data
    graffiti: Bytes32
    proposer_slashings: List[RProposerSlashing, 16]
    attester_slashings: List[RAttesterSlashing, 2]
    attestations: List[RAttestation, 128]
    deposits: List[RDeposit, 16]
    voluntary_exits: List[RSignedVoluntaryExit, 16]


class RSyncAggregateMinimal(Container):
    sync_committee_bits: Bitvector[32]
    sync_committee_signature: Bytes96


class RSyncAggregateMainnet(Container):
    sync_committee_bits: Bitvector[512]
    sync_committee_signature: Bytes96


def _altair_body(sync: type[Container]) -> type[Container]:
    class RBodyAltair(Container):
        randao_reveal: Bytes96
        eth1_data: REth1Data
        graffiti: Bytes32
        proposer_slashings: List[RProposerSlashing, 16]
        attester_slashings: List[RAttesterSlashing, 2]
        attestations: List[RAttestation, 128]
        deposits: List[RDeposit, 16]
        voluntary_exits: List[RSignedVoluntaryExit, 16]
        sync_aggregate: sync  # type: ignore[valid-type]

    return RBodyAltair


R_BODIES = {"minimal": _altair_body(RSyncAggregateMinimal), "mainnet": _altair_body(RSyncAggregateMainnet)}
R_SYNC: dict[str, Any] = {"minimal": RSyncAggregateMinimal, "mainnet": RSyncAggregateMainnet}


# --- ours -> remerkleable -----------------------------------------------------------------------


def r_data(d: c.AttestationData) -> Any:
    return RAttestationData(
        slot=d.slot,
        index=d.index,
        beacon_block_root=d.beacon_block_root,
        source=RCheckpoint(epoch=d.source.epoch, root=d.source.root),
        target=RCheckpoint(epoch=d.target.epoch, root=d.target.root),
    )


def r_header(h: c.BeaconBlockHeader) -> Any:
    return RBeaconBlockHeader(
        slot=h.slot,
        proposer_index=h.proposer_index,
        parent_root=h.parent_root,
        state_root=h.state_root,
        body_root=h.body_root,
    )


def r_bits(encoded: bytes) -> list[bool]:
    length = (len(encoded) - 1) * 8 + encoded[-1].bit_length() - 1
    return [bool(encoded[i // 8] >> (i % 8) & 1) for i in range(length)]


def r_indexed(a: c.IndexedAttestation) -> Any:
    return RIndexedAttestation(attesting_indices=list(a.attesting_indices), data=r_data(a.data), signature=a.signature)


def r_body(body: c.BeaconBlockBody, preset: str) -> Any:
    fields: dict[str, Any] = {
        "randao_reveal": body.randao_reveal,
        "eth1_data": REth1Data(
            deposit_root=body.eth1_data.deposit_root,
            deposit_count=body.eth1_data.deposit_count,
            block_hash=body.eth1_data.block_hash,
        ),
        "graffiti": body.graffiti,
        "proposer_slashings": [
            RProposerSlashing(
                signed_header_1=RSignedBeaconBlockHeader(
                    message=r_header(p.signed_header_1.message), signature=p.signed_header_1.signature
                ),
                signed_header_2=RSignedBeaconBlockHeader(
                    message=r_header(p.signed_header_2.message), signature=p.signed_header_2.signature
                ),
            )
            for p in body.proposer_slashings
        ],
        "attester_slashings": [
            RAttesterSlashing(attestation_1=r_indexed(s.attestation_1), attestation_2=r_indexed(s.attestation_2))
            for s in body.attester_slashings
        ],
        "attestations": [
            RAttestation(
                aggregation_bits=Bitlist[2048](*r_bits(a.aggregation_bits)), data=r_data(a.data), signature=a.signature
            )
            for a in body.attestations
        ],
        "deposits": [
            RDeposit(
                proof=list(d.proof),
                data=RDepositData(
                    pubkey=d.data.pubkey,
                    withdrawal_credentials=d.data.withdrawal_credentials,
                    amount=d.data.amount,
                    signature=d.data.signature,
                ),
            )
            for d in body.deposits
        ],
        "voluntary_exits": [
            RSignedVoluntaryExit(
                message=RVoluntaryExit(epoch=e.message.epoch, validator_index=e.message.validator_index),
                signature=e.signature,
            )
            for e in body.voluntary_exits
        ],
    }
    if body.sync_aggregate is None:
        return RBodyPhase0(**fields)
    bits = body.sync_aggregate.sync_committee_bits
    sync_type = R_SYNC[preset]
    bitvector = sync_type.fields()["sync_committee_bits"]
    fields["sync_aggregate"] = sync_type(
        sync_committee_bits=bitvector(*[bool(bits[i // 8] >> (i % 8) & 1) for i in range(len(bits) * 8)]),
        sync_committee_signature=body.sync_aggregate.sync_committee_signature,
    )
    return R_BODIES[preset](**fields)


# --- strategies ---------------------------------------------------------------------------------

U64 = st.integers(min_value=0, max_value=2**64 - 1)
B32 = st.binary(min_size=32, max_size=32)
B48 = st.binary(min_size=48, max_size=48)
B96 = st.binary(min_size=96, max_size=96)

checkpoints = st.builds(c.Checkpoint, epoch=U64, root=B32)
datas = st.builds(c.AttestationData, slot=U64, index=U64, beacon_block_root=B32, source=checkpoints, target=checkpoints)
headers = st.builds(c.BeaconBlockHeader, U64, U64, B32, B32, B32)
signed_headers = st.builds(c.SignedBeaconBlockHeader, headers, B96)
indexed = st.builds(c.IndexedAttestation, st.lists(U64, max_size=40).map(tuple), datas, B96)


def _bitlist(bits: list[bool]) -> bytes:
    data = bytearray(len(bits) // 8 + 1)
    for i, bit in enumerate([*bits, True]):
        data[i // 8] |= bit << (i % 8)
    return bytes(data)


attestations = st.builds(c.Attestation, st.lists(st.booleans(), max_size=300).map(_bitlist), datas, B96)
deposits = st.builds(
    c.Deposit,
    st.lists(B32, min_size=33, max_size=33).map(tuple),
    st.builds(c.DepositData, B48, B32, U64, B96),
)
exits = st.builds(c.SignedVoluntaryExit, st.builds(c.VoluntaryExit, U64, U64), B96)


def bodies(sync_bytes: int | None) -> st.SearchStrategy[c.BeaconBlockBody]:
    sync = (
        st.none()
        if sync_bytes is None
        else st.builds(c.SyncAggregate, st.binary(min_size=sync_bytes, max_size=sync_bytes), B96)
    )
    return st.builds(
        c.BeaconBlockBody,
        randao_reveal=B96,
        eth1_data=st.builds(c.Eth1Data, B32, U64, B32),
        graffiti=B32,
        proposer_slashings=st.lists(st.builds(c.ProposerSlashing, signed_headers, signed_headers), max_size=3).map(
            tuple
        ),
        attester_slashings=st.lists(st.builds(c.AttesterSlashing, indexed, indexed), max_size=2).map(tuple),
        attestations=st.lists(attestations, max_size=4).map(tuple),
        deposits=st.lists(deposits, max_size=2).map(tuple),
        voluntary_exits=st.lists(exits, max_size=3).map(tuple),
        sync_aggregate=sync,
    )


@pytest.mark.parametrize(("sync_bytes", "preset"), [(None, "phase0"), (4, "minimal"), (64, "mainnet")])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_body_and_block_roots_match_remerkleable(sync_bytes: int | None, preset: str, data: st.DataObject) -> None:
    body = data.draw(bodies(sync_bytes))
    reference = r_body(body, preset)
    assert body.hash_tree_root() == bytes(reference.hash_tree_root())
    block = c.BeaconBlock(
        slot=data.draw(U64), proposer_index=data.draw(U64), parent_root=b"\x01" * 32, state_root=b"\x02" * 32, body=body
    )
    header = block.header()
    assert header.body_root == body.hash_tree_root()
    assert block.hash_tree_root() == bytes(r_header(header).hash_tree_root())


def test_empty_phase0_body_root() -> None:
    body = c.BeaconBlockBody(b"\x00" * 96, c.Eth1Data(b"\x00" * 32, 0, b"\x00" * 32), b"\x00" * 32)
    assert body.hash_tree_root() == bytes(RBodyPhase0().hash_tree_root())


def test_malformed_block_parts_are_refused_by_name() -> None:
    eth1 = c.Eth1Data(b"\x00" * 32, 0, b"\x00" * 32)
    exit_ = c.SignedVoluntaryExit(c.VoluntaryExit(1, 2), b"\x00" * 96)
    with pytest.raises(MalformedRequest, match="voluntary_exits: 17 items exceed the limit of 16"):
        c.BeaconBlockBody(b"\x00" * 96, eth1, b"\x00" * 32, voluntary_exits=(exit_,) * 17)
    with pytest.raises(MalformedRequest, match=r"deposit\.proof must be 33 roots"):
        c.Deposit((b"\x00" * 32,) * 32, c.DepositData(b"\x00" * 48, b"\x00" * 32, 1, b"\x00" * 96))
    with pytest.raises(MalformedRequest, match="sync_committee_bits must be 64 bytes"):
        c.SyncAggregate(b"\x00" * 8, b"\x00" * 96)
    with pytest.raises(MalformedRequest, match="attesting_indices"):
        c.IndexedAttestation(
            (0,) * 2049,
            c.AttestationData(0, 0, b"\x00" * 32, c.Checkpoint(0, b"\x00" * 32), c.Checkpoint(0, b"\x00" * 32)),
            b"\x00" * 96,
        )
    with pytest.raises(MalformedRequest, match="graffiti"):
        c.BeaconBlockBody(b"\x00" * 96, eth1, b"\x00" * 31)
