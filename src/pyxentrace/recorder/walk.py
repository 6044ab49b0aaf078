"""Counting the records in raw trace-buffer bytes, for the sidecar's accounting.

The recorder copies windows without looking inside them; only the bytes it does *not* copy
during the recording - a backlog already in the buffers at startup, what ``-D`` discards, what
is still buffered at exit, windows the ``-M`` ring drops - and the backlog it does copy are
walked record by record (spec §1.1: header word, optional TSC, ``extra_u32`` payload words;
records never straddle the wrap point, so each chunk walks on its own).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pyxentrace.format.events import TRC_LOST_RECORDS, TRC_TRACE_WRAP_BUFFER

Chunk = bytes | bytearray | memoryview
#: Chunks up to this size are walked in Python (a default 32-page buffer: ~8k records in a
#: few ms); larger ones by a compiled loop (importing numba costs ~0.5 s, so only then).
PYTHON_WALK_MAX = 1 << 20


@dataclass
class Tally:
    """Records in some buffer bytes: data records (no WRAP/LOST), the sum of the
    LOST_RECORDS counts, LOST_RECORDS and WRAP records, and bytes."""

    records: int = 0
    lost: int = 0
    lost_records: int = 0
    wraps: int = 0
    bytes: int = 0

    def __iadd__(self, other: Tally) -> Tally:
        self.records += other.records
        self.lost += other.lost
        self.lost_records += other.lost_records
        self.wraps += other.wraps
        self.bytes += other.bytes
        return self


def _kernel():  # compiled on first use: most recordings never walk anything
    from numba import njit

    @njit(cache=True, nogil=True)
    def count(words: np.ndarray, wrap: int, lost_ev: int) -> tuple[int, int, int, int, int]:
        n = words.shape[0]
        i = 0
        recs = lost = lost_recs = wraps = 0
        while i < n:
            hdr = np.int64(words[i])
            timed = (hdr >> 31) & 1
            size = 1 + 2 * timed + ((hdr >> 28) & 7)
            if i + size > n:
                break
            ev = hdr & 0x0FFFFFFF
            if ev == wrap:
                wraps += 1
            elif ev == lost_ev:
                lost_recs += 1
                if size > 1 + 2 * timed:
                    lost += np.int64(words[i + 1 + 2 * timed])
            else:
                recs += 1
            i += size
        return recs, lost, lost_recs, wraps, i

    return count


_COUNT = None


def _count_python(words: memoryview) -> tuple[int, int, int, int, int]:
    n = len(words)
    i = recs = lost = lost_recs = wraps = 0
    while i < n:
        hdr = words[i]
        timed = hdr >> 31
        size = 1 + 2 * timed + ((hdr >> 28) & 7)
        if i + size > n:
            break
        ev = hdr & 0x0FFFFFFF
        if ev == TRC_TRACE_WRAP_BUFFER:
            wraps += 1
        elif ev == TRC_LOST_RECORDS:
            lost_recs += 1
            if size > 1 + 2 * timed:
                lost += words[i + 1 + 2 * timed]
        else:
            recs += 1
        i += size
    return recs, lost, lost_recs, wraps, i


def tally(chunks: Iterable[Chunk], python_max: int = PYTHON_WALK_MAX) -> Tally:
    """Count the records of whole-record chunks (a window's one or two pieces)."""
    global _COUNT
    out = Tally()
    for c in chunks:
        size = len(c) // 4 * 4
        if not size:
            continue
        if size <= python_max:
            with memoryview(c) as mv, mv.cast("B")[:size] as b, b.cast("I") as words:
                recs, lost, lost_recs, wraps, used = _count_python(words)
        else:
            if _COUNT is None:
                _COUNT = _kernel()
            words_np = np.frombuffer(c, dtype=np.uint32, count=size // 4)
            recs, lost, lost_recs, wraps, used = _COUNT(
                words_np, TRC_TRACE_WRAP_BUFFER, TRC_LOST_RECORDS
            )
        out += Tally(int(recs), int(lost), int(lost_recs), int(wraps), 4 * int(used))
    return out
