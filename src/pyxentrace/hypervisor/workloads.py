"""Workloads for the PV machine: profiles, a scheduler loop, and bulk guest operations.

A :class:`Profile` gives a host (pCPUs, domains) and, per domain kind, a :class:`Behaviour`:
CPU bursts that end in ``SCHEDOP_block`` or ``SCHEDOP_yield``, blocked times, wake-up latency,
and the rates of guest operations per second of running time.  :class:`WorkloadRunner` plays it
on a :class:`~.machine.Machine` in chunks of simulated time: a discrete-event scheduler (Python,
through the machine's scheduler, so the records are exactly the machine's) and, for every
running interval, the guest operations drawn with numpy and written through the bulk path in
TSC order.  Guest operations follow the machine's call-site conditions (vector 14 -> PAGE_FAULT,
#GP(0) emulated -> EMULATE_PRIVOP else TRAP 13, PAGING_FIXUP only in shadow-mode domains, ...).

Everything is drawn from one ``numpy`` generator seeded by ``seed``: for a given profile, host
and seed the records of every pCPU are the same on every run.

The ``dom0`` profile is calibrated on the real host of DESIGN.md (PV dom0, 4 vCPUs, compression
benchmark; per vCPU over 8.7 s: 321,134 hypercalls, 317,206 privops, 13,811 ptwr, runstate
averages running 776k / blocked 1.1M / runnable 26k cycles at 2.4 GHz).
"""

from __future__ import annotations

import heapq
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pyxentrace.errors import XentraceError
from pyxentrace.format.pv_layouts import ABI_SEED, encode_array, layout
from pyxentrace.format.record import TRC_HD_CYCLE_FLAG
from pyxentrace.hypervisor.machine import (
    NR_HYPERCALLS_SEED,
    VCPU,
    Batch,
    DomainSpec,
    Machine,
    Site,
    TRAP_page_fault,
    device_not_available_sites,
    general_protection_sites,
    inject_event_sites,
    invalid_op_sites,
    ldt_fault_sites,
    parse_domains,
    ptwr_sites,
    shadow_fault_sites,
)
from pyxentrace.hypervisor.pv import record_values

# Hypercall numbers used below (xen/include/public/xen.h).
MMU_UPDATE, STACK_SWITCH, FPU_TASKSWITCH, UPDATE_DESCRIPTOR = 1, 3, 5, 10
MEMORY_OP, MULTICALL, UPDATE_VA_MAPPING, SET_TIMER_OP = 12, 13, 14, 15
XEN_VERSION, GRANT_TABLE_OP, IRET, VCPU_OP, SET_SEGMENT_BASE = 17, 20, 23, 24, 25
MMUEXT_OP, SCHED_OP, EVENT_CHANNEL_OP, PHYSDEV_OP = 26, 29, 32, 33
SCHEDOP_yield, SCHEDOP_block = 0, 1  # noqa: N816
#: Hypercalls a 32-bit PV guest never makes (x86-64 only).
ONLY_64BIT = frozenset({SET_SEGMENT_BASE})


@dataclass(frozen=True)
class Behaviour:
    """How the vCPUs of one kind of domain run (times in microseconds, rates per second of
    running time)."""

    #: Mean CPU burst (exponential) before the vCPU blocks or yields.
    burst_us: float
    #: Probability that a burst ends in ``SCHEDOP_block`` (else ``SCHEDOP_yield``).
    p_block: float
    #: Mean time blocked (exponential).
    block_us: float
    #: Mean delay from a wake-up to the schedule softirq on the chosen pCPU.
    wake_latency_us: float = 10.0
    #: Random hypercalls: number -> rate (``sched_op`` comes from blocks and yields).
    hypercalls: Mapping[int, float] = field(default_factory=dict)
    #: Multicalls per second, mean entries, and the entries' hypercall mix (weights).
    multicalls: float = 0.0
    multicall_entries: float = 4.0
    multicall_mix: Mapping[int, float] = field(default_factory=dict)
    #: #GP(0) faults on privileged instructions; the fraction whose emulation fails (-> TRAP 13).
    privop: float = 0.0
    privop_fail: float = 0.0
    #: Writes to page-table pages emulated (PTWR).
    ptwr: float = 0.0
    #: Page faults bounced to the guest.
    page_fault: float = 0.0
    #: Hardware exceptions bounced (vector -> rate) and software interrupts (vector -> rate).
    traps: Mapping[int, float] = field(default_factory=dict)
    soft_ints: Mapping[int, float] = field(default_factory=dict)
    #: Forced-emulation ``cpuid`` (ud2 "xen" prefix) and other #UD.
    forced_invalid_op: float = 0.0
    #: #NM with the guest's CR0.TS clear (MATH_STATE_RESTORE) and set (TRAP 7).
    math_state_restore: float = 0.0
    nm_injected: float = 0.0
    #: Shadow-paging faults fixed (only traced for domains in shadow mode).
    paging_fixup: float = 0.0
    #: LDT shadow-mapping faults fixed.
    ldt_fault: float = 0.0


@dataclass(frozen=True)
class Profile:
    """A host and its workload: pCPUs, domains, behaviour of dom0 and of the other domains."""

    name: str
    description: str
    pcpus: int
    domains: str
    dom0: Behaviour
    domu: Behaviour
    #: Simulated time per chunk (one bulk write), microseconds.
    chunk_us: float = 2000.0
    #: Domains (by id) that run in shadow paging mode.
    shadow_domains: tuple[int, ...] = ()

    def behaviour(self, domid: int) -> Behaviour:
        """dom0's behaviour for domain 0, the guests' for any other."""
        return self.dom0 if domid == 0 else self.domu

    def domain_specs(self, arch: str, spec: str | None = None) -> list[DomainSpec]:
        """The profile's domains (or ``spec``); on a 32-bit hypervisor default widths are 32."""
        doms = parse_domains(spec or self.domains)
        if spec is None and arch.startswith("x86_32"):
            doms = [DomainSpec(d.domid, d.vcpus, 32, d.name) for d in doms]
        return doms


# ---- calibration: the real PV dom0 host (DESIGN.md) ------------------------------------------
_CAL_HZ = 2.4e9
_CAL_RUNNING = 11_540 * 776_000 / _CAL_HZ  # seconds of running time of the measured vCPU
_CAL_BLOCKS, _CAL_SCHED_OP = 10_424, 11_669
_P_BLOCK = _CAL_BLOCKS / _CAL_SCHED_OP  # the other sched_op calls are yields
DOM0 = Behaviour(
    # Every burst ends in a sched_op (block or yield): 11,669 of them in the running time.
    # A yield keeps the vCPU running, so a running interval averages burst / p_block.
    burst_us=_CAL_RUNNING / _CAL_SCHED_OP * 1e6,
    p_block=_P_BLOCK,
    block_us=1_100_000 / _CAL_HZ * 1e6,
    wake_latency_us=26_000 / _CAL_HZ * 1e6,
    hypercalls={
        nr: n / _CAL_RUNNING
        for nr, n in {
            IRET: 159_268,
            VCPU_OP: 32_036,
            STACK_SWITCH: 28_746,
            SET_SEGMENT_BASE: 28_746,
            MMUEXT_OP: 27_473,
            EVENT_CHANNEL_OP: 16_531,
            MMU_UPDATE: 13_644,
            XEN_VERSION: 3_021,
        }.items()
    },
    privop=317_206 / _CAL_RUNNING,
    ptwr=13_811 / _CAL_RUNNING,
    forced_invalid_op=1 / _CAL_RUNNING,
)

GUEST = Behaviour(
    burst_us=1500.0,
    p_block=0.9,
    block_us=3000.0,
    wake_latency_us=15.0,
    hypercalls={
        IRET: 20_000,
        EVENT_CHANNEL_OP: 2_500,
        VCPU_OP: 2_000,
        MMU_UPDATE: 3_000,
        MMUEXT_OP: 2_000,
        UPDATE_VA_MAPPING: 1_000,
        GRANT_TABLE_OP: 800,
        STACK_SWITCH: 1_500,
        SET_SEGMENT_BASE: 1_500,
        XEN_VERSION: 100,
    },
    multicalls=400,
    multicall_entries=4,
    multicall_mix={UPDATE_VA_MAPPING: 5, MMU_UPDATE: 2, MMUEXT_OP: 2, STACK_SWITCH: 1},
    privop=8_000,
    privop_fail=0.001,
    ptwr=1_000,
    page_fault=4_000,
    traps={6: 3, 13: 5, 0: 1},
    soft_ints={3: 3},
    forced_invalid_op=2,
    math_state_restore=60,
    nm_injected=5,
    ldt_fault=0.5,
)

STORM = Behaviour(
    burst_us=30_000.0,
    p_block=0.3,
    block_us=500.0,
    wake_latency_us=10.0,
    hypercalls={
        XEN_VERSION: 150_000,
        VCPU_OP: 200_000,
        MMU_UPDATE: 300_000,
        MMUEXT_OP: 200_000,
        GRANT_TABLE_OP: 100_000,
        EVENT_CHANNEL_OP: 150_000,
        IRET: 100_000,
        MEMORY_OP: 20_000,
    },
    multicalls=100_000,
    multicall_entries=6,
    multicall_mix={
        UPDATE_VA_MAPPING: 4,
        MMU_UPDATE: 3,
        MMUEXT_OP: 2,
        GRANT_TABLE_OP: 1,
        VCPU_OP: 1,
        FPU_TASKSWITCH: 1,
    },
    privop=50_000,
)

PAGETABLE = Behaviour(
    burst_us=600.0,
    p_block=0.8,
    block_us=400.0,
    wake_latency_us=12.0,
    hypercalls={
        MMU_UPDATE: 40_000,
        UPDATE_VA_MAPPING: 10_000,
        MMUEXT_OP: 15_000,
        IRET: 20_000,
        STACK_SWITCH: 2_000,
        SET_SEGMENT_BASE: 2_000,
        VCPU_OP: 1_000,
    },
    multicalls=3_000,
    multicall_entries=8,
    multicall_mix={UPDATE_VA_MAPPING: 6, MMU_UPDATE: 3, MMUEXT_OP: 1},
    privop=5_000,
    ptwr=40_000,
    page_fault=40_000,
    traps={13: 2},
    paging_fixup=30_000,
    ldt_fault=50,
    math_state_restore=100,
)

IDLE = Behaviour(
    burst_us=20.0,
    p_block=1.0,
    block_us=10_000.0,
    wake_latency_us=8.0,
    hypercalls={VCPU_OP: 50_000, EVENT_CHANNEL_OP: 25_000, IRET: 50_000, XEN_VERSION: 2_000},
    privop=20_000,
)

PROFILES: dict[str, Profile] = {
    "dom0": Profile(
        "dom0",
        "the calibrated real host: a PV dom0 with 4 vCPUs under a compression benchmark",
        pcpus=4,
        domains="0:4x64",
        dom0=DOM0,
        domu=GUEST,
        chunk_us=5000,
    ),
    "hypercall-storm": Profile(
        "hypercall-storm",
        "CPU-bound guests hammering Xen with hypercalls and multicalls",
        pcpus=2,
        domains="0:2x64,1:2x32",
        dom0=STORM,
        domu=STORM,
        chunk_us=1000,
    ),
    "pagetable": Profile(
        "pagetable",
        "page-table heavy guests: mmu_update, ptwr, page faults, shadow mode",
        pcpus=2,
        domains="0:1x64,1:2x64,2:1x32",
        dom0=PAGETABLE,
        domu=PAGETABLE,
        chunk_us=2000,
        shadow_domains=(1,),
    ),
    "idle": Profile(
        "idle",
        "an idle host: vCPUs wake on timer ticks and block again",
        pcpus=4,
        domains="0:4x64,1:1x64",
        dom0=IDLE,
        domu=IDLE,
        chunk_us=20_000,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; :class:`XentraceError` listing the known ones if none."""
    try:
        return PROFILES[name]
    except KeyError:
        raise XentraceError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None


# ---- the runner -------------------------------------------------------------------------------

_BURST_END, _WAKE, _SCHED, _TSLICE = range(4)
#: How many distinct kernel sites each kind of guest operation happens at.
SITES = {"privop": 48, "ptwr": 12, "kernel": 256}
#: Bytes per record assumed when slicing bulk writes, and the smallest slice.
REC_BYTES = 16
MIN_SLICE = 512
#: Credit2's default rate limit: a running vCPU is not preempted before it ran this long.
RATELIMIT_NS = 1_000_000
HYPERCALL_PAGE_64 = 0xFFFFFFFF81001000
HYPERCALL_PAGE_32 = 0xC1001000
KTEXT_64, KTEXT_32 = 0xFFFFFFFF81000000, 0xC1000000
UTEXT, UHEAP_64, UHEAP_32 = 0x00400000, 0x00007F0000000000, 0x08000000


@dataclass
class RunStats:
    """What a run did: simulated and wall time, records offered, scheduler activity."""

    sim_ns: int = 0
    wall_s: float = 0.0
    offered: int = 0
    switches: int = 0
    wakes: int = 0
    blocks: int = 0
    chunks: int = 0


class WorkloadRunner:
    """Plays ``profile`` on ``machine`` (whose domains must exist) with generator ``seed``."""

    def __init__(self, machine: Machine, profile: Profile, seed: int = 0):
        self.m = machine
        self.profile = profile
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._site_tables: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._slice = 0
        self._pace: Callable[[int], None] | None = None
        self.stats = RunStats()
        self._heap: list[tuple[int, int, int, object]] = []
        self._seq = 0
        self._boosted: deque[VCPU] = deque()
        self._queued: deque[VCPU] = deque()
        self._pending = [False] * machine.nr_pcpus
        self._run_start: list[int | None] = [None] * machine.nr_pcpus
        self._intervals: list[tuple[int, VCPU, int, int]] = []
        hz = machine.tsc_hz
        self._margin = max(1, hz // 1_000_000)  # 1 us of TSC around scheduler activity
        self._beh = {
            v: profile.behaviour(d.domid) for d in machine.domains.values() for v in d.vcpus
        }
        for d in machine.domains.values():
            d.shadow = d.shadow or d.domid in profile.shadow_domains

    # ---- event queue -----------------------------------------------------------------------
    def _push(self, t: int, kind: int, obj: object) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, obj))

    def _exp_ns(self, mean_us: float) -> int:
        return max(1, int(self.rng.exponential(mean_us * 1000.0)))

    # ---- scheduler policy ------------------------------------------------------------------
    def _enqueue(self, v: VCPU, boosted: bool) -> None:
        (self._boosted if boosted else self._queued).append(v)

    def _pop(self) -> VCPU | None:
        while self._boosted or self._queued:
            v = (self._boosted or self._queued).popleft()
            if v.running_on is None and not v.blocked and not v.paused:
                return v
        return None

    def _raise_sched(self, cpu: int, at: int) -> None:
        if not self._pending[cpu]:
            self._pending[cpu] = True
            self._push(at, _SCHED, (cpu, "wake"))

    def _place(self, v: VCPU) -> None:
        """Find a pCPU for a runnable ``v``: an idle one (its own first), else preempt the
        vCPU that has run longest once it passed the rate limit."""
        m, now = self.m, self.m.now_ns
        lat = self._exp_ns(self._beh[v].wake_latency_us)
        order = [v.processor] + [c for c in range(m.nr_pcpus) if c != v.processor]
        for c in order:
            if m.curr[c].is_idle and not self._pending[c]:
                self._raise_sched(c, now + lat)
                return
        best, best_t = None, None
        for c in order:
            start = self._run_start[c]
            if self._pending[c] or start is None:
                continue
            t = max(now + lat, m.curr[c].unit_entry + RATELIMIT_NS)
            if best_t is None or t < best_t:
                best, best_t = c, t
        if best is not None and best_t is not None:
            self._raise_sched(best, best_t)

    def _switch(self, cpu: int, nxt: VCPU) -> None:
        m = self.m
        prev = m.curr[cpu]
        if nxt is not prev and not prev.is_idle:
            self._close(cpu)
        m.schedule(cpu, nxt)
        if nxt is prev:
            return
        self.stats.switches += 1
        if nxt.is_idle:
            self._run_start[cpu] = None
            return
        self._run_start[cpu] = max(m.tsc_at(m.now_ns), m.last_tsc)  # after the switch
        beh = self._beh[nxt]
        self._push(m.now_ns + self._exp_ns(beh.burst_us), _BURST_END, (nxt, nxt.gen))
        self._push(m.now_ns + m.tslice_ns, _TSLICE, (cpu, nxt.gen))

    def _schedule(self, cpu: int, reason: str) -> None:
        """``schedule()`` on ``cpu``: pick the next vCPU (boosted wakers first)."""
        m = self.m
        prev = m.curr[cpu]
        if prev.is_idle:
            nxt = self._pop()
            if nxt is not None:
                self._switch(cpu, nxt)
            return
        if prev.blocked or prev.paused:
            nxt = self._pop()
            self._switch(cpu, nxt if nxt is not None else m.idle[cpu])
            return
        if reason == "wake" and m.now_ns - prev.unit_entry < RATELIMIT_NS:
            return
        nxt = self._pop()
        if nxt is None:
            if reason != "wake":
                self._close(cpu)
                m.schedule(cpu, prev)  # continues: INFCONT + CONTINUE_RUNNING (xen-4)
                self._resume(cpu)
                if reason == "yield":
                    beh = self._beh[prev]
                    self._push(m.now_ns + self._exp_ns(beh.burst_us), _BURST_END, (prev, prev.gen))
                else:
                    self._push(m.now_ns + m.tslice_ns, _TSLICE, (cpu, prev.gen))
            return
        self._switch(cpu, nxt)
        self._enqueue(prev, boosted=False)
        self._place(prev)

    def _burst_end(self, v: VCPU, gen: int) -> None:
        if v.gen != gen or v.running_on is None:
            return
        m, cpu, beh = self.m, v.running_on, self._beh[v]
        eip = self._hypercall_eip(v, SCHED_OP)
        self._close(cpu)
        if self.rng.random() < beh.p_block:
            m.hypercall(cpu, SCHED_OP, (SCHEDOP_block,), eip)
            m.block(cpu)
            self.stats.blocks += 1
            self._schedule(cpu, "block")
            self._push(m.now_ns + self._exp_ns(beh.block_us), _WAKE, v)
        else:
            m.hypercall(cpu, SCHED_OP, (SCHEDOP_yield,), eip)
            m.yield_(cpu)
            self._schedule(cpu, "yield")
        self._resume(cpu)

    def _wake(self, v: VCPU) -> None:
        if v.paused or not v.blocked:
            return
        # The WAKE record goes on v's last pCPU, maybe in the middle of another vCPU's run.
        self._close(v.processor)
        self.m.wake(v)
        self._resume(v.processor)
        self.stats.wakes += 1
        self._enqueue(v, boosted=True)
        self._place(v)

    def sites(self, kind: str, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Kernel addresses where guest operations of ``kind`` happen, and their Zipf
        weights: a real kernel executes privileged instructions and page-table writes at a
        few hot sites."""
        key = (kind, width)
        if key not in self._site_tables:
            n = SITES.get(kind, 32)
            rng = np.random.default_rng([self.seed, zlib.crc32(kind.encode()), width])
            base = KTEXT_64 if width == 64 else KTEXT_32
            addr = np.uint64(base) + rng.integers(0, 0x800000, n).astype(np.uint64)
            w = 1.0 / np.arange(1, n + 1)
            self._site_tables[key] = (addr, w / w.sum())
        return self._site_tables[key]

    def _hypercall_eip(self, v: VCPU, nr: int) -> int:
        return (HYPERCALL_PAGE_64 if v.width == 64 else HYPERCALL_PAGE_32) + 32 * nr

    # ---- running intervals -> guest operations -------------------------------------------
    # A running interval ends wherever its pCPU emits scheduler records (a switch, a
    # continuation, a sched_op, a WAKE) and resumes after them, so that guest operations,
    # drawn strictly inside intervals, never land between records Xen emits back to back.
    def _resume(self, cpu: int) -> None:
        """Reopen ``cpu``'s interval after the records just emitted (if a guest runs)."""
        if self._run_start[cpu] is not None:
            self._run_start[cpu] = max(self.m.tsc_at(self.m.now_ns), self.m.last_tsc)

    def _close(self, cpu: int) -> None:
        start = self._run_start[cpu]
        if start is not None:
            end = self.m.tsc_at(self.m.now_ns)
            if end - start > 2 * self._margin:
                self._intervals.append((cpu, self.m.curr[cpu], start, end))
            self._run_start[cpu] = end

    def _guest_ops(self, batch: Batch) -> None:
        if not self._intervals:
            return
        ivs, self._intervals = self._intervals, []
        groups: dict[tuple[int, int, bool], list[tuple[int, VCPU, int, int]]] = {}
        behs: dict[int, Behaviour] = {}
        for iv in ivs:
            v = iv[1]
            beh = self._beh[v]
            behs[id(beh)] = beh
            key = (id(beh), v.width, self.m.domains[v.domid].shadow)
            groups.setdefault(key, []).append(iv)
        for (bid, width, shadow), items in groups.items():
            _GuestOps(self, behs[bid], width, shadow, items).emit(batch)

    # ---- main loop -------------------------------------------------------------------------
    def start(self) -> None:
        """Queue every domain's vCPUs and let the pCPUs pick them up."""
        for d in sorted(self.m.domains.values(), key=lambda d: d.domid):
            for v in d.vcpus:
                if v.running_on is None and not v.blocked and not v.paused:
                    self._enqueue(v, boosted=False)
                    self._place(v)

    def run(
        self,
        duration_s: float,
        *,
        speed: float = 1.0,
        on_chunk: Callable[[float], bool] | None = None,
    ) -> RunStats:
        """Simulate ``duration_s`` seconds; ``speed`` = simulated seconds per wall second
        (0: as fast as possible).  ``on_chunk(simulated_seconds)`` returning ``False`` stops."""
        m = self.m
        t_begin = m.now_ns
        end = t_begin + int(duration_s * 1e9)
        chunk = max(1, int(self.profile.chunk_us * 1000))
        wall0 = time.monotonic()
        tsc0 = m.tsc_at(t_begin)

        def pace(tsc: int) -> None:
            ahead = (tsc - tsc0) / m.tsc_hz / speed - (time.monotonic() - wall0)
            if ahead > 0:
                time.sleep(ahead)

        # Write each chunk in slices of about an eighth of a buffer per pCPU, paced by their
        # TSC, so that no single write outruns a recorder woken at half full.
        per_cpu = (m.tb.data_size // 8) // REC_BYTES
        self._slice = max(MIN_SLICE, per_cpu * m.nr_pcpus)
        self._pace = pace if speed > 0 else None
        self.start()
        t = t_begin
        while t < end:
            t_next = min(end, t + chunk)
            self._run_chunk(t_next)
            t = t_next
            self.stats.sim_ns = t - t_begin
            if speed > 0:
                pace(m.tsc_at(t))
            if on_chunk is not None and not on_chunk((t - t_begin) / 1e9):
                break
        self.stats.wall_s = time.monotonic() - wall0
        return self.stats

    def _run_chunk(self, t_end: int) -> None:
        m = self.m
        batch = m.batch = Batch()
        try:
            while self._heap and self._heap[0][0] < t_end:
                t, _, kind, obj = heapq.heappop(self._heap)
                m.set_time(max(t, m.now_ns))
                if kind == _BURST_END:
                    v, gen = obj  # type: ignore[misc]
                    self._burst_end(v, gen)
                elif kind == _WAKE:
                    self._wake(obj)  # type: ignore[arg-type]
                elif kind == _SCHED:
                    cpu, reason = obj  # type: ignore[misc]
                    self._pending[cpu] = False
                    self._schedule(cpu, reason)
                else:
                    cpu, gen = obj  # type: ignore[misc]
                    if m.curr[cpu].gen == gen and not m.curr[cpu].is_idle:
                        self._schedule(cpu, "tslice")
            m.set_time(t_end)
            for cpu in range(m.nr_pcpus):
                self._close(cpu)
            self._guest_ops(batch)
            self.stats.offered += batch.flush(m.tb, self._slice, self._pace)
            self.stats.chunks += 1
        finally:
            m.batch = None

    def pause_all(self) -> None:
        """End of run, 10 us after the last chunk: pause every domain from pCPU 0 (SLEEP
        records, running vCPUs switched to idle), so that every pCPU owing a LOST_RECORDS
        record writes it if there is room (let the recorder drain first)."""
        m = self.m
        m.set_time(m.now_ns + 10_000)
        batch = m.batch = Batch()
        try:
            for cpu in range(m.nr_pcpus):
                self._close(cpu)
            self._guest_ops(batch)
            for d in sorted(m.domains.values(), key=lambda d: d.domid):
                m.pause_domain(d.domid)
            # An idle pCPU still owing a LOST_RECORDS record gets a scheduler pass (idle
            # continues), which writes it.
            for cpu in range(m.nr_pcpus):
                if m.tb.pending_lost(cpu) and m.curr[cpu].is_idle:
                    m.schedule(cpu, m.curr[cpu])
            self._run_start = [None] * m.nr_pcpus
            self.stats.offered += batch.flush(m.tb)
        finally:
            m.batch = None
        self._heap.clear()


class _GuestOps:
    """Guest operations for the running intervals of one (behaviour, width, shadow) group.

    Every operation is drawn at a TSC strictly inside a running interval (the runner cuts the
    intervals wherever the pCPU emits scheduler records), and each multicall's span - its
    hypercall record and its sub-calls - is cut out of the interval before anything else is
    drawn, so no other record lands inside a multicall (Xen runs it without returning to the
    guest).  Which trace point an operation reaches, and with which values, is decided by the
    machine's call-site rules (:func:`~.machine.general_protection_sites` and friends).
    """

    def __init__(
        self,
        runner: WorkloadRunner,
        beh: Behaviour,
        width: int,
        shadow: bool,
        items: list[tuple[int, VCPU, int, int]],
    ):
        self.r = runner
        self.m = runner.m
        self.rng = runner.rng
        self.beh, self.width, self.shadow = beh, width, shadow
        self.cpu = np.array([it[0] for it in items], dtype=np.int64)
        self.cur = np.array([it[1].cur for it in items], dtype=np.uint32)
        self.vid = np.array([it[1].vcpu_id for it in items], dtype=np.int64)
        margin = runner._margin
        self.start = np.array([it[2] for it in items], dtype=np.int64) + margin
        self.span = np.array([it[3] for it in items], dtype=np.int64) - margin - self.start
        self.secs = np.maximum(self.span, 0) / self.m.tsc_hz
        # Spans cut out of the intervals (multicalls): interval, compressed start, length.
        self.free = np.maximum(self.span, 0)
        self._base = self._free_base()
        self._cut_iv = np.zeros(0, np.int64)
        self._cut_gc = np.zeros(0, np.int64)
        self._cut_cum = np.zeros(1, np.int64)

    # ---- times -----------------------------------------------------------------------------
    def _free_base(self) -> np.ndarray:
        """Offset of each interval's free time in the concatenation of all of them."""
        return np.concatenate([[0], np.cumsum(self.free)[:-1]]).astype(np.int64)

    def _cut_out(self, iv: np.ndarray, cstart: np.ndarray, length: np.ndarray) -> None:
        """Remove spans from the intervals: ``cstart`` is where each starts in its interval's
        free time (sorted by interval then ``cstart``), ``length`` its TSC length."""
        self.free = self.free - np.bincount(iv, weights=length, minlength=len(self.free)).astype(
            np.int64
        )
        self._base = self._free_base()
        self._cut_iv = iv
        self._cut_first = np.searchsorted(iv, np.arange(len(self.free)), side="left")
        self._cut_gc = self._base[iv] + cstart
        self._cut_cum = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)

    def _draw(self, rate: float) -> tuple[np.ndarray, np.ndarray]:
        """Poisson counts per interval (``rate`` per second of running time) -> (interval
        index, TSC) of each operation, uniform over the interval's free time."""
        if rate <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        n = np.where(self.free > 0, self.rng.poisson(rate * self.secs), 0)
        idx = np.repeat(np.arange(len(n)), n)
        u = (self.rng.random(len(idx)) * self.free[idx]).astype(np.int64)
        if len(self._cut_iv):
            # Every cut of this interval that starts at or before u pushes u past it.
            k = np.searchsorted(self._cut_gc, self._base[idx] + u, side="right")
            u = u + self._cut_cum[k] - self._cut_cum[self._cut_first[idx]]
        return idx, self.start[idx] + u

    # ---- records ---------------------------------------------------------------------------
    def _add(
        self, batch: Batch, point: str, idx: np.ndarray, tsc: np.ndarray, **values: object
    ) -> None:
        """Records of trace point ``point`` (a :class:`~.pv.PVTracer` method and its
        arguments), encoded as that method encodes them."""
        n = len(idx)
        if not n:
            return
        m = self.m
        lay_point, vals = record_values(m.abi, point, values, n)  # type: ignore[arg-type]
        if lay_point is None:
            return
        if lay_point == "math_state_restore":
            ev = layout(lay_point, m.abi, m.arch, self.width).event
            events = np.full(n, ev, np.uint32)
            words, extra = np.zeros((n, 7), np.uint32), np.zeros(n, np.int64)
        else:
            events, words, extra = encode_array(lay_point, m.abi, m.arch, self.width, **vals)
            events = np.broadcast_to(events, (n,))
        batch.add_arrays(
            self.cpu[idx], tsc, events | np.uint32(TRC_HD_CYCLE_FLAG), extra, words, self.cur[idx]
        )

    def _sites(self, batch: Batch, idx: np.ndarray, tsc: np.ndarray, sites: list[Site]) -> None:
        """The records the call-site rules chose for operations ``idx`` at ``tsc``."""
        for s in sites:
            self._add(batch, s.point, idx[s.sel], tsc[s.sel], **s.values)

    def _ktext(self, n: int, kind: str = "kernel") -> np.ndarray:
        addr, p = self.r.sites(kind, self.width)
        return addr[self.rng.choice(len(addr), n, p=p)]

    def _utext(self, n: int) -> np.ndarray:
        return np.uint64(UTEXT) + self.rng.integers(0, 0x200000, n).astype(np.uint64)

    def emit(self, batch: Batch) -> None:
        b = self.beh
        self._multicalls(batch)  # first: their spans are cut out of the intervals
        self._hypercalls(batch)
        if b.privop:
            idx, tsc = self._draw(b.privop)
            eip = self._ktext(len(idx), "privop")
            emulated = self.rng.random(len(idx)) >= b.privop_fail
            # #GP(0) on a privileged instruction; the rip after it is 2 bytes on.
            self._sites(
                batch, idx, tsc, general_protection_sites(eip, 0, emulated, eip + np.uint64(2))
            )
        if b.ptwr:
            idx, tsc = self._draw(b.ptwr)
            n = len(idx)
            base, nx = (0xFFFF880000000000, 1 << 63) if self.width == 64 else (0xC0000000, 0)
            addr = np.uint64(base) + (self.rng.integers(0, 1 << 26, n) * 8).astype(np.uint64)
            mfn = self.rng.integers(0x1000, 0x400000, n).astype(np.uint64)
            npte = (mfn << np.uint64(12)) | np.uint64(0x67 | nx)
            self._sites(batch, idx, tsc, ptwr_sites(addr, npte, self._ktext(n, "ptwr")))
        if b.page_fault:
            idx, tsc = self._draw(b.page_fault)
            self._page_faults(batch, idx, tsc)
        for vector, rate in sorted(b.traps.items()):
            idx, tsc = self._draw(rate)
            ec = self.rng.integers(0, 0x100, len(idx)) * 8 if vector == 13 else 0
            sites = inject_event_sites(vector, self._utext(len(idx)), error_code=ec)
            self._sites(batch, idx, tsc, sites)
        for vector, rate in sorted(b.soft_ints.items()):
            idx, tsc = self._draw(rate)
            sites = inject_event_sites(vector, self._utext(len(idx)), software=True)
            self._sites(batch, idx, tsc, sites)
        if b.forced_invalid_op:
            idx, tsc = self._draw(b.forced_invalid_op)
            self._sites(batch, idx, tsc, invalid_op_sites(self._utext(len(idx)), True))
        if b.math_state_restore:
            idx, tsc = self._draw(b.math_state_restore)
            self._sites(batch, idx, tsc, device_not_available_sites(np.zeros(len(idx)), False))
        if b.nm_injected:
            idx, tsc = self._draw(b.nm_injected)
            self._sites(batch, idx, tsc, device_not_available_sites(self._utext(len(idx)), True))
        if b.paging_fixup and self.shadow:
            idx, tsc = self._draw(b.paging_fixup)
            n = len(idx)
            heap = UHEAP_64 if self.width == 64 else UHEAP_32
            addr = heap + self.rng.integers(0, 1 << 24, n) * 8
            sites = shadow_fault_sites(self._utext(n), addr, 0x2, True, self.shadow)
            self._sites(batch, idx, tsc, sites)
        if b.ldt_fault:
            idx, tsc = self._draw(b.ldt_fault)
            n = len(idx)
            offset = self.rng.integers(0, 8192, n) * 8
            sites = ldt_fault_sites(self._utext(n), offset, mapped=True, guest_mode=True)
            self._sites(batch, idx, tsc, sites)

    def _page_faults(self, batch: Batch, idx: np.ndarray, tsc: np.ndarray) -> None:
        """Hardware #PF bounced to the guest, from user mode (80 %) or kernel mode."""
        n = len(idx)
        if not n:
            return
        user = self.rng.random(n) < 0.8
        heap = UHEAP_64 if self.width == 64 else UHEAP_32
        addr = heap + self.rng.integers(0, 1 << 28, n) * 8
        ec = self.rng.choice(np.array([0, 1, 2, 3, 0x10]), n, p=[0.45, 0.2, 0.2, 0.1, 0.05])
        eip = np.where(user, self._utext(n), self._ktext(n))
        sites = inject_event_sites(TRAP_page_fault, eip, error_code=ec, cr2=addr, guest_user=user)
        self._sites(batch, idx, tsc, sites)

    def _mix(self, weights: Mapping[int, float]) -> tuple[np.ndarray, np.ndarray]:
        items = [
            (nr, w)
            for nr, w in sorted(weights.items())
            if w > 0 and not (self.width == 32 and nr in ONLY_64BIT)
        ]
        if self.m.abi == ABI_SEED:
            items = [(nr, w) for nr, w in items if nr < NR_HYPERCALLS_SEED]
        nrs = np.array([nr for nr, _ in items], dtype=np.int64)
        w = np.array([w for _, w in items], dtype=np.float64)
        return nrs, w

    def _args(self, nr: np.ndarray, vid: np.ndarray) -> dict[str, np.ndarray]:
        """Plausible arguments for the hypercalls whose arguments are recorded."""
        n, rng = len(nr), self.rng
        args = {f"arg{i}": np.zeros(n, np.int64) for i in range(6)}
        count = 1 + rng.geometric(0.35, n)
        sel = nr == VCPU_OP
        args["arg0"][sel] = rng.choice(
            np.array([8, 9, 4, 6, 13]), int(sel.sum()), p=[0.55, 0.3, 0.1, 0.03, 0.02]
        )
        args["arg1"][sel] = vid[sel]
        for call in (MMU_UPDATE, MMUEXT_OP):
            s = nr == call
            args["arg1"][s] = count[s]
        s = nr == GRANT_TABLE_OP
        args["arg0"][s] = rng.choice(np.array([0, 1, 5]), int(s.sum()))
        args["arg2"][s] = count[s]
        return args

    def _hypercalls(self, batch: Batch) -> None:
        nrs, w = self._mix(self.beh.hypercalls)
        if not len(nrs):
            return
        idx, tsc = self._draw(float(w.sum()))
        if not len(idx):
            return
        nr = nrs[self.rng.choice(len(nrs), len(idx), p=w / w.sum())]
        self._emit_hypercalls(batch, idx, tsc, nr, "hypercall")

    def _emit_hypercalls(
        self,
        batch: Batch,
        idx: np.ndarray,
        tsc: np.ndarray,
        nr: np.ndarray,
        point: str,
        args: dict[str, np.ndarray] | None = None,
    ) -> None:
        """``point``: ``hypercall`` (an entry from the guest's hypercall page) or
        ``multicall_call`` (a multicall entry)."""
        if self.m.abi == ABI_SEED:  # v1 records: [eip][eax], the call's hypercall-page slot
            page = np.uint64(HYPERCALL_PAGE_64 if self.width == 64 else HYPERCALL_PAGE_32)
            args = {"eip": page + (32 * nr).astype(np.uint64)}
        elif args is None:
            args = self._args(nr, self.vid[idx])
        self._add(batch, point, idx, tsc, op=nr, **args)

    def _multicalls(self, batch: Batch) -> None:
        """Multicalls at non-overlapping spans: the hypercall record, then one sub-call per
        entry ``spacing`` cycles apart; each span is then cut out of its interval."""
        b = self.beh
        if not b.multicalls:
            return
        counts = self.rng.poisson(b.multicalls * self.secs)
        idx = np.repeat(np.arange(len(counts)), counts)
        if not len(idx):
            return
        entries = np.minimum(1 + self.rng.poisson(max(b.multicall_entries - 1, 0), len(idx)), 32)
        spacing = max(1, self.r._margin // 64)
        length = entries.astype(np.int64) * spacing + 1
        # Keep, per interval, the multicalls that fit end to end.
        cum = np.cumsum(length)
        first = np.searchsorted(idx, idx, side="left")
        keep = cum - np.concatenate([[0], cum])[first] <= self.span[idx]
        idx, entries, length = idx[keep], entries[keep], length[keep]
        total = np.bincount(idx, weights=length, minlength=len(self.span)).astype(np.int64)
        slack = self.span - total
        # Uniform starts in the interval with the spans squeezed out, then laid end to end.
        p = (self.rng.random(len(idx)) * (slack[idx] + 1)).astype(np.int64)
        order = np.lexsort((p, idx))
        idx, entries, length, p = idx[order], entries[order], length[order], p[order]
        cum0 = np.concatenate([[0], np.cumsum(length)])
        before = cum0[:-1] - cum0[np.searchsorted(idx, idx, side="left")]
        tsc = self.start[idx] + p + before
        self._cut_out(idx, p, length)
        n = len(idx)
        args = {f"arg{i}": np.zeros(n, np.int64) for i in range(6)}
        args["arg1"] = entries.astype(np.int64)
        self._emit_hypercalls(batch, idx, tsc, np.full(n, MULTICALL, np.int64), "hypercall", args)
        if self.m.abi == ABI_SEED:
            return
        nrs, w = self._mix(b.multicall_mix)
        sub_idx = np.repeat(idx, entries)
        pos = np.arange(len(sub_idx)) - np.repeat(np.cumsum(entries) - entries, entries)
        sub_tsc = np.repeat(tsc, entries) + (pos + 1) * spacing
        sub_nr = nrs[self.rng.choice(len(nrs), len(sub_idx), p=w / w.sum())]
        self._emit_hypercalls(batch, sub_idx, sub_tsc, sub_nr, "multicall_call")
