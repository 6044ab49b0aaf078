"""Bulk producer: many ``trace()`` calls per Python call, compiled with numba.

The kernel applies exactly the algorithm of :meth:`TraceBuffers.trace` (spec §1.4-1.7) to
arrays of events, on the same shared memory (tests check both leave identical bytes and
counters).  Each event's ``tsc`` stands for every ``get_cycles()`` made during its call.
VIRQ_TBUF notifications raised inside a batch are coalesced into one wake-up at its end (as
Xen's tasklet and pending event-channel bit coalesce them); the per-CPU ``virqs`` counter still
counts every crossing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from pyxentrace.hypervisor import shm as S

if TYPE_CHECKING:
    from pyxentrace.hypervisor.trace import TraceBuffers

log = logging.getLogger(__name__)

_ONE = np.uint64(1)
_LO = np.uint64(0xFFFFFFFF)
_SH = np.uint64(32)


@njit(cache=True, nogil=True)
def _put_tsc(seg: np.ndarray, w: int, t: np.uint64) -> None:
    seg[w] = np.uint32(t & _LO)
    seg[w + 1] = np.uint32(t >> _SH)


@njit(cache=True, nogil=True)
def _wrap(seg, pc, cpu, m, prod, space_left, ds, t):
    extra_space = space_left - 4
    cycles = 0
    if extra_space // 4 > 7:
        cycles = 1
        extra_space -= 8
    phys = prod - ds if prod >= ds else prod
    w = (m + 8 + phys) >> 2
    seg[w] = np.uint32(0x0001F002 | (extra_space >> 2) << 28 | cycles << 31)
    if cycles:
        _put_tsc(seg, w + 1, t)
    pc[S.PC_WRAPS, cpu] += _ONE
    prod += space_left
    if prod >= 2 * ds:
        prod -= 2 * ds
    seg[(m >> 2) + 1] = np.uint32(prod)
    return prod


@njit(cache=True, nogil=True)
def _kernel(g, pc, seg, bo, cpus, events, extra, words, tsc, cur, has_data):
    nvirq = 0
    for i in range(events.shape[0]):
        if g[S.G_TB_INIT_DONE] == 0:
            continue
        cpu = cpus[i]
        ex = extra[i]
        if ex & 3 or ex < 0 or ex > 28:
            pc[S.PC_REJECTED, cpu] += _ONE
            g[S.G_WARNED_BAD_SIZE] = 1
            continue
        pc[S.PC_OFFERED, cpu] += _ONE
        ev = np.int64(events[i])
        mask = np.int64(g[S.G_TB_EVENT_MASK])
        cm = np.int64(g[S.G_CPU_MASK + (cpu >> 5)])
        m = bo[cpu]
        if ((mask & ev) == 0 or ((mask >> 16) & (ev >> 16)) == 0
                or (((mask >> 12) & 0xF) & ((ev >> 12) & 0xF)) == 0
                or ((cm >> (cpu & 31)) & 1) == 0 or m < 0):
            pc[S.PC_FILTERED, cpu] += _ONE
            continue
        ds = np.int64(g[S.G_DATA_SIZE])
        hw = np.int64(g[S.G_HIGHWATER])
        seq = np.uint64(g[S.G_DISABLE_SEQ])
        if pc[S.PC_LOST_SEQ, cpu] != seq:
            pc[S.PC_LOST_SEQ, cpu] = seq
            pc[S.PC_LOST_RECORDS, cpu] = 0
        t = tsc[i]
        wm = m >> 2
        cons = np.int64(seg[wm])
        prod = np.int64(seg[wm + 1])
        if prod & 3 or prod >= 2 * ds or cons & 3 or cons >= 2 * ds:
            g[S.G_TB_INIT_DONE] = 0
            unconsumed = ds
            btw = 0
        else:
            unconsumed = prod - cons
            if unconsumed < 0:
                unconsumed += 2 * ds
            btw = ds - prod
            if btw <= 0:
                btw += ds
        started_below = unconsumed < hw
        cycles = (ev >> 31) & 1
        rec_size = 4 + 8 * cycles + ex
        avail = (ds - unconsumed) & 0xFFFFFFFF
        lost = pc[S.PC_LOST_RECORDS, cpu]
        total = 0
        if lost:
            if 28 > btw:
                total += btw
                btw = ds
            total += 28
            btw -= 28
            if btw == 0:
                btw = ds
        if rec_size > btw:
            total += btw
        total += rec_size
        if total > avail:
            pc[S.PC_LOST_RECORDS, cpu] = lost + _ONE
            if lost == 0:
                pc[S.PC_LOST_FIRST_TSC, cpu] = t
            pc[S.PC_LOST, cpu] += _ONE
            continue
        btw = ds - prod
        if btw <= 0:
            btw += ds
        if lost:
            if 28 > btw:
                prod = _wrap(seg, pc, cpu, m, prod, btw, ds, t)
                btw = ds
            first = pc[S.PC_LOST_FIRST_TSC, cpu]
            pc[S.PC_LOST_RECORDS, cpu] = 0
            phys = prod - ds if prod >= ds else prod
            w = (m + 8 + phys) >> 2
            seg[w] = np.uint32(0xC001F001)
            _put_tsc(seg, w + 1, t)
            seg[w + 3] = np.uint32(lost & _LO)
            seg[w + 4] = np.uint32(cur[i])
            _put_tsc(seg, w + 5, first)
            pc[S.PC_LOST_RECS, cpu] += _ONE
            prod += 28
            if prod >= 2 * ds:
                prod -= 2 * ds
            seg[wm + 1] = np.uint32(prod)
            btw -= 28
            if btw == 0:
                btw = ds
        if rec_size > btw:
            prod = _wrap(seg, pc, cpu, m, prod, btw, ds, t)
        phys = prod - ds if prod >= ds else prod
        w = (m + 8 + phys) >> 2
        seg[w] = np.uint32((ev & 0x0FFFFFFF) | (ex >> 2) << 28 | cycles << 31)
        w += 1
        if cycles:
            _put_tsc(seg, w, t)
            w += 2
        if has_data[i]:
            for k in range(ex >> 2):
                seg[w + k] = words[i, k]
        prod += rec_size
        if prod >= 2 * ds:
            prod -= 2 * ds
        seg[wm + 1] = np.uint32(prod)
        pc[S.PC_WRITTEN, cpu] += _ONE
        if started_below:
            cons = np.int64(seg[wm])
            if prod & 3 or prod >= 2 * ds or cons & 3 or cons >= 2 * ds:
                g[S.G_TB_INIT_DONE] = 0
                unconsumed = ds
            else:
                unconsumed = prod - cons
                if unconsumed < 0:
                    unconsumed += 2 * ds
            if unconsumed >= hw:
                pc[S.PC_VIRQS, cpu] += _ONE
                nvirq += 1
    return nvirq


_EMPTY_SEG = np.zeros(2, dtype=np.uint32)


def trace_bulk(tb: TraceBuffers, cpus: np.ndarray, events: np.ndarray, extra: np.ndarray,
               words: np.ndarray, tsc: np.ndarray, cur: np.ndarray | None = None,
               has_data: np.ndarray | None = None) -> None:
    """Run the bulk kernel over ``tb`` (see :meth:`TraceBuffers.trace_bulk`)."""
    events = np.ascontiguousarray(events, dtype=np.uint32)
    n = events.shape[0]
    cpus = np.ascontiguousarray(np.broadcast_to(cpus, (n,)), dtype=np.int64)
    extra = np.ascontiguousarray(np.broadcast_to(extra, (n,)), dtype=np.int64)
    tsc = np.ascontiguousarray(np.broadcast_to(tsc, (n,)), dtype=np.uint64)
    words = np.ascontiguousarray(words, dtype=np.uint32)
    if words.shape != (n, 7):
        raise ValueError(f"words must be u32[{n}, 7], got {words.shape}")
    if n and (cpus.min() < 0 or cpus.max() >= tb.nr_cpu_ids):
        raise ValueError("cpu number out of range")
    if cur is None:
        table = np.array([d | v << 16 for d, v, _ in (tb.current(c) for c in range(tb.nr_cpu_ids))],
                         dtype=np.uint32)
        cur = table[cpus]
    cur = np.ascontiguousarray(np.broadcast_to(cur, (n,)), dtype=np.uint32)
    if has_data is None:
        has_data = np.ones(n, dtype=np.bool_)
    has_data = np.ascontiguousarray(np.broadcast_to(has_data, (n,)), dtype=np.bool_)
    if not tb.tb_init_done or n == 0:
        return
    tb._map()
    seg = tb._seg_np if tb._seg_np is not None else _EMPTY_SEG
    bo = np.array(tb._bo if tb._bo is not None else [-1] * S.NR_CPUS, dtype=np.int64)
    warned = tb._g[S.G_WARNED_BAD_SIZE]
    nvirq = _kernel(tb._g_np, tb._pc_np, seg, bo, cpus, events, extra, words, tsc, cur,
                    has_data)
    if not warned and tb._g[S.G_WARNED_BAD_SIZE]:
        log.warning("Trace event with bad size in a bulk batch, discarding")
    if nvirq:
        tb._virq_tx.send()
