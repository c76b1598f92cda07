"""The one way the signer parses an untrusted JSON document.

EIP-3076 interchange files, EIP-2335 keystores, CometBFT priv_validator_state.json and module files
arrive from the CLI, the admin API or the disk. ``json.loads`` recurses once per nesting level, so a
document of a few hundred thousand ``[`` ends in a RecursionError (a traceback, or a FAILED answer
that names no reason). ``load_json`` bounds the size and the nesting depth first, in linear time and
without recursion, and turns every failure into the caller's named error (InterchangeError,
MalformedKeystore, ModuleTampered, ...), so that a bad document is a refusal that says why.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, BinaryIO, Final

from signer.errors import MalformedDocument, SignerError

MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and objects accepted; every document the signer reads needs at most 5."""

# A JSON string, or an unterminated one up to the end: possessive, so every byte is looked at once.
_STRING: Final = re.compile(rb'"[^"\\]*+(?:\\.?[^"\\]*+)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_DELTA: Final = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def nesting_depth(data: bytes) -> int:
    """How deep arrays and objects nest in ``data`` (0 for a scalar), ignoring brackets inside
    strings. Linear time, no recursion; for text that is not JSON the number is still bounded by
    the count of brackets."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def read_at_most(stream: BinaryIO, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``stream``: enough for ``load_json`` to refuse a document
    that is too large without holding all of it."""
    return stream.read(max_bytes + 1)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(
    data: bytes | str,
    *,
    what: str,
    max_bytes: int,
    error: type[SignerError] = MalformedDocument,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parse ``data`` (UTF-8 JSON) as ``what`` (e.g. "the interchange document").

    Refuses, with ``error`` and a message that starts with ``what``: more than ``max_bytes`` bytes,
    nesting deeper than ``max_depth``, invalid JSON (NaN and Infinity included), text that is not
    UTF-8 (RFC 8259). Never raises anything else for any input."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise error(f"{what} is {len(raw):,} bytes, over the limit of {max_bytes:,}")
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise error(f"{what} nests arrays and objects {depth} deep, over the limit of {max_depth}")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # RFC 8259: UTF-8; a BOM may be ignored
        return json.loads(text, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, NaN, an integer of over 4300 digits
        raise error(f"{what} is not valid JSON ({type(exc).__name__})") from None
