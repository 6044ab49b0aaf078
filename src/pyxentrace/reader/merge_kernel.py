"""Compiled k-way merge of per-pCPU record runs into time order, up to a watermark.

Pending rows are kept in file order; each pCPU's rows, in file order, are one time-ordered
stream (a pCPU's windows follow each other). The merge repeatedly takes the stream head with
the smallest (TSC, file offset) while it is at or below the watermark, so the output is in
time order and every pCPU's own order is preserved.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .scan import MAX_CPUS


@njit(cache=True)
def _sift_down(h_tsc, h_off, h_slot, size, i):
    while True:
        l = 2 * i + 1
        if l >= size:
            return
        m = l
        r = l + 1
        if r < size and (h_tsc[r] < h_tsc[l] or (h_tsc[r] == h_tsc[l] and h_off[r] < h_off[l])):
            m = r
        if h_tsc[m] < h_tsc[i] or (h_tsc[m] == h_tsc[i] and h_off[m] < h_off[i]):
            h_tsc[i], h_tsc[m] = h_tsc[m], h_tsc[i]
            h_off[i], h_off[m] = h_off[m], h_off[i]
            h_slot[i], h_slot[m] = h_slot[m], h_slot[i]
            i = m
        else:
            return


@njit(cache=True)
def merge_order(cpu, tsc, off, n, watermark, emit_all):
    """Return (take, ntake): row indices to emit, in time order.

    Rows ``0..n-1`` are in file order. Rows of one pCPU are taken in their file order; a pCPU
    stops contributing at its first row above ``watermark`` (unless ``emit_all``).
    """
    # per-cpu chain of rows in file order
    nxt = np.empty(n, dtype=np.int64)
    head = np.full(MAX_CPUS, -1, dtype=np.int64)
    tail = np.full(MAX_CPUS, -1, dtype=np.int64)
    slots = np.empty(MAX_CPUS, dtype=np.int64)
    nslots = 0
    for i in range(n):
        c = cpu[i]
        nxt[i] = -1
        if head[c] == -1:
            head[c] = i
            slots[nslots] = c
            nslots += 1
        else:
            nxt[tail[c]] = i
        tail[c] = i
    h_tsc = np.empty(nslots, dtype=np.uint64)
    h_off = np.empty(nslots, dtype=np.int64)
    h_slot = np.empty(nslots, dtype=np.int64)
    size = 0
    for s in range(nslots):
        c = slots[s]
        r = head[c]
        if emit_all or tsc[r] <= watermark:
            h_tsc[size] = tsc[r]
            h_off[size] = off[r]
            h_slot[size] = r
            size += 1
    for i in range(size // 2 - 1, -1, -1):
        _sift_down(h_tsc, h_off, h_slot, size, i)
    take = np.empty(n, dtype=np.int64)
    nt = 0
    while size > 0:
        r = h_slot[0]
        take[nt] = r
        nt += 1
        q = nxt[r]
        if q != -1 and (emit_all or tsc[q] <= watermark):
            h_tsc[0] = tsc[q]
            h_off[0] = off[q]
            h_slot[0] = q
        else:
            size -= 1
            h_tsc[0] = h_tsc[size]
            h_off[0] = h_off[size]
            h_slot[0] = h_slot[size]
        _sift_down(h_tsc, h_off, h_slot, size, 0)
    return take, nt


@njit(cache=True)
def gather_rows(take, nt, s_off, s_cpu, s_tsc, s_flags, s_event, s_nw, s_words,
                o_off, o_cpu, o_tsc, o_flags, o_event, o_nw, o_words):
    """Copy rows ``take[:nt]`` of the source columns into the output columns."""
    for k in range(nt):
        r = take[k]
        o_off[k] = s_off[r]
        o_cpu[k] = s_cpu[r]
        o_tsc[k] = s_tsc[r]
        o_flags[k] = s_flags[r]
        o_event[k] = s_event[r]
        o_nw[k] = s_nw[r]
        for j in range(7):
            o_words[k, j] = s_words[r, j]


@njit(cache=True)
def compact_rest(take, nt, n, s_off, s_cpu, s_tsc, s_flags, s_event, s_nw, s_words):
    """Move the rows not taken to the front, in file order; return how many remain."""
    taken = np.zeros(n, dtype=np.uint8)
    for k in range(nt):
        taken[take[k]] = 1
    m = 0
    for r in range(n):
        if taken[r]:
            continue
        if m != r:
            s_off[m] = s_off[r]
            s_cpu[m] = s_cpu[r]
            s_tsc[m] = s_tsc[r]
            s_flags[m] = s_flags[r]
            s_event[m] = s_event[r]
            s_nw[m] = s_nw[r]
            for j in range(7):
                s_words[m, j] = s_words[r, j]
        m += 1
    return m


@njit(cache=True)
def mark_late(s_tsc, s_flags, s_cpu, s_off, start, n, emitted_upto, have_emitted, late_flag,
              anom, counters, c_anom, code):
    """Flag rows ``start..n-1`` whose TSC is below what was already emitted; count them."""
    late = 0
    if not have_emitted:
        return 0
    for r in range(start, n):
        if s_tsc[r] < emitted_upto:
            s_flags[r] |= late_flag
            late += 1
            a = counters[c_anom]
            if a < anom.shape[0]:
                anom[a, 0] = s_off[r]
                anom[a, 1] = code
                anom[a, 2] = s_cpu[r]
                anom[a, 3] = np.int64(emitted_upto - s_tsc[r])
            counters[c_anom] = a + 1
    return late
