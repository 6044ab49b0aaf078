"""Decoding of record payloads into named columns, one compiled pass per batch.

PV records of both id generations and both widths are decoded with ONE table,
:func:`layouts_by_event` (the layout table of :mod:`pyxentrace.format.pv_layouts` plus a few
gap fills): it is compiled once into flat arrays (:func:`pv_lookup`: event id and payload size
-> layout -> fields: byte offset, size, bit shift and width), which the dump / Arrow kernel
here and the summary's counting kernel (:mod:`.pvstats`) both apply per row. A record is only
decoded when its id and payload size match a layout (``size_ok``); nothing is read past its
payload. Hypercall v2 and multicall sub-call records get their argument-presence bits and
arguments (32- and 64-bit, gathered as xenalyze does), the named sub-command and element count
of the hypercalls Xen records arguments for. Scheduler records get their domain / vCPU /
state fields, lost records their count, vCPU and first TSC.

Every column has one value per row; the ``*_valid`` masks (or a -1 sentinel for ``minor``,
``vector``, ``op``, ``subcmd``, ``count`` ...) say which rows carry it.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ..format import events as ev
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

# ---- what a decoded PV record is (the dump's line kinds use the same numbers) -----------------
PT_NONE = -1  # not a PV record, or not decoded (unknown id, payload size fits no layout)
PT_HC_V1 = 1
PT_HC_V2 = 2  # hypercall v2 and multicall sub-call
PT_TRAP = 3
PT_PF = 4
PT_EIP = 5  # forced invalid op, emulate privop, emulate 4GB
PT_EIP_ADDR = 6  # paging fixup
PT_LDT = 7  # GDT/LDT mapping fault
PT_PTWR = 8
PT_NOFIELDS = 9  # math state restore
POINT_CODE = {
    "hypercall": PT_HC_V1,
    "hypercall_v2": PT_HC_V2,
    "hypercall_subcall": PT_HC_V2,
    "trap": PT_TRAP,
    "page_fault": PT_PF,
    "forced_invalid_op": PT_EIP,
    "emulate_privop": PT_EIP,
    "emulate_4gb": PT_EIP,
    "paging_fixup": PT_EIP_ADDR,
    "gdt_ldt_mapping_fault": PT_LDT,
    "ptwr_emulation": PT_PTWR,
    "math_state_restore": PT_NOFIELDS,
}
# the page-table entry a PTWR layout carries
PTE_NONE, PTE_PAE, PTE_64, PTE_NONPAE = range(4)

#: PV class (``main`` field) of the 28-bit event id
PV_MAIN = 0x020
#: the 64-bit flag; PTWR minors, whose flag xenalyze checks (spec xenalyze-reference.md 2.5)
FLAG_64 = 0x100
MINOR_PTWR = 11
MINOR_PTWR_PAE = 12


@cache
def layouts_by_event() -> dict[int, dict[int, L.Layout]]:
    """THE PV decoding table: event id -> payload bytes (-1: variable) -> layout.

    Built on :data:`pyxentrace.format.pv_layouts.DECODE_INDEX`, with these gaps filled:

    * ids the table has in one generation only borrow the other generation's layout (Xen
      never emitted ``0x00201007`` emulate-4GB or a 12-byte ``0x0020100b`` PTWR with today's
      numbering, but hand-built traces use them);
    * a PTWR whose 64-bit flag disagrees with its minor is decoded by its minor and size, as
      xenalyze does at ``--tolerance`` >= 4: minor 12 with the flag as PAE (16 bytes), minor 11
      without it as 64-bit (24 bytes). (The summary counts these records as a condition.)

    Every consumer - the dump, :func:`decode_columns`, the Arrow table, the summary's counting
    kernel - decodes with this table, through :func:`pv_lookup`.
    """
    table = {ev: dict(by) for ev, by in L.DECODE_INDEX.items()}
    for minor in range(1, 13):
        for flag in (0, FLAG_64):
            seed = TRC_PV_SEED_BASE + minor + flag
            new = TRC_PV_ENTRY + minor + flag
            if seed in table and new not in table:
                table[new] = table[seed]
            elif new in table and seed not in table:
                table[seed] = table[new]
    for base in (TRC_PV_SEED_BASE, TRC_PV_ENTRY):
        pae = table[base + MINOR_PTWR_PAE][16]
        ptwr64 = table[base + MINOR_PTWR + FLAG_64][24]
        table.setdefault(base + MINOR_PTWR_PAE + FLAG_64, {}).setdefault(16, pae)
        table[base + MINOR_PTWR] = {**table[base + MINOR_PTWR], 24: ptwr64}
    return table


def _pte_kind(lay: L.Layout) -> int:
    if lay.point != "ptwr_emulation":
        return PTE_NONE
    size = next(f.size for f in lay.fields if f.name == "pte")
    if size == 4:
        return PTE_NONPAE
    return PTE_PAE if lay.size == 16 else PTE_64


@cache
def pv_lookup() -> dict[str, np.ndarray]:
    """:func:`layouts_by_event` as flat arrays for the compiled kernels.

    * ``ev_slot[e & 0xFFFF]`` (for ids with ``e >> 16 == 0x020``): row of the id in ``by_nw``,
      -1 for an id the table does not know;
    * ``by_nw[slot, nwords]``: the layout of a record with that many payload words, -1 when the
      size fits none (a hypercall v2 / sub-call needs its op word: ``nwords >= 1``);
    * ``fallback[slot]``: the id's largest layout, whose fields a mis-sized record still
      carries when they lie within its payload;
    * per layout ``j``: ``point[j]`` (``PT_*``), ``v2[j]``, ``pte_kind[j]`` (``PTE_*``), and
      fields ``[f0[j], f0[j+1])`` of ``f_col`` (value column), ``f_off`` (bytes), ``f_size``,
      ``f_shift``, ``f_bits``;
    * ``layouts``: the :class:`~pyxentrace.format.pv_layouts.Layout` objects, by ``j``.
    """
    table = layouts_by_event()
    lays: list[L.Layout] = []
    index: dict[int, int] = {}

    def lay_id(lay: L.Layout) -> int:
        if id(lay) not in index:
            index[id(lay)] = len(lays)
            lays.append(lay)
        return index[id(lay)]

    ids = sorted(table)
    ev_slot = np.full(1 << 16, -1, dtype=np.int64)
    by_nw = np.full((len(ids), 8), -1, dtype=np.int64)
    fallback = np.zeros(len(ids), dtype=np.int64)
    for slot, ev_id in enumerate(ids):
        assert ev_id >> 16 == PV_MAIN, hex(ev_id)
        ev_slot[ev_id & 0xFFFF] = slot
        largest = None
        for size, lay in sorted(table[ev_id].items()):
            j = lay_id(lay)
            if size < 0:
                by_nw[slot, 1:] = j
            else:
                assert size % 4 == 0 and size <= 28, (hex(ev_id), size)
                by_nw[slot, size // 4] = j
            if largest is None or size < 0 or size > largest[0]:
                largest = (size if size >= 0 else 1 << 30, j)
        fallback[slot] = largest[1]
    f0 = [0]
    f_col, f_off, f_size, f_shift, f_bits = [], [], [], [], []
    for lay in lays:
        if lay.kind == "struct":
            for f in lay.fields:
                f_col.append(FIELD_COL[f.name])
                f_off.append(f.offset)
                f_size.append(f.size)
                f_shift.append(f.shift)
                f_bits.append(f.bits or 8 * f.size)
        f0.append(len(f_col))

    def a(x):
        return np.asarray(x, dtype=np.int64)

    return {
        "ev_slot": ev_slot,
        "by_nw": by_nw,
        "fallback": fallback,
        "point": a([POINT_CODE[lay.point] for lay in lays]),
        "v2": a([lay.kind == "hypercall_v2" for lay in lays]),
        "pte_kind": a([_pte_kind(lay) for lay in lays]),
        "f0": a(f0),
        "f_col": a(f_col),
        "f_off": a(f_off),
        "f_size": a(f_size),
        "f_shift": a(f_shift),
        "f_bits": a(f_bits),
        "layouts": lays,
    }


def pv_event_name(event: int) -> str | None:
    """Name of a PV id the catalog lacks but :func:`layouts_by_event` decodes, else None.

    These are the wrongly flagged PTWR ids (``0x0020110c`` / ``0x0020f10c``: the catalog's name
    of the id without the flag, plus ``64``, as for every other flagged PV id).
    """
    event &= 0x0FFFFFFF
    if event in ev.EVENTS or event not in layouts_by_event() or not event & FLAG_64:
        return None
    base = ev.EVENTS.get(event & ~FLAG_64)
    return base + "64" if base else None


def event_names(events: np.ndarray) -> np.ndarray:
    """:func:`pyxentrace.format.events.event_names` plus the names of :func:`pv_event_name`."""
    names = ev.event_names(events)
    e = np.asarray(events).astype(np.int64) & 0x0FFFFFFF
    for ev_id, name in extra_event_names().items():
        hit = e == ev_id
        if hit.any():
            names[hit] = name
    return names


@cache
def extra_event_names() -> dict[int, str]:
    """``{id: name}`` of :func:`pv_event_name` over the whole decoding table."""
    return {e: n for e in layouts_by_event() if (n := pv_event_name(e)) is not None}


@njit(cache=True, nogil=True)
def _decode_kernel(
    event,
    nwords,
    words,
    vals,
    valid,
    i8,
    i32,
    ev_slot,
    by_nw,
    fallback,
    point,
    v2,
    pte_kind,
    f0,
    f_col,
    f_off,
    f_size,
    f_shift,
    f_bits,
):
    """Fill ``vals[n, NVAL]`` / ``valid[n, NVAL]`` and the small-int columns.

    ``i8[n, 9]``: minor, pv64, size_ok, old_state, new_state, preempted, pte kind, pf bits,
    point; ``i32[n, 8]``: sched_dom, sched_vcpu, next_dom, next_vcpu, subcmd, count,
    target_vcpu, arg_presence (all -1 when absent; counts are < 2**32).

    A PV record is decoded with the layout of its id and payload size (``size_ok``); an id
    outside the table is not decoded at all, and a mis-sized record (``size_ok`` 0) only gets
    the fields of its id's largest layout that lie within its payload.
    """
    n = event.shape[0]
    for i in range(n):
        e = np.int64(event[i])
        nw = np.int64(nwords[i])
        main = e >> 16
        if main == 0x020:
            i8[i, 0] = e & 0xFF
            i8[i, 1] = (e >> 8) & 1
            slot = ev_slot[e & 0xFFFF]
            if slot < 0:
                i8[i, 2] = 0
                continue
            j = by_nw[slot, nw] if nw < 8 else -1
            if j < 0:
                i8[i, 2] = 0
                j = fallback[slot]
            i8[i, 8] = point[j]
            if v2[j]:
                if nw >= 1:
                    _decode_v2_row(i, nw, words, vals, valid, i8, i32)
                continue
            for f in range(f0[j], f0[j + 1]):
                lane = f_off[f] // 4
                if f_off[f] + f_size[f] > 4 * nw:
                    continue
                raw = np.uint64(words[i, lane])
                if f_size[f] == 8:
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
            pt = point[j]
            if pt == PT_TRAP:
                # the error code is only meaningful with use_error_code set
                valid[i, C_ERROR_CODE] = valid[i, C_USE_EC] and vals[i, C_USE_EC] != 0
            elif pt == PT_PF:
                if valid[i, C_ERROR_CODE]:
                    i8[i, 7] = np.int64(vals[i, C_ERROR_CODE] & np.uint64(0x1F))
            elif pt == PT_PTWR:
                if valid[i, C_PTE]:
                    i8[i, 6] = pte_kind[j]
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
I8_MINOR, I8_PV64, I8_SIZE_OK, I8_OLD, I8_NEW, I8_PREEMPTED, I8_PTE, I8_PFBITS, I8_POINT = range(9)
I32_DOM, I32_VCPU, I32_NEXT_DOM, I32_NEXT_VCPU = range(4)
I32_SUBCMD, I32_COUNT, I32_TVCPU, I32_PRES = range(4, 8)


def decode_raw(event: np.ndarray, nwords: np.ndarray, words: np.ndarray):
    """The decoder's matrices ``(vals, valid, i8, i32)`` (see :func:`_decode_kernel`)."""
    n = event.shape[0]
    vals = np.zeros((n, NVAL), dtype=np.uint64)
    valid = np.zeros((n, NVAL), dtype=np.bool_)
    i8 = np.empty((n, 9), dtype=np.int8)
    i8[:] = (-1, 0, 1, -1, -1, 0, PTE_NONE, 0, PT_NONE)
    i32 = np.empty((n, 8), dtype=np.int64)
    i32[:] = (-1, -1, -1, -1, -1, -1, -1, 0)
    t = pv_lookup()
    _decode_kernel(
        event,
        nwords,
        words,
        vals,
        valid,
        i8,
        i32,
        t["ev_slot"],
        t["by_nw"],
        t["fallback"],
        t["point"],
        t["v2"],
        t["pte_kind"],
        t["f0"],
        t["f_col"],
        t["f_off"],
        t["f_size"],
        t["f_shift"],
        t["f_bits"],
    )
    return vals, valid, i8, i32


def decode_columns(event: np.ndarray, nwords: np.ndarray, words: np.ndarray) -> dict:
    """Decode every row of a batch (``event`` uint32, ``nwords``, ``words`` u32[n, 7]).

    ``size_ok`` is False for a PV record this table cannot decode as it is: an unknown id
    (nothing decoded) or a payload size no layout of its id has (only the fields lying within
    the payload are decoded; the others are invalid). Fields are never read past ``nwords``.
    """
    vals, valid, i8, i32 = decode_raw(event, nwords, words)
    pfb = i8[:, I8_PFBITS].astype(np.int64)
    point = i8[:, I8_POINT]
    pf = valid[:, C_ERROR_CODE] & (point == PT_PF)
    c = {
        "minor": i8[:, I8_MINOR].astype(np.int16),
        "pv64": i8[:, I8_PV64] == 1,
        "size_ok": i8[:, I8_SIZE_OK] == 1,
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
        "use_error_code_valid": valid[:, C_USE_EC],
        "pte": vals[:, C_PTE],
        "pte_valid": valid[:, C_PTE],
        "pte_pae": i8[:, I8_PTE] == PTE_PAE,
        "op": np.where(valid[:, C_OP], vals[:, C_OP].astype(np.int64), -1),
        "arg_presence": i32[:, I32_PRES].astype(np.uint16),
        "arg_presence_valid": valid[:, C_OP] & (point == PT_HC_V2),
        "subcmd": i32[:, 4],
        "count": i32[:, 5],
        "preempted": i8[:, I8_PREEMPTED] == 1,
        "target_vcpu": i32[:, 6],
        "sched_dom": i32[:, 0],
        "sched_vcpu": i32[:, 1],
        "old_state": i8[:, I8_OLD],
        "new_state": i8[:, I8_NEW],
        "next_dom": i32[:, 2],
        "next_vcpu": i32[:, 3],
        "lost_count": np.where(event == 0x0001F001, i32[:, 5], -1),
        "lost_first_tsc": vals[:, C_LOST_FIRST],
    }
    # count belongs to hypercalls only (lost records use it for their count above)
    c["count"] = np.where(event == 0x0001F001, -1, c["count"])
    pte = c["pte"]
    # 8-byte ptes (PAE and 64-bit layouts) have a 40-bit frame field, non-PAE 20 bits
    wide = i8[:, I8_PTE] != PTE_NONPAE
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
