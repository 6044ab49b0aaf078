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

from .scan import FLAG_LATE, MAX_CPUS, R_META, R_OFFSET, R_TSC

LINEAR_MAX = 16
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


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


@njit(cache=True, nogil=True)
def merge_emit(nl, held, nn, new, watermark, out):
    """Emit held rows (``held[:nl]``) then new rows (``new[:nn]``), both in file order, into
    ``out`` in time order; keep the rest at the front of ``held`` (capacity >= nl + nn).

    A pCPU stops contributing at its first row above ``watermark`` (the largest uint64 emits
    everything); the rows kept are, per pCPU, a suffix, kept in file order.
    Returns (rows emitted, rows kept).
    """
    n = nl + nn
    # runs of consecutive rows on one pCPU, chained per pCPU
    run_start = np.empty(n + 1, dtype=np.int64)
    run_next = np.empty(n + 1, dtype=np.int64)
    head = np.full(MAX_CPUS, -1, dtype=np.int64)
    tail = np.full(MAX_CPUS, -1, dtype=np.int64)
    nruns = 0
    prev = -1
    for i in range(n):
        if i < nl:
            c = np.int64(held[i, R_META] & np.uint64(0xFFFF))
        else:
            c = np.int64(new[i - nl, R_META] & np.uint64(0xFFFF))
        if c != prev or i == nl:
            run_start[nruns] = i
            run_next[nruns] = -1
            if head[c] == -1:
                head[c] = nruns
            else:
                run_next[tail[c]] = nruns
            tail[c] = nruns
            nruns += 1
            prev = c
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
    live = np.empty(nslots, dtype=np.int64)
    h_tsc = np.empty(nslots, dtype=np.uint64)
    h_cpu = np.empty(nslots, dtype=np.int64)
    nlive = 0
    for s in range(nslots):
        r = cur[s]
        t = held[r, R_TSC] if r < nl else new[r - nl, R_TSC]
        if t <= watermark:
            live[nlive] = s
            h_tsc[nlive] = t
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
            if r < nl:
                for j in range(8):
                    out[k, j] = held[r, j]
            else:
                q = r - nl
                for j in range(8):
                    out[k, j] = new[q, j]
            k += 1
            r += 1
            if r == cend[s]:
                nr = run_next[crun[s]]
                if nr == -1:
                    nlive -= 1
                    live[m] = live[nlive]
                    h_tsc[m] = h_tsc[nlive]
                    h_cpu[m] = h_cpu[nlive]
                    continue
                crun[s] = nr
                r = run_start[nr]
                cend[s] = run_start[nr + 1]
            t = held[r, R_TSC] if r < nl else new[r - nl, R_TSC]
            if t <= watermark:
                cur[s] = r
                h_tsc[m] = t
            else:
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
            if r < nl:
                for j in range(8):
                    out[k, j] = held[r, j]
            else:
                q = r - nl
                for j in range(8):
                    out[k, j] = new[q, j]
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
            t = _U64_MAX
            if r != -1:
                t = held[r, R_TSC] if r < nl else new[r - nl, R_TSC]
            if r != -1 and t <= watermark:
                cur[s] = r
                h_tsc[0] = t
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
        if r < nl:
            if r < stop_of[np.int64(held[r, R_META] & np.uint64(0xFFFF))]:
                continue
            for j in range(8):
                held[m, j] = held[r, j]
        else:
            q = r - nl
            if r < stop_of[np.int64(new[q, R_META] & np.uint64(0xFFFF))]:
                continue
            for j in range(8):
                held[m, j] = new[q, j]
        m += 1
    return k, m


@njit(cache=True, nogil=True)
def mark_late(rows, n, emitted_upto, anom, counters, c_anom, code):
    """Flag rows ``0..n-1`` whose TSC is below what was already emitted; count them."""
    late = 0
    flag = np.uint64(FLAG_LATE) << np.uint64(16)
    for r in range(n):
        t = rows[r, R_TSC]
        if t < emitted_upto:
            rows[r, R_META] |= flag
            late += 1
            a = counters[c_anom]
            if a < anom.shape[0]:
                anom[a, 0] = np.int64(rows[r, R_OFFSET])
                anom[a, 1] = code
                anom[a, 2] = np.int64(rows[r, R_META] & np.uint64(0xFFFF))
                anom[a, 3] = np.int64(emitted_upto - t)
            counters[c_anom] = a + 1
    return late
