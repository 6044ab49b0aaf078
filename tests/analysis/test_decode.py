"""Decoded fields of hand-built records equal the values put in.

Payload words are written by hand from the layouts in spec trace-buffers-and-recorder.md §2.2-2.4
(TE word = trapnr | use_error_code << 15 | error_code << 16; 64-bit values low word first).
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import write_trace

from pyxentrace.analysis.decode import decode_columns
from pyxentrace.format.record import encode_record
from pyxentrace.reader import read

RIP = 0xFFFFFFFF81234568
LO, HI = RIP & 0xFFFFFFFF, RIP >> 32
EIP32 = 0xC0105678
TSC0 = 1_000_000


def decoded(tmp_path, records: list[tuple[int, list[int]]]) -> tuple[dict, np.ndarray]:
    recs = [encode_record(e, w, TSC0 + 100 * i) for i, (e, w) in enumerate(records)]
    path = write_trace(tmp_path / "t.bin", [(0, recs)])
    b, _ = read(path)
    return decode_columns(b.event, b.nwords, b.words), b.offset


# columns whose "absent" is -1 rather than a *_valid mask (decode.py module docstring)
SENTINEL = {"vector", "op", "subcmd", "count", "target_vcpu", "sched_dom", "sched_vcpu"}
SENTINEL |= {"old_state", "new_state", "next_dom", "next_vcpu", "lost_count"}


def row(c: dict, i: int) -> dict:
    """The fields row ``i`` carries."""
    out = {}
    for k, v in c.items():
        if k.endswith("_valid"):
            continue
        valid = c.get(k + "_valid")
        if valid is not None and not valid[i]:
            continue
        if k in SENTINEL and v[i] == -1:
            continue
        out[k] = v[i].item()
    return out


@pytest.mark.parametrize("base", [0x00201000, 0x0020F000], ids=["xen-4", "seed"])
def test_trap_both_widths(tmp_path, base):
    te = 0x0D | 1 << 15 | 0xFFFF << 16  # spec: trapnr=0x0d,uec=1,ec=0xffff -> 0d 80 ff ff
    c, _ = decoded(
        tmp_path,
        [
            (base + 3, [EIP32, te]),
            (base + 0x103, [LO, HI, 0x03]),  # int3: vector 3, no error code
        ],
    )
    r0, r1 = row(c, 0), row(c, 1)
    assert (r0["minor"], r0["pv64"], r0["eip"]) == (3, False, EIP32)
    assert (r0["vector"], r0["use_error_code"], r0["error_code"]) == (13, True, 0xFFFF)
    assert (r1["minor"], r1["pv64"], r1["eip"], r1["vector"]) == (3, True, RIP, 3)
    assert r1["use_error_code"] is False and "error_code" not in r1


@pytest.mark.parametrize("base", [0x00201000, 0x0020F000], ids=["xen-4", "seed"])
def test_page_fault_both_widths_and_bits(tmp_path, base):
    addr64 = 0x00007F1234567000
    c, _ = decoded(
        tmp_path,
        [
            (base + 4, [EIP32, 0xB7001000, 0x6]),  # write | user, not present
            (base + 0x104, [LO, HI, addr64 & 0xFFFFFFFF, addr64 >> 32, 0x1D]),  # P,RSVD,I,U
        ],
    )
    r0, r1 = row(c, 0), row(c, 1)
    assert (r0["eip"], r0["addr"], r0["error_code"]) == (EIP32, 0xB7001000, 6)
    assert [r0[f"pf_{b}"] for b in ("present", "write", "user", "reserved", "ifetch")] == [
        False,
        True,
        True,
        False,
        False,
    ]
    assert (r1["eip"], r1["addr"], r1["error_code"]) == (RIP, addr64, 0x1D)
    assert [r1[f"pf_{b}"] for b in ("present", "write", "user", "reserved", "ifetch")] == [
        True,
        False,
        True,
        True,
        True,
    ]


def test_one_and_two_address_records(tmp_path):
    c, _ = decoded(
        tmp_path,
        [
            (0x00201005, [EIP32]),  # forced invalid op
            (0x00201106, [LO, HI]),  # emulate privop 64
            (0x0020F007, [EIP32]),  # emulate 4GB (seed, x86_32)
            (0x00201109, [LO, HI, 0x00100000, 0xFFFF8800]),  # paging fixup 64
            (0x0020100A, [EIP32, 0x38]),  # gdt/ldt mapping fault, offset 0x38
            (0x00201008, []),  # math state restore
        ],
    )
    assert row(c, 0)["eip"] == EIP32 and row(c, 0)["minor"] == 5
    assert row(c, 1)["eip"] == RIP and row(c, 1)["minor"] == 6
    assert row(c, 2)["eip"] == EIP32 and row(c, 2)["minor"] == 7
    assert (row(c, 3)["eip"], row(c, 3)["addr"]) == (RIP, 0xFFFF880000100000)
    assert (row(c, 4)["eip"], row(c, 4)["ldt_offset"]) == (EIP32, 0x38)
    assert row(c, 5)["minor"] == 8 and "eip" not in row(c, 5)


def test_ptwr_pae_and_64bit(tmp_path):
    pte_pae = 0x0000000187654063  # mfn 0x187654, flags P,RW,A,D (0x063)
    pte64 = 0x8000000123456067  # NX, mfn 0x123456, flags 0x067
    addr64 = 0xFFFF880001234000
    c, _ = decoded(
        tmp_path,
        [
            (0x0020100C, [pte_pae & 0xFFFFFFFF, pte_pae >> 32, 0xC1234008, EIP32]),
            (
                0x0020110B,
                [pte64 & 0xFFFFFFFF, pte64 >> 32, addr64 & 0xFFFFFFFF, addr64 >> 32, LO, HI],
            ),
        ],
    )
    r0, r1 = row(c, 0), row(c, 1)
    assert (r0["pte"], r0["addr"], r0["eip"], r0["pte_pae"]) == (pte_pae, 0xC1234008, EIP32, True)
    assert (r0["pte_mfn"], r0["pte_flags"], r0["pte_nx"]) == (0x187654, 0x063, False)
    assert (r1["pte"], r1["addr"], r1["eip"], r1["pte_pae"]) == (pte64, addr64, RIP, False)
    assert (r1["pte_mfn"], r1["pte_flags"], r1["pte_nx"]) == (0x123456, 0x067, True)


def test_hypercall_v1_both_widths(tmp_path):
    c, _ = decoded(tmp_path, [(0x0020F001, [EIP32, 17]), (0x0020F101, [LO, HI, 41])])
    assert (row(c, 0)["op"], row(c, 0)["eip"]) == (17, EIP32)
    assert (row(c, 1)["op"], row(c, 1)["eip"], row(c, 1)["pv64"]) == (41, RIP, True)


def test_hypercall_v2_arguments_and_subcommands(tmp_path):
    a32 = lambda i: 1 << (20 + 2 * i)  # noqa: E731 - presence 01b of argument i
    a64 = lambda i: 2 << (20 + 2 * i)  # noqa: E731 - presence 10b
    c, _ = decoded(
        tmp_path,
        [
            (0x0020100D, [20 | a32(0) | a32(2), 5, 3]),  # grant_table_op copy, 3 ops
            (0x0020100D, [24 | a32(0) | a32(1), 11, 2]),  # vcpu_op send_nmi, vcpu 2
            (0x0020100D, [29 | a32(0), 3]),  # sched_op poll
            (0x0020100D, [1 | a32(1), 0x80000007]),  # mmu_update 7, preempted
            (0x0020100D, [26 | a32(1), 9]),  # mmuext_op 9 ops
            (0x0020100D, [12 | a32(0) | a64(1), 7, 0x23456789, 0x1]),  # memory_op, 64-bit arg 1
            (0x0020100D, [41]),  # dm_op, no arguments
            (0x0020100D, [33 | 3 << 20 | a32(1), 0xA, 0xB, 0xC, 0xD]),  # reserved 11b skips 3
        ],
    )
    r = [row(c, i) for i in range(8)]
    assert (r[0]["op"], r[0]["subcmd"], r[0]["count"], r[0]["arg0"], r[0]["arg2"]) == (
        20,
        5,
        3,
        5,
        3,
    )
    assert "arg1" not in r[0]
    assert (r[1]["op"], r[1]["subcmd"], r[1]["target_vcpu"]) == (24, 11, 2)
    assert (r[2]["op"], r[2]["subcmd"]) == (29, 3)
    assert (r[3]["op"], r[3]["count"], r[3]["preempted"]) == (1, 7, True)
    assert (r[4]["op"], r[4]["count"]) == (26, 9) and "subcmd" not in r[4]
    assert (r[5]["op"], r[5]["subcmd"], r[5]["arg1"]) == (12, 7, 0x123456789)
    assert r[5]["arg_presence"] == (1 | 2 << 2)
    assert r[6]["op"] == 41 and not any(f"arg{i}" in r[6] for i in range(6))
    assert (r[7]["op"], r[7]["arg1"]) == (33, 0xD)  # args 0 (11b) took words 1-3
    assert "arg0" not in r[7]


def test_subcalls_linked_to_their_multicall(tmp_path):
    path = write_trace(
        tmp_path / "mc.bin",
        [
            (
                0,
                [
                    encode_record(0x0020100D, [13 | 1 << 22, 2], 1000),  # multicall, 2 calls
                    encode_record(0x0020200E, [1 | 1 << 22, 1], 1100),  # sub-call mmu_update
                    encode_record(
                        0x00201104, [LO, HI, 0, 0, 2], 1150
                    ),  # a fault during the sub-call
                    encode_record(0x0020200E, [14], 1200),  # sub-call update_va_mapping
                    encode_record(0x0020100D, [23], 1300),  # iret ends it
                    encode_record(
                        0x0020200E, [14], 1400
                    ),  # a sub-call with no multicall (HVM-style)
                ],
            )
        ],
    )
    import pyxentrace

    recs = list(pyxentrace.open(path).records())
    mc = recs[0].offset
    assert [r.fields.get("multicall_parent") for r in recs] == [None, mc, None, mc, None, None]
    assert [r.fields.get("subcall_index") for r in recs] == [None, 0, None, 1, None, None]


def test_short_record_is_flagged_not_misread(tmp_path):
    """Fields that lie within the payload are decoded, none past it (spec §2.2 layouts)."""
    c, _ = decoded(
        tmp_path,
        [
            (0x00201103, [LO, HI]),  # trap64: rip, then the TE word is missing
            (0x00201104, [LO, HI, 0x1000]),  # pf64: rip, then half an address
            (0x00201103, [LO]),  # half a rip
            (0x00201003, [EIP32, 0x0D | 1 << 15 | 7 << 16, 0x99]),  # trap32 with a word too many
            (0x0020F001, [EIP32]),  # v1 hypercall without eax
        ],
    )
    r = [row(c, i) for i in range(5)]
    assert all(x["size_ok"] is False for x in r)
    assert r[0]["eip"] == RIP and "vector" not in r[0] and "error_code" not in r[0]
    assert "use_error_code" not in r[0]
    assert r[1]["eip"] == RIP and "addr" not in r[1] and "error_code" not in r[1]
    assert not any(r[1][f"pf_{b}"] for b in ("present", "write", "user", "reserved", "ifetch"))
    assert "eip" not in r[2] and "vector" not in r[2]
    # the words that are there still decode with the layout: a too-long record is flagged only
    assert (r[3]["eip"], r[3]["vector"], r[3]["error_code"]) == (EIP32, 13, 7)
    assert r[4]["eip"] == EIP32 and "op" not in r[4]


def test_unknown_ids_with_known_minors_are_not_decoded(tmp_path):
    """Bits 9-11, the seed base with minor 13, a flagged math-state-restore: not in the table."""
    c, _ = decoded(
        tmp_path,
        [(0x00201206, [0xC0003000]), (0x0020F10D, [0x11]), (0x00201108, []), (0x0020100F, [3])],
    )
    r = [row(c, i) for i in range(4)]
    assert [x["minor"] for x in r] == [6, 13, 8, 15]
    for x in r:
        assert x["size_ok"] is False
        assert not {"eip", "op", "arg_presence", "vector", "subcmd", "count"} & set(x), x


def test_hypercall_v2_and_subcall_without_op_word(tmp_path):
    c, _ = decoded(tmp_path, [(0x0020100D, []), (0x0020200E, []), (0x0020100D, [0x12])])
    r = [row(c, i) for i in range(3)]
    for x in r[:2]:
        assert x["size_ok"] is False and "op" not in x and "arg_presence" not in x
    assert (r[2]["size_ok"], r[2]["op"], r[2]["arg_presence"]) == (True, 0x12, 0)


def test_ptwr_decoded_by_size_whatever_the_flag(tmp_path):
    """Minor 12 is the PAE layout, minor 11 the 64-bit one when 24 bytes long (spec §2.2, §2.5)."""
    pte = 0x8000000123456067
    addr = 0xFFFF880001234000
    words64 = [pte & 0xFFFFFFFF, pte >> 32, addr & 0xFFFFFFFF, addr >> 32, LO, HI]
    c, _ = decoded(
        tmp_path,
        [
            (0x0020110C, [0x87654063, 0, 0xC1234000, EIP32]),  # PAE with the 64-bit flag
            (0x0020100B, words64),  # 64-bit layout without the flag
            (0x0020100B, [0x87654063, 0xC1234000, EIP32]),  # x86_32 non-PAE (12 bytes)
        ],
    )
    r = [row(c, i) for i in range(3)]
    assert (r[0]["pte"], r[0]["addr"], r[0]["eip"], r[0]["pte_pae"]) == (
        0x87654063,
        0xC1234000,
        EIP32,
        True,
    )
    assert (r[1]["pte"], r[1]["addr"], r[1]["eip"], r[1]["pte_mfn"], r[1]["pte_nx"]) == (
        pte,
        addr,
        RIP,
        0x123456,
        True,
    )
    assert (r[2]["pte"], r[2]["addr"], r[2]["eip"], r[2]["pte_mfn"]) == (
        0x87654063,
        0xC1234000,
        EIP32,
        0x87654,
    )
    assert all(x["size_ok"] for x in r)


def test_records_and_arrow_leave_undecoded_fields_out(tmp_path):
    import pyxentrace

    path = write_trace(
        tmp_path / "a.bin",
        [
            (
                0,
                [
                    encode_record(0x00201206, [0xC0003000], 100),
                    encode_record(0x0020F10D, [0x11], 200),
                    encode_record(0x00201103, [LO], 300),
                    encode_record(0x0020100D, [], 400),
                ],
            )
        ],
    )
    t = pyxentrace.open(path)
    recs = list(t.records())
    assert [r.fields for r in recs] == [
        {"minor": 6, "size_ok": False},
        {"minor": 13, "pv64": True, "size_ok": False},
        {"minor": 3, "pv64": True, "size_ok": False},
        {"minor": 13, "size_ok": False},
    ]
    rows = t.to_arrow().to_pylist()
    for r in rows:
        assert r["pv_size_ok"] is False
        for k in ("eip", "hypercall", "hypercall_name", "vector", "arg_presence", "use_error_code"):
            assert r[k] is None, (k, r)
    assert [r["event_name"] for r in rows] == [
        "unknown_0x00201206",
        "unknown_0x0020f10d",
        "trap64",
        "hypercall_v2",
    ]


def test_scheduler_and_lost_records(tmp_path):
    first = 0x123456789A
    c, _ = decoded(
        tmp_path,
        [
            (0x00021211, [0x00030002]),  # d3v2 blocked -> runnable
            (0x00021002, [0x7FFF0001]),  # continue running d[IDLE]v1
            (0x0002800A, [0, 1, 0x7FFF, 1]),  # switch d0v1 -> idle v1
            (0x0002F00A, [5, 0, 6, 3]),  # seed switch d5v0 -> d6v3
            (0x00028004, [7, 1]),  # wake d7v1
            (0x0001F001, [72, 2 | 5 << 16, first & 0xFFFFFFFF, first >> 32]),  # lost: d2v5
        ],
    )
    r = [row(c, i) for i in range(6)]
    assert (r[0]["sched_dom"], r[0]["sched_vcpu"], r[0]["old_state"], r[0]["new_state"]) == (
        3,
        2,
        2,
        1,
    )
    assert (r[1]["sched_dom"], r[1]["sched_vcpu"]) == (0x7FFF, 1)
    assert (r[2]["sched_dom"], r[2]["sched_vcpu"], r[2]["next_dom"], r[2]["next_vcpu"]) == (
        0,
        1,
        0x7FFF,
        1,
    )
    assert (r[3]["sched_dom"], r[3]["sched_vcpu"], r[3]["next_dom"], r[3]["next_vcpu"]) == (
        5,
        0,
        6,
        3,
    )
    assert (r[4]["sched_dom"], r[4]["sched_vcpu"]) == (7, 1)
    assert (r[5]["lost_count"], r[5]["sched_dom"], r[5]["sched_vcpu"]) == (72, 2, 5)
    assert r[5]["lost_first_tsc"] == first
