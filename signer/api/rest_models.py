"""JSON bodies of the Web3Signer remote-signing API (POST /api/v1/eth2/sign/{pubkey}), validated at the
edge and translated into the typed requests of ``signer.eth2.remote_signing``. No HTTP here.

Wire conventions (Consensys/web3signer openapi-specs/eth2/signing/schemas.yaml, and what Lodestar,
Lighthouse, Teku, Prysm and Nimbus send): numbers are decimal strings (a JSON integer is accepted
too, never a boolean, a sign or a fraction), bytes are 0x-prefixed hex of the field's exact length,
unknown fields are ignored (Nimbus adds ``proofs``), the client's signing root comes as
``signingRoot`` or ``signing_root``. AGGREGATE_AND_PROOF and AGGREGATE_AND_PROOF_V2 both take the
aggregate wrapped (``{"version", "data"}``, as Web3Signer's V2 schema says) or bare (as Lighthouse
sends it); an aggregate with ``committee_bits`` is electra-shaped. Every failure is a
``MalformedRequest`` naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from signer.errors import MalformedRequest
from signer.eth2 import containers as c
from signer.eth2 import remote_signing as rs
from signer.eth2.ssz import UINT64_MAX

_DECIMAL = re.compile(r"[0-9]{1,20}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def _uint64(value: object) -> int:
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    elif type(value) is int:
        number = value
    else:
        raise ValueError("must be a uint64 as a decimal string")
    if not 0 <= number <= UINT64_MAX:
        raise ValueError("must be a uint64 (0..2**64-1)")
    return number


def _hex_bytes(length: int | None) -> Any:
    def parse(value: object) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise ValueError("must be 0x-prefixed hex with an even number of digits")
        raw = bytes.fromhex(value[2:])
        if length is not None and len(raw) != length:
            raise ValueError(f"must be {length} bytes, got {len(raw)}")
        return raw

    return BeforeValidator(parse)


Uint64 = Annotated[int, BeforeValidator(_uint64)]
Bytes4 = Annotated[bytes, _hex_bytes(4)]
Bytes20 = Annotated[bytes, _hex_bytes(20)]
Bytes32 = Annotated[bytes, _hex_bytes(32)]
Bytes48 = Annotated[bytes, _hex_bytes(48)]
Bytes96 = Annotated[bytes, _hex_bytes(96)]
HexBytes = Annotated[bytes, _hex_bytes(None)]
"""SSZ-encoded bitlists and bitvectors (their lengths are checked by the containers)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- consensus objects ------------------------------------------------------------------------


class CheckpointModel(_Model):
    epoch: Uint64
    root: Bytes32

    def typed(self) -> c.Checkpoint:
        return c.Checkpoint(epoch=self.epoch, root=self.root)


class AttestationDataModel(_Model):
    slot: Uint64
    index: Uint64
    beacon_block_root: Bytes32
    source: CheckpointModel
    target: CheckpointModel

    def typed(self) -> c.AttestationData:
        return c.AttestationData(
            slot=self.slot,
            index=self.index,
            beacon_block_root=self.beacon_block_root,
            source=self.source.typed(),
            target=self.target.typed(),
        )


class BeaconBlockHeaderModel(_Model):
    slot: Uint64
    proposer_index: Uint64
    parent_root: Bytes32
    state_root: Bytes32
    body_root: Bytes32

    def typed(self) -> c.BeaconBlockHeader:
        return c.BeaconBlockHeader(
            slot=self.slot,
            proposer_index=self.proposer_index,
            parent_root=self.parent_root,
            state_root=self.state_root,
            body_root=self.body_root,
        )


class AttestationModel(_Model):
    """phase0 Attestation, or the electra one when ``committee_bits`` is present."""

    aggregation_bits: HexBytes
    data: AttestationDataModel
    signature: Bytes96
    committee_bits: HexBytes | None = None

    def typed(self) -> c.Attestation | c.AttestationElectra:
        if self.committee_bits is not None:
            return c.AttestationElectra(self.aggregation_bits, self.data.typed(), self.signature, self.committee_bits)
        return c.Attestation(self.aggregation_bits, self.data.typed(), self.signature)


class AggregateAndProofModel(_Model):
    aggregator_index: Uint64
    aggregate: AttestationModel
    selection_proof: Bytes96

    def typed(self) -> c.AggregateAndProof | c.AggregateAndProofElectra:
        aggregate = self.aggregate.typed()
        if isinstance(aggregate, c.AttestationElectra):
            return c.AggregateAndProofElectra(self.aggregator_index, aggregate, self.selection_proof)
        return c.AggregateAndProof(self.aggregator_index, aggregate, self.selection_proof)


class VersionedAggregateAndProofModel(_Model):
    version: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    data: AggregateAndProofModel


class Eth1DataModel(_Model):
    deposit_root: Bytes32
    deposit_count: Uint64
    block_hash: Bytes32

    def typed(self) -> c.Eth1Data:
        return c.Eth1Data(self.deposit_root, self.deposit_count, self.block_hash)


class SignedBeaconBlockHeaderModel(_Model):
    message: BeaconBlockHeaderModel
    signature: Bytes96

    def typed(self) -> c.SignedBeaconBlockHeader:
        return c.SignedBeaconBlockHeader(self.message.typed(), self.signature)


class ProposerSlashingModel(_Model):
    signed_header_1: SignedBeaconBlockHeaderModel
    signed_header_2: SignedBeaconBlockHeaderModel

    def typed(self) -> c.ProposerSlashing:
        return c.ProposerSlashing(self.signed_header_1.typed(), self.signed_header_2.typed())


class IndexedAttestationModel(_Model):
    attesting_indices: tuple[Uint64, ...]
    data: AttestationDataModel
    signature: Bytes96

    def typed(self) -> c.IndexedAttestation:
        return c.IndexedAttestation(self.attesting_indices, self.data.typed(), self.signature)


class AttesterSlashingModel(_Model):
    attestation_1: IndexedAttestationModel
    attestation_2: IndexedAttestationModel

    def typed(self) -> c.AttesterSlashing:
        return c.AttesterSlashing(self.attestation_1.typed(), self.attestation_2.typed())


class DepositDataModel(_Model):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: Uint64
    signature: Bytes96

    def typed(self) -> c.DepositData:
        return c.DepositData(self.pubkey, self.withdrawal_credentials, self.amount, self.signature)


class DepositModel(_Model):
    proof: tuple[Bytes32, ...]
    data: DepositDataModel

    def typed(self) -> c.Deposit:
        return c.Deposit(self.proof, self.data.typed())


class VoluntaryExitModel(_Model):
    epoch: Uint64
    validator_index: Uint64

    def typed(self) -> c.VoluntaryExit:
        return c.VoluntaryExit(self.epoch, self.validator_index)


class SignedVoluntaryExitModel(_Model):
    message: VoluntaryExitModel
    signature: Bytes96

    def typed(self) -> c.SignedVoluntaryExit:
        return c.SignedVoluntaryExit(self.message.typed(), self.signature)


class SyncAggregateModel(_Model):
    sync_committee_bits: HexBytes
    sync_committee_signature: Bytes96

    def typed(self) -> c.SyncAggregate:
        return c.SyncAggregate(self.sync_committee_bits, self.sync_committee_signature)


class BeaconBlockBodyModel(_Model):
    """phase0 body; with ``sync_aggregate`` the altair body."""

    randao_reveal: Bytes96
    eth1_data: Eth1DataModel
    graffiti: Bytes32
    proposer_slashings: tuple[ProposerSlashingModel, ...]
    attester_slashings: tuple[AttesterSlashingModel, ...]
    attestations: tuple[AttestationModel, ...]
    deposits: tuple[DepositModel, ...]
    voluntary_exits: tuple[SignedVoluntaryExitModel, ...]
    sync_aggregate: SyncAggregateModel | None = None

    def typed(self) -> c.BeaconBlockBody:
        attestations = tuple(a.typed() for a in self.attestations)
        if any(isinstance(a, c.AttestationElectra) for a in attestations):
            raise MalformedRequest("beacon_block.body.attestations: a phase0/altair block has no committee_bits")
        return c.BeaconBlockBody(
            randao_reveal=self.randao_reveal,
            eth1_data=self.eth1_data.typed(),
            graffiti=self.graffiti,
            proposer_slashings=tuple(x.typed() for x in self.proposer_slashings),
            attester_slashings=tuple(x.typed() for x in self.attester_slashings),
            attestations=tuple(a for a in attestations if isinstance(a, c.Attestation)),
            deposits=tuple(x.typed() for x in self.deposits),
            voluntary_exits=tuple(x.typed() for x in self.voluntary_exits),
            sync_aggregate=self.sync_aggregate.typed() if self.sync_aggregate is not None else None,
        )


class BeaconBlockModel(_Model):
    slot: Uint64
    proposer_index: Uint64
    parent_root: Bytes32
    state_root: Bytes32
    body: BeaconBlockBodyModel

    def typed(self) -> c.BeaconBlock:
        return c.BeaconBlock(self.slot, self.proposer_index, self.parent_root, self.state_root, self.body.typed())


class BlockV2Model(_Model):
    version: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    block: BeaconBlockModel | None = None
    block_header: BeaconBlockHeaderModel | None = None

    def typed(self) -> rs.BlockV2:
        return rs.BlockV2(
            version=self.version,
            block=self.block.typed() if self.block is not None else None,
            block_header=self.block_header.typed() if self.block_header is not None else None,
        )


class SyncCommitteeContributionModel(_Model):
    slot: Uint64
    beacon_block_root: Bytes32
    subcommittee_index: Uint64
    aggregation_bits: HexBytes
    signature: Bytes96


class ContributionAndProofModel(_Model):
    aggregator_index: Uint64
    contribution: SyncCommitteeContributionModel
    selection_proof: Bytes96

    def typed(self) -> c.ContributionAndProof:
        k = self.contribution
        contribution = c.SyncCommitteeContribution(
            k.slot, k.beacon_block_root, k.subcommittee_index, k.aggregation_bits, k.signature
        )
        return c.ContributionAndProof(self.aggregator_index, contribution, self.selection_proof)


class ValidatorRegistrationModel(_Model):
    fee_recipient: Bytes20
    gas_limit: Uint64
    timestamp: Uint64
    pubkey: Bytes48

    def typed(self) -> c.ValidatorRegistration:
        return c.ValidatorRegistration(self.fee_recipient, self.gas_limit, self.timestamp, self.pubkey)


class DepositRequestModel(_Model):
    pubkey: Bytes48
    withdrawal_credentials: Bytes32
    amount: Uint64
    genesis_fork_version: Bytes4

    def typed(self) -> rs.Deposit:
        message = c.DepositMessage(self.pubkey, self.withdrawal_credentials, self.amount)
        return rs.Deposit(message, self.genesis_fork_version)


class ForkModel(_Model):
    previous_version: Bytes4
    current_version: Bytes4
    epoch: Uint64


class ForkInfoModel(_Model):
    fork: ForkModel
    genesis_validators_root: Bytes32

    def typed(self) -> rs.ForkInfo:
        f = self.fork
        return rs.ForkInfo(c.Fork(f.previous_version, f.current_version, f.epoch), self.genesis_validators_root)


class SlotModel(_Model):
    slot: Uint64


class EpochModel(_Model):
    epoch: Uint64


class SyncCommitteeMessageModel(_Model):
    beacon_block_root: Bytes32
    slot: Uint64


class SyncAggregatorSelectionDataModel(_Model):
    slot: Uint64
    subcommittee_index: Uint64


# --- sign requests, one model per type ----------------------------------------------------------


class _SignBody(_Model):
    fork_info: ForkInfoModel | None = None
    signing_root: Bytes32 | None = Field(default=None, validation_alias=AliasChoices("signingRoot", "signing_root"))

    def _typed(self, sign_type: rs.SignType, message: rs.Message, version: str | None = None) -> rs.RemoteSignRequest:
        return rs.RemoteSignRequest(
            sign_type=sign_type,
            message=message,
            fork_info=self.fork_info.typed() if self.fork_info is not None else None,
            signing_root=self.signing_root,
            version=version,
        )


class AttestationBody(_SignBody):
    type: Literal["ATTESTATION"]
    attestation: AttestationDataModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.ATTESTATION, self.attestation.typed())


class BlockBody(_SignBody):
    type: Literal["BLOCK"]
    block: BeaconBlockModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.BLOCK, self.block.typed())


class BlockV2Body(_SignBody):
    type: Literal["BLOCK_V2"]
    beacon_block: BlockV2Model

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.BLOCK_V2, self.beacon_block.typed())


class AggregationSlotBody(_SignBody):
    type: Literal["AGGREGATION_SLOT"]
    aggregation_slot: SlotModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.AGGREGATION_SLOT, rs.AggregationSlot(self.aggregation_slot.slot))


class AggregateAndProofBody(_SignBody):
    type: Literal["AGGREGATE_AND_PROOF", "AGGREGATE_AND_PROOF_V2"]
    aggregate_and_proof: VersionedAggregateAndProofModel | AggregateAndProofModel = Field(union_mode="left_to_right")

    def typed(self) -> rs.RemoteSignRequest:
        wrapped = self.aggregate_and_proof
        if isinstance(wrapped, VersionedAggregateAndProofModel):
            return self._typed(rs.SignType(self.type), wrapped.data.typed(), wrapped.version)
        return self._typed(rs.SignType(self.type), wrapped.typed())


class RandaoRevealBody(_SignBody):
    type: Literal["RANDAO_REVEAL"]
    randao_reveal: EpochModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.RANDAO_REVEAL, rs.RandaoReveal(self.randao_reveal.epoch))


class VoluntaryExitBody(_SignBody):
    type: Literal["VOLUNTARY_EXIT"]
    voluntary_exit: VoluntaryExitModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.VOLUNTARY_EXIT, self.voluntary_exit.typed())


class SyncCommitteeMessageBody(_SignBody):
    type: Literal["SYNC_COMMITTEE_MESSAGE"]
    sync_committee_message: SyncCommitteeMessageModel

    def typed(self) -> rs.RemoteSignRequest:
        m = self.sync_committee_message
        return self._typed(rs.SignType.SYNC_COMMITTEE_MESSAGE, rs.SyncCommitteeMessage(m.beacon_block_root, m.slot))


class SyncCommitteeSelectionProofBody(_SignBody):
    type: Literal["SYNC_COMMITTEE_SELECTION_PROOF"]
    sync_aggregator_selection_data: SyncAggregatorSelectionDataModel

    def typed(self) -> rs.RemoteSignRequest:
        d = self.sync_aggregator_selection_data
        message = c.SyncAggregatorSelectionData(d.slot, d.subcommittee_index)
        return self._typed(rs.SignType.SYNC_COMMITTEE_SELECTION_PROOF, message)


class SyncCommitteeContributionAndProofBody(_SignBody):
    type: Literal["SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF"]
    contribution_and_proof: ContributionAndProofModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.SYNC_COMMITTEE_CONTRIBUTION_AND_PROOF, self.contribution_and_proof.typed())


class ValidatorRegistrationBody(_SignBody):
    type: Literal["VALIDATOR_REGISTRATION"]
    validator_registration: ValidatorRegistrationModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.VALIDATOR_REGISTRATION, self.validator_registration.typed())


class DepositBody(_SignBody):
    type: Literal["DEPOSIT"]
    deposit: DepositRequestModel

    def typed(self) -> rs.RemoteSignRequest:
        return self._typed(rs.SignType.DEPOSIT, self.deposit.typed())


SignBody = Annotated[
    AttestationBody
    | BlockBody
    | BlockV2Body
    | AggregationSlotBody
    | AggregateAndProofBody
    | RandaoRevealBody
    | VoluntaryExitBody
    | SyncCommitteeMessageBody
    | SyncCommitteeSelectionProofBody
    | SyncCommitteeContributionAndProofBody
    | ValidatorRegistrationBody
    | DepositBody,
    Field(discriminator="type"),
]

_SIGN_BODY: TypeAdapter[SignBody] = TypeAdapter(SignBody)
_TYPES = ", ".join(t.value for t in rs.SignType)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        path = ".".join(str(p) for p in err["loc"]) or "<body>"
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            parts.append(f"type: must be one of {_TYPES}")
        else:
            parts.append(f"{path}: {err['msg']}")
    return "; ".join(parts)


def parse_sign_request(body: bytes | str) -> rs.RemoteSignRequest:
    """A sign request's JSON body as a typed request; MalformedRequest naming what is wrong."""
    try:
        model = _SIGN_BODY.validate_json(body)
    except ValidationError as exc:
        raise MalformedRequest(f"malformed sign request: {_describe(exc)}") from None
    return model.typed()
