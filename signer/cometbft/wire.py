"""The few protobuf wire-format primitives the canonical sign bytes need, written by hand.

Encoding is on the signing hot path and covers four small messages, so no generated code is used
here. Decoding is strict: it reads back only what a canonical encoder writes (varint, 64-bit and
length-delimited fields) and refuses truncated or oversized input with ``MalformedRequest``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from signer.errors import MalformedRequest

VARINT = 0
I64 = 1
LEN = 2

_UINT64_MASK = (1 << 64) - 1
_SFIXED64 = struct.Struct("<q")
_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def uvarint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field_number: int, wire_type: int) -> bytes:
    return uvarint((field_number << 3) | wire_type)


def varint_field(key: bytes, value: int) -> bytes:
    """An int64/int32/uint32/enum field; omitted when 0 (proto3). Negative values take 10 bytes."""
    if value == 0:
        return b""
    return key + uvarint(value & _UINT64_MASK)


def sfixed64_field(key: bytes, value: int) -> bytes:
    """An sfixed64 field; omitted when 0 (proto3 omits every scalar default, fixed-size ones too)."""
    if value == 0:
        return b""
    return key + _SFIXED64.pack(value)


def bytes_field(key: bytes, value: bytes) -> bytes:
    """A bytes/string field; omitted when empty."""
    if not value:
        return b""
    return key + uvarint(len(value)) + value


def message_field(key: bytes, body: bytes) -> bytes:
    """An embedded message that is present (even when ``body`` is empty: ``key 00``)."""
    return key + uvarint(len(body)) + body


def delimited(body: bytes) -> bytes:
    """``protoio.MarshalDelimited``: the uvarint length of the message, then the message."""
    return uvarint(len(body)) + body


# --- decoding -------------------------------------------------------------------------------


def read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a varint at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise MalformedRequest("protobuf varint is truncated")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise MalformedRequest("protobuf varint is longer than 10 bytes")
    if result > _UINT64_MASK:
        raise MalformedRequest("protobuf varint does not fit in 64 bits")
    return result, pos


def to_int64(value: int) -> int:
    """Reinterpret a decoded 64-bit varint as two's-complement int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True, slots=True)
class Field:
    """One decoded field. ``value`` is the raw varint (unsigned), the signed sfixed64, or the bytes.

    ``start``/``end`` delimit the whole field (key included) in the decoded buffer.
    """

    number: int
    wire_type: int
    value: int | bytes
    start: int
    end: int


def decode_fields(data: bytes) -> list[Field]:
    """Split one message into its fields, in order. Refuses groups, 32-bit fields and truncation."""
    fields: list[Field] = []
    pos = 0
    end = len(data)
    while pos < end:
        start = pos
        key, pos = read_uvarint(data, pos)
        number, wire_type = key >> 3, key & 0x7
        if number == 0:
            raise MalformedRequest("protobuf field number 0 is invalid")
        value: int | bytes
        if wire_type == VARINT:
            value, pos = read_uvarint(data, pos)
        elif wire_type == I64:
            if pos + 8 > end:
                raise MalformedRequest(f"protobuf 64-bit field {number} is truncated")
            value = _SFIXED64.unpack_from(data, pos)[0]
            pos += 8
        elif wire_type == LEN:
            length, pos = read_uvarint(data, pos)
            if pos + length > end:
                raise MalformedRequest(f"protobuf length-delimited field {number} is truncated")
            value = data[pos : pos + length]
            pos += length
        else:
            raise MalformedRequest(f"protobuf wire type {wire_type} (field {number}) is not expected here")
        fields.append(Field(number, wire_type, value, start, pos))
    return fields


def undelimit(data: bytes) -> bytes:
    """Strip the uvarint length prefix; refuse a prefix that does not match the rest exactly."""
    length, pos = read_uvarint(data, 0)
    if length != len(data) - pos:
        raise MalformedRequest(
            f"length prefix says {length} bytes but {len(data) - pos} follow: not one delimited message"
        )
    return data[pos:]
