"""Bulk formatting of dump lines: a compiled kernel writes each batch's lines as bytes.

Text lines: ``time pCPU vCPU event fields``; JSON lines: one object per record. All names come
from one string pool (catalog event names, hypercall / sub-command / vector / runstate names,
field keys) so the kernel never builds Python strings. Compiled without numba's reference
counting (``_nrt=False``): it allocates nothing and its helpers take arrays for free.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numba import njit

from ..format import events as ev
from ..format import xen_names as xn
from . import decode as D
from .decode import (
    C_ADDR,
    C_ARG0,
    C_EIP,
    C_ERROR_CODE,
    C_LDT,
    C_LOST_FIRST,
    C_OP,
    C_PTE,
    C_VECTOR,
    I8_NEW,
    I8_OLD,
    I8_POINT,
    I8_PREEMPTED,
    I8_PTE,
    I8_SIZE_OK,
    I32_COUNT,
    I32_DOM,
    I32_NEXT_DOM,
    I32_NEXT_VCPU,
    I32_SUBCMD,
    I32_TVCPU,
    I32_VCPU,
    PTE_NONPAE,
)
from .keys import DEFAULT_DOMAIN

# ---- line kinds: a decoded PV record's kind is its layout's point (decode.PT_*) ----------------
K_GENERIC = 0  # raw payload words
K_HC_V1 = D.PT_HC_V1
K_HC_V2 = D.PT_HC_V2
K_TRAP = D.PT_TRAP
K_PF = D.PT_PF
K_EIP = D.PT_EIP
K_EIP_ADDR = D.PT_EIP_ADDR
K_LDT = D.PT_LDT
K_PTWR = D.PT_PTWR
K_NOFIELDS = D.PT_NOFIELDS
K_RUNSTATE = 10
K_CONTINUE = 11
K_SWITCH = 12
K_SCHED_VCPU = 13
K_LOST = 14
K_SCHED_DOM = 15

PFEC_BITS = ("P", "W", "U", "RSVD", "I", "PK", "SS")
# PTE frame-number masks (8-byte PAE / 64-bit entries, 4-byte non-PAE entries)
MFN_MASK_PAE = xn.PTE_MFN_MASK_PAE
MFN_MASK_NONPAE = xn.PTE_MFN_MASK_NONPAE
PTE_FLAGS = (
    (0, "P"),
    (1, "RW"),
    (2, "US"),
    (3, "PWT"),
    (4, "PCD"),
    (5, "A"),
    (6, "D"),
    (7, "PAT"),
    (8, "G"),
)

# field keys, as (text name, JSON name); a text name of "" prints the bare value
KEYS = (
    ("op", "op"),
    ("name", "name"),
    ("cmd", "cmd"),
    ("count", "count"),
    ("preempted", "preempted"),
    ("vcpu", "target_vcpu"),
    ("eip", "eip"),
    ("addr", "addr"),
    ("ec", "ec"),
    ("vector", "vector"),
    ("offset", "offset"),
    ("pte", "pte"),
    ("mfn", "mfn"),
    ("flags", "flags"),
    ("parent", "parent"),
    ("index", "index"),
    ("words", "words"),
    ("", "old"),
    ("", "new"),
    ("prev", "prev"),
    ("next", "next"),
    ("first_tsc", "first_tsc"),
    ("args", "args"),
    ("", "target"),
)
# key indexes (positions in KEYS) as module constants for the kernel
KI_OP, KI_NAME, KI_CMD, KI_COUNT, KI_PREEMPTED, KI_VCPU, KI_EIP, KI_ADDR, KI_EC = range(9)
KI_VECTOR, KI_OFFSET, KI_PTE, KI_MFN, KI_FLAGS, KI_PARENT, KI_INDEX, KI_WORDS = range(9, 17)
KI_OLD, KI_NEW, KI_PREV, KI_NEXT, KI_FIRST_TSC, KI_ARGS, KI_TARGET = range(17, 24)
assert KEYS[KI_TARGET][1] == "target" and KEYS[KI_ARGS][0] == "args"
assert KEYS[KI_WORDS][0] == "words" and KEYS[KI_VCPU][1] == "target_vcpu"


# literal ids are passed to the kernel in one array, in this order
LIT_ORDER = (
    "unknown_",
    "d?v?",
    " *",
    "->",
    ",",
    "[",
    "]",
    "0x",
    " ",
    '"',
    "true",
    "false",
    "null",
    '{"t":',
    ',"tsc":',
    ',"cpu":',
    ',"vcpu":',
    ',"event":',
    ',"id":',
    ',"untimed":true',
    "}\n",
    "\n",
    "d",
    "v",
    "d[",
    "]v",
    "unknown_0x",
)
(
    L_UNKNOWN,
    L_DVQ,
    L_STAR,
    L_ARROW,
    L_COMMA,
    L_LBR,
    L_RBR,
    L_0X,
    L_SP,
    L_QUOTE,
    L_TRUE,
    L_FALSE,
    L_NULL,
    L_J_T,
    L_J_TSC,
    L_J_CPU,
    L_J_VCPU,
    L_J_EVENT,
    L_J_ID,
    L_J_UNTIMED,
    L_J_END,
    L_NL,
    L_D,
    L_V,
    L_DBR,
    L_BRV,
    L_UNKNOWN0X,
) = range(len(LIT_ORDER))


class Pool:
    """Strings by id, as one byte blob plus start offsets."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self.ids: dict[str, int] = {}

    def id(self, s: str) -> int:
        i = self.ids.get(s)
        if i is None:
            i = len(self.strings)
            self.strings.append(s)
            self.ids[s] = i
        return i

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        enc = [s.encode() for s in self.strings]
        starts = np.zeros(len(enc) + 1, dtype=np.int64)
        starts[1:] = np.cumsum([len(e) for e in enc])
        blob = np.frombuffer(b"".join(enc), dtype=np.uint8).copy()
        return blob, starts


@cache
def tables() -> dict:
    """The static pool and lookup arrays (built once)."""
    pool = Pool()
    # the catalog's names plus those of the ids only the PV decoding table knows
    names = dict(zip(ev.name_table()[0].tolist(), ev.name_table()[1], strict=True))
    names.update(D.extra_event_names())
    ev_ids = np.asarray(sorted(names), dtype=np.uint32)
    ev_pool = np.asarray([pool.id(names[int(e)]) for e in ev_ids], dtype=np.int64)
    op_pool = np.asarray(
        [pool.id(xn.hypercall_name(o)) if o in xn.HYPERCALL_NAMES else -1 for o in range(64)],
        dtype=np.int64,
    )
    sub_tab = np.full((64, 64), -1, dtype=np.int64)
    for op, names in D.SUBCMD_OPS.items():
        for cmd, name in names.items():
            assert op < 64 and cmd < 64, (op, cmd)  # so unknown_<cmd> matches subcmd_name
            sub_tab[op, cmd] = pool.id(name)
    vec_pool = np.asarray([pool.id(xn.vector_name(v)) for v in range(22)], dtype=np.int64)
    rs_pool = np.asarray([pool.id(n) for n in xn.RUNSTATE_NAMES.values()], dtype=np.int64)
    res_pool = np.full(16, -1, dtype=np.int64)
    for dom, label in xn.RESERVED_DOMID_LABELS.items():
        res_pool[dom - xn.DOMID_FIRST_RESERVED] = pool.id(label)
    default_pool = pool.id("DEFAULT")
    pf_pool = np.asarray([pool.id(b) for b in PFEC_BITS], dtype=np.int64)
    pte_pool = np.asarray([pool.id(n) for _, n in PTE_FLAGS], dtype=np.int64)
    pte_bits = np.asarray([b for b, _ in PTE_FLAGS], dtype=np.int64)
    ktext = np.asarray([pool.id(f" {t}=" if t else " ") for t, _ in KEYS], dtype=np.int64)
    kjson = np.asarray([pool.id(f',"{j}":') for _, j in KEYS], dtype=np.int64)
    lits = np.asarray([pool.id(s) for s in LIT_ORDER], dtype=np.int64)
    blob, starts = pool.arrays()
    return {
        "pool": pool,
        "blob": blob,
        "starts": starts,
        "ev_ids": ev_ids,
        "ev_pool": ev_pool,
        "op_pool": op_pool,
        "sub_tab": sub_tab,
        "vec_pool": vec_pool,
        "rs_pool": rs_pool,
        "res_pool": res_pool,
        "default_pool": default_pool,
        "pf_pool": pf_pool,
        "pte_pool": pte_pool,
        "pte_bits": pte_bits,
        "ktext": ktext,
        "kjson": kjson,
        "lits": lits,
    }


@njit(cache=True, _nrt=False, inline="always")
def _put(out, p, blob, starts, sid):
    for j in range(starts[sid], starts[sid + 1]):
        out[p] = blob[j]
        p += 1
    return p


@njit(cache=True, _nrt=False)
def _put_dec(out, p, v):
    if v < 0:
        out[p] = 45
        p += 1
        v = -v
    n = 1
    x = v // 10
    while x > 0:
        n += 1
        x //= 10
    for j in range(n - 1, -1, -1):
        out[p + j] = 48 + v % 10
        v //= 10
    return p + n


@njit(cache=True, _nrt=False)
def _put_dec_w(out, p, v, width, pad):
    n = 1
    x = v // 10
    while x > 0:
        n += 1
        x //= 10
    for _ in range(width - n):
        out[p] = pad
        p += 1
    for j in range(n - 1, -1, -1):
        out[p + j] = 48 + v % 10
        v //= 10
    return p + n


@njit(cache=True, _nrt=False)
def _put_hex(out, p, v, width):
    v = np.uint64(v)
    n = 1
    x = v >> np.uint64(4)
    while x > 0:
        n += 1
        x >>= np.uint64(4)
    if n < width:
        n = width
    for j in range(n - 1, -1, -1):
        d = np.int64(v & np.uint64(15))
        out[p + j] = 48 + d if d < 10 else 87 + d
        v >>= np.uint64(4)
    return p + n


@njit(cache=True, _nrt=False)
def _put_time(out, p, sec, nsec, json):
    if json:
        p = _put_dec(out, p, sec)
    else:
        p = _put_dec_w(out, p, sec, 3, 32)
    out[p] = 46
    return _put_dec_w(out, p + 1, nsec, 9, 48)


@njit(cache=True, _nrt=False)
def _put_vlabel(out, p, dom, vcpu, blob, starts, lits, res_pool, default_pool):
    if dom < 0:
        return _put(out, p, blob, starts, lits[L_DVQ])
    if dom == DEFAULT_DOMAIN:
        p = _put(out, p, blob, starts, lits[L_DBR])
        p = _put(out, p, blob, starts, default_pool)
        p = _put(out, p, blob, starts, lits[L_BRV])
    elif dom >= 0x7FF0 and dom <= 0x7FFF:
        p = _put(out, p, blob, starts, lits[L_DBR])
        r = res_pool[dom - 0x7FF0]
        if r >= 0:
            p = _put(out, p, blob, starts, r)
        else:
            p = _put(out, p, blob, starts, lits[L_0X])
            p = _put_hex(out, p, dom, 4)
        p = _put(out, p, blob, starts, lits[L_BRV])
    else:
        p = _put(out, p, blob, starts, lits[L_D])
        p = _put_dec(out, p, dom)
        p = _put(out, p, blob, starts, lits[L_V])
    return _put_dec(out, p, vcpu)


@njit(cache=True, _nrt=False)
def _key(out, p, k, json, blob, starts, ktext, kjson):
    return _put(out, p, blob, starts, kjson[k] if json else ktext[k])


@njit(cache=True, _nrt=False)
def _hexval(out, p, v, json, blob, starts, lits):
    if json:
        p = _put(out, p, blob, starts, lits[L_QUOTE])
    p = _put(out, p, blob, starts, lits[L_0X])
    p = _put_hex(out, p, v, 1)
    if json:
        p = _put(out, p, blob, starts, lits[L_QUOTE])
    return p


@njit(cache=True, _nrt=False)
def _strval(out, p, sid, json, blob, starts, lits):
    if json:
        p = _put(out, p, blob, starts, lits[L_QUOTE])
    p = _put(out, p, blob, starts, sid)
    if json:
        p = _put(out, p, blob, starts, lits[L_QUOTE])
    return p


@njit(cache=True, _nrt=False)
def _opname(out, p, op, json, blob, starts, lits, op_pool):
    if json:
        p = _put(out, p, blob, starts, lits[L_QUOTE])
    if 0 <= op < 64 and op_pool[op] >= 0:
        p = _put(out, p, blob, starts, op_pool[op])
    else:
        p = _put(out, p, blob, starts, lits[L_UNKNOWN])
        p = _put_dec(out, p, op)
    if json:
        p = _put(out, p, blob, starts, lits[L_QUOTE])
    return p


@njit(cache=True, _nrt=False)
def _kind(e, nw, i8, i32, i):
    """The line kind of a row from its event id and the decoder's small-int columns.

    A PV record gets the format of the layout it was decoded with; one the table could not
    decode as it is (unknown id, payload size of no layout) prints its raw words.
    """
    main = e >> 16
    if main == 0x020:
        if i8[i, I8_SIZE_OK] == 0 or i8[i, I8_POINT] < 0:
            return K_GENERIC
        return i8[i, I8_POINT]
    if main == 0x002:
        if i8[i, I8_OLD] >= 0:
            return K_RUNSTATE if (e & 0xF) == 1 else K_CONTINUE
        if i32[i, I32_NEXT_DOM] >= 0:
            return K_SWITCH
        if i32[i, I32_DOM] >= 0:
            return K_SCHED_VCPU if i32[i, I32_VCPU] >= 0 else K_SCHED_DOM
        return K_GENERIC
    if e == 0x0001F001 and nw >= 2:
        return K_LOST
    return K_GENERIC


@njit(cache=True, _nrt=False, nogil=True)
def format_lines(
    out,
    json,
    sec,
    nsec,
    tsc,
    cpu,
    dom,
    vcpu,
    flags,
    event,
    nwords,
    words,
    ev_sid,
    parent,
    subidx,
    vals,
    valid,
    i8,
    i32,
    blob,
    starts,
    lits,
    ktext,
    kjson,
    op_pool,
    sub_tab,
    vec_pool,
    rs_pool,
    res_pool,
    default_pool,
    pf_pool,
    pte_pool,
    pte_bits,
):
    """Write one line per row into ``out`` (``MAX_LINE`` bytes per row); returns bytes used.

    ``vals``/``valid``/``i8``/``i32`` are :func:`.decode.decode_raw`'s matrices; ``sub_tab``
    maps (hypercall < 64, command < 64) to the pool id of the command's name (-1 = none).
    """
    p = 0
    for i in range(sec.shape[0]):
        e = np.int64(event[i])
        nw = np.int64(nwords[i])
        # ---- header
        if json:
            p = _put(out, p, blob, starts, lits[L_J_T])
            p = _put_time(out, p, sec[i], nsec[i], True)
            p = _put(out, p, blob, starts, lits[L_J_TSC])
            p = _put_dec(out, p, np.int64(tsc[i]))
            p = _put(out, p, blob, starts, lits[L_J_CPU])
            p = _put_dec(out, p, np.int64(cpu[i]))
            p = _put(out, p, blob, starts, lits[L_J_VCPU])
            p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put_vlabel(out, p, dom[i], vcpu[i], blob, starts, lits, res_pool, default_pool)
            p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put(out, p, blob, starts, lits[L_J_EVENT])
            p = _put(out, p, blob, starts, lits[L_QUOTE])
        else:
            p = _put_time(out, p, sec[i], nsec[i], False)
            out[p] = 32
            out[p + 1] = 112  # 'p'
            p = _put_dec(out, p + 2, np.int64(cpu[i]))
            out[p] = 32
            p += 1
            q = p
            p = _put_vlabel(out, p, dom[i], vcpu[i], blob, starts, lits, res_pool, default_pool)
            while p - q < 10:
                out[p] = 32
                p += 1
            out[p] = 32
            p += 1
        if ev_sid[i] >= 0:
            p = _put(out, p, blob, starts, ev_sid[i])
        else:
            p = _put(out, p, blob, starts, lits[L_UNKNOWN0X])
            p = _put_hex(out, p, e, 8)
        if json:
            p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put(out, p, blob, starts, lits[L_J_ID])
            p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put(out, p, blob, starts, lits[L_0X])
            p = _put_hex(out, p, e, 8)
            p = _put(out, p, blob, starts, lits[L_QUOTE])
            if flags[i] & 1:
                p = _put(out, p, blob, starts, lits[L_J_UNTIMED])
        elif flags[i] & 1:
            p = _put(out, p, blob, starts, lits[L_STAR])
        k = _kind(e, nw, i8, i32, i)
        # ---- fields
        if k == K_HC_V1 or k == K_HC_V2:
            o = np.int64(vals[i, C_OP])
            p = _key(out, p, KI_OP, json, blob, starts, ktext, kjson)
            p = _put_dec(out, p, o)
            p = _key(out, p, KI_NAME, json, blob, starts, ktext, kjson)
            p = _opname(out, p, o, json, blob, starts, lits, op_pool)
            if k == K_HC_V1:
                p = _key(out, p, KI_EIP, json, blob, starts, ktext, kjson)
                p = _hexval(out, p, vals[i, C_EIP], json, blob, starts, lits)
            else:
                cmd = i32[i, I32_SUBCMD]
                if cmd >= 0:
                    p = _key(out, p, KI_CMD, json, blob, starts, ktext, kjson)
                    sid = sub_tab[o, cmd] if o < 64 and cmd < 64 else -1
                    if sid >= 0:
                        p = _strval(out, p, sid, json, blob, starts, lits)
                    else:  # as decode.subcmd_name: unknown_<cmd>
                        if json:
                            p = _put(out, p, blob, starts, lits[L_QUOTE])
                        p = _put(out, p, blob, starts, lits[L_UNKNOWN])
                        p = _put_dec(out, p, cmd)
                        if json:
                            p = _put(out, p, blob, starts, lits[L_QUOTE])
                cnt = i32[i, I32_COUNT]
                if cnt >= 0:
                    p = _key(out, p, KI_COUNT, json, blob, starts, ktext, kjson)
                    p = _put_dec(out, p, cnt)
                if i8[i, I8_PREEMPTED] == 1:
                    p = _key(out, p, KI_PREEMPTED, json, blob, starts, ktext, kjson)
                    p = _put(out, p, blob, starts, lits[L_TRUE])
                tv = i32[i, I32_TVCPU]
                if tv >= 0:
                    p = _key(out, p, KI_VCPU, json, blob, starts, ktext, kjson)
                    p = _put_dec(out, p, tv)
                # ops whose recorded arguments are named above (Xen records only these)
                named = o == 1 or o == 13 or o == 20 or o == 24 or o == 26 or o == 29
                if not named:
                    first = True
                    for a in range(6):
                        if valid[i, C_ARG0 + a]:
                            if first:
                                p = _key(out, p, KI_ARGS, json, blob, starts, ktext, kjson)
                                p = _put(out, p, blob, starts, lits[L_LBR])
                                first = False
                            else:
                                p = _put(out, p, blob, starts, lits[L_COMMA])
                            p = _hexval(out, p, vals[i, C_ARG0 + a], json, blob, starts, lits)
                    if not first:
                        p = _put(out, p, blob, starts, lits[L_RBR])
                if parent[i] >= 0:
                    p = _key(out, p, KI_PARENT, json, blob, starts, ktext, kjson)
                    p = _hexval(out, p, parent[i], json, blob, starts, lits)
                    p = _key(out, p, KI_INDEX, json, blob, starts, ktext, kjson)
                    p = _put_dec(out, p, subidx[i])
        elif k == K_TRAP:
            v = np.int64(vals[i, C_VECTOR])
            p = _key(out, p, KI_VECTOR, json, blob, starts, ktext, kjson)
            p = _put_dec(out, p, v)
            if v < 22:
                p = _key(out, p, KI_NAME, json, blob, starts, ktext, kjson)
                p = _strval(out, p, vec_pool[v], json, blob, starts, lits)
            p = _key(out, p, KI_EIP, json, blob, starts, ktext, kjson)
            p = _hexval(out, p, vals[i, C_EIP], json, blob, starts, lits)
            if valid[i, C_ERROR_CODE]:
                p = _key(out, p, KI_EC, json, blob, starts, ktext, kjson)
                p = _hexval(out, p, vals[i, C_ERROR_CODE], json, blob, starts, lits)
        elif k == K_PF or k == K_EIP or k == K_EIP_ADDR or k == K_LDT:
            p = _key(out, p, KI_EIP, json, blob, starts, ktext, kjson)
            p = _hexval(out, p, vals[i, C_EIP], json, blob, starts, lits)
            if k == K_PF or k == K_EIP_ADDR:
                p = _key(out, p, KI_ADDR, json, blob, starts, ktext, kjson)
                p = _hexval(out, p, vals[i, C_ADDR], json, blob, starts, lits)
            if k == K_LDT:
                p = _key(out, p, KI_OFFSET, json, blob, starts, ktext, kjson)
                p = _hexval(out, p, vals[i, C_LDT], json, blob, starts, lits)
            if k == K_PF:
                c = np.int64(vals[i, C_ERROR_CODE])
                p = _key(out, p, KI_EC, json, blob, starts, ktext, kjson)
                p = _hexval(out, p, c, json, blob, starts, lits)
                p = _key(out, p, KI_FLAGS, json, blob, starts, ktext, kjson)
                if json:
                    p = _put(out, p, blob, starts, lits[L_QUOTE])
                first = True
                for b in range(7):
                    if (c >> b) & 1:
                        if not first:
                            p = _put(out, p, blob, starts, lits[L_COMMA])
                        p = _put(out, p, blob, starts, pf_pool[b])
                        first = False
                if first:
                    out[p] = 45  # '-': not present, read, supervisor
                    p += 1
                if json:
                    p = _put(out, p, blob, starts, lits[L_QUOTE])
        elif k == K_PTWR:
            pte = vals[i, C_PTE]
            if i8[i, I8_PTE] == PTE_NONPAE:
                mfn = (pte & np.uint64(MFN_MASK_NONPAE)) >> np.uint64(xn.PTE_SHIFT)
            else:
                mfn = (pte & np.uint64(MFN_MASK_PAE)) >> np.uint64(xn.PTE_SHIFT)
            p = _key(out, p, KI_PTE, json, blob, starts, ktext, kjson)
            p = _hexval(out, p, pte, json, blob, starts, lits)
            p = _key(out, p, KI_MFN, json, blob, starts, ktext, kjson)
            p = _hexval(out, p, mfn, json, blob, starts, lits)
            p = _key(out, p, KI_FLAGS, json, blob, starts, ktext, kjson)
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            first = True
            fl = np.int64(pte & np.uint64(0xFFF))
            for b in range(pte_bits.shape[0]):
                if (fl >> pte_bits[b]) & 1:
                    if not first:
                        p = _put(out, p, blob, starts, lits[L_COMMA])
                    p = _put(out, p, blob, starts, pte_pool[b])
                    first = False
            if pte >> np.uint64(63):
                if not first:
                    p = _put(out, p, blob, starts, lits[L_COMMA])
                out[p] = 78  # NX
                out[p + 1] = 88
                p += 2
                first = False
            if first:
                out[p] = 45
                p += 1
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _key(out, p, KI_ADDR, json, blob, starts, ktext, kjson)
            p = _hexval(out, p, vals[i, C_ADDR], json, blob, starts, lits)
            p = _key(out, p, KI_EIP, json, blob, starts, ktext, kjson)
            p = _hexval(out, p, vals[i, C_EIP], json, blob, starts, lits)
        elif k == K_RUNSTATE or k == K_CONTINUE or k == K_SCHED_VCPU or k == K_LOST:
            p = _key(out, p, KI_TARGET, json, blob, starts, ktext, kjson)
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put_vlabel(
                out, p, i32[i, I32_DOM], i32[i, I32_VCPU], blob, starts, lits, res_pool, -1
            )
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            if k == K_RUNSTATE:
                p = _key(out, p, KI_OLD, json, blob, starts, ktext, kjson)
                p = _strval(out, p, rs_pool[i8[i, I8_OLD] & 3], json, blob, starts, lits)
                if json:
                    p = _key(out, p, KI_NEW, json, blob, starts, ktext, kjson)
                else:
                    p = _put(out, p, blob, starts, lits[L_ARROW])
                p = _strval(out, p, rs_pool[i8[i, I8_NEW] & 3], json, blob, starts, lits)
            elif k == K_LOST:
                p = _key(out, p, KI_COUNT, json, blob, starts, ktext, kjson)
                p = _put_dec(out, p, i32[i, I32_COUNT])
                if valid[i, C_LOST_FIRST]:
                    p = _key(out, p, KI_FIRST_TSC, json, blob, starts, ktext, kjson)
                    p = _put_dec(out, p, np.int64(vals[i, C_LOST_FIRST]))
        elif k == K_SWITCH:
            p = _key(out, p, KI_PREV, json, blob, starts, ktext, kjson)
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put_vlabel(
                out, p, i32[i, I32_DOM], i32[i, I32_VCPU], blob, starts, lits, res_pool, -1
            )
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _key(out, p, KI_NEXT, json, blob, starts, ktext, kjson)
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put_vlabel(
                out,
                p,
                i32[i, I32_NEXT_DOM],
                i32[i, I32_NEXT_VCPU],
                blob,
                starts,
                lits,
                res_pool,
                -1,
            )
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
        elif k == K_SCHED_DOM:
            p = _key(out, p, KI_TARGET, json, blob, starts, ktext, kjson)
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
            p = _put(out, p, blob, starts, lits[L_D])
            p = _put_dec(out, p, i32[i, I32_DOM])
            if json:
                p = _put(out, p, blob, starts, lits[L_QUOTE])
        elif k == K_GENERIC and nw > 0:
            p = _key(out, p, KI_WORDS, json, blob, starts, ktext, kjson)
            p = _put(out, p, blob, starts, lits[L_LBR])
            for j in range(nw):
                if j:
                    p = _put(out, p, blob, starts, lits[L_COMMA])
                p = _hexval(out, p, words[i, j], json, blob, starts, lits)
            p = _put(out, p, blob, starts, lits[L_RBR])
        p = _put(out, p, blob, starts, lits[L_J_END] if json else lits[L_NL])
    return p


#: bytes reserved per line in the output buffer (the longest line is well below this)
MAX_LINE = 640


def name_ids(event: np.ndarray) -> np.ndarray:
    """Pool id of each row's event name (-1 = not in the catalog nor the PV table)."""
    t = tables()
    ids = t["ev_ids"]
    e = event.astype(np.uint32) & np.uint32(ev.EVENT_MASK)
    pos = np.searchsorted(ids, e)
    pos_c = np.minimum(pos, len(ids) - 1)
    hit = ids[pos_c] == e
    out = np.where(hit, t["ev_pool"][pos_c], -1)
    guest = ~hit & ((e >> np.uint32(16)) == np.uint32(0x800))
    if guest.any():
        out[guest] = t["pool"].ids["guest"]
    return out
