"""secp256k1 and ed25519 keys as token objects: generated or imported into the token, listed, deleted.

Each key is a private/public object pair labelled with the account name and sharing a random CKA_ID.
Private keys are sensitive and non-extractable, usable to sign and nothing else. secp256k1 keys are
CKK_EC with the secp256k1 OID (CKM_EC_KEY_PAIR_GEN); ed25519 keys are CKK_EC_EDWARDS
(CKM_EC_EDWARDS_KEY_PAIR_GEN). These functions raise pkcs11 exceptions; the caller holds the login
session's lock and translates them (``cryptoki.edge``).
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from typing import Any, Final

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11err
from pkcs11.util.ec import encode_named_curve_parameters

from signer.types import Scheme

SECP256K1_OID: Final = "1.3.132.0.10"
SECP256K1_EC_PARAMS: Final = encode_named_curve_parameters(SECP256K1_OID)
ED25519_EC_PARAMS: Final = bytes.fromhex("06032b6570")
"""DER OID 1.3.101.112 (id-Ed25519), the CKA_EC_PARAMS of a CKK_EC_EDWARDS key."""

_SECP256K1_P: Final = 2**256 - 2**32 - 977

PRIVATE_ATTRIBUTES: Final[dict[Any, Any]] = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.PRIVATE: True,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.DERIVE: False,
    Attribute.UNWRAP: False,
}
"""A private key signs and does nothing else, and never leaves the token."""

_PUBLIC_ATTRIBUTES: Final[dict[Any, Any]] = {
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.PRIVATE: False,
}


@dataclass(frozen=True, slots=True)
class TokenKey:
    """A key pair found in the token."""

    cka_id: bytes
    name: str
    scheme: Scheme
    public_key: bytes
    """Compressed (33 bytes) for secp256k1, 32 bytes for ed25519."""


# --- encodings ------------------------------------------------------------------------------------


def der_octet_string(value: bytes) -> bytes:
    if len(value) < 0x80:
        return bytes([0x04, len(value)]) + value
    if len(value) < 0x100:
        return bytes([0x04, 0x81, len(value)]) + value
    raise ValueError("octet string too long")


def unwrap_ec_point(point: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING (SoftHSM, the standard); some tokens give it raw."""
    if len(point) >= 2 and point[0] == 0x04 and point[1] == len(point) - 2:
        return point[2:]
    if len(point) >= 3 and point[0] == 0x04 and point[1] == 0x81 and point[2] == len(point) - 3:
        return point[3:]
    return point


def compress_secp256k1(uncompressed: bytes) -> bytes:
    if len(uncompressed) != 65 or uncompressed[0] != 0x04:
        raise ValueError("not an uncompressed secp256k1 point")
    return bytes([2 + (uncompressed[64] & 1)]) + uncompressed[1:33]


def decompress_secp256k1(compressed: bytes) -> bytes:
    x = int.from_bytes(compressed[1:33], "big")
    y = pow((pow(x, 3, _SECP256K1_P) + 7) % _SECP256K1_P, (_SECP256K1_P + 1) // 4, _SECP256K1_P)
    if (y & 1) != (compressed[0] & 1):
        y = _SECP256K1_P - y
    return b"\x04" + compressed[1:33] + y.to_bytes(32, "big")


def _key_type(scheme: Scheme) -> tuple[Any, bytes]:
    if scheme is Scheme.SECP256K1:
        return KeyType.EC, SECP256K1_EC_PARAMS
    return KeyType.EC_EDWARDS, ED25519_EC_PARAMS


# --- the objects ----------------------------------------------------------------------------------


def generate_key(session: Any, name: str, scheme: Scheme) -> TokenKey:
    """Generate a key pair inside the token."""
    cka_id = secrets.token_bytes(16)
    common = {Attribute.TOKEN: True, Attribute.LABEL: name, Attribute.ID: cka_id}
    key_type, params = _key_type(scheme)
    mechanism = Mechanism.EC_KEY_PAIR_GEN if scheme is Scheme.SECP256K1 else Mechanism.EC_EDWARDS_KEY_PAIR_GEN
    pub, _ = session.generate_keypair(
        key_type,
        0,
        store=True,
        mechanism=mechanism,
        public_template={**common, Attribute.EC_PARAMS: params, **_PUBLIC_ATTRIBUTES},
        private_template={**common, **PRIVATE_ATTRIBUTES},
    )
    point = unwrap_ec_point(bytes(pub[Attribute.EC_POINT]))
    public_key = compress_secp256k1(point) if scheme is Scheme.SECP256K1 else point
    return TokenKey(cka_id, name, scheme, public_key)


def create_key(session: Any, name: str, scheme: Scheme, secret: bytes, public_key: bytes) -> TokenKey:
    """Import a secret as a key pair; nothing stays behind if the token refuses it."""
    key_type, params = _key_type(scheme)
    if scheme is Scheme.SECP256K1:
        point = der_octet_string(decompress_secp256k1(public_key))
    else:
        point = der_octet_string(public_key)
    cka_id = secrets.token_bytes(16)
    common = {
        Attribute.TOKEN: True,
        Attribute.LABEL: name,
        Attribute.ID: cka_id,
        Attribute.KEY_TYPE: key_type,
        Attribute.EC_PARAMS: params,
    }
    try:
        session.create_object(
            {**common, Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.VALUE: secret, **PRIVATE_ATTRIBUTES}
        )
        session.create_object(
            {**common, Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.EC_POINT: point, **_PUBLIC_ATTRIBUTES}
        )
    except p11err.PKCS11Error:
        destroy_quietly(session, [cka_id])
        raise
    return TokenKey(cka_id, name, scheme, public_key)


def destroy(session: Any, cka_id: bytes) -> None:
    """Delete both objects of a key pair."""
    for obj in list(session.get_objects({Attribute.ID: cka_id})):
        obj.destroy()


def destroy_quietly(session: Any, cka_ids: list[bytes]) -> None:
    """Best-effort removal of the objects of keys being rolled back."""
    for cka_id in cka_ids:
        with contextlib.suppress(p11err.PKCS11Error):
            destroy(session, cka_id)


def list_keys(session: Any) -> list[TokenKey]:
    """Every secp256k1 or ed25519 key pair in the token (public objects without a private one, and
    keys of other types or curves, are not ours and are left out)."""
    private_ids = {
        bytes(obj[Attribute.ID])
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        if obj[Attribute.KEY_TYPE] in (KeyType.EC, KeyType.EC_EDWARDS)
    }
    found: list[TokenKey] = []
    for pub in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):
        key = _token_key(pub, private_ids)
        if key is not None:
            found.append(key)
    return found


def _token_key(pub: Any, private_ids: set[bytes]) -> TokenKey | None:
    key_type = pub[Attribute.KEY_TYPE]
    if key_type not in (KeyType.EC, KeyType.EC_EDWARDS):
        return None
    cka_id = bytes(pub[Attribute.ID])
    if cka_id not in private_ids:
        return None
    params = bytes(pub[Attribute.EC_PARAMS])
    point = unwrap_ec_point(bytes(pub[Attribute.EC_POINT]))
    if key_type == KeyType.EC and params == SECP256K1_EC_PARAMS and len(point) == 65:
        return TokenKey(cka_id, str(pub[Attribute.LABEL]), Scheme.SECP256K1, compress_secp256k1(point))
    if key_type == KeyType.EC_EDWARDS and len(point) == 32:
        return TokenKey(cka_id, str(pub[Attribute.LABEL]), Scheme.ED25519, point)
    return None
