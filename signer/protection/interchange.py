"""EIP-3076 slashing-protection interchange (format version 5): pydantic models at the I/O edge.

``parse_interchange`` validates a document (bytes, str or mapping) and returns core records;
``serialize_interchange`` builds the JSON-ready dict; ``minify`` reduces a document to its minimal
form (per validator one block at the highest slot and one attestation at the highest source and
target epochs, no signing roots).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signer.errors import InterchangeError
from signer.jsondoc import load_json
from signer.protection.rules import AttestationRecord, BlockRecord, imported_root

INTERCHANGE_FORMAT_VERSION = "5"
MAX_INTERCHANGE_BYTES = 256 * 1024 * 1024
"""Largest interchange document parsed (it takes ~10x its size in memory); split a larger one by
validator."""
MAX_U63 = 2**63 - 1
"""Slots and epochs are stored as signed 64-bit integers; larger values are refused."""

_Hex32 = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")]
_PublicKeyHex = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{96}$")]
_Uint = Annotated[str, Field(pattern=r"^[0-9]{1,19}$")]


class _Model(BaseModel):
    # Unknown fields are ignored, as EIP-3076 asks of importers.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class InterchangeMetadata(_Model):
    interchange_format_version: str
    genesis_validators_root: _Hex32


class SignedBlockModel(_Model):
    slot: _Uint
    signing_root: _Hex32 | None = None


class SignedAttestationModel(_Model):
    source_epoch: _Uint
    target_epoch: _Uint
    signing_root: _Hex32 | None = None


class ValidatorDataModel(_Model):
    pubkey: _PublicKeyHex
    signed_blocks: list[SignedBlockModel]
    signed_attestations: list[SignedAttestationModel]


class InterchangeModel(_Model):
    metadata: InterchangeMetadata
    data: list[ValidatorDataModel]


@dataclass(frozen=True, slots=True)
class ValidatorHistory:
    """One validator's records from an interchange (duplicate pubkey entries merged)."""

    public_key: bytes
    blocks: tuple[BlockRecord, ...]
    attestations: tuple[AttestationRecord, ...]


@dataclass(frozen=True, slots=True)
class Interchange:
    genesis_validators_root: bytes
    validators: tuple[ValidatorHistory, ...]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{path}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _uint(text: str, what: str) -> int:
    value = int(text)
    if value > MAX_U63:
        raise InterchangeError(f"{what} {value} is larger than 2**63-1, which this signer cannot store")
    return value


def _root(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text[2:])


def _load(document: bytes | str | Mapping[str, Any]) -> Any:
    if isinstance(document, Mapping):
        return document
    return load_json(document, what="the interchange document", max_bytes=MAX_INTERCHANGE_BYTES, error=InterchangeError)


def parse_model(document: bytes | str | Mapping[str, Any]) -> InterchangeModel:
    """Validate the shape of an EIP-3076 document (any format version); raises InterchangeError."""
    raw = _load(document)
    try:
        return InterchangeModel.model_validate(raw)
    except ValidationError as exc:
        raise InterchangeError(f"the interchange document is invalid: {_describe(exc)}") from exc


def parse_interchange(document: bytes | str | Mapping[str, Any]) -> Interchange:
    """Validate an EIP-3076 v5 document and return its records; imported all-zero roots become None."""
    model = parse_model(document)
    version = model.metadata.interchange_format_version
    if version != INTERCHANGE_FORMAT_VERSION:
        raise InterchangeError(
            f"interchange_format_version {version!r} is not supported (only {INTERCHANGE_FORMAT_VERSION!r})"
        )
    merged: dict[bytes, tuple[list[BlockRecord], list[AttestationRecord]]] = {}
    for entry in model.data:
        public_key = bytes.fromhex(entry.pubkey[2:])
        blocks, attestations = merged.setdefault(public_key, ([], []))
        for block in entry.signed_blocks:
            blocks.append(BlockRecord(_uint(block.slot, "slot"), imported_root(_root(block.signing_root))))
        for att in entry.signed_attestations:
            attestations.append(
                AttestationRecord(
                    _uint(att.source_epoch, "source_epoch"),
                    _uint(att.target_epoch, "target_epoch"),
                    imported_root(_root(att.signing_root)),
                )
            )
    return Interchange(
        genesis_validators_root=bytes.fromhex(model.metadata.genesis_validators_root[2:]),
        validators=tuple(
            ValidatorHistory(public_key, tuple(blocks), tuple(attestations))
            for public_key, (blocks, attestations) in merged.items()
        ),
    )


def serialize_interchange(
    genesis_validators_root: bytes,
    validators: Sequence[ValidatorHistory],
) -> dict[str, Any]:
    """The EIP-3076 v5 JSON document (as a dict); unknown roots are omitted."""
    data: list[dict[str, Any]] = []
    for validator in validators:
        blocks: list[dict[str, str]] = []
        for block in validator.blocks:
            item = {"slot": str(block.slot)}
            if block.signing_root is not None:
                item["signing_root"] = "0x" + block.signing_root.hex()
            blocks.append(item)
        attestations: list[dict[str, str]] = []
        for att in validator.attestations:
            item = {"source_epoch": str(att.source_epoch), "target_epoch": str(att.target_epoch)}
            if att.signing_root is not None:
                item["signing_root"] = "0x" + att.signing_root.hex()
            attestations.append(item)
        data.append(
            {
                "pubkey": "0x" + validator.public_key.hex(),
                "signed_blocks": blocks,
                "signed_attestations": attestations,
            }
        )
    return {
        "metadata": {
            "interchange_format_version": INTERCHANGE_FORMAT_VERSION,
            "genesis_validators_root": "0x" + genesis_validators_root.hex(),
        },
        "data": data,
    }


def minify(document: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """The minimal form of an interchange: per validator (duplicate entries merged) one block at the
    highest slot and one attestation at the highest source and highest target epoch, without roots."""
    interchange = parse_interchange(document)
    minimal: list[ValidatorHistory] = []
    for validator in interchange.validators:
        blocks: tuple[BlockRecord, ...] = ()
        if validator.blocks:
            blocks = (BlockRecord(max(b.slot for b in validator.blocks), None),)
        attestations: tuple[AttestationRecord, ...] = ()
        if validator.attestations:
            attestations = (
                AttestationRecord(
                    max(a.source_epoch for a in validator.attestations),
                    max(a.target_epoch for a in validator.attestations),
                    None,
                ),
            )
        minimal.append(ValidatorHistory(validator.public_key, blocks, attestations))
    return serialize_interchange(interchange.genesis_validators_root, minimal)
