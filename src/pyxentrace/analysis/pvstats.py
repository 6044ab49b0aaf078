"""PV event statistics per vCPU, counted in one compiled pass over each batch.

For every PV record the kernel decodes what the summary needs straight from the payload words
(hypercall number, trap vector, page-fault error code, guest instruction pointer) and counts it
for the vCPU it is attributed to - under our attribution and, separately, under xenalyze's (which
drops records while no vCPU or the idle vCPU is current). Where each field sits comes from the
one PV decoding table (:func:`.decode.pv_lookup`), per event id *and* payload size
(:func:`summary_table`): a record whose size fits no layout of its id, or whose id the table
does not know, is counted under its minor only, never decoded from missing words. Scheduling
and lost records are marked for the runstate engine. Everything is keyed by vCPU slot
(:class:`SlotTable`).

Top instruction pointers per (vCPU, event type) use one shared open-addressing table: exact while
it has room, then a bounded "space-saving" replacement (an incoming address evicts the least
counted entry of its probe window and inherits that count + 1, an over-estimate recorded in
``EM_REPLACED``), so memory stays fixed on traces with millions of distinct addresses.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ..format import pv_layouts as L
from . import decode as D
from .attribution import (
    S_CUR,
    S_CUR_X,
    S_FIRST_TSC,
    S_LAST_TSC,
    S_ROWS,
    S_SEEN,
    S_SLOT,
    S_SLOT_X,
    first_keys,
    is_step_event,
    step,
)
from .keys import DOMAIN_SHIFT, IDLE_DOMAIN, NONE_KEY

NMINOR = 256
HC_OPS = 64  # ops 0..63 counted exactly, the last column collects larger numbers
HC_KINDS = 3  # 0 hypercall v1, 1 hypercall v2, 2 multicall sub-call
NVEC = 256  # trap vectors 0..255 exactly, last column collects larger numbers
PFEC_COMBOS = 128  # error code bits 0-6

# misc counters per slot
X_MMU_PREEMPTED = 0  # mmu_update records with the "preempted" bit
X_PF_HIGHBITS = 1  # page faults with error-code bits above bit 6 (e.g. SGX)
X_LOST_AT_START = 2  # lost records that began while this vCPU was current
X_LOST_NAMED = 3  # lost records naming this vCPU (current when the loss ended)
X_LOST_COUNT = 4  # records lost, summed over the lost records naming it
X_TRAP_EC = 5  # traps that carried an error code
X_BAD_SIZE = 6  # PV records of a known id whose payload size fits none of its layouts
X_UNKNOWN_ID = 7  # PV records whose id the decoding table does not know
X_PTWR_FLAG = 8  # PTWR records whose 64-bit flag disagrees with the minor (xenalyze stops)
X_NMISC = 10

#: Event types with an instruction pointer, for the top-EIP tables.
EIP_TYPES = (
    "hypercall",
    "trap",
    "page_fault",
    "forced_invalid_op",
    "emulate_privop",
    "emulate_4gb",
    "paging_fixup",
    "gdt_ldt_mapping_fault",
    "ptwr_emulation",
)
# Summary table: one row per (PV id, payload words), built from decode.pv_lookup() (THE PV
# decoding table): where each counted field sits in the payload words, and which condition
# counters the record bumps. A row only names payload words when the id and size match a
# layout, so no word past the payload is read; word index 6 with a zero mask reads nothing.
# Non-matching counters go to a dummy row/column, so the per-record work is one lookup and
# branch-free whatever the mix of events (but for the rare condition counters).
T_ETYPE = 0  # top-EIP type, -1 none
T_EIP_LO = 1
T_EIP_LO_M = 2
T_EIP_HI = 3
T_EIP_HI_M = 4
T_HC_KIND = 5  # 0 v1, 1 v2, 2 sub-call, 3 dummy
T_OP_W = 6
T_OP_M = 7
T_TRAP_W = 8
T_TRAP_M = 9  # 0x7fff for traps
T_PF_W = 10
T_PF_M = 11
T_NCOLS = 12
_M32 = 0xFFFFFFFF
_HC_KIND = {"hypercall": 0, "hypercall_v2": 1, "hypercall_subcall": 2}


def _layout_row(lay) -> np.ndarray:
    r = np.zeros(T_NCOLS, dtype=np.int64)
    r[T_ETYPE] = -1
    r[T_HC_KIND] = 3
    for col in (T_EIP_LO, T_EIP_HI, T_OP_W, T_TRAP_W, T_PF_W):
        r[col] = 6
    if lay is None:
        return r
    fields = {f.name: f for f in lay.fields}
    if lay.kind == "hypercall_v2":
        r[T_HC_KIND] = _HC_KIND[lay.point]
        r[T_OP_W], r[T_OP_M] = 0, (1 << L.HYPERCALL_V2_OP_BITS) - 1
        return r
    if "eip" in fields and lay.point in EIP_TYPES:
        f = fields["eip"]
        r[T_ETYPE] = EIP_TYPES.index(lay.point)
        r[T_EIP_LO], r[T_EIP_LO_M] = f.offset // 4, _M32
        if f.size == 8:
            r[T_EIP_HI], r[T_EIP_HI_M] = f.offset // 4 + 1, _M32
    if lay.point == "hypercall":
        f = fields["eax"]
        r[T_HC_KIND] = 0
        r[T_OP_W], r[T_OP_M] = f.offset // 4, f.mask
    elif lay.point == "trap":
        f = fields["trapnr"]
        assert f.shift == 0 and fields["use_error_code"].shift == TRAP_EC_SHIFT
        r[T_TRAP_W], r[T_TRAP_M] = f.offset // 4, f.mask
    elif lay.point == "page_fault":
        f = fields["error_code"]
        r[T_PF_W], r[T_PF_M] = f.offset // 4, f.mask
    return r


#: what a table row says about its records, for the counts derived after the pass
C_BAD_SIZE, C_UNKNOWN_ID, C_PTWR_FLAG = 1, 2, 4


@cache
def summary_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, table, minor, cond)``: ``table[rows[e & 0xFFFF] + nwords]`` is the row of a PV
    record; ``minor[row]`` its minor, ``cond[row]`` its ``C_*`` conditions.

    A known id gets 8 rows (0..7 payload words): its layout's, or one that reads nothing for a
    size no layout has (``C_BAD_SIZE``); unknown ids get 8 rows per minor that read nothing
    (``C_UNKNOWN_ID``). PTWR ids whose 64-bit flag disagrees with the minor (xenalyze's check,
    spec §2.5) are ``C_PTWR_FLAG``. The kernel counts records per row (:attr:`SlotTable.row_t`);
    per-minor and per-condition counts follow from these arrays (:meth:`SlotTable.finish`).
    """
    look = D.pv_lookup()
    lays, ev_slot, by_nw = look["layouts"], look["ev_slot"], look["by_nw"]
    nslot = by_nw.shape[0]
    nrows = (nslot + NMINOR) * 8
    table = np.zeros((nrows, T_NCOLS), dtype=np.int64)
    minor = np.zeros(nrows, dtype=np.int64)
    cond = np.zeros(nrows, dtype=np.int64)
    ids = {int(s): e for e, s in enumerate(ev_slot.tolist()) if s >= 0}
    for slot in range(nslot):
        m, is64 = ids[slot] & 0xFF, ids[slot] >> 8 & 1
        wrong = (m == D.MINOR_PTWR and not is64) or (m == D.MINOR_PTWR_PAE and is64)
        for nw in range(8):
            j = by_nw[slot, nw]
            r = slot * 8 + nw
            table[r] = _layout_row(lays[j] if j >= 0 else None)
            minor[r] = m
            cond[r] = (C_BAD_SIZE if j < 0 else 0) | (C_PTWR_FLAG if wrong else 0)
    unknown = _layout_row(None)
    for m in range(NMINOR):
        r = (nslot + m) * 8
        table[r : r + 8] = unknown
        minor[r : r + 8] = m
        cond[r : r + 8] = C_UNKNOWN_ID
    low = np.arange(1 << 16)
    rows = np.where(ev_slot >= 0, ev_slot * 8, (nslot + (low & 0xFF)) * 8).astype(np.int32)
    return rows, table, minor, cond


TRAP_EC_SHIFT = 15  # use_error_code bit of the trap word

EIP_PROBE = 4
# eip-table meta
EM_USED = 0
EM_REPLACED = 1
EM_NMETA = 4

# slot-table meta
SM_USED = 0
SM_NMETA = 2

ST_DONE = 0
ST_GROW_SLOTS = 1


@njit(cache=True, inline="always")
def _hash64(x):
    x = np.uint64(x)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


@njit(cache=True, inline="always")
def slot_of(hkeys, hslots, smeta, key, maxslots):
    """Slot of vCPU ``key`` (inserted on first use); -1 when the tables are full."""
    cap = hkeys.shape[0]
    mask = np.uint64(cap - 1)
    h = np.int64(_hash64(key + 3) & mask)
    while True:
        k = hkeys[h]
        if k == key:
            return hslots[h]
        if k == -2:  # empty
            n = smeta[SM_USED]
            if n >= maxslots or 2 * (n + 1) > cap:
                return -1
            hkeys[h] = key
            hslots[h] = n
            smeta[SM_USED] = n + 1
            return n
        h = (h + 1) & (cap - 1)


@njit(cache=True, nogil=True)
def scan_batch(
    cpu,
    tsc,
    flags,
    event,
    nwords,
    words,
    start,
    pst,
    hkeys,
    hslots,
    smeta,
    maxslots,
    row_t,
    hc_t,
    trap_t,
    pf_t,
    misc_t,
    et,
    emeta,
    do_eip,
    t_lo,
    t_hi,
    cpu_mask,
    kind_out,
    ev_row,
    stab,
):
    """Attribute and count rows ``[start, n)``; returns ``(status, next row)``.

    ``row_t[mode, slot, row]``, ``hc_t[mode, slot, kind, op]``, ``trap_t[mode, slot, vec]``
    with mode 0 = ours, 1 = xenalyze's attribution; ``pf_t[slot, combo]`` and ``misc_t[slot, x]``
    for ours; ``et`` the top-EIP table. ``kind_out[i]`` receives the runstate-engine kind of
    each row (-1 = not for the engine). A PV row is counted when ``t_lo <= tsc <= t_hi`` and
    ``cpu_mask[cpu]``. ``ev_row``/``stab`` are :func:`summary_table`'s; records are counted
    per table row (``row_t``), so a record whose id and size match no layout is counted under
    its minor only. (The loop body is flat on purpose:
    helpers taking arrays cost atomic reference counting per call in numba.)
    """
    n = cpu.shape[0]
    ecap = et.shape[0]
    for i in range(start, n):
        c = np.int64(cpu[i])
        ev = np.int64(event[i])
        t = np.int64(tsc[i])
        # -- per-pCPU bookkeeping
        if pst[c, S_SEEN] == 0:
            pst[c, S_SEEN] = 1
            k0, k0x = first_keys(c)
            pst[c, S_CUR] = k0
            pst[c, S_CUR_X] = k0x
            pst[c, S_SLOT] = -2
            pst[c, S_SLOT_X] = -2
        untimed = (flags[i] & 1) != 0
        if not untimed:
            if pst[c, S_FIRST_TSC] == 0:
                pst[c, S_FIRST_TSC] = t
            pst[c, S_LAST_TSC] = t
        pst[c, S_ROWS] += 1
        if (ev >> 16) == 0x020:
            if not (cpu_mask[c] and t >= t_lo and t <= t_hi):
                continue
            s = pst[c, S_SLOT]
            if s == -2:
                s = slot_of(hkeys, hslots, smeta, pst[c, S_CUR], maxslots)
                if s < 0:
                    return ST_GROW_SLOTS, i
                pst[c, S_SLOT] = s
            sx = pst[c, S_SLOT_X]
            if sx == -2:
                keyx = pst[c, S_CUR_X]
                sx = -1
                if keyx != NONE_KEY and (keyx >> DOMAIN_SHIFT) != IDLE_DOMAIN:
                    sx = slot_of(hkeys, hslots, smeta, keyx, maxslots)
                    if sx < 0:
                        return ST_GROW_SLOTS, i
                pst[c, S_SLOT_X] = sx
            # -- count the PV record (table-driven, see summary_table)
            nw = np.int64(nwords[i])
            r = np.int64(ev_row[ev & 0xFFFF]) + nw
            row_t[0, s, r] += 1
            if sx >= 0:
                row_t[1, sx, r] += 1
            kind = stab[r, T_HC_KIND]
            op = np.int64(words[i, stab[r, T_OP_W]]) & stab[r, T_OP_M]
            col = min(op, HC_OPS)
            hc_t[0, s, kind, col] += 1
            if sx >= 0:
                hc_t[1, sx, kind, col] += 1
            tw = np.int64(words[i, stab[r, T_TRAP_W]])
            is_trap = stab[r, T_TRAP_M] != 0
            vec = min(tw & stab[r, T_TRAP_M], NVEC) if is_trap else NVEC + 1
            trap_t[0, s, vec] += 1
            if sx >= 0:
                trap_t[1, sx, vec] += 1
            misc_t[s, X_TRAP_EC] += is_trap and ((tw >> TRAP_EC_SHIFT) & 1) == 1
            ec = np.int64(words[i, stab[r, T_PF_W]]) & stab[r, T_PF_M]
            is_pf = stab[r, T_PF_M] != 0
            pf_t[s, (ec & (PFEC_COMBOS - 1)) if is_pf else PFEC_COMBOS] += 1
            misc_t[s, X_PF_HIGHBITS] += is_pf and ec >= PFEC_COMBOS
            if op == 1 and (kind == 1 or kind == 2):
                w0 = np.int64(words[i, 0])
                if ((w0 >> 22) & 3) != 0:
                    # mmu_update: arg 1 (count) follows arg 0's words; bit 31 = preempted
                    off = 1 + ((w0 >> 20) & 3)
                    if off < nw and off < 7 and (np.int64(words[i, off]) & 0x80000000):
                        misc_t[s, X_MMU_PREEMPTED] += 1
            etype = stab[r, T_ETYPE]
            if do_eip and etype >= 0:
                lo = np.uint64(words[i, stab[r, T_EIP_LO]]) & np.uint64(stab[r, T_EIP_LO_M])
                hi = np.uint64(words[i, stab[r, T_EIP_HI]]) & np.uint64(stab[r, T_EIP_HI_M])
                eip = lo | (hi << np.uint64(32))
                # one shared bounded table: exact while there is room, then space-saving
                st_ = s * 16 + etype
                key = np.int64(eip)
                h = np.int64(
                    _hash64(eip ^ (np.uint64(st_) * np.uint64(0x9E3779B97F4A7C15)))
                    & np.uint64(ecap - 1)
                )
                victim = h
                vcount = np.int64(0x7FFFFFFFFFFFFFFF)
                done = False
                for _ in range(EIP_PROBE):
                    es = et[h, 1]
                    if es == st_ and et[h, 0] == key:
                        et[h, 2] += 1
                        done = True
                        break
                    if es < 0:
                        et[h, 0] = key
                        et[h, 1] = st_
                        et[h, 2] = 1
                        emeta[EM_USED] += 1
                        done = True
                        break
                    if et[h, 2] < vcount:
                        vcount = et[h, 2]
                        victim = h
                    h = (h + 1) & (ecap - 1)
                if not done:
                    et[victim, 0] = key
                    et[victim, 1] = st_
                    et[victim, 2] = vcount + 1
                    emeta[EM_REPLACED] += 1
        elif is_step_event(ev):
            nw = np.int64(nwords[i])
            w0 = np.int64(words[i, 0])
            w1 = np.int64(words[i, 1])
            if ev == 0x0001F001 and nw >= 2:
                s = slot_of(hkeys, hslots, smeta, pst[c, S_CUR], maxslots)
                named = ((w1 & 0xFFFF) << DOMAIN_SHIFT) | ((w1 >> 16) & 0xFFFF)
                s2 = slot_of(hkeys, hslots, smeta, named, maxslots)
                if s < 0 or s2 < 0:
                    return ST_GROW_SLOTS, i
                misc_t[s, X_LOST_AT_START] += 1
                misc_t[s2, X_LOST_NAMED] += 1
                misc_t[s2, X_LOST_COUNT] += w0
            cur, curx, kk = step(
                pst[c, S_CUR],
                pst[c, S_CUR_X],
                ev,
                nw,
                w0,
                w1,
                np.int64(words[i, 2]),
                np.int64(words[i, 3]),
                t,
                untimed,
            )
            if cur != pst[c, S_CUR]:
                pst[c, S_CUR] = cur
                pst[c, S_SLOT] = -2
            if curx != pst[c, S_CUR_X]:
                pst[c, S_CUR_X] = curx
                pst[c, S_SLOT_X] = -2
            kind_out[i] = kk
    return ST_DONE, n


class SlotTable:
    """vCPU key -> dense slot, plus the per-slot count tables."""

    def __init__(self, maxslots: int = 256, eip_capacity: int = 1 << 14):
        self.maxslots = maxslots
        cap = 1
        while cap < 4 * maxslots:
            cap *= 2
        self.hkeys = np.full(cap, -2, dtype=np.int64)
        self.hslots = np.zeros(cap, dtype=np.int64)
        self.smeta = np.zeros(SM_NMETA, dtype=np.int64)
        self.nrows = summary_table()[1].shape[0]
        # records per summary-table row; per-minor counts (minor_t) come from it in finish()
        self.row_t = np.zeros((2, maxslots, self.nrows), dtype=np.int64)
        self.minor_t = np.zeros((2, maxslots, NMINOR), dtype=np.int64)
        # one extra kind row / column each: the branch-free kernel's dummy counters
        self.hc_t = np.zeros((2, maxslots, HC_KINDS + 1, HC_OPS + 1), dtype=np.int64)
        self.trap_t = np.zeros((2, maxslots, NVEC + 2), dtype=np.int64)
        self.pf_t = np.zeros((maxslots, PFEC_COMBOS + 1), dtype=np.int64)
        self.misc_t = np.zeros((maxslots, X_NMISC), dtype=np.int64)
        self.et = np.zeros((max(eip_capacity, EIP_PROBE), 3), dtype=np.int64)
        self.et[:, 1] = -1
        self.emeta = np.zeros(EM_NMETA, dtype=np.int64)

    def grow(self) -> None:
        """Double the slot capacity (keeping every count)."""
        old = self.__dict__.copy()
        n = int(self.smeta[SM_USED])
        keys = self.keys()
        self.__init__(self.maxslots * 2, eip_capacity=old["et"].shape[0])
        # re-insert keys in slot order so slots keep their numbers
        for k in keys:
            slot_of(self.hkeys, self.hslots, self.smeta, np.int64(k), self.maxslots)
        assert int(self.smeta[SM_USED]) == n
        m = old["maxslots"]
        self.row_t[:, :m] = old["row_t"]
        self.hc_t[:, :m] = old["hc_t"]
        self.trap_t[:, :m] = old["trap_t"]
        self.pf_t[:m] = old["pf_t"]
        self.misc_t[:m] = old["misc_t"]
        self.et, self.emeta = old["et"], old["emeta"]

    def finish(self) -> None:
        """Per-minor counts (``minor_t``) and condition counts (``misc_t``) from ``row_t``."""
        _, _, row_minor, row_cond = summary_table()
        n = int(self.smeta[SM_USED])
        rt = self.row_t[:, :n]
        self.minor_t[:] = 0
        for r in np.nonzero(rt.any(axis=(0, 1)))[0]:
            self.minor_t[:, :n, row_minor[r]] += rt[:, :, r]
        for bit, col in (
            (C_BAD_SIZE, X_BAD_SIZE),
            (C_UNKNOWN_ID, X_UNKNOWN_ID),
            (C_PTWR_FLAG, X_PTWR_FLAG),
        ):
            self.misc_t[:n, col] = rt[0][:, (row_cond & bit) != 0].sum(axis=1)

    def keys(self) -> list[int]:
        """vCPU keys in slot order."""
        used = self.hkeys != -2
        order = np.argsort(self.hslots[used], kind="stable")
        return [int(k) for k in self.hkeys[used][order]]

    def slot(self, key: int) -> int:
        """Slot of ``key`` or -1."""
        used = np.nonzero(self.hkeys == key)[0]
        return int(self.hslots[used[0]]) if used.shape[0] else -1

    def top_eips(self, slot: int, n: int = 10) -> dict[str, list[tuple[int, int]]]:
        """``{event type: [(eip, count)]}`` with the ``n`` most frequent addresses."""
        out: dict[str, list[tuple[int, int]]] = {}
        if slot < 0:
            return out
        est = self.et[:, 1]
        sel = (est >= slot * 16) & (est < slot * 16 + 16)
        if not sel.any():
            return out
        st = est[sel] - slot * 16
        eips = self.et[sel, 0].view(np.uint64)
        cnt = self.et[sel, 2]
        for t in np.unique(st):
            m = st == t
            order = np.lexsort((eips[m], -cnt[m]))[:n]
            out[EIP_TYPES[int(t)]] = [(int(eips[m][j]), int(cnt[m][j])) for j in order]
        return out

    @property
    def eip_approximate(self) -> bool:
        return bool(self.emeta[EM_REPLACED])
