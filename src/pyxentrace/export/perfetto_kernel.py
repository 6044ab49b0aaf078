"""Compiled bulk encoder: one Perfetto ``TracePacket`` (wrapped as ``Trace.packet``) per event.

Each event is a TrackEvent on one track, with interned name/category ids and up to ``K``
debug annotations whose names and string values are interned too. Field numbers (from
Perfetto's ``trace_packet.proto``, ``track_event.proto``, ``debug_annotation.proto``):

    Trace.packet = 1
    TracePacket: timestamp = 8, trusted_packet_sequence_id = 10, track_event = 11,
                 sequence_flags = 13
    TrackEvent: category_iids = 3, debug_annotations = 4, type = 9, name_iid = 10,
                track_uuid = 11
    DebugAnnotation: name_iid = 1, bool_value = 2, uint_value = 3, int_value = 4,
                     pointer_value = 7, string_value_iid = 17
"""

from __future__ import annotations

import numba as nb
import numpy as np

TYPE_SLICE_BEGIN = 1
TYPE_SLICE_END = 2
TYPE_INSTANT = 3

ARG_NONE = 0
ARG_UINT = 1
ARG_INT = 2
ARG_STR = 3  # value is a string_value_iid
ARG_PTR = 4  # shown in hex by Perfetto
ARG_BOOL = 5

SEQ_NEEDS_INCREMENTAL_STATE = 2


@nb.njit(cache=True, inline="always")
def _vsize(v: np.uint64) -> int:
    n = 1
    while v >= 0x80:
        v >>= np.uint64(7)
        n += 1
    return n


@nb.njit(cache=True, inline="always")
def _put(buf: np.ndarray, p: int, v: np.uint64) -> int:
    while v >= 0x80:
        buf[p] = np.uint8((v & np.uint64(0x7F)) | np.uint64(0x80))
        v >>= np.uint64(7)
        p += 1
    buf[p] = np.uint8(v)
    return p + 1


@nb.njit(cache=True)
def _ann_size(kind: int, name: np.uint64, val: np.uint64) -> int:
    s = 1 + _vsize(name)
    if kind == ARG_STR:
        s += 2 + _vsize(val)
    else:
        s += 1 + _vsize(val)
    return s


@nb.njit(cache=True)
def _event_size(uuid, name, cat, nargs, akind, aname, aval, i) -> int:
    """Size of the TrackEvent body of event ``i``."""
    s = 2 + 1 + _vsize(uuid)
    if name != 0:
        s += 1 + _vsize(name)
    if cat != 0:
        s += 1 + _vsize(cat)
    for k in range(nargs):
        a = _ann_size(akind[i, k], aname[i, k], aval[i, k])
        s += 1 + _vsize(np.uint64(a)) + a
    return s


@nb.njit(cache=True)
def packet_sizes(ts, typ, uuid, name, cat, nargs, akind, aname, aval, seq) -> np.ndarray:
    """Bytes each event takes in the output (the ``Trace.packet`` key and length included)."""
    n = ts.shape[0]
    out = np.empty(n, dtype=np.int64)
    hdr = 1 + _vsize(np.uint64(seq)) + 2
    for i in range(n):
        ev = _event_size(uuid[i], name[i], cat[i], nargs[i], akind, aname, aval, i)
        body = 1 + _vsize(ts[i]) + hdr + 1 + _vsize(np.uint64(ev)) + ev
        out[i] = 1 + _vsize(np.uint64(body)) + body
    return out


@nb.njit(cache=True)
def encode_packets(ts, typ, uuid, name, cat, nargs, akind, aname, aval, seq, buf) -> int:
    """Write every event's packet into ``buf`` (sized by :func:`packet_sizes`); return the end."""
    n = ts.shape[0]
    p = 0
    useq = np.uint64(seq)
    for i in range(n):
        ev = _event_size(uuid[i], name[i], cat[i], nargs[i], akind, aname, aval, i)
        body = 1 + _vsize(ts[i]) + 1 + _vsize(useq) + 2 + 1 + _vsize(np.uint64(ev)) + ev
        buf[p] = 0x0A  # Trace.packet, LEN
        p = _put(buf, p + 1, np.uint64(body))
        buf[p] = 0x40  # timestamp (8), VARINT
        p = _put(buf, p + 1, ts[i])
        buf[p] = 0x50  # trusted_packet_sequence_id (10)
        p = _put(buf, p + 1, useq)
        buf[p] = 0x68  # sequence_flags (13)
        buf[p + 1] = SEQ_NEEDS_INCREMENTAL_STATE
        p += 2
        buf[p] = 0x5A  # track_event (11), LEN
        p = _put(buf, p + 1, np.uint64(ev))
        buf[p] = 0x48  # type (9)
        buf[p + 1] = typ[i]
        p += 2
        buf[p] = 0x58  # track_uuid (11)
        p = _put(buf, p + 1, uuid[i])
        if name[i] != 0:
            buf[p] = 0x50  # name_iid (10)
            p = _put(buf, p + 1, name[i])
        if cat[i] != 0:
            buf[p] = 0x18  # category_iids (3)
            p = _put(buf, p + 1, cat[i])
        for k in range(nargs[i]):
            kind = akind[i, k]
            a = _ann_size(kind, aname[i, k], aval[i, k])
            buf[p] = 0x22  # debug_annotations (4), LEN
            p = _put(buf, p + 1, np.uint64(a))
            buf[p] = 0x08  # name_iid (1)
            p = _put(buf, p + 1, aname[i, k])
            if kind == ARG_STR:
                buf[p] = 0x88  # string_value_iid (17): key 136 = 0x88 0x01
                buf[p + 1] = 0x01
                p += 2
            elif kind == ARG_INT:
                buf[p] = 0x20  # int_value (4)
                p += 1
            elif kind == ARG_PTR:
                buf[p] = 0x38  # pointer_value (7)
                p += 1
            elif kind == ARG_BOOL:
                buf[p] = 0x10  # bool_value (2)
                p += 1
            else:
                buf[p] = 0x18  # uint_value (3)
                p += 1
            p = _put(buf, p, aval[i, k])
    return p


def encode(
    ts: np.ndarray,
    typ: np.ndarray,
    uuid: np.ndarray,
    name: np.ndarray,
    cat: np.ndarray,
    nargs: np.ndarray,
    akind: np.ndarray,
    aname: np.ndarray,
    aval: np.ndarray,
    seq: int,
) -> bytes:
    """Encode events (parallel arrays; annotations ``[n, K]``) into concatenated packets."""
    if ts.shape[0] == 0:
        return b""
    args = (
        np.ascontiguousarray(ts, dtype=np.uint64),
        np.ascontiguousarray(typ, dtype=np.uint8),
        np.ascontiguousarray(uuid, dtype=np.uint64),
        np.ascontiguousarray(name, dtype=np.uint64),
        np.ascontiguousarray(cat, dtype=np.uint64),
        np.ascontiguousarray(nargs, dtype=np.uint8),
        np.ascontiguousarray(akind, dtype=np.uint8),
        np.ascontiguousarray(aname, dtype=np.uint64),
        np.ascontiguousarray(aval, dtype=np.uint64),
    )
    sizes = packet_sizes(*args, seq)
    buf = np.empty(int(sizes.sum()), dtype=np.uint8)
    used = encode_packets(*args, seq, buf)
    if used != buf.shape[0]:
        raise AssertionError(f"perfetto encoder wrote {used} bytes, expected {buf.shape[0]}")
    return buf.tobytes()
