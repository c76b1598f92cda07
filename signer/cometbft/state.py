"""Checks on an imported priv_validator_state.json before the store takes it.

A node's FilePV state carries the sign bytes and signature of its last message. Before it becomes
our height/round/step floor: the sign bytes must be a canonical CometBFT vote or proposal, the
signature must be the given key's over them (else it is another key's state), and the store needs the
same bytes with the timestamp cleared, so a timestamp-only repeat is answered like FilePV does.
"""

from __future__ import annotations

from signer.cometbft.canonical import clear_timestamp
from signer.crypto import ed25519, secp256k1
from signer.errors import InterchangeError, MalformedRequest


def imported_sign_bytes_without_timestamp(
    public_key: bytes, sign_bytes: bytes | None, signature: bytes | None
) -> bytes | None:
    """Validate a state's sign bytes and signature for ``public_key``; return the timestamp-free bytes.

    Raises InterchangeError (nothing imported) for bytes that are not a canonical message or a
    signature that does not verify with ``public_key``.
    """
    if sign_bytes is None:
        return None
    try:
        without_timestamp = clear_timestamp(sign_bytes)
    except MalformedRequest as exc:
        raise InterchangeError(
            f"the priv_validator_state signbytes are not a canonical CometBFT vote or proposal: {exc.message}"
        ) from exc
    if signature is not None:
        if len(public_key) == secp256k1.PUBLIC_KEY_LENGTH:
            valid = secp256k1.verify_digest(public_key, secp256k1.sha256(sign_bytes), signature)
        elif len(public_key) == ed25519.PUBLIC_KEY_LENGTH:
            valid = ed25519.verify(public_key, sign_bytes, signature)
        else:
            raise InterchangeError(f"a CometBFT public key is 32 or 33 bytes, not {len(public_key)}")
        if not valid:
            raise InterchangeError(
                "the priv_validator_state signature does not verify over its signbytes with this public key "
                "(the state of another key?); nothing was imported"
            )
    return without_timestamp
