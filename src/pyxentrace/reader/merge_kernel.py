"""Compiled k-way merge of per-pCPU record runs into time order, up to a watermark.

Pending rows are kept in file order; each pCPU's rows, in file order, are one time-ordered
stream (its windows follow each other). The merge repeatedly takes the stream head with the
smallest (TSC, pCPU) while it is at or below the watermark, so the output is in time order,
ties go to the lower pCPU, and every pCPU's own order is preserved. For up to 16 pCPUs in a
batch the smallest head is found by a branch-free linear scan (fastest for few streams);
beyond that by a binary heap.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .scan import MAX_CPUS

LINEAR_MAX = 16


@njit(cache=True, inline="always")
def _less(t1, c1, t2, c2):
    return (t1 < t2) | ((t1 == t2) & (c1 < c2))


@njit(cache=True)
def _sift_down(h_tsc, h_cpu, h_slot, size, i):
    while True:
        l = 2 * i + 1
        if l >= size:
            return
        m = l
        r = l + 1
        if r < size and _less(h_tsc[r], h_cpu[r], h_tsc[l], h_cpu[l]):
            m = r
        if _less(h_tsc[m], h_cpu[m], h_tsc[i], h_cpu[i]):
            h_tsc[i], h_tsc[m] = h_tsc[m], h_tsc[i]
            h_cpu[i], h_cpu[m] = h_cpu[m], h_cpu[i]
            h_slot[i], h_slot[m] = h_slot[m], h_slot[i]
            i = m
        else:
            return


@njit(cache=True, inline="always")
def _copy_row(
    k,
    r,
    s_off,
    s_cpu,
    s_tsc,
    s_flags,
    s_event,
    s_nw,
    s_words,
    o_off,
    o_cpu,
    o_tsc,
    o_flags,
    o_event,
    o_nw,
    o_words,
):
    o_off[k] = s_off[r]
    o_cpu[k] = s_cpu[r]
    o_tsc[k] = s_tsc[r]
    o_flags[k] = s_flags[r]
    o_event[k] = s_event[r]
    o_nw[k] = s_nw[r]
    for j in range(7):
        o_words[k, j] = s_words[r, j]


@njit(cache=True, nogil=True)
def merge_emit(
    n,
    watermark,
    s_off,
    s_cpu,
    s_tsc,
    s_flags,
    s_event,
    s_nw,
    s_words,
    o_off,
    o_cpu,
    o_tsc,
    o_flags,
    o_event,
    o_nw,
    o_words,
):
    """Emit rows ``0..n-1`` (file order) into the output columns in time order; compact.

    A pCPU stops contributing at its first row above ``watermark`` (the largest uint64 emits
    everything).
    Rows not emitted (per pCPU a suffix) are moved to the front of the source columns, in
    file order. Returns (rows emitted, rows kept).
    """
    # runs of consecutive rows on one pCPU, chained per pCPU
    run_start = np.empty(n + 1, dtype=np.int64)
    run_next = np.empty(n + 1, dtype=np.int64)
    head = np.full(MAX_CPUS, -1, dtype=np.int64)
    tail = np.full(MAX_CPUS, -1, dtype=np.int64)
    nruns = 0
    for i in range(n):
        if i == 0 or s_cpu[i] != s_cpu[i - 1]:
            c = s_cpu[i]
            run_start[nruns] = i
            run_next[nruns] = -1
            if head[c] == -1:
                head[c] = nruns
            else:
                run_next[tail[c]] = nruns
            tail[c] = nruns
            nruns += 1
    run_start[nruns] = n
    nslots = 0
    for c in range(MAX_CPUS):
        if head[c] != -1:
            nslots += 1
    slot_cpu = np.empty(nslots, dtype=np.int64)
    cur = np.empty(nslots, dtype=np.int64)
    cend = np.empty(nslots, dtype=np.int64)
    crun = np.empty(nslots, dtype=np.int64)
    stop = np.full(nslots, n, dtype=np.int64)  # first row of the slot not emitted
    s = 0
    for c in range(MAX_CPUS):
        if head[c] != -1:
            slot_cpu[s] = c
            crun[s] = head[c]
            cur[s] = run_start[head[c]]
            cend[s] = run_start[head[c] + 1]
            s += 1
    # live slots: head row at or below the watermark
    live = np.empty(nslots, dtype=np.int64)
    h_tsc = np.empty(nslots, dtype=np.uint64)
    h_cpu = np.empty(nslots, dtype=np.int64)
    nlive = 0
    for s in range(nslots):
        r = cur[s]
        if s_tsc[r] <= watermark:
            live[nlive] = s
            h_tsc[nlive] = s_tsc[r]
            h_cpu[nlive] = slot_cpu[s]
            nlive += 1
        else:
            stop[s] = r
    k = 0
    if nslots <= LINEAR_MAX:
        while nlive > 0:
            m = 0
            mt = h_tsc[0]
            mc = h_cpu[0]
            for i in range(1, nlive):
                t = h_tsc[i]
                c = h_cpu[i]
                b = (t < mt) | ((t == mt) & (c < mc))
                m = i if b else m
                mt = t if b else mt
                mc = c if b else mc
            s = live[m]
            r = cur[s]
            o_off[k] = s_off[r]
            o_cpu[k] = s_cpu[r]
            o_tsc[k] = s_tsc[r]
            o_flags[k] = s_flags[r]
            o_event[k] = s_event[r]
            o_nw[k] = s_nw[r]
            for j in range(7):
                o_words[k, j] = s_words[r, j]
            k += 1
            r += 1
            if r == cend[s]:
                nr = run_next[crun[s]]
                if nr == -1:
                    r = -1
                else:
                    crun[s] = nr
                    r = run_start[nr]
                    cend[s] = run_start[nr + 1]
            if r != -1 and s_tsc[r] <= watermark:
                cur[s] = r
                h_tsc[m] = s_tsc[r]
            else:
                if r != -1:
                    stop[s] = r
                nlive -= 1
                live[m] = live[nlive]
                h_tsc[m] = h_tsc[nlive]
                h_cpu[m] = h_cpu[nlive]
    else:
        for i in range(nlive // 2 - 1, -1, -1):
            _sift_down(h_tsc, h_cpu, live, nlive, i)
        while nlive > 0:
            s = live[0]
            r = cur[s]
            o_off[k] = s_off[r]
            o_cpu[k] = s_cpu[r]
            o_tsc[k] = s_tsc[r]
            o_flags[k] = s_flags[r]
            o_event[k] = s_event[r]
            o_nw[k] = s_nw[r]
            for j in range(7):
                o_words[k, j] = s_words[r, j]
            k += 1
            r += 1
            if r == cend[s]:
                nr = run_next[crun[s]]
                if nr == -1:
                    r = -1
                else:
                    crun[s] = nr
                    r = run_start[nr]
                    cend[s] = run_start[nr + 1]
            if r != -1 and s_tsc[r] <= watermark:
                cur[s] = r
                h_tsc[0] = s_tsc[r]
            else:
                if r != -1:
                    stop[s] = r
                nlive -= 1
                h_tsc[0] = h_tsc[nlive]
                h_cpu[0] = h_cpu[nlive]
                live[0] = live[nlive]
            _sift_down(h_tsc, h_cpu, live, nlive, 0)
    # compact: rows at or after each pCPU's stop row are kept, in file order
    first = n
    stop_of = np.full(MAX_CPUS, n, dtype=np.int64)
    for s in range(nslots):
        stop_of[slot_cpu[s]] = stop[s]
        if stop[s] < first:
            first = stop[s]
    m = 0
    for r in range(first, n):
        if r < stop_of[s_cpu[r]]:
            continue
        _copy_row(
            m,
            r,
            s_off,
            s_cpu,
            s_tsc,
            s_flags,
            s_event,
            s_nw,
            s_words,
            s_off,
            s_cpu,
            s_tsc,
            s_flags,
            s_event,
            s_nw,
            s_words,
        )
        m += 1
    return k, m


@njit(cache=True, nogil=True)
def mark_late(
    s_tsc, s_flags, s_cpu, s_off, start, n, emitted_upto, late_flag, anom, counters, c_anom, code
):
    """Flag rows ``start..n-1`` whose TSC is below what was already emitted; count them."""
    late = 0
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
