"""Scripted scenarios: exact records, and every bad line refused before anything runs."""

from __future__ import annotations

import json
import struct

import pytest

from pyxentrace.errors import XentraceError
from pyxentrace.hypervisor.script import check_script, parse_script, run_script

from .conftest import buffer_bytes, rec, rec_bytes

EIP = 18446744071578889165  # 0xffffffff8100_1a4d
SCRIPT = [
    {"op": "domain", "domid": 1, "width": 64, "vcpus": 2},
    {"op": "domain", "domid": 2, "width": 32},
    {"op": "advance", "ns": 1000},
    {"op": "schedule", "pcpu": 0, "domid": 1, "vcpu": 0},
    {"op": "schedule", "pcpu": 1, "domid": 2, "vcpu": 0},
    {"op": "advance", "ns": 500},
    {"op": "hypercall", "pcpu": 0, "nr": 26, "args": [0, 1, 0, 0, 0, 0], "eip": EIP},
    {"op": "multicall", "pcpu": 0, "calls": [{"nr": 24, "args": [0, 1, 0, 0, 0, 0]}]},
    {"op": "trap", "pcpu": 0, "vector": 13, "eip": EIP, "use_error_code": True, "error_code": 0},
    {"op": "page_fault", "pcpu": 1, "eip": 0xC0100000, "addr": 0xB7001000, "error_code": 7},
    {"op": "forced_invalid_op", "pcpu": 0, "eip": EIP},
    {"op": "emulate_privop", "pcpu": 1, "eip": 0xC0100010},
    {"op": "math_state_restore", "pcpu": 0},
    {"op": "paging_fixup", "pcpu": 0, "eip": EIP, "addr": 0x7F0000001000},
    {"op": "gdt_ldt_mapping_fault", "pcpu": 1, "eip": 0xC0100020, "offset": 0x18},
    {"op": "ptwr_emulation", "pcpu": 1, "addr": 0xC0003008, "pte": 0x1234567, "eip": 0xC010},
    {"op": "advance", "ns": 1000},
    {
        "op": "ptwr_emulation",
        "pcpu": 0,
        "addr": 0xFFFF880000003008,
        "pte": 0x8000000001234067,
        "eip": EIP,
    },
]


def lines(ops: list[dict]) -> list[str]:
    return [json.dumps(op) for op in ops]


def test_script_records_exact(make_machine) -> None:
    m = make_machine(nr_cpus=2)
    ops = parse_script(lines(SCRIPT))
    check_script(ops, abi="xen-4", arch="x86_64", pcpus=2, tsc_hz=2_400_000_000)
    run_script(m, ops)
    q = struct.pack
    t0, t1, t2 = 2400, 3600, 6000
    sched0 = b"".join(
        [
            rec(0x0002800E, [32767, 0, 1000], t0),
            rec(0x0002800F, [1, 0, 1000, 10_000_000], t0),
            rec(0x0002800A, [32767, 0, 1, 0], t0),
            rec(0x00021011, [0x7FFF0000], t0),
            rec(0x00021101, [0x00010000], t0),
        ]
    )
    assert buffer_bytes(m.tb, 0) == sched0 + b"".join(
        [
            rec(0x0020100D, [26 | 0x00400000, 1], t1),
            rec(0x0020100D, [13 | 0x00400000, 1], t1),
            rec(0x0020200E, [24 | 0x00500000, 0, 1], t1),
            rec_bytes(0x00201103, q("<QI", EIP, 13 | 1 << 15), t1),
            rec_bytes(0x00201105, q("<Q", EIP), t1),
            rec(0x00201008, [], t1),
            rec_bytes(0x00201109, q("<QQ", EIP, 0x7F0000001000), t1),
            rec_bytes(0x0020110B, q("<QQQ", 0x8000000001234067, 0xFFFF880000003008, EIP), t2),
        ]
    )
    sched1 = b"".join(
        [
            rec(0x0002800E, [32767, 1, 1000], t0),
            rec(0x0002800F, [2, 0, 1000, 10_000_000], t0),
            rec(0x0002800A, [32767, 1, 2, 0], t0),
            rec(0x00021011, [0x7FFF0001], t0),
            rec(0x00021101, [0x00020000], t0),
        ]
    )
    assert buffer_bytes(m.tb, 1) == sched1 + b"".join(
        [
            rec_bytes(0x00201004, q("<III", 0xC0100000, 0xB7001000, 7), t1),
            rec_bytes(0x00201006, q("<I", 0xC0100010), t1),
            rec_bytes(0x0020100A, q("<II", 0xC0100020, 0x18), t1),
            rec_bytes(0x0020100C, q("<QII", 0x1234567, 0xC0003008, 0xC010), t1),
        ]
    )


def test_seed_script_hypercall_is_v1(make_machine) -> None:
    m = make_machine(nr_cpus=1, abi="xen-3.2", arch="x86_32-pae")
    ops = parse_script(
        lines(
            [
                {"op": "domain", "domid": 0, "vcpus": 1},
                {"op": "schedule", "pcpu": 0, "domid": 0, "vcpu": 0},
                {"op": "hypercall", "pcpu": 0, "nr": 26, "args": [0, 1], "eip": 0xC0101234},
                {"op": "emulate_4gb", "pcpu": 0, "eip": 0xC0101240},
            ]
        )
    )
    check_script(ops, abi="xen-3.2", arch="x86_32-pae", pcpus=1, tsc_hz=2_400_000_000)
    run_script(m, ops)
    data = buffer_bytes(m.tb, 0)
    assert data.endswith(
        rec_bytes(0x0020F001, struct.pack("<II", 0xC0101234, 26))
        + rec_bytes(0x0020F007, struct.pack("<I", 0xC0101240))
    )


BAD = [
    ('{"op":"advance","ns":1}\n{"op": "hypercall"', 2, "not JSON"),
    ('{"op":"frobnicate"}', 1, "unknown op"),
    ('{"op":"advance"}', 1, "missing ns"),
    ('{"op":"advance","ns":-5}', 1, "out of range"),
    ('{"op":"advance","ns":true}', 1, "unsigned integer"),
    ('{"op":"advance","ns":1,"extra":2}', 1, "unknown extra"),
    ('{"op":"domain","domid":1,"width":48}', 1, "width"),
    ('{"op":"schedule","pcpu":0,"domid":5,"vcpu":0}', 1, "no domain 5"),
    ('{"op":"hypercall","pcpu":0,"nr":1}', 1, "idle"),
    (
        '{"op":"domain","domid":1}\n{"op":"schedule","pcpu":3,"domid":1,"vcpu":0}',
        2,
        "pcpu 3 does not exist",
    ),
    (
        '{"op":"domain","domid":1}\n{"op":"schedule","pcpu":0,"domid":1,"vcpu":0}\n'
        '{"op":"emulate_4gb","pcpu":0,"eip":1}',
        3,
        "emulate_4gb",
    ),
    ('{"op":"domain","domid":1}\n{"op":"domain","domid":1}', 2, "already exists"),
    ('{"op":"multicall","pcpu":0,"calls":[]}', 1, "non-empty"),
    ('{"op":"hypercall","pcpu":0,"nr":1,"args":[1,2,3,4,5,6,7]}', 1, "at most 6"),
]


@pytest.mark.parametrize(("text", "line", "what"), BAD)
def test_bad_scripts_name_their_line(text: str, line: int, what: str) -> None:
    with pytest.raises(XentraceError) as e:
        ops = parse_script(text.splitlines(), "s.jsonl")
        check_script(ops, abi="xen-4", arch="x86_64", pcpus=2, tsc_hz=2_400_000_000, path="s.jsonl")
    assert f"s.jsonl: line {line}: " in str(e.value)
    assert what in str(e.value)
    assert "\n" not in str(e.value)


def test_seed_script_refuses_untraced_hypercall_numbers() -> None:
    ops = parse_script(
        [
            '{"op":"domain","domid":1,"width":32}',
            '{"op":"schedule","pcpu":0,"domid":1,"vcpu":0}',
            '{"op":"hypercall","pcpu":0,"nr":70}',
        ]
    )
    with pytest.raises(XentraceError, match="line 3: .*>= 64"):
        check_script(ops, abi="xen-3.2", arch="x86_64", pcpus=1, tsc_hz=10**9)


def test_schedule_back_to_the_idle_vcpu(make_machine) -> None:
    """domid 32767 (DOMID_IDLE) with vcpu = the pCPU: spec §3.3's records, by hand."""
    m = make_machine(nr_cpus=2)
    ops = parse_script(
        lines(
            [
                {"op": "domain", "domid": 1, "width": 64},
                {"op": "advance", "ns": 1000},
                {"op": "schedule", "pcpu": 1, "domid": 1, "vcpu": 0},
                {"op": "advance", "ns": 2000},
                {"op": "schedule", "pcpu": 1, "domid": 32767, "vcpu": 1},
            ]
        )
    )
    check_script(ops, abi="xen-4", arch="x86_64", pcpus=2, tsc_hz=2_400_000_000)
    run_script(m, ops)
    t0, t1 = 2400, 7200  # 1000 ns and 3000 ns at 2.4 GHz
    assert buffer_bytes(m.tb, 1) == b"".join(
        [
            rec(0x0002800E, [32767, 1, 1000], t0),
            rec(0x0002800F, [1, 0, 1000, 10_000_000], t0),
            rec(0x0002800A, [32767, 1, 1, 0], t0),
            rec(0x00021011, [0x7FFF0001], t0),
            rec(0x00021101, [0x00010000], t0),
            # d1v0 ran 2000 ns; idle was switched out (runnable) 2000 ns ago, slice -1.
            rec(0x0002800E, [1, 0, 2000], t1),
            rec(0x0002800F, [32767, 1, 2000, 0xFFFFFFFF], t1),
            rec(0x0002800A, [1, 0, 32767, 1], t1),
            rec(0x00021011, [0x00010000], t1),  # d1v0 running -> runnable
            rec(0x00021101, [0x7FFF0001], t1),  # idle runnable -> running
        ]
    )
    assert buffer_bytes(m.tb, 0) == b""


@pytest.mark.parametrize(
    ("op", "what"),
    [
        ({"op": "schedule", "pcpu": 0, "domid": 32767, "vcpu": 1}, "idle vCPU of pcpu 1"),
        ({"op": "wake", "pcpu": 0, "domid": 32767, "vcpu": 0}, "out of range 0..32751"),
        ({"op": "domain", "domid": 32767}, "out of range 0..32751"),
        ({"op": "schedule", "pcpu": 0, "domid": 32766, "vcpu": 0}, "(or 32767, the idle"),
    ],
)
def test_idle_domain_only_where_it_means_something(op: dict, what: str) -> None:
    with pytest.raises(XentraceError) as e:
        ops = parse_script(lines([{"op": "domain", "domid": 1}, op]), "s.jsonl")
        check_script(ops, abi="xen-4", arch="x86_64", pcpus=2, tsc_hz=2_400_000_000, path="s.jsonl")
    assert "s.jsonl: line 2: " in str(e.value) and what in str(e.value)


def test_advance_past_the_64_bit_tsc_is_refused() -> None:
    """At 1 GHz the TSC equals the ns count: 2**64-1 ns is the last representable TSC."""
    ops = parse_script(
        lines(
            [
                {"op": "advance", "ns": 2**64 - 1},
                {"op": "advance", "ns": 1},
            ]
        ),
        "s.jsonl",
    )
    with pytest.raises(XentraceError) as e:
        check_script(ops, abi="xen-4", arch="x86_64", pcpus=1, tsc_hz=10**9, path="s.jsonl")
    assert "s.jsonl: line 2: advance: " in str(e.value) and "2**64-1" in str(e.value)
    # At 2.4 GHz a single step of 2**63 ns already overflows.
    ops = parse_script(lines([{"op": "advance", "ns": 2**63}]))
    with pytest.raises(XentraceError, match="line 1: advance: .*past 2\\*\\*64-1"):
        check_script(ops, abi="xen-4", arch="x86_64", pcpus=1, tsc_hz=2_400_000_000)
