"""``pyxentrace dump`` raw lines: time, pCPU, event name, payload words (bulk formatted)."""

from __future__ import annotations

from typing import BinaryIO

import numpy as np
from numba import njit

from ..format import events as ev
from ..format.meta import Clock
from ..reader import TraceReader
from ..reader.scan import FLAG_UNTIMED
from .asciifmt import HEX, put_bytes, put_hex, put_seconds, put_uint


def name_blob() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted ids, name bytes concatenated, start offsets with a final end offset)."""
    ids, names = ev.name_table()
    enc = [n.encode() for n in names]
    starts = np.zeros(len(enc) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(e) for e in enc])
    return np.asarray(ids, dtype=np.uint32), np.frombuffer(b"".join(enc), np.uint8), starts


@njit(cache=True)
def format_raw(
    out,
    tsc,
    flags,
    cpu,
    event,
    nwords,
    words,
    name_idx,
    blob,
    starts,
    first_tsc,
    ns_per_cycle,
    hexd,
):
    """Write one line per row into ``out``; returns bytes used."""
    p = 0
    for i in range(tsc.shape[0]):
        t = tsc[i]
        ns = np.int64(0)
        if t > first_tsc:
            ns = np.int64((t - first_tsc) * ns_per_cycle)
        p = put_seconds(out, p, ns)
        out[p] = 32
        out[p + 1] = 112  # p
        p = put_uint(out, p + 2, np.int64(cpu[i]), 1, 32)
        out[p] = 32
        p += 1
        k = name_idx[i]
        if k >= 0:
            p = put_bytes(out, p, blob, starts[k], starts[k + 1])
        else:
            out[p] = 48
            out[p + 1] = 120  # 0x
            p = put_hex(out, p + 2, np.uint64(event[i]), 8, hexd)
        if flags[i] & 1:
            out[p] = 32
            out[p + 1] = 42  # ' *' marks an untimed record
            p += 2
        for j in range(nwords[i]):
            out[p] = 32
            p = put_hex(out, p + 1, np.uint64(words[i, j]), 8, hexd)
        out[p] = 10
        p += 1
    return p


def write_raw_dump(reader: TraceReader, clock: Clock, out: BinaryIO) -> int:
    """Stream every record of ``reader`` to ``out``; returns the number of lines."""
    ids, blob, starts = name_blob()
    first = None
    lines = 0
    ns_per_cycle = 1e9 / clock.hz
    for b in reader.batches():
        n = len(b)
        if n == 0:
            continue
        if first is None:
            timed = (b.flags & FLAG_UNTIMED) == 0
            first = np.uint64(b.tsc[timed].min()) if timed.any() else np.uint64(0)
        pos = np.searchsorted(ids, b.event)
        pos_c = np.minimum(pos, len(ids) - 1)
        name_idx = np.where(ids[pos_c] == b.event, pos_c, -1).astype(np.int64)
        buf = np.empty(n * (32 + 64 + 7 * 9 + 4), dtype=np.uint8)
        used = format_raw(
            buf,
            b.tsc,
            b.flags,
            b.cpu,
            b.event,
            b.nwords,
            b.words,
            name_idx,
            blob,
            starts,
            first,
            ns_per_cycle,
            HEX,
        )
        out.write(buf[:used].tobytes())
        lines += n
    return lines
