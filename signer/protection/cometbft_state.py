"""CometBFT ``priv_validator_state.json`` (privval FilePVLastSignState) at the I/O edge.

Shape, as CometBFT's privval/file.go writes it with its JSON codec::

    {"height": "36", "round": 0, "step": 3, "signature": "<base64>", "signbytes": "<HEX>"}

``height`` is an int64 and therefore a decimal string; ``signature`` (base64) and ``signbytes``
(upper-case hex) are omitted when empty. Step 0 means nothing was signed yet.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signer.errors import InterchangeError, MalformedRequest
from signer.jsondoc import load_json
from signer.protection.rules import ConsensusState
from signer.types import check_chain_id

MAX_STATE_BYTES = 1024 * 1024
"""A priv_validator_state.json holds one height/round/step and one sign bytes: a few hundred bytes."""


class PrivValidatorState(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    height: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")]
    round: Annotated[int, Field(ge=0, le=2**31 - 1)]
    step: Annotated[int, Field(ge=0, le=3)]
    signature: str | None = None
    signbytes: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})*$")] | None = None


def check_state_chain_id(chain_id: str) -> None:
    """CometBFT's chain_id rule (signer.types.check_chain_id) for a state import; InterchangeError."""
    try:
        check_chain_id(chain_id)
    except MalformedRequest as exc:
        raise InterchangeError(f"a CometBFT state import needs a valid chain_id: {exc.message}") from None


def parse_cometbft_state(
    document: bytes | str | Mapping[str, Any], sign_bytes_without_timestamp: bytes | None = None
) -> ConsensusState:
    """Validate a priv_validator_state.json document; raises InterchangeError."""
    raw: Any = document
    if not isinstance(document, Mapping):
        raw = load_json(
            document, what="the priv_validator_state document", max_bytes=MAX_STATE_BYTES, error=InterchangeError
        )
    try:
        model = PrivValidatorState.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
        raise InterchangeError(f"the priv_validator_state document is invalid: {details}") from exc
    height = int(model.height)
    if height > 2**63 - 1:
        raise InterchangeError(f"height {height} does not fit in an int64")
    signature: bytes | None = None
    if model.signature:
        try:
            signature = base64.b64decode(model.signature, validate=True)
        except binascii.Error as exc:
            raise InterchangeError("the priv_validator_state signature is not valid base64") from exc
    sign_bytes = bytes.fromhex(model.signbytes) if model.signbytes else None
    # Without signbytes nothing at that height/round/step is ever a repeat (rules refuse it).
    return ConsensusState(
        height=height,
        round=model.round,
        step=model.step,
        sign_bytes=sign_bytes,
        sign_bytes_without_timestamp=sign_bytes_without_timestamp if sign_bytes is not None else None,
        signature=signature,
    )


def serialize_cometbft_state(state: ConsensusState | None) -> dict[str, Any]:
    """The priv_validator_state.json shape; the initial state when nothing was signed."""
    if state is None:
        return {"height": "0", "round": 0, "step": 0}
    document: dict[str, Any] = {"height": str(state.height), "round": state.round, "step": state.step}
    if state.signature:
        document["signature"] = base64.b64encode(state.signature).decode("ascii")
    if state.sign_bytes:
        document["signbytes"] = state.sign_bytes.hex().upper()
    return document
