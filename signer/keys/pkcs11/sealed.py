"""BLS secrets sealed by the token: PKCS#11 has no BLS mechanism, so the token only guards them.

Each secret is encrypted with CKM_AES_GCM (random 12-byte IV, AAD = the public key) under one
non-extractable AES-256 key that never leaves the token. The blobs live in
``<data_dir>/pkcs11-bls-sealed.json``, replaced atomically on every change, and are opened through
the token at unlock; a blob that does not open, or opens to another public key, is ModuleTampered.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11err

from signer.atomicfile import atomic_write
from signer.crypto import bls
from signer.errors import KeyModuleError, MalformedRequest, ModuleTampered
from signer.jsondoc import load_json, read_at_most
from signer.keys.pkcs11.cryptoki import translate

SEAL_KEY_LABEL: Final = "validator-signer/bls-seal"
SEALED_FILE_NAME: Final = "pkcs11-bls-sealed.json"
SEALED_FILE_VERSION: Final = 1
MAX_SEALED_FILE_BYTES: Final = 256 * 1024 * 1024

_UNSEAL_REFUSED = (p11err.GeneralError, p11err.EncryptedDataInvalid, p11err.EncryptedDataLenRange)
"""What SoftHSM answers for a GCM tag that does not verify."""


@dataclass(frozen=True, slots=True)
class SealedBlob:
    name: str
    public_key: bytes
    iv: bytes
    ciphertext: bytes
    """AES-GCM ciphertext with its 16-byte tag appended."""


def seal_key(session: Any, token_label: str, *, create: bool) -> Any:
    """The token's AES-256 sealing key (None if absent and not ``create``). The caller holds the login
    session's lock and translates pkcs11 exceptions."""
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.LABEL: SEAL_KEY_LABEL,
    }
    found = list(session.get_objects(template))
    if len(found) > 1:
        raise KeyModuleError(f"PKCS#11 token {token_label!r} holds {len(found)} BLS sealing keys")
    if found:
        return found[0]
    if not create:
        return None
    return session.generate_key(
        KeyType.AES,
        256,
        label=SEAL_KEY_LABEL,
        store=True,
        template={
            Attribute.TOKEN: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.PRIVATE: True,
            Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True,
            Attribute.WRAP: False,
            Attribute.UNWRAP: False,
        },
    )


def seal(key: Any, items: Sequence[tuple[str, bytes, bytes]]) -> list[SealedBlob]:
    """Encrypt (name, secret, public_key) triples under the sealing key (pkcs11 exceptions pass)."""
    blobs: list[SealedBlob] = []
    for name, secret, public_key in items:
        iv = secrets.token_bytes(12)
        ciphertext = bytes(key.encrypt(secret, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, public_key)))
        blobs.append(SealedBlob(name, public_key, iv, ciphertext))
    return blobs


def unseal(key: Any, blob: SealedBlob, token_label: str, sealed_file: Path) -> bytes:
    """The secret of one blob, checked against its public key; ModuleTampered if it does not open."""
    where = f"sealed BLS key 0x{blob.public_key.hex()} in {sealed_file}"
    try:
        secret = bytes(
            key.decrypt(
                blob.ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(blob.iv, blob.public_key)
            )
        )
    except _UNSEAL_REFUSED as exc:
        raise ModuleTampered(f"{where} does not open under token {token_label!r} (tampered, or another token)") from exc
    except p11err.PKCS11Error as exc:
        raise translate(exc, token_label, "unsealing BLS keys") from exc
    try:
        matches = bls.secret_to_public(secret) == blob.public_key
    except MalformedRequest:
        matches = False
    if not matches:
        raise ModuleTampered(f"{where} does not match its public key")
    return secret


def read_sealed(path: Path) -> list[SealedBlob]:
    """The blobs of the sealed-key file (none if it does not exist); ModuleTampered if malformed."""
    try:
        with path.open("rb") as fh:
            raw = read_at_most(fh, MAX_SEALED_FILE_BYTES)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyModuleError(f"cannot read {path}: {exc.strerror}") from exc
    doc = load_json(raw, what=str(path), max_bytes=MAX_SEALED_FILE_BYTES, error=ModuleTampered)
    try:
        if doc.get("version") != SEALED_FILE_VERSION:
            raise ModuleTampered(f"{path} has unknown version {doc.get('version')!r}")
        return [
            SealedBlob(
                name=str(item["name"]),
                public_key=bytes.fromhex(item["public_key"]),
                iv=bytes.fromhex(item["iv"]),
                ciphertext=bytes.fromhex(item["ciphertext"]),
            )
            for item in doc["keys"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModuleTampered(f"{path} is not a valid sealed-key file ({type(exc).__name__})") from exc


def write_sealed(path: Path, token_label: str, sealed: Sequence[SealedBlob]) -> None:
    """Replace the sealed-key file with ``sealed`` (``atomic_write``, mode 0600)."""
    doc = {
        "version": SEALED_FILE_VERSION,
        "token_label": token_label,
        "keys": [
            {"name": b.name, "public_key": b.public_key.hex(), "iv": b.iv.hex(), "ciphertext": b.ciphertext.hex()}
            for b in sealed
        ],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(doc, indent=1).encode("utf-8"))
    except OSError as exc:
        raise KeyModuleError(f"cannot write {path}: {exc.strerror}") from exc
