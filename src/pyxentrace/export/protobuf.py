"""A minimal protobuf wire-format encoder (proto2 semantics): just what the Perfetto writer uses.

Messages are built as ``bytes`` from ``(field, value)`` helpers; there is no schema here. The
hot path (one packet per trace record) is encoded in bulk by :mod:`.perfetto_kernel`.
"""

from __future__ import annotations

from collections.abc import Iterable

WT_VARINT = 0
WT_I64 = 1
WT_LEN = 2


def varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer (negative int32/int64 as 10-byte two's
    complement, as protobuf does)."""
    if value < 0:
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def uint(field: int, value: int) -> bytes:
    """A varint field (uint32/uint64/int32/int64/bool/enum)."""
    return key(field, WT_VARINT) + varint(int(value))


def length_delimited(field: int, payload: bytes) -> bytes:
    return key(field, WT_LEN) + varint(len(payload)) + payload


def string(field: int, text: str) -> bytes:
    return length_delimited(field, text.encode("utf-8"))


def message(field: int, *parts: bytes | Iterable[bytes]) -> bytes:
    """A sub-message field made of already-encoded parts."""
    body = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in parts)
    return length_delimited(field, body)


def fixed64(field: int, value: int) -> bytes:
    return key(field, WT_I64) + (value & ((1 << 64) - 1)).to_bytes(8, "little")
