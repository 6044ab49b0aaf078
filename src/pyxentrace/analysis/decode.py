"""Decoding of record payloads into named columns, one compiled pass per batch.

PV records of both id generations and both widths are decoded with the layout table of
:mod:`pyxentrace.format.pv_layouts`: it is compiled once into flat field arrays (event id and
payload size -> fields: byte offset, size, bit shift and width), which the kernel applies per
row. Hypercall v2 and multicall sub-call records get their argument-presence bits and arguments
(32- and 64-bit, gathered as xenalyze does), the named sub-command and element count of the
hypercalls Xen records arguments for. Scheduler records get their domain / vCPU / state fields,
lost records their count, vCPU and first TSC.

Every column has one value per row; the ``*_valid`` masks (or a -1 sentinel for ``minor``,
``vector``, ``op``, ``subcmd``, ``count`` ...) say which rows carry it.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ..format import pv_layouts as L
from ..format import xen_names as xn
from ..format.events import TRC_PV_ENTRY, TRC_PV_SEED_BASE

#: hypercalls whose argument 0 is a sub-command with a name table
SUBCMD_OPS = {
    xn.HYPERCALL_MEMORY_OP: xn.MEMORY_OP_NAMES,
    xn.HYPERCALL_GRANT_TABLE_OP: xn.GRANT_TABLE_OP_NAMES,
    xn.HYPERCALL_VCPU_OP: xn.VCPU_OP_NAMES,
    xn.HYPERCALL_SCHED_OP: xn.SCHED_OP_NAMES,
}

# ---- value columns (uint64 matrix) and their validity bits --------------------------------------
C_EIP, C_ADDR, C_LDT, C_ERROR_CODE, C_PTE, C_OP, C_VECTOR, C_USE_EC = range(8)
C_ARG0 = 8  # .. C_ARG0 + 5
C_LOST_FIRST = 14
NVAL = 15
#: layout field name -> value column
FIELD_COL = {
    "eip": C_EIP,
    "addr": C_ADDR,
    "offset": C_LDT,
    "error_code": C_ERROR_CODE,
    "pte": C_PTE,
    "eax": C_OP,
    "trapnr": C_VECTOR,
    "use_error_code": C_USE_EC,
}
# post-processing of a layout's point
P_OTHER, P_TRAP, P_PF, P_PTWR, P_V2 = range(5)
_POINT = {"trap": P_TRAP, "page_fault": P_PF, "ptwr_emulation": P_PTWR}


@cache
def layouts_by_event() -> dict[int, dict[int, L.Layout]]:
    """Layouts by event id and payload size; ids the table lacks borrow the other generation's.

    (Xen never emitted ``0x00201007`` emulate-4GB or ``0x0020100b`` 32-bit PTWR with today's
    numbering, but xenalyze decodes any PV id by its minor and hand-built traces use them; a
    PAE PTWR with the 64-bit flag is decoded as PAE, as xenalyze does at ``--tolerance`` >= 4.)
    """
    table = {ev: dict(by) for ev, by in L.DECODE_INDEX.items()}
    for minor in range(1, 13):
        for flag in (0, 0x100):
            seed = TRC_PV_SEED_BASE + minor + flag
            new = TRC_PV_ENTRY + minor + flag
            if seed in table and new not in table:
                table[new] = table[seed]
            elif new in table and seed not in table:
                table[seed] = table[new]
    for base in (TRC_PV_SEED_BASE, TRC_PV_ENTRY):
        pae = table.get(base + 12)
        if pae is not None:
            table.setdefault(base + 12 + 0x100, pae)
    return table


@cache
def _compiled_layouts() -> tuple[np.ndarray, ...]:
    """Flat arrays of the layout table for the kernel.

    ``ev_keys`` sorted event ids with ``ev_first``/``ev_last`` ranges into the per-size entries
    ``sz_words`` (payload words, -1 = variable) / ``sz_layout``; layout ``j`` has fields
    ``[lay_f0[j], lay_f0[j+1])`` of ``f_col``, ``f_off`` (bytes), ``f_size``, ``f_shift``,
    ``f_bits`` and point ``lay_point[j]``.
    """
    table = layouts_by_event()
    lays: list[L.Layout] = []
    lay_index: dict[int, int] = {}
    ev_keys, ev_first, ev_last, sz_words, sz_layout = [], [], [], [], []
    for ev_id in sorted(table):
        ev_keys.append(ev_id)
        ev_first.append(len(sz_words))
        for size, lay in sorted(table[ev_id].items()):
            if id(lay) not in lay_index:
                lay_index[id(lay)] = len(lays)
                lays.append(lay)
            sz_words.append(-1 if size < 0 else size // 4)
            sz_layout.append(lay_index[id(lay)])
        ev_last.append(len(sz_words))
    f0 = [0]
    f_col, f_off, f_size, f_shift, f_bits, point = [], [], [], [], [], []
    for lay in lays:
        point.append(P_V2 if lay.kind == "hypercall_v2" else _POINT.get(lay.point, P_OTHER))
        if lay.kind == "struct":
            for f in lay.fields:
                f_col.append(FIELD_COL[f.name])
                f_off.append(f.offset)
                f_size.append(f.size)
                f_shift.append(f.shift)
                f_bits.append(f.bits or 8 * f.size)
        f0.append(len(f_col))
    # the PAE layout (32-bit guests on PAE/x86_64 Xen): 8-byte pte, 4-byte addr and eip
    pae = [
        int(lay.kind == "struct" and lay.point == "ptwr_emulation" and lay.size == 16)
        for lay in lays
    ]
    a = np.asarray
    return (
        a(ev_keys, np.int64),
        a(ev_first, np.int64),
        a(ev_last, np.int64),
        a(sz_words, np.int64),
        a(sz_layout, np.int64),
        a(f0, np.int64),
        a(f_col, np.int64),
        a(f_off, np.int64),
        a(f_size, np.int64),
        a(f_shift, np.int64),
        a(f_bits, np.int64),
        a(point, np.int64),
        a(pae, np.int64),
    )


@njit(cache=True, nogil=True)
def _decode_kernel(
    event,
    nwords,
    words,
    vals,
    valid,
    i8,
    i32,
    ev_keys,
    ev_first,
    ev_last,
    sz_words,
    sz_layout,
    f0,
    f_col,
    f_off,
    f_size,
    f_shift,
    f_bits,
    point,
    pae,
):
    """Fill ``vals[n, NVAL]`` / ``valid[n, NVAL]`` and the small-int columns.

    ``i8[n, 8]``: minor, pv64, size_ok, old_state, new_state, preempted, pte_pae, pf bits;
    ``i32[n, 8]``: sched_dom, sched_vcpu, next_dom, next_vcpu, subcmd, count, target_vcpu,
    arg_presence (all -1 when absent; counts are < 2**32).
    """
    n = event.shape[0]
    nk = ev_keys.shape[0]
    for i in range(n):
        e = np.int64(event[i])
        nw = np.int64(nwords[i])
        main = e >> 16
        if main == 0x020:
            i8[i, 0] = e & 0xFF
            i8[i, 1] = (e >> 8) & 1
            # layout of this id: exact payload size, else the largest (flagged)
            lo = 0
            hi = nk
            while lo < hi:
                mid = (lo + hi) >> 1
                if ev_keys[mid] < e:
                    lo = mid + 1
                else:
                    hi = mid
            if lo >= nk or ev_keys[lo] != e:
                continue
            j = -1
            var = False
            for k in range(ev_first[lo], ev_last[lo]):
                if sz_words[k] == -1:
                    j = sz_layout[k]
                    var = True
                elif sz_words[k] == nw:
                    j = sz_layout[k]
            if j < 0:
                j = sz_layout[ev_last[lo] - 1]
                i8[i, 2] = 0
            pt = point[j]
            if var:
                _decode_v2_row(i, nw, words, vals, valid, i8, i32)
                continue
            for f in range(f0[j], f0[j + 1]):
                lane = f_off[f] // 4
                raw = np.uint64(words[i, lane]) if lane < 7 else np.uint64(0)
                if f_size[f] == 8 and lane + 1 < 7:
                    raw |= np.uint64(words[i, lane + 1]) << np.uint64(32)
                bits = f_bits[f]
                mask = (
                    np.uint64(0xFFFFFFFFFFFFFFFF)
                    if bits >= 64
                    else ((np.uint64(1) << np.uint64(bits)) - np.uint64(1))
                )
                col = f_col[f]
                vals[i, col] = (raw >> np.uint64(f_shift[f])) & mask
                valid[i, col] = True
            if pt == P_TRAP:
                valid[i, C_ERROR_CODE] = vals[i, C_USE_EC] != 0
            elif pt == P_PF:
                i8[i, 7] = np.int64(vals[i, C_ERROR_CODE] & np.uint64(0x1F))
            elif pt == P_PTWR:
                i8[i, 6] = pae[j]
        elif main == 0x002:
            sub = (e >> 12) & 0xF
            minor = e & 0xFFF
            if sub == 1 and nw >= 1 and ((e & 0xF) == 1 or (e & 0xF) == 2):
                w0 = np.int64(words[i, 0])
                i32[i, 0] = w0 >> 16
                i32[i, 1] = w0 & 0xFFFF
                if (e & 0xF) == 1:
                    i8[i, 3] = (e >> 8) & 0xF
                    i8[i, 4] = (e >> 4) & 0xF
                else:
                    i8[i, 3] = 0
                    i8[i, 4] = 0
            elif sub == 8 or sub == 0xF:
                pair = minor in (3, 4, 5, 6, 7, 10, 16) or (sub == 8 and minor in (14, 15, 17))
                if pair and nw >= 2:
                    i32[i, 0] = words[i, 0]
                    i32[i, 1] = words[i, 1]
                elif nw >= 1 and (minor in (1, 2, 9) or (sub == 0xF and minor in (14, 15))):
                    i32[i, 0] = words[i, 0]
                if minor == 10 and nw >= 4:
                    i32[i, 2] = words[i, 2]
                    i32[i, 3] = words[i, 3]
        elif e == 0x0001F001 and nw >= 2:
            i32[i, 5] = words[i, 0]
            w1 = np.int64(words[i, 1])
            i32[i, 0] = w1 & 0xFFFF
            i32[i, 1] = w1 >> 16
            if nw >= 4:
                vals[i, C_LOST_FIRST] = np.uint64(words[i, 2]) | (
                    np.uint64(words[i, 3]) << np.uint64(32)
                )
                valid[i, C_LOST_FIRST] = True


@njit(cache=True, nogil=True, inline="always")
def _decode_v2_row(i, nw, words, vals, valid, i8, i32):
    w0 = np.int64(words[i, 0])
    op = w0 & 0xFFFFF
    vals[i, C_OP] = op
    valid[i, C_OP] = True
    i32[i, 7] = w0 >> 20
    pos = 1
    for a in range(6):
        if pos >= nw:
            break
        pres = (w0 >> (20 + 2 * a)) & 3
        if pres == 1:
            vals[i, C_ARG0 + a] = np.uint64(words[i, pos])
            valid[i, C_ARG0 + a] = True
        elif pres == 2 and pos + 1 < nw:
            vals[i, C_ARG0 + a] = np.uint64(words[i, pos]) | (
                np.uint64(words[i, pos + 1]) << np.uint64(32)
            )
            valid[i, C_ARG0 + a] = True
        pos += pres
    a0 = valid[i, C_ARG0]
    if a0 and (op == 12 or op == 20 or op == 24 or op == 29):
        i32[i, 4] = min(np.int64(vals[i, C_ARG0] & np.uint64(0x7FFFFFFF)), 0x7FFFFFFF)
    ca = -1
    if op == 1 or op == 13 or op == 26:
        ca = 1
    elif op == 20:
        ca = 2
    if ca >= 0 and valid[i, C_ARG0 + ca]:
        v = np.int64(vals[i, C_ARG0 + ca] & np.uint64(0xFFFFFFFF))
        if op == 1:
            i8[i, 5] = (v >> 31) & 1
            v &= 0x7FFFFFFF
        i32[i, 5] = min(v, 0x7FFFFFFF)
    if op == 24 and valid[i, C_ARG0 + 1]:
        i32[i, 6] = min(np.int64(vals[i, C_ARG0 + 1] & np.uint64(0x7FFFFFFF)), 0x7FFFFFFF)


# small-int column positions of decode_raw's i8 / i32 matrices
I8_MINOR, I8_PV64, I8_SIZE_OK, I8_OLD, I8_NEW, I8_PREEMPTED, I8_PAE, I8_PFBITS = range(8)
I32_DOM, I32_VCPU, I32_NEXT_DOM, I32_NEXT_VCPU = range(4)
I32_SUBCMD, I32_COUNT, I32_TVCPU, I32_PRES = range(4, 8)


def decode_raw(event: np.ndarray, nwords: np.ndarray, words: np.ndarray):
    """The decoder's matrices ``(vals, valid, i8, i32)`` (see :func:`_decode_kernel`)."""
    n = event.shape[0]
    vals = np.zeros((n, NVAL), dtype=np.uint64)
    valid = np.zeros((n, NVAL), dtype=np.bool_)
    i8 = np.empty((n, 8), dtype=np.int8)
    i8[:] = (-1, 0, 1, -1, -1, 0, 0, 0)
    i32 = np.empty((n, 8), dtype=np.int64)
    i32[:] = (-1, -1, -1, -1, -1, -1, -1, 0)
    _decode_kernel(event, nwords, words, vals, valid, i8, i32, *_compiled_layouts())
    return vals, valid, i8, i32


def decode_columns(event: np.ndarray, nwords: np.ndarray, words: np.ndarray) -> dict:
    """Decode every row of a batch (``event`` uint32, ``nwords``, ``words`` u32[n, 7])."""
    vals, valid, i8, i32 = decode_raw(event, nwords, words)
    pfb = i8[:, 7].astype(np.int64)
    pf = valid[:, C_ERROR_CODE] & (i8[:, 0] == 4)
    c = {
        "minor": i8[:, 0].astype(np.int16),
        "pv64": i8[:, 1] == 1,
        "size_ok": i8[:, 2] == 1,
        "eip": vals[:, C_EIP],
        "eip_valid": valid[:, C_EIP],
        "addr": vals[:, C_ADDR],
        "addr_valid": valid[:, C_ADDR],
        "ldt_offset": vals[:, C_LDT],
        "ldt_offset_valid": valid[:, C_LDT],
        "error_code": vals[:, C_ERROR_CODE].astype(np.uint32),
        "error_code_valid": valid[:, C_ERROR_CODE],
        "vector": np.where(valid[:, C_VECTOR], vals[:, C_VECTOR].astype(np.int64), -1),
        "use_error_code": vals[:, C_USE_EC] != 0,
        "pte": vals[:, C_PTE],
        "pte_valid": valid[:, C_PTE],
        "pte_pae": i8[:, 6] == 1,
        "op": np.where(valid[:, C_OP], vals[:, C_OP].astype(np.int64), -1),
        "arg_presence": i32[:, 7].astype(np.uint16),
        "subcmd": i32[:, 4],
        "count": i32[:, 5],
        "preempted": i8[:, 5] == 1,
        "target_vcpu": i32[:, 6],
        "sched_dom": i32[:, 0],
        "sched_vcpu": i32[:, 1],
        "old_state": i8[:, 3],
        "new_state": i8[:, 4],
        "next_dom": i32[:, 2],
        "next_vcpu": i32[:, 3],
        "lost_count": np.where(event == 0x0001F001, i32[:, 5], -1),
        "lost_first_tsc": vals[:, C_LOST_FIRST],
    }
    # count belongs to hypercalls only (lost records use it for their count above)
    c["count"] = np.where(event == 0x0001F001, -1, c["count"])
    pte = c["pte"]
    pae = c["pte_pae"]
    # 8-byte ptes (PAE layout, 64-bit guests) have a 40-bit frame field, non-PAE 20 bits
    wide = pae | c["pv64"]
    mfn_mask = np.where(wide, np.uint64(xn.PTE_MFN_MASK_PAE), np.uint64(xn.PTE_MFN_MASK_NONPAE))
    c["pte_mfn"] = np.where(c["pte_valid"], (pte & mfn_mask) >> np.uint64(xn.PTE_SHIFT), 0)
    c["pte_flags"] = np.where(c["pte_valid"], pte & np.uint64(0xFFF), 0).astype(np.uint16)
    c["pte_nx"] = c["pte_valid"] & ((pte >> np.uint64(63)) != 0)
    for b, name in enumerate(("present", "write", "user", "reserved", "ifetch")):
        c[f"pf_{name}"] = pf & (((pfb >> b) & 1) == 1)
    for a in range(6):
        c[f"arg{a}"] = vals[:, C_ARG0 + a]
        c[f"arg{a}_valid"] = valid[:, C_ARG0 + a]
    return c


def subcmd_name(op: int, cmd: int) -> str | None:
    """Name of a hypercall's sub-command (``None`` when the hypercall has no command table)."""
    table = SUBCMD_OPS.get(op)
    if table is None:
        return None
    return table.get(cmd, f"unknown_{cmd}")
