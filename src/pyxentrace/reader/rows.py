"""Rows as the scan and the merger move them: one 64-byte cache line (8 x uint64) per record.

Moving one cache line per record is much cheaper for the k-way merge than moving seven
column entries; batches are split into columns (:class:`RecordBatch`) only when emitted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .batch import RecordBatch
from .scan import R_META, R_OFFSET, R_TSC, R_WORDS, ROW_SLOTS


def empty_rows(n: int) -> np.ndarray:
    return np.empty((n, ROW_SLOTS), dtype=np.uint64)


@njit(cache=True, nogil=True)
def _split(rows, n, o_off, o_cpu, o_tsc, o_flags, o_event, o_nw, o_words):
    m16 = np.uint64(0xFFFF)
    m8 = np.uint64(0xFF)
    m32 = np.uint64(0xFFFFFFFF)
    for i in range(n):
        meta = rows[i, R_META]
        o_tsc[i] = rows[i, R_TSC]
        o_off[i] = np.int64(rows[i, R_OFFSET])
        o_cpu[i] = np.uint16(meta & m16)
        o_flags[i] = np.uint8((meta >> np.uint64(16)) & m8)
        o_nw[i] = np.uint8((meta >> np.uint64(24)) & m8)
        o_event[i] = np.uint32(meta >> np.uint64(32))
        for j in range(3):
            v = rows[i, R_WORDS + j]
            o_words[i, 2 * j] = np.uint32(v & m32)
            o_words[i, 2 * j + 1] = np.uint32(v >> np.uint64(32))
        o_words[i, 6] = np.uint32(rows[i, R_WORDS + 3] & m32)


def to_batch(rows: np.ndarray, n: int) -> RecordBatch:
    """Columns of the first ``n`` rows."""
    out = RecordBatch.empty(n)
    _split(rows, n, out.offset, out.cpu, out.tsc, out.flags, out.event, out.nwords, out.words)
    return out


@njit(cache=True, nogil=True)
def max_tsc(rows, n):
    m = np.uint64(0)
    for i in range(n):
        if rows[i, R_TSC] > m:
            m = rows[i, R_TSC]
    return m
