"""PV trace-record payload layouts, declared once as data, for both PV id generations.

A layout is selected by key ``(point, abi, arch, width)``:

* ``abi``: ``"xen-3.2"`` (the 2007 seed patch, ids ``0x0020f0nn``) or ``"xen-4"`` (ids
  ``0x00201nnn``, subcalls ``0x0020200e``);
* ``arch``: the hypervisor build, ``"x86_32"`` (non-PAE), ``"x86_32-pae"`` or ``"x86_64"``;
* ``width``: the current vCPU's guest width, 32 or 64.

Every fixed layout is a tuple of :class:`Field` (name, byte offset, storage size, bit shift,
bit width): C truncation falls out of the field widths (a 32-bit field keeps the low half of a
64-bit value, ``trapnr`` keeps 15 bits, the trap word's error code 16 bits).  The hypercall v2
and subcall records have a variable payload: word 0 is ``op | presence bits`` and the selected
arguments follow; the selection is the data table :data:`HYPERCALL_V2_ARGS`.

Field naming is uniform across widths (``eip`` is the guest instruction pointer, 4 or 8 bytes),
so decoded columns line up for 32- and 64-bit guests.  Facts: spec §2.3-2.4 and Xen's
``xen/arch/x86/pv/trace.c`` (today) / ``xen/arch/x86/trace.c`` (seed 06a73c9f93).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pyxentrace.format.events import TRC_64_FLAG, TRC_PV_ENTRY, TRC_PV_SEED_BASE, TRC_PV_SUBCALL

ABI_SEED = "xen-3.2"
ABI_XEN4 = "xen-4"
ARCHES = ("x86_32", "x86_32-pae", "x86_64")

#: Which guest widths exist for each (ABI, hypervisor arch).  Anything else is rejected.
COMBOS: Mapping[tuple[str, str], tuple[int, ...]] = {
    (ABI_SEED, "x86_32"): (32,),
    (ABI_SEED, "x86_32-pae"): (32,),
    (ABI_SEED, "x86_64"): (32, 64),
    (ABI_XEN4, "x86_64"): (32, 64),
}

#: Hypercall number -> argument indices recorded by HYPERCALL_V2/SUBCALL, in record order.
HYPERCALL_V2_ARGS: Mapping[int, tuple[int, ...]] = {
    1: (1,),  # mmu_update: count
    13: (1,),  # multicall: nr_calls
    20: (0, 2),  # grant_table_op: cmd, count
    24: (0, 1),  # vcpu_op: cmd, vcpuid
    26: (1,),  # mmuext_op: count
    29: (0,),  # sched_op: cmd
}
HYPERCALL_V2_NARGS = 6
HYPERCALL_V2_OP_BITS = 20
#: Presence field value for "argument recorded as 32 bits" (01b); 10b/11b are never produced.
HYPERCALL_V2_ARG_32 = 1


def hypercall_v2_arg_flag(i: int) -> int:
    """``TRC_PV_HYPERCALL_V2_ARG_32(i)``: the 01b presence bits of argument ``i``."""
    return HYPERCALL_V2_ARG_32 << (HYPERCALL_V2_OP_BITS + 2 * i)


@dataclass(frozen=True)
class Field:
    """One payload field: ``size`` bytes at ``offset``; a bitfield if ``bits`` is non-zero.

    ``boolean``: the C code stores ``!!value`` (or converts to ``bool``) rather than truncating.
    """

    name: str
    offset: int
    size: int
    shift: int = 0
    bits: int = 0
    boolean: bool = False

    @property
    def mask(self) -> int:
        """Value mask of the field (its width in bits)."""
        return (1 << (self.bits or 8 * self.size)) - 1


@dataclass(frozen=True)
class Layout:
    """A PV record: point name, full event id (64-bit flag included), payload size, fields.

    ``kind`` is ``"struct"`` (fixed fields) or ``"hypercall_v2"`` (op word + selected args;
    ``size`` is then the minimum, 4 bytes).
    """

    point: str
    event: int
    size: int
    fields: tuple[Field, ...]
    kind: str = "struct"

    @property
    def names(self) -> tuple[str, ...]:
        """Field names, de-duplicated, in layout order."""
        return tuple(dict.fromkeys(f.name for f in self.fields))


def _f(name: str, offset: int, size: int, shift: int = 0, bits: int = 0,
       boolean: bool = False) -> Field:
    return Field(name, offset, size, shift, bits, boolean)


def _trap_word(off: int) -> tuple[Field, ...]:
    # trapnr:15, use_error_code:1, error_code:16 - GCC allocates bitfields LSB first.
    return (_f("trapnr", off, 4, 0, 15), _f("use_error_code", off, 4, 15, 1, True),
            _f("error_code", off, 4, 16, 16))


#: Struct shapes: name -> fields.  ``32``: 4-byte guest addresses; ``64``: 8-byte.
STRUCTS: Mapping[str, tuple[Field, ...]] = {
    "hypercall_v1_32": (_f("eip", 0, 4), _f("eax", 4, 4)),
    "hypercall_v1_64": (_f("eip", 0, 8), _f("eax", 8, 4)),  # packed, 12 bytes
    "hypercall_v2": (_f("op", 0, 4, 0, HYPERCALL_V2_OP_BITS),),
    "trap_32": (_f("eip", 0, 4), *_trap_word(4)),
    "trap_64": (_f("eip", 0, 8), *_trap_word(8)),  # packed, 12 bytes
    "page_fault_32": (_f("eip", 0, 4), _f("addr", 4, 4), _f("error_code", 8, 4)),
    "page_fault_64": (_f("eip", 0, 8), _f("addr", 8, 8), _f("error_code", 16, 4)),
    "eip_32": (_f("eip", 0, 4),),
    "eip_64": (_f("eip", 0, 8),),
    "empty": (),
    "eip_addr_32": (_f("eip", 0, 4), _f("addr", 4, 4)),
    "eip_addr_64": (_f("eip", 0, 8), _f("addr", 8, 8)),
    "eip_offset_32": (_f("eip", 0, 4), _f("offset", 4, 4)),
    "eip_offset_64": (_f("eip", 0, 8), _f("offset", 8, 8)),
    # x86_32 non-PAE: l1_pgentry_t is 4 bytes.
    "ptwr_nonpae": (_f("pte", 0, 4), _f("addr", 4, 4), _f("eip", 8, 4)),
    # 32-bit guests on PAE or x86_64: 8-byte pte, 4-byte addresses.
    "ptwr_pae": (_f("pte", 0, 8), _f("addr", 8, 4), _f("eip", 12, 4)),
    "ptwr_64": (_f("pte", 0, 8), _f("addr", 8, 8), _f("eip", 16, 8)),
}

#: PV minor numbers (identical in both generations; the base differs).
MINORS: Mapping[str, int] = {
    "hypercall": 1, "trap": 3, "page_fault": 4, "forced_invalid_op": 5, "emulate_privop": 6,
    "emulate_4gb": 7, "math_state_restore": 8, "paging_fixup": 9, "gdt_ldt_mapping_fault": 10,
    "ptwr_emulation": 11, "ptwr_emulation_pae": 12, "hypercall_v2": 13, "hypercall_subcall": 14,
}
POINTS = (
    "hypercall", "hypercall_v2", "hypercall_subcall", "trap", "page_fault", "forced_invalid_op",
    "emulate_privop", "emulate_4gb", "math_state_restore", "paging_fixup",
    "gdt_ldt_mapping_fault", "ptwr_emulation",
)

# Rows: (point, abi, arch, width, record minor, 64-bit flag, struct).  The seed's flag is 0 on
# the x86_32 builds (TRC_PV_64_FLAG redefined to 0 there), so x86_32 rows carry False.
_S, _X = ABI_SEED, ABI_XEN4
_ROWS: tuple[tuple[str, str, str, int, str, bool, str], ...] = (
    # ---- seed, x86_32 non-PAE and PAE hypervisors (32-bit guests only) --------------------
    *(
        row
        for arch, ptwr in (("x86_32", ("ptwr_emulation", "ptwr_nonpae")),
                           ("x86_32-pae", ("ptwr_emulation_pae", "ptwr_pae")))
        for row in (
            ("hypercall", _S, arch, 32, "hypercall", False, "hypercall_v1_32"),
            ("trap", _S, arch, 32, "trap", False, "trap_32"),
            ("page_fault", _S, arch, 32, "page_fault", False, "page_fault_32"),
            ("forced_invalid_op", _S, arch, 32, "forced_invalid_op", False, "eip_32"),
            ("emulate_privop", _S, arch, 32, "emulate_privop", False, "eip_32"),
            ("emulate_4gb", _S, arch, 32, "emulate_4gb", False, "eip_32"),
            ("math_state_restore", _S, arch, 32, "math_state_restore", False, "empty"),
            ("paging_fixup", _S, arch, 32, "paging_fixup", False, "eip_addr_32"),
            ("gdt_ldt_mapping_fault", _S, arch, 32, "gdt_ldt_mapping_fault", False,
             "eip_offset_32"),
            ("ptwr_emulation", _S, arch, 32, ptwr[0], False, ptwr[1]),
        )
    ),
    # ---- seed, x86_64 hypervisor: 32-on-64 (compat) and 64-bit guests ---------------------
    ("hypercall", _S, "x86_64", 32, "hypercall", False, "hypercall_v1_32"),
    ("hypercall", _S, "x86_64", 64, "hypercall", True, "hypercall_v1_64"),
    # ---- today (and the seed on x86_64): the same payloads, ids differ --------------------
    *(
        row
        for abi in (_S, _X)
        for row in (
            ("trap", abi, "x86_64", 32, "trap", False, "trap_32"),
            ("trap", abi, "x86_64", 64, "trap", True, "trap_64"),
            ("page_fault", abi, "x86_64", 32, "page_fault", False, "page_fault_32"),
            ("page_fault", abi, "x86_64", 64, "page_fault", True, "page_fault_64"),
            ("forced_invalid_op", abi, "x86_64", 32, "forced_invalid_op", False, "eip_32"),
            ("forced_invalid_op", abi, "x86_64", 64, "forced_invalid_op", True, "eip_64"),
            ("emulate_privop", abi, "x86_64", 32, "emulate_privop", False, "eip_32"),
            ("emulate_privop", abi, "x86_64", 64, "emulate_privop", True, "eip_64"),
            ("math_state_restore", abi, "x86_64", 32, "math_state_restore", False, "empty"),
            ("math_state_restore", abi, "x86_64", 64, "math_state_restore", False, "empty"),
            ("paging_fixup", abi, "x86_64", 32, "paging_fixup", False, "eip_addr_32"),
            ("paging_fixup", abi, "x86_64", 64, "paging_fixup", True, "eip_addr_64"),
            ("gdt_ldt_mapping_fault", abi, "x86_64", 32, "gdt_ldt_mapping_fault", False,
             "eip_offset_32"),
            ("gdt_ldt_mapping_fault", abi, "x86_64", 64, "gdt_ldt_mapping_fault", True,
             "eip_offset_64"),
            ("ptwr_emulation", abi, "x86_64", 32, "ptwr_emulation_pae", False, "ptwr_pae"),
            ("ptwr_emulation", abi, "x86_64", 64, "ptwr_emulation", True, "ptwr_64"),
        )
    ),
    # ---- xen-4 only: hypercall v2 and multicall subcalls (never flagged) -------------------
    ("hypercall_v2", _X, "x86_64", 32, "hypercall_v2", False, "hypercall_v2"),
    ("hypercall_v2", _X, "x86_64", 64, "hypercall_v2", False, "hypercall_v2"),
    ("hypercall_subcall", _X, "x86_64", 32, "hypercall_subcall", False, "hypercall_v2"),
    ("hypercall_subcall", _X, "x86_64", 64, "hypercall_subcall", False, "hypercall_v2"),
)


def _event_id(abi: str, minor: str, flag: bool) -> int:
    n = MINORS[minor]
    if abi == ABI_SEED:
        base = TRC_PV_SEED_BASE
    else:
        base = TRC_PV_SUBCALL if minor == "hypercall_subcall" else TRC_PV_ENTRY
    return base + n + (TRC_64_FLAG if flag else 0)


def _struct_size(fields: tuple[Field, ...]) -> int:
    return max((f.offset + f.size for f in fields), default=0)


def _build() -> dict[tuple[str, str, str, int], Layout]:
    table: dict[tuple[str, str, str, int], Layout] = {}
    for point, abi, arch, width, minor, flag, shape in _ROWS:
        fields = STRUCTS[shape]
        kind = "hypercall_v2" if shape == "hypercall_v2" else "struct"
        key = (point, abi, arch, width)
        assert key not in table and width in COMBOS[(abi, arch)], key
        table[key] = Layout(point, _event_id(abi, minor, flag), _struct_size(fields), fields, kind)
    return table


#: The layout table: ``(point, abi, arch, width) -> Layout``.
LAYOUTS: Mapping[tuple[str, str, str, int], Layout] = _build()


def _build_decode_index() -> dict[int, dict[int, Layout]]:
    """event id -> payload bytes -> layout (``-1`` for variable-size hypercall v2)."""
    index: dict[int, dict[int, Layout]] = {}
    extra = [
        # Between the id renumbering and the v2 record (2012-10-03) the v1 hypercall record
        # also existed with today's ids; decode it too (never produced by the encoder).
        Layout("hypercall", TRC_PV_ENTRY + 1, 8, STRUCTS["hypercall_v1_32"]),
        Layout("hypercall", TRC_PV_ENTRY + 1 + TRC_64_FLAG, 12, STRUCTS["hypercall_v1_64"]),
    ]
    for lay in [*LAYOUTS.values(), *extra]:
        size = -1 if lay.kind == "hypercall_v2" else lay.size
        same = index.setdefault(lay.event, {}).get(size)
        assert same is None or same.fields == lay.fields, (hex(lay.event), size)
        index[lay.event][size] = lay
    return index


#: Decoding index: event id -> payload size in bytes -> layout.
DECODE_INDEX: Mapping[int, Mapping[int, Layout]] = _build_decode_index()


def check_combo(abi: str, arch: str, width: int | None = None) -> None:
    """Raise ``ValueError`` unless ``(abi, arch[, width])`` names a hypervisor that existed."""
    if (abi, arch) not in COMBOS:
        known = ", ".join(f"{a}/{h}" for a, h in COMBOS)
        raise ValueError(f"no {abi} hypervisor on {arch} (known: {known})")
    if width is not None and width not in COMBOS[(abi, arch)]:
        raise ValueError(f"{abi} on {arch} runs no {width}-bit PV guests "
                         f"(guest widths: {COMBOS[(abi, arch)]})")


def layout(point: str, abi: str, arch: str, width: int) -> Layout:
    """The layout of ``point`` for this hypervisor and guest width; ``ValueError`` if none."""
    check_combo(abi, arch, width)
    try:
        return LAYOUTS[(point, abi, arch, width)]
    except KeyError:
        if point not in POINTS:
            raise ValueError(f"unknown PV trace point {point!r} (known: {POINTS})") from None
        raise ValueError(f"{abi} on {arch} has no {point} trace point "
                         f"for {width}-bit guests") from None


def hypercall_v2_words(op: int, args: Sequence[int]) -> list[int]:
    """Payload words of ``__trace_hypercall(event, op, args)``: op word, then selected args.

    ``switch (op)`` compares the full ``unsigned long`` op; the op word keeps its low 32 bits
    (bits 20-31 of an oversize op collide with the presence fields, as in Xen).
    """
    word0 = op & 0xFFFFFFFF
    words = [0]
    for i in HYPERCALL_V2_ARGS.get(op, ()):
        words.append(args[i] & 0xFFFFFFFF if i < len(args) else 0)
        word0 |= hypercall_v2_arg_flag(i)
    words[0] = word0
    return words


@functools.cache
def _packer(lay: Layout) -> tuple[struct.Struct, tuple[tuple[tuple[str, int, int, bool], ...],
                                                       ...], frozenset[str]]:
    """Storage units of a fixed layout: a struct format and, per unit, its (name, mask, shift,
    boolean) parts.  Derived from the field table once per layout."""
    units: dict[int, list[Field]] = {}
    for f in lay.fields:
        units.setdefault(f.offset, []).append(f)
    fmt = "<"
    pos = 0
    for off in sorted(units):
        size = units[off][0].size
        assert off == pos and all(f.size == size for f in units[off]), lay
        fmt += {4: "I", 8: "Q"}[size]
        pos += size
    assert pos == lay.size, lay
    parts = tuple(tuple((f.name, f.mask, f.shift, f.boolean) for f in units[off])
                  for off in sorted(units))
    return struct.Struct(fmt), parts, frozenset(lay.names)


def encode_fields(lay: Layout, values: Mapping[str, int]) -> bytes:
    """Pack ``values`` into the fixed layout ``lay`` (each value truncated to its field)."""
    st, parts, names = _packer(lay)
    if values.keys() != names:
        missing, unknown = names - values.keys(), values.keys() - names
        raise TypeError(f"{lay.point}: fields {lay.names}; missing {sorted(missing)}, "
                        f"unknown {sorted(unknown)}")
    return st.pack(*(
        sum(((int(bool(values[n])) if b else int(values[n])) & m) << sh for n, m, sh, b in unit)
        for unit in parts))


def encode(point: str, abi: str, arch: str, width: int, **values: int) -> tuple[int, bytes]:
    """``(event_id, payload)`` of one PV record.

    Hypercall v2/subcall take ``op`` and ``arg0``..``arg5`` (missing args are 0).  Every other
    point takes exactly its layout's field names.  Values are plain integers (negative values
    are taken two's complement, as C converts them).
    """
    lay = layout(point, abi, arch, width)
    if lay.kind == "hypercall_v2":
        names = {"op", *(f"arg{i}" for i in range(HYPERCALL_V2_NARGS))}
        if "op" not in values or values.keys() - names:
            raise TypeError(f"{point}: takes op and arg0..arg5, got {sorted(values)}")
        args = [int(values.get(f"arg{i}", 0)) for i in range(HYPERCALL_V2_NARGS)]
        words = hypercall_v2_words(int(values["op"]), args)
        return lay.event, b"".join(w.to_bytes(4, "little") for w in words)
    return lay.event, encode_fields(lay, values)


def find_layout(event_id: int, nbytes: int) -> Layout:
    """The layout of a PV record with this id and payload size; ``ValueError`` if unknown."""
    by_size = DECODE_INDEX.get(event_id & 0x0FFFFFFF)
    if by_size is None:
        raise ValueError(f"event {event_id:#010x} is not a PV trace record")
    lay = by_size.get(nbytes) or by_size.get(-1)
    if lay is None:
        sizes = sorted(by_size)
        raise ValueError(f"PV event {event_id:#010x} with {nbytes} payload bytes "
                         f"(expected {sizes})")
    return lay


def _decode_v2(payload: bytes) -> dict[str, int]:
    """Op and announced args.  A record whose presence bits disagree with its length (an op
    number >= 2**20 spills into them; Xen only WARNs) decodes what it can plus
    ``malformed=1``."""
    words = [int.from_bytes(payload[i:i + 4], "little") for i in range(0, len(payload), 4)]
    if not words:
        raise ValueError("hypercall v2 record without its op word")
    w0 = words[0]
    out = {"op": w0 & ((1 << HYPERCALL_V2_OP_BITS) - 1)}
    pos, ok = 1, True
    for i in range(HYPERCALL_V2_NARGS):
        kind = (w0 >> (HYPERCALL_V2_OP_BITS + 2 * i)) & 3
        if kind == 0:
            continue
        nwords = 1 if kind == HYPERCALL_V2_ARG_32 else 2  # 10b: 64-bit (never produced)
        if pos + nwords > len(words):
            ok = False
            break
        vals = words[pos:pos + nwords]
        out[f"arg{i}"] = vals[0] if nwords == 1 else vals[0] | vals[1] << 32
        pos += nwords
    if not ok or pos != len(words):
        out["malformed"] = 1
    return out


def decode(event_id: int, payload_words: Sequence[int] | bytes) -> dict[str, int]:
    """Named fields of any PV record of either generation (payload as words or bytes)."""
    if isinstance(payload_words, bytes | bytearray | memoryview):
        payload = bytes(payload_words)
    else:
        payload = b"".join((int(w) & 0xFFFFFFFF).to_bytes(4, "little") for w in payload_words)
    lay = find_layout(event_id, len(payload))
    if lay.kind == "hypercall_v2":
        return _decode_v2(payload)
    out: dict[str, int] = {}
    for f in lay.fields:
        raw = int.from_bytes(payload[f.offset:f.offset + f.size], "little")
        out[f.name] = (raw >> f.shift) & f.mask
    return out


# ---- vectorised forms (numpy), for bulk producers and columnar decoders --------------------

def encode_array(point: str, abi: str, arch: str, width: int,
                 **values: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`encode`: ``(event_ids u32[n], words u32[n, 7], extra_bytes i64[n])``.

    Arrays broadcast to a common length; scalars are allowed.  Unused words are 0.
    """
    lay = layout(point, abi, arch, width)
    n = max((np.size(v) for v in values.values()), default=1)
    cols = {k: np.broadcast_to(np.asarray(v).astype(np.uint64, copy=False)
                               if np.asarray(v).dtype.kind == "u"
                               else np.asarray(v).astype(np.int64).view(np.uint64), (n,))
            for k, v in values.items()}
    words = np.zeros((n, 7), dtype=np.uint32)
    extra = np.full(n, lay.size, dtype=np.int64)
    if lay.kind == "hypercall_v2":
        op = cols["op"]
        w0 = op & np.uint64(0xFFFFFFFF)
        zero = np.zeros(n, dtype=np.uint64)
        for code, sel in HYPERCALL_V2_ARGS.items():
            hit = op == np.uint64(code)
            for j, i in enumerate(sel):
                arg = cols.get(f"arg{i}", zero)
                words[hit, 1 + j] = (arg[hit] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
                w0 = np.where(hit, w0 | np.uint64(hypercall_v2_arg_flag(i)), w0)
            extra[hit] = 4 * (1 + len(sel))
        words[:, 0] = w0.astype(np.uint32)
        return np.full(n, lay.event, dtype=np.uint32), words, extra
    if set(cols) != set(lay.names):
        raise TypeError(f"{lay.point}: fields {lay.names}, got {sorted(cols)}")
    acc = np.zeros((n, 10), dtype=np.uint64)  # 40 bytes of 32-bit lanes (room for 8-byte tail)
    for f in lay.fields:
        col = (cols[f.name] != 0).astype(np.uint64) if f.boolean else cols[f.name]
        v = (col & np.uint64(f.mask)) << np.uint64(f.shift)
        lane = f.offset // 4
        acc[:, lane] |= v & np.uint64(0xFFFFFFFF)
        if f.size == 8:
            acc[:, lane + 1] |= v >> np.uint64(32)
    words[:, :] = acc[:, :7].astype(np.uint32)
    return np.full(n, lay.event, dtype=np.uint32), words, extra


def decode_array(lay: Layout, words: np.ndarray) -> dict[str, np.ndarray]:
    """Vectorised decode of fixed-layout records: ``words`` is ``u32[n, >= size/4]``."""
    if lay.kind != "struct":
        raise ValueError("decode_array handles fixed layouts; decode hypercall v2 per record")
    w = np.asarray(words, dtype=np.uint32).astype(np.uint64)
    out: dict[str, np.ndarray] = {}
    for f in lay.fields:
        lane = f.offset // 4
        raw = w[:, lane] if f.size == 4 else w[:, lane] | (w[:, lane + 1] << np.uint64(32))
        out[f.name] = (raw >> np.uint64(f.shift)) & np.uint64(f.mask)
    return out
