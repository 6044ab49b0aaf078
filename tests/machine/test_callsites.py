"""Guest operations reach the PV call sites under Xen's conditions (spec §2.5).

Expected bytes are packed here from the layouts of spec §2.4, not with the code under test.
"""

from __future__ import annotations

import struct

import pytest

from pyxentrace.hypervisor.machine import Machine

from .conftest import rec, rec_bytes

EIP64 = 0xFFFFFFFF81234567
EIP32 = 0xC0123456


def take(m: Machine, cpu: int) -> bytes:
    """The records written on ``cpu`` since the last call (then consumed)."""
    b = m.tb.map_tbufs()[cpu]
    data = b.window(b.cons, b.prod)
    b.cons = b.prod
    return data


def te(trapnr: int, uec: int, ec: int) -> bytes:
    return struct.pack("<I", trapnr & 0x7FFF | uec << 15 | (ec & 0xFFFF) << 16)


@pytest.fixture
def m(make_machine) -> Machine:
    """xen-4 on x86_64: d1v0 (64-bit) runs on pCPU 0, d2v0 (32-bit) on pCPU 1."""
    mach = make_machine(nr_cpus=2)
    mach.add_domain(1, 1, 64)
    mach.add_domain(2, 1, 32)
    mach.schedule(0, mach.vcpu(1, 0))
    mach.schedule(1, mach.vcpu(2, 0))
    take(mach, 0)
    take(mach, 1)
    return mach


def test_inject_event_page_fault_vs_trap(m: Machine) -> None:
    m.inject_event(0, 14, EIP64, error_code=0x3, cr2=0x7F0012345000, guest_user=True)
    m.inject_event(0, 14, EIP64, software=True)  # int $14: a software interrupt -> TRAP
    m.inject_event(0, 13, EIP64, error_code=0x10)
    m.inject_event(0, 3, EIP64)
    m.inject_event(0, 0x80, EIP64, software=True)
    q = struct.pack
    assert take(m, 0) == b"".join(
        [
            rec_bytes(0x00201104, q("<QQI", EIP64, 0x7F0012345000, 0x7)),  # U bit from the mode
            rec_bytes(0x00201103, q("<Q", EIP64) + te(14, 0, 0xFFFF)),  # X86_EVENT_NO_EC
            rec_bytes(0x00201103, q("<Q", EIP64) + te(13, 1, 0x10)),
            rec_bytes(0x00201103, q("<Q", EIP64) + te(3, 0, 0xFFFF)),
            rec_bytes(0x00201103, q("<Q", EIP64) + te(0x80, 0, 0xFFFF)),
        ]
    )
    m.inject_event(1, 14, EIP32, error_code=0x6, cr2=0x0804A000, guest_user=False)
    assert take(m, 1) == rec_bytes(0x00201004, q("<III", EIP32, 0x0804A000, 0x2))


def test_privop_only_when_emulated(m: Machine) -> None:
    m.general_protection(0, EIP64, 0, emulated=True, next_eip=EIP64 + 2)
    m.general_protection(0, EIP64, 0, emulated=False, next_eip=EIP64 + 2)
    m.general_protection(0, EIP64, 8, emulated=True, next_eip=EIP64 + 2)
    q = struct.pack
    assert take(m, 0) == b"".join(
        [
            rec_bytes(0x00201106, q("<Q", EIP64 + 2)),
            rec_bytes(0x00201103, q("<Q", EIP64) + te(13, 1, 0)),
            rec_bytes(0x00201103, q("<Q", EIP64) + te(13, 1, 8)),
        ]
    )


def test_paging_fixup_only_in_shadow_mode_when_fixed(m: Machine) -> None:
    q = struct.pack
    m.shadow_fault(0, EIP64, 0x1000, 0x2, fixed=True)  # not a shadow-mode domain
    m.domains[1].shadow = True
    m.shadow_fault(0, EIP64, 0x2000, 0x2, fixed=True)
    m.shadow_fault(0, EIP64, 0x3000, 0x2, fixed=False)
    assert take(m, 0) == b"".join(
        [
            rec_bytes(0x00201104, q("<QQI", EIP64, 0x1000, 0x2)),
            rec_bytes(0x00201109, q("<QQ", EIP64, 0x2000)),
            rec_bytes(0x00201104, q("<QQI", EIP64, 0x3000, 0x2)),
        ]
    )


def test_ldt_fault_only_when_mapped_from_guest_mode(m: Machine) -> None:
    q = struct.pack
    m.ldt_fault(0, EIP64, 0x18, mapped=True, guest_mode=True)
    m.ldt_fault(0, EIP64, 0x20, mapped=True, guest_mode=False)  # Xen touched the LDT
    m.ldt_fault(0, EIP64, 0x28, mapped=False, guest_mode=False)
    m.ldt_fault(
        0, EIP64, 0x30, mapped=False, guest_mode=True, error_code=4, ldt_base=0xFFFF800000000000
    )
    assert take(m, 0) == b"".join(
        [
            rec_bytes(0x0020110A, q("<QQ", EIP64, 0x18)),
            rec_bytes(0x00201104, q("<QQI", EIP64, 0xFFFF800000000030, 0)),
        ]
    )


def test_math_state_restore_only_when_nm_not_injected(m: Machine) -> None:
    q = struct.pack
    m.device_not_available(0, EIP64, guest_ts=True)
    m.device_not_available(0, EIP64, guest_ts=False)
    m.device_not_available(1, EIP32, guest_ts=False)
    assert take(m, 0) == rec_bytes(0x00201103, q("<Q", EIP64) + te(7, 0, 0xFFFF)) + rec(0x00201008)
    assert take(m, 1) == rec(0x00201008)  # never the 64-bit flag


def test_invalid_op(m: Machine) -> None:
    q = struct.pack
    m.invalid_op(0, EIP64, forced=True)
    m.invalid_op(0, EIP64, forced=False)
    assert take(m, 0) == rec_bytes(0x00201105, q("<Q", EIP64 + 7)) + rec_bytes(
        0x00201103, q("<Q", EIP64) + te(6, 0, 0xFFFF)
    )


def test_multicall_and_hypercall_arguments(m: Machine) -> None:
    m.multicall(0, [(24, [8, 0]), (1, [0, 5]), (23, [])])
    m.hypercall(0, 20, [0x1_0000_0003, 7, 0x2_0000_0009])  # arguments truncated to 32 bits
    m.hypercall(0, 17, [1, 2, 3])
    assert take(m, 0) == b"".join(
        [
            rec(0x0020100D, [13 | 0x00400000, 3]),
            rec(0x0020200E, [24 | 0x00500000, 8, 0]),
            rec(0x0020200E, [1 | 0x00400000, 5]),
            rec(0x0020200E, [23]),
            rec(0x0020100D, [20 | 0x01100000, 3, 9]),
            rec(0x0020100D, [17]),
        ]
    )


def test_ptwr_widths_and_subword_alignment(m: Machine) -> None:
    q = struct.pack
    m.ptwr(0, 0xFFFF880001234568, 0x8000000012345067, EIP64)
    m.ptwr(1, 0xC0001234, 0x0000000012345067, EIP32, size=4)
    assert take(m, 0) == rec_bytes(
        0x0020110B, q("<QQQ", 0x8000000012345067, 0xFFFF880001234568, EIP64)
    )
    assert take(m, 1) == rec_bytes(0x0020100C, q("<QII", 0x12345067, 0xC0001230, EIP32))


def test_guest_operation_on_idle_pcpu_is_refused(make_machine) -> None:
    from pyxentrace.errors import XentraceError

    mach = make_machine(nr_cpus=1)
    with pytest.raises(XentraceError, match="idle"):
        mach.hypercall(0, 17)


def test_seed_abi_records(make_machine) -> None:
    q = struct.pack
    mach = make_machine(nr_cpus=1, abi="xen-3.2", arch="x86_64")
    mach.add_domain(1, 1, 64)
    mach.schedule(0, mach.vcpu(1, 0))
    take(mach, 0)
    mach.hypercall(0, 26, [0, 1], eip=EIP64)
    mach.hypercall(0, 64, [], eip=EIP64)  # out of range: rejected before the trace call
    mach.multicall(0, [(1, [0, 1]), (14, [])], eip=EIP64)
    mach.inject_event(0, 3, EIP64)  # the seed traced the error-code register (0)
    assert take(mach, 0) == b"".join(
        [
            rec_bytes(0x0020F101, q("<QI", EIP64, 26)),
            rec_bytes(0x0020F101, q("<QI", EIP64, 13)),
            rec_bytes(0x0020F103, q("<Q", EIP64) + te(3, 0, 0)),
        ]
    )


def test_seed_x86_32_non_pae(make_machine) -> None:
    q = struct.pack
    mach = make_machine(nr_cpus=1, abi="xen-3.2", arch="x86_32")
    mach.add_domain(0, 1, 32)
    mach.schedule(0, mach.vcpu(0, 0))
    take(mach, 0)
    mach.ptwr(0, 0xC0001000, 0x12345067, EIP32)
    mach.pv.emulate_4gb(0, EIP32)
    mach.hypercall(0, 23, eip=EIP32)
    assert take(mach, 0) == b"".join(
        [
            rec_bytes(0x0020F00B, q("<III", 0x12345067, 0xC0001000, EIP32)),
            rec_bytes(0x0020F007, q("<I", EIP32)),
            rec_bytes(0x0020F001, q("<II", EIP32, 23)),
        ]
    )


def test_rules_decide_many_operations_at_once() -> None:
    """The vectorised rules the workloads use: per operation, the point and values spec §2.5
    gives (written out here), in the operations' own order within each point."""
    from pyxentrace.hypervisor.machine import general_protection_sites, inject_event_sites

    sites = general_protection_sites(
        eip=[0x100, 0x200, 0x300, 0x400],
        error_code=[0, 0, 8, 0],
        emulated=[True, False, True, True],
        next_eip=[0x102, 0x202, 0x302, 0x402],
    )
    got = {s.point: (s.sel.tolist(), {k: v.tolist() for k, v in s.values.items()}) for s in sites}
    assert got["emulate_privop"] == ([0, 3], {"eip": [0x102, 0x402]})
    assert got["trap"] == (
        [1, 2],
        {
            "eip": [0x200, 0x300],
            "trapnr": [13, 13],
            "use_error_code": [True, True],
            "error_code": [0, 8],
        },
    )
    assert got["page_fault"][0] == []
    sites = inject_event_sites(
        [14, 14, 3, 8, 0x80],
        0x1000,
        software=[False, True, False, False, True],
        error_code=[0x3, 0, 0, 0, 0],
        guest_user=True,
    )
    got = {s.point: (s.sel.tolist(), {k: v.tolist() for k, v in s.values.items()}) for s in sites}
    assert got["page_fault"] == ([0], {"eip": [0x1000], "addr": [0], "error_code": [0x7]})
    assert got["trap"][0] == [1, 2, 3, 4]
    assert got["trap"][1]["use_error_code"] == [False, False, True, False]  # only #DF pushes


def test_guest_operations_refused_in_batch_mode(m: Machine) -> None:
    """Batch mode is the workloads' bulk path; a guest operation through the machine then
    would bypass the batch's TSC order."""
    from pyxentrace.hypervisor.machine import Batch

    m.batch = Batch()
    with pytest.raises(RuntimeError, match="batch mode"):
        m.general_protection(0, EIP64, 0, emulated=True, next_eip=EIP64 + 2)
    m.batch = None
