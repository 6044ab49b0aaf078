"""Scheduler records and their order (spec §3.3), both ABIs, bytes built by hand."""

from __future__ import annotations

import pytest

from pyxentrace.hypervisor.machine import Machine

from .conftest import buffer_bytes, rec

IDLE = 32767
TSLICE_XEN4 = 10_000_000
TSLICE_SEED = 30_000_000
NO_LIMIT = 0xFFFFFFFF


def _scenario(m: Machine) -> None:
    """idle->d1v0, block, wake, switch back, continue, on pCPU 3 (times in ns)."""
    m.add_domain(1, 2, 64)
    v = m.vcpu(1, 0)
    m.advance(1000)
    m.schedule(3, v)
    m.advance(500)
    m.block(3)
    m.schedule(3, m.idle[3])
    m.advance(2000)
    m.wake(v, 3)
    m.advance(100)
    m.schedule(3, v)
    m.advance(100)
    m.schedule(3, v)


def test_xen4_switch_block_wake_continue(make_machine) -> None:
    m = make_machine(nr_cpus=4)
    _scenario(m)
    t = [n * 12 // 5 for n in (1000, 1500, 3500, 3600, 3700)]  # TSC at 2.4 GHz
    want = b"".join(
        [
            # idle -> d1v0: the spec's example (INFPREV, INFNEXT, SWITCH, two RUNSTATE_CHANGEs)
            rec(0x0002800E, [IDLE, 3, 1000], t[0]),
            rec(0x0002800F, [1, 0, 1000, TSLICE_XEN4], t[0]),
            rec(0x0002800A, [IDLE, 3, 1, 0], t[0]),
            rec(0x00021011, [0x7FFF0003], t[0]),
            rec(0x00021101, [0x00010000], t[0]),
            # d1v0 blocks: BLOCK, then the switch to idle (next_time -1 for idle)
            rec(0x00028006, [1, 0], t[1]),
            rec(0x0002800E, [1, 0, 500], t[1]),
            rec(0x0002800F, [IDLE, 3, 500, NO_LIMIT], t[1]),
            rec(0x0002800A, [1, 0, IDLE, 3], t[1]),
            rec(0x00021021, [0x00010000], t[1]),
            rec(0x00021101, [0x7FFF0003], t[1]),
            # wake: WAKE then blocked -> runnable
            rec(0x00028004, [1, 0], t[2]),
            rec(0x00021211, [0x00010000], t[2]),
            # idle -> d1v0: the wait is measured from when the unit was switched out (1500 ns)
            rec(0x0002800E, [IDLE, 3, 2100], t[3]),
            rec(0x0002800F, [1, 0, 2100, TSLICE_XEN4], t[3]),
            rec(0x0002800A, [IDLE, 3, 1, 0], t[3]),
            rec(0x00021011, [0x7FFF0003], t[3]),
            rec(0x00021101, [0x00010000], t[3]),
            # same vCPU again: SWITCH_INFCONT then CONTINUE_RUNNING
            rec(0x00028011, [1, 0, 100, TSLICE_XEN4], t[4]),
            rec(0x00021002, [0x00010000], t[4]),
        ]
    )
    assert buffer_bytes(m.tb, 3) == want
    for cpu in (0, 1, 2):
        assert buffer_bytes(m.tb, cpu) == b""


def test_seed_switch_records(make_machine) -> None:
    m = make_machine(nr_cpus=4, abi="xen-3.2", arch="x86_64")
    _scenario(m)
    t = [n * 12 // 5 for n in (1000, 1500, 3500, 3600)]
    want = b"".join(
        [
            # INFPREV [domid, runtime], INFNEXT [domid, wait, r_time], SWITCH; no runstate records
            rec(0x0002F00E, [IDLE, 1000], t[0]),
            rec(0x0002F00F, [1, 1000, TSLICE_SEED], t[0]),
            rec(0x0002F00A, [IDLE, 3, 1, 0], t[0]),
            rec(0x0002F006, [1, 0], t[1]),
            rec(0x0002F00E, [1, 500], t[1]),
            rec(0x0002F00F, [IDLE, 500, TSLICE_SEED], t[1]),
            rec(0x0002F00A, [1, 0, IDLE, 3], t[1]),
            rec(0x0002F004, [1, 0], t[2]),
            # the seed's wait runs from the wake-up (runstate entry), 100 ns
            rec(0x0002F00E, [IDLE, 2100], t[3]),
            rec(0x0002F00F, [1, 100, TSLICE_SEED], t[3]),
            rec(0x0002F00A, [IDLE, 3, 1, 0], t[3]),
            # the same vCPU continuing: nothing at all
        ]
    )
    assert buffer_bytes(m.tb, 3) == want


def test_yield_and_pause(make_machine) -> None:
    m = make_machine(nr_cpus=2)
    m.add_domain(1, 2, 32)
    m.schedule(0, m.vcpu(1, 0))
    m.advance(1000)
    m.yield_(0)
    m.schedule(0, m.vcpu(1, 1))  # d1v1 was runnable: d1v0 goes back to runnable
    m.advance(1000)
    m.pause_domain(1, cpu=0)
    recs = buffer_bytes(m.tb, 0)
    t1, t2 = 2400, 4800
    tail = b"".join(
        [
            rec(0x00028005, [1, 0], t1),
            rec(0x0002800E, [1, 0, 1000], t1),
            rec(0x0002800F, [1, 1, 1000, TSLICE_XEN4], t1),
            rec(0x0002800A, [1, 0, 1, 1], t1),
            rec(0x00021011, [0x00010000], t1),
            rec(0x00021101, [0x00010001], t1),
            # pause: SLEEP for each vCPU; the queued one goes offline at once, the running one
            # when its pCPU switches to idle
            rec(0x00028003, [1, 0], t2),
            rec(0x00021131, [0x00010000], t2),
            rec(0x00028003, [1, 1], t2),
            rec(0x0002800E, [1, 1, 1000], t2),
            rec(0x0002800F, [IDLE, 0, 2000, NO_LIMIT], t2),  # idle left pCPU 0 at 0 ns
            rec(0x0002800A, [1, 1, IDLE, 0], t2),
            rec(0x00021031, [0x00010001], t2),
            rec(0x00021101, [0x7FFF0000], t2),
        ]
    )
    assert recs.endswith(tail)


@pytest.mark.parametrize("bad", ["running elsewhere", "blocked", "foreign idle"])
def test_impossible_switches_are_refused(make_machine, bad: str) -> None:
    from pyxentrace.errors import XentraceError

    m = make_machine(nr_cpus=2)
    m.add_domain(1, 1, 64)
    v = m.vcpu(1, 0)
    m.schedule(0, v)
    with pytest.raises(XentraceError):
        if bad == "running elsewhere":
            m.schedule(1, v)
        elif bad == "blocked":
            m.block(0)
            m.schedule(0, m.idle[0])
            m.schedule(1, v)
        else:
            m.schedule(1, m.idle[0])


def test_batched_records_keep_cross_pcpu_order(make_machine) -> None:
    """A vCPU leaving pCPU 1 and taken by pCPU 0 at the same instant: in TSC order its
    switch-out comes first, however many records pCPU 1 wrote at that instant."""
    import struct

    from pyxentrace.hypervisor.machine import Batch

    m = make_machine(nr_cpus=2)
    m.add_domain(0, 2, 64)
    v0, v1 = m.vcpu(0, 0), m.vcpu(0, 1)
    m.batch = Batch()
    m.schedule(1, v0)
    m.advance(1000)
    m.yield_(1)
    m.schedule(1, v1)  # d0v0 goes back to runnable...
    m.schedule(0, v0)  # ...and pCPU 0 runs it at the same instant
    m.batch.flush(m.tb)
    m.batch = None
    switches = []
    for cpu in (0, 1):
        data = buffer_bytes(m.tb, cpu)
        off = 0
        while off < len(data):
            hdr, tsc = struct.unpack_from("<IQ", data, off)
            n = (hdr >> 28) & 7
            if hdr & 0x0FFFFFFF == 0x0002800A:
                switches.append((tsc, cpu, struct.unpack_from("<4I", data, off + 12)))
            off += 12 + 4 * n
    assert [s[2] for s in sorted(switches)] == [
        (IDLE, 1, 0, 0),
        (0, 0, 0, 1),
        (IDLE, 0, 0, 0),
    ]
