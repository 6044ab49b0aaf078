"""A hand-built PV trace whose every expected export value is written down here.

TSC rate 1 GHz (sidecar), so ns = TSC - 1000 (the first timed record is at TSC 1000).

pCPU 0: d1v0 (32/64-bit PV events) runs 1000-1500, then blocks; the idle vCPU runs from 1600;
        42 records lost at 2000.
pCPU 1: d2v1 runs 1050-1460 (hypercall, sub-call, ptwr), a switch to the idle vCPU, which runs
        from 1470.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pyxentrace.format.record import encode_record, encode_window

HZ = 1e9
IDLE = 0x7FFF

# event ids (Xen's public trace.h)
RS_RUNNABLE_TO_RUNNING = 0x00021101  # 0x00021001 | old 1 << 8 | new 0 << 4
RS_RUNNING_TO_BLOCKED = 0x00021021
RS_RUNNING_TO_RUNNABLE = 0x00021011
HYPERCALL_V2 = 0x0020100D
SUBCALL = 0x0020200E
PAGE_FAULT64 = 0x00201104
TRAP64 = 0x00201103
EMULATE_PRIVOP = 0x00201006
PTWR64 = 0x0020110B
SCHED_SWITCH = 0x0002800A
LOST = 0x0001F001

PF_EIP = 0xFFFFFFFF81000010
PF_ADDR = 0x00007F0000001000
PF_EC = 0x7
TRAP_RIP = 0xFFFFFFFF81234567
PRIV_EIP = 0xC0100000
PTE = 0x8000000012345067
PTWR_ADDR = 0xFFFF880001234008
PTWR_RIP = 0xFFFFFFFF812E525C


def lo(x: int) -> int:
    return x & 0xFFFFFFFF


def hi(x: int) -> int:
    return x >> 32


@dataclass(frozen=True)
class Rec:
    cpu: int
    tsc: int
    event: int
    words: tuple[int, ...]
    vcpu: str | None  # expected attribution where the design makes it unambiguous


RECORDS: tuple[Rec, ...] = (
    Rec(0, 1000, RS_RUNNABLE_TO_RUNNING, (1 << 16 | 0,), None),
    # mmu_update (op 1) recording argument 1 (count = 5): presence 01b at bits 22-23
    Rec(0, 1100, HYPERCALL_V2, (1 | 1 << 22, 5), "d1v0"),
    Rec(0, 1200, PAGE_FAULT64, (lo(PF_EIP), hi(PF_EIP), lo(PF_ADDR), hi(PF_ADDR), PF_EC), "d1v0"),
    # trapnr 13 (#GP), use_error_code, error code 0x18
    Rec(0, 1300, TRAP64, (lo(TRAP_RIP), hi(TRAP_RIP), 13 | 1 << 15 | 0x18 << 16), "d1v0"),
    Rec(0, 1400, EMULATE_PRIVOP, (PRIV_EIP,), "d1v0"),
    Rec(0, 1500, RS_RUNNING_TO_BLOCKED, (1 << 16 | 0,), "d1v0"),
    Rec(0, 1600, RS_RUNNABLE_TO_RUNNING, (IDLE << 16 | 0,), None),
    Rec(0, 2000, LOST, (42, 0 | 0 << 16, lo(1900), hi(1900)), None),
    Rec(1, 1050, RS_RUNNABLE_TO_RUNNING, (2 << 16 | 1,), None),
    Rec(1, 1150, HYPERCALL_V2, (23,), "d2v1"),  # iret
    Rec(1, 1250, SUBCALL, (14,), "d2v1"),  # update_va_mapping
    Rec(
        1,
        1350,
        PTWR64,
        (lo(PTE), hi(PTE), lo(PTWR_ADDR), hi(PTWR_ADDR), lo(PTWR_RIP), hi(PTWR_RIP)),
        "d2v1",
    ),
    Rec(1, 1450, SCHED_SWITCH, (2, 1, IDLE, 1), "d2v1"),
    Rec(1, 1460, RS_RUNNING_TO_RUNNABLE, (2 << 16 | 1,), None),
    Rec(1, 1470, RS_RUNNABLE_TO_RUNNING, (IDLE << 16 | 1,), None),
)
ORIGIN = 1000
LAST = 2000


def trace_bytes(records=RECORDS) -> bytes:
    out = b""
    for cpu in (0, 1):
        body = b"".join(
            encode_record(r.event, list(r.words), r.tsc) for r in records if r.cpu == cpu
        )
        out += encode_window(cpu, body)
    return out


def write_trace(path: Path, records=RECORDS, hz: float | None = HZ, meta: dict | None = None):
    path.write_bytes(trace_bytes(records))
    if hz is not None:
        m = {"tsc_hz": hz, **(meta or {})}
        Path(str(path) + ".meta.json").write_text(json.dumps(m))
    return path
