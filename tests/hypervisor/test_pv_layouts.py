"""Layout table rules, decoding of both id generations, and PV trace-point semantics.

Payloads here are written by hand from spec §2.2-2.5.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pyxentrace.format import pv_layouts as pl
from pyxentrace.hypervisor import PVTracer

from .conftest import parse_records


@pytest.mark.parametrize(("point", "abi", "arch", "width", "match"), [
    ("trap", "xen-4", "x86_32", 32, "no xen-4 hypervisor on x86_32"),
    ("trap", "xen-3.2", "x86_32", 64, "runs no 64-bit PV guests"),
    ("trap", "xen-3.2", "x86_32-pae", 64, "runs no 64-bit PV guests"),
    ("trap", "xen-5", "x86_64", 64, "no xen-5 hypervisor"),
    ("hypercall_v2", "xen-3.2", "x86_64", 64, "has no hypercall_v2"),
    ("hypercall_subcall", "xen-3.2", "x86_32", 32, "has no hypercall_subcall"),
    ("hypercall", "xen-4", "x86_64", 64, "has no hypercall trace point"),
    ("emulate_4gb", "xen-3.2", "x86_64", 32, "has no emulate_4gb"),
    ("emulate_4gb", "xen-4", "x86_64", 64, "has no emulate_4gb"),
    ("teleport", "xen-4", "x86_64", 64, "unknown PV trace point"),
])
def test_impossible_combinations_rejected(point: str, abi: str, arch: str, width: int,
                                          match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pl.layout(point, abi, arch, width)


def test_every_existing_combination_has_every_point() -> None:
    for (abi, arch), widths in pl.COMBOS.items():
        for width in widths:
            have = {p for p in pl.POINTS if (p, abi, arch, width) in pl.LAYOUTS}
            hyper = ({"hypercall_v2", "hypercall_subcall"} if abi == "xen-4"
                     else {"hypercall"})
            expect = {"trap", "page_fault", "forced_invalid_op", "emulate_privop",
                      "math_state_restore", "paging_fixup", "gdt_ldt_mapping_fault",
                      "ptwr_emulation"} | hyper
            if arch != "x86_64":
                expect.add("emulate_4gb")
            assert have == expect, (abi, arch, width)


def test_layouts_are_plain_data() -> None:
    lay = pl.layout("page_fault", "xen-4", "x86_64", 64)
    assert lay.event == 0x00201104 and lay.size == 20
    assert [(f.name, f.offset, f.size) for f in lay.fields] == [
        ("eip", 0, 8), ("addr", 8, 8), ("error_code", 16, 4)]
    te = {f.name: (f.offset, f.size, f.shift, f.bits)
          for f in pl.layout("trap", "xen-3.2", "x86_64", 32).fields}
    assert te == {"eip": (0, 4, 0, 0), "trapnr": (4, 4, 0, 15),
                  "use_error_code": (4, 4, 15, 1), "error_code": (4, 4, 16, 16)}


def test_decode_spec_trap_word() -> None:
    # Spec §2.4: trapnr=0x0d, use_error_code=1, error_code=0xffff -> bytes 0d 80 ff ff.
    payload = struct.pack("<I", 0xC0101234) + bytes.fromhex("0d80ffff")
    assert pl.decode(0x00201003, payload) == {
        "eip": 0xC0101234, "trapnr": 13, "use_error_code": 1, "error_code": 0xFFFF}
    assert pl.decode(0x0020F003, payload) == pl.decode(0x00201003, payload)


@pytest.mark.parametrize(("event", "words", "expect"), [
    (0x0020F001, [0xC0101234, 24], {"eip": 0xC0101234, "eax": 24}),
    (0x0020F101, [0x81234567, 0xFFFFFFFF, 29], {"eip": 0xFFFFFFFF81234567, "eax": 29}),
    (0x00201001, [0x1000, 3], {"eip": 0x1000, "eax": 3}),  # v1 with today's id (2012)
    (0x0020F00B, [0x23456067, 0xC0001008, 0xC0101234],
     {"pte": 0x23456067, "addr": 0xC0001008, "eip": 0xC0101234}),  # non-PAE x86_32
    (0x0020F00C, [0x23456067, 0x80000001, 0xC0001008, 0xC0101234],
     {"pte": 0x8000000123456067, "addr": 0xC0001008, "eip": 0xC0101234}),
    (0x0020F008, [], {}),
    (0x0020100D, [24 | 0x00500000, 1, 2], {"op": 24, "arg0": 1, "arg1": 2}),
    (0x0020100D, [20 | 0x01100000, 7, 9], {"op": 20, "arg0": 7, "arg2": 9}),
    (0x0020200E, [29 | 0x00100000, 1], {"op": 29, "arg0": 1}),
    (0x0020100D, [23], {"op": 23}),
    (0x0020100D, [1 | 0x00200000, 5, 6], {"op": 1, "arg0": 5 | 6 << 32}),  # 10b: 64-bit
])
def test_decode_hand_written(event: int, words: list[int], expect: dict) -> None:
    assert pl.decode(event, words) == expect


@pytest.mark.parametrize(("event", "words", "match"), [
    (0x0002800A, [1, 2, 3, 4], "not a PV trace record"),
    (0x00201003, [1, 2, 3], "with 12 payload bytes"),
    (0x0020F10B, [1, 2], "with 8 payload bytes"),
])
def test_decode_rejects(event: int, words: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pl.decode(event, words)


def test_encode_argument_errors() -> None:
    with pytest.raises(TypeError, match="missing"):
        pl.encode("trap", "xen-4", "x86_64", 64, eip=1)
    with pytest.raises(TypeError, match="unknown"):
        pl.encode("forced_invalid_op", "xen-4", "x86_64", 64, eip=1, rip=2)
    with pytest.raises(TypeError, match="op and arg0"):
        pl.encode("hypercall_v2", "xen-4", "x86_64", 64, op=1, arg9=2)


# ---- PV trace points: semantics -----------------------------------------------------------

def _records(tb) -> list:
    b = tb.map_tbufs()[0]
    return parse_records(b.window(b.cons, b.prod))


@pytest.mark.parametrize(("abi", "error_word"), [("xen-3.2", 0x1234), ("xen-4", 0xFFFF)])
def test_trap_without_error_code(make_tb, abi: str, error_word: int) -> None:
    tb = make_tb(1, pages=1)
    tb.set_current(0, 1, 0, 32)
    PVTracer(tb, abi, "x86_64").trap(0, 6, 0x1000, False, 0x1234)
    (r,) = _records(tb)
    assert r.payload == struct.pack("<II", 0x1000, 6 | error_word << 16)


def test_width_follows_the_current_vcpu(make_tb) -> None:
    tb = make_tb(2, pages=1)
    pv = PVTracer(tb)
    tb.set_current(0, 1, 0, 32)
    pv.emulate_privop(0, 0xFFFF_FFFF_C010_0000)
    tb.set_current(0, 2, 0, 64)
    pv.emulate_privop(0, 0xFFFF_FFFF_C010_0000)
    pv.math_state_restore(0)
    assert [(r.event, r.payload.hex()) for r in _records(tb)] == [
        (0x00201006, "0000" "10c0"), (0x00201106, "000010c0ffffffff"), (0x00201008, "")]


def test_x86_32_hypervisor_has_no_64bit_guests(make_tb) -> None:
    tb = make_tb(1, pages=1)
    pv = PVTracer(tb, "xen-3.2", "x86_32")
    tb.set_current(0, 1, 0, 64)
    with pytest.raises(ValueError, match="64-bit"):
        pv.trap(0, 13, 0, True, 0)
    with pytest.raises(ValueError, match="no xen-4 hypervisor on x86_32"):
        PVTracer(tb, "xen-4", "x86_32")


def test_points_are_gated_on_tb_init_done(make_tb) -> None:
    tb = make_tb(1, pages=1)
    tb.disable()
    pv = PVTracer(tb, "xen-4", "x86_64")
    pv.emulate_4gb(0, 1)  # would raise (no such point on x86_64) if it got past the gate
    pv.hypercall(0, 24, (1, 2))
    pv.bulk("trap", 0, np.zeros(3, np.uint64), trapnr=1, eip=2, use_error_code=0)
    assert tb.counters(0)["offered"] == 0 and _records(tb) == []


def test_seed_has_no_subcall_records(make_tb) -> None:
    tb = make_tb(1, pages=1)
    pv = PVTracer(tb, "xen-3.2", "x86_64")
    pv.multicall_call(0, 24, (1, 2))
    pv.hypercall(0, 24, (1, 2), eip=0x10)
    assert [(r.event, r.payload) for r in _records(tb)] == [
        (0x0020F101, struct.pack("<QI", 0x10, 24))]


def test_bulk_mixed_widths_matches_single_calls(make_tb) -> None:
    tbs = [make_tb(2, pages=2) for _ in range(2)]
    for tb in tbs:
        tb.set_current(0, 1, 0, 32)
        tb.set_current(1, 2, 3, 64)
    n = 12
    cpus = np.arange(n) % 2
    eip = 0xFFFF_8000_0000_1000 + np.arange(n, dtype=np.uint64)
    addr = 0x7000_0000 + 8 * np.arange(n, dtype=np.uint64)
    npte = 0x8000_0000_0000_0067 + (np.arange(n, dtype=np.uint64) << np.uint64(12))
    tsc = 100 + np.arange(n, dtype=np.uint64)
    single = PVTracer(tbs[0])
    for i in range(n):
        tbs[0].clock.now = int(tsc[i])
        single.ptwr_emulation(int(cpus[i]), int(addr[i]), int(npte[i]), int(eip[i]))
    PVTracer(tbs[1]).bulk("ptwr_emulation", cpus, tsc, addr=addr, npte=npte, eip=eip)
    for cpu in (0, 1):
        a, b = tbs[0].map_tbufs()[cpu], tbs[1].map_tbufs()[cpu]
        assert a.prod == b.prod == (6 * 28 if cpu == 0 else 6 * 36)
        assert bytes(a.data[: a.prod]) == bytes(b.data[: b.prod])
