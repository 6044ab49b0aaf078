"""A PV machine: domains, vCPUs, pCPUs, a virtual clock, and a scheduler emitting Xen's records.

The machine drives the trace points of :class:`~.trace.TraceBuffers` the way Xen would:

* Scheduler records (spec §3).  ``xen-4``: a context switch emits SWITCH_INFPREV,
  SWITCH_INFNEXT, SWITCH, then RUNSTATE_CHANGE for prev and for next; a vCPU that keeps its pCPU
  emits SWITCH_INFCONT then CONTINUE_RUNNING; WAKE/BLOCK/YIELD/SLEEP records and the runstate
  changes they cause.  ``xen-3.2`` (the seed): INFPREV ``[domid, runtime]``, INFNEXT
  ``[domid, wait, r_time]``, SWITCH, no runstate records, nothing when the vCPU continues.
  The idle domain is ``DOMID_IDLE`` (32767) with vCPU number = pCPU number.
* Guest operations reach the PV call sites under Xen's conditions (spec §2.5): a vector-14
  hardware exception becomes a PAGE_FAULT record and every other event a TRAP record; a #GP(0)
  traces EMULATE_PRIVOP only when emulation succeeded; a shadow fault traces PAGING_FIXUP only
  when fixed; an LDT fault traces GDT_LDT_MAPPING_FAULT only when the mapping succeeded from
  guest mode; #NM traces MATH_STATE_RESTORE only when #NM is not injected; a multicall traces
  its hypercall record, then one sub-call record per entry.

Times: the machine keeps Xen's system time ``now_ns`` (what ``NOW()`` returns, used in the
scheduler payloads) and derives the TSC from it at ``tsc_hz``.  Records are emitted either at
once through the trace API (scripts) or collected in a :class:`Batch` and written with the
bulk path in TSC order (workloads).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pyxentrace.errors import XentraceError
from pyxentrace.format import events as E
from pyxentrace.format.pv_layouts import ABI_SEED, ABI_XEN4, check_combo, encode
from pyxentrace.format.record import TRC_HD_CYCLE_FLAG
from pyxentrace.hypervisor.pv import PVTracer
from pyxentrace.hypervisor.trace import DOMID_IDLE, TraceBuffers, VirtualTSC

RUNSTATE_running = 0  # noqa: N816 (Xen's names)
RUNSTATE_runnable = 1  # noqa: N816
RUNSTATE_blocked = 2  # noqa: N816
RUNSTATE_offline = 3  # noqa: N816
RUNSTATE_NAMES = ("running", "runnable", "blocked", "offline")

DEFAULT_TSC_HZ = 2_400_000_000
#: Vectors whose hardware exceptions push an error code (``X86_EXC_HAVE_EC``).
X86_EXC_HAVE_EC = frozenset({8, 10, 11, 12, 13, 14, 17, 21})
TRAP_page_fault = 14  # noqa: N816
PFEC_user_mode = 1 << 2  # noqa: N816
#: The seed's entry paths range-checked the number (``NR_hypercalls``) before tracing.
NR_HYPERCALLS_SEED = 64
HYPERVISOR_multicall = 13  # noqa: N816
#: ``ud2; .ascii "xen"; cpuid``: the forced-emulation prefix plus the instruction, in bytes.
FORCED_INVALID_OP_LEN = 7
#: Slice the model's scheduler gives a guest vCPU (``next_time``); idle gets -1 in xen-4.
XEN4_TSLICE_NS = 10_000_000
#: The seed's credit scheduler: ``r_time = MILLISECS(CSCHED_MSECS_PER_TSLICE)`` for everyone.
SEED_TSLICE_NS = 30_000_000
#: TSC spacing between consecutive scheduler records emitted at one instant in batch mode.
REC_SPACING = 40
U32 = 0xFFFFFFFF

_SCHED_SEED = {
    "sleep": E.TRC_SCHED_SEED_BASE + 3,
    "wake": E.TRC_SCHED_SEED_BASE + 4,
    "yield": E.TRC_SCHED_SEED_BASE + 5,
    "block": E.TRC_SCHED_SEED_BASE + 6,
    "switch": E.TRC_SCHED_SEED_BASE + 10,
    "infprev": E.TRC_SCHED_SEED_BASE + 14,
    "infnext": E.TRC_SCHED_SEED_BASE + 15,
}
_SCHED_XEN4 = {
    "sleep": E.TRC_SCHED_SLEEP,
    "wake": E.TRC_SCHED_WAKE,
    "yield": E.TRC_SCHED_YIELD,
    "block": E.TRC_SCHED_BLOCK,
    "switch": E.TRC_SCHED_SWITCH,
    "infprev": E.TRC_SCHED_SWITCH_INFPREV,
    "infnext": E.TRC_SCHED_SWITCH_INFNEXT,
    "infcont": E.TRC_SCHED_SWITCH_INFCONT,
    "continue": E.TRC_SCHED_CONTINUE_RUNNING,
}


# ---- domains ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainSpec:
    """A domain to create: id, number of vCPUs, guest width (32/64), name."""

    domid: int
    vcpus: int
    width: int = 64
    name: str = ""

    @property
    def label(self) -> str:
        """The name ``xl list`` would show."""
        return self.name or ("Domain-0" if self.domid == 0 else f"guest{self.domid}")


def parse_domains(spec: str) -> list[DomainSpec]:
    """Parse ``ID:VCPUS[xWIDTH][:NAME],...`` (e.g. ``0:4x64,1:2x32:web``)."""
    out: list[DomainSpec] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise XentraceError(f"bad domain {item!r}: expected ID:VCPUS[xWIDTH][:NAME]")
        ident, shape = parts[0], parts[1].lower()
        vcpus, _, width = shape.partition("x")
        try:
            d = DomainSpec(
                int(ident), int(vcpus), int(width or 64), parts[2] if len(parts) == 3 else ""
            )
        except ValueError:
            raise XentraceError(f"bad domain {item!r}: expected ID:VCPUS[xWIDTH][:NAME]") from None
        out.append(d)
    if not out:
        raise XentraceError(f"no domains in {spec!r}")
    seen = [d.domid for d in out]
    if len(set(seen)) != len(seen):
        raise XentraceError(f"duplicate domain id in {spec!r}")
    return out


@dataclass(eq=False)
class VCPU:
    """A vCPU and the scheduler state Xen keeps for it (unit = vCPU, granularity 1)."""

    domid: int
    vcpu_id: int
    width: int
    runstate: int
    #: ``runstate.state_entry_time`` (ns): time of the last runstate change.
    runstate_entry: int
    #: ``sched_unit.state_entry_time`` (ns): set when it starts running and when it is
    #: switched out (``unit_context_saved``).
    unit_entry: int
    processor: int
    blocked: bool = False  # _VPF_blocked
    paused: bool = False
    running_on: int | None = None
    #: Incremented at every switch-in (lets a workload drop stale timers).
    gen: int = 0

    @property
    def is_idle(self) -> bool:
        """Whether this is an idle vCPU."""
        return self.domid == DOMID_IDLE

    @property
    def word(self) -> int:
        """``vcpu_id | domid << 16``: the RUNSTATE_CHANGE / CONTINUE_RUNNING payload word."""
        return (self.vcpu_id & 0xFFFF) | (self.domid & 0xFFFF) << 16

    @property
    def cur(self) -> int:
        """``did | vid << 16``: this vCPU as a LOST_RECORDS record names it."""
        return (self.domid & 0xFFFF) | (self.vcpu_id & 0xFFFF) << 16

    def __repr__(self) -> str:
        d = "[IDLE]" if self.is_idle else str(self.domid)
        return f"d{d}v{self.vcpu_id}"


@dataclass(eq=False)
class Domain:
    """A PV domain: id, name, guest width, vCPUs, and whether it runs in shadow paging mode."""

    domid: int
    name: str
    width: int
    vcpus: list[VCPU] = field(default_factory=list)
    #: ``paging_mode_enabled && !paging_mode_external``: PV shadow mode (e.g. log-dirty).
    shadow: bool = False


# ---- batched records --------------------------------------------------------------------------


class Batch:
    """Records gathered for one ``trace_bulk`` call, written in TSC order (stable)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cpu: list[int] = []
        self._tsc: list[int] = []
        self._ev: list[int] = []
        self._words: list[Sequence[int]] = []
        self._cur: list[int] = []
        self._parts: list[tuple[np.ndarray, ...]] = []

    def add(self, cpu: int, tsc: int, event: int, words: Sequence[int], cur: int) -> None:
        """One record (``event`` carries bit 31 when timed)."""
        self._cpu.append(cpu)
        self._tsc.append(tsc)
        self._ev.append(event)
        self._words.append(words)
        self._cur.append(cur)

    def add_arrays(
        self,
        cpus: np.ndarray,
        tsc: np.ndarray,
        events: np.ndarray,
        extra: np.ndarray,
        words: np.ndarray,
        cur: np.ndarray,
    ) -> None:
        """Many records at once (``words`` is ``u32[n, 7]``)."""
        if len(tsc):
            self._parts.append(
                (
                    cpus.astype(np.int64),
                    tsc.astype(np.uint64),
                    events.astype(np.uint32),
                    extra.astype(np.int64),
                    words.astype(np.uint32),
                    cur.astype(np.uint32),
                )
            )

    def __len__(self) -> int:
        return len(self._cpu) + sum(len(p[0]) for p in self._parts)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(cpus, tsc, events, extra, words, cur)`` sorted by TSC."""
        n = len(self._cpu)
        words = np.zeros((n, 7), dtype=np.uint32)
        for i, w in enumerate(self._words):
            words[i, : len(w)] = [x & U32 for x in w]
        scalar = (
            np.array(self._cpu, dtype=np.int64),
            np.array(self._tsc, dtype=np.uint64),
            np.array(self._ev, dtype=np.uint32),
            np.array([4 * len(w) for w in self._words], dtype=np.int64),
            words,
            np.array(self._cur, dtype=np.uint32),
        )
        cols = [np.concatenate([scalar[k], *(p[k] for p in self._parts)]) for k in range(6)]
        order = np.argsort(cols[1], kind="stable")
        return tuple(c[order] for c in cols)

    def flush(
        self,
        tb: TraceBuffers,
        slice_records: int = 0,
        before: Callable[[int], None] | None = None,
    ) -> int:
        """Write every record through ``tb.trace_bulk``; returns how many were offered.

        ``slice_records`` > 0 writes in TSC-ordered slices of that many records, calling
        ``before(last TSC of the slice)`` ahead of each (pacing): the records are the same,
        only the moments they reach the buffers change.
        """
        n = len(self)
        if n:
            cpus, tsc, events, extra, words, cur = self.arrays()
            step = slice_records if slice_records > 0 else n
            for i in range(0, n, step):
                j = min(n, i + step)
                if before is not None:
                    before(int(tsc[j - 1]))
                tb.trace_bulk(cpus[i:j], events[i:j], extra[i:j], words[i:j], tsc[i:j], cur[i:j])
        self._reset()
        return n


# ---- the machine ------------------------------------------------------------------------------


def host_info_path(name: str) -> str:
    """Where the model named ``name`` publishes its host description (its ``xl info``)."""
    return os.path.join(tempfile.gettempdir(), f"{name}.host.json")


class Machine:
    """A PV host over ``tb``'s trace buffers: pCPUs (one per ``tb`` CPU), domains, scheduler.

    ``abi``/``arch`` choose the hypervisor build (record ids and layouts); ``tsc_hz`` the TSC
    rate; ``start_tsc`` the TSC at system time 0.
    """

    def __init__(
        self,
        tb: TraceBuffers,
        abi: str = ABI_XEN4,
        arch: str = "x86_64",
        tsc_hz: int = DEFAULT_TSC_HZ,
        start_tsc: int = 0,
    ):
        try:
            check_combo(abi, arch)
        except ValueError as e:
            raise XentraceError(str(e)) from None
        if tsc_hz <= 0:
            raise XentraceError("tsc_hz must be positive")
        self.tb = tb
        self.abi = abi
        self.arch = arch
        self.tsc_hz = int(tsc_hz)
        self.start_tsc = int(start_tsc)
        self.pv = PVTracer(tb, abi, arch)
        self.clock = VirtualTSC(self.start_tsc)
        tb.clock = self.clock
        self.now_ns = 0
        self.nr_pcpus = tb.nr_cpu_ids
        self.domains: dict[int, Domain] = {}
        idle_width = 32 if arch.startswith("x86_32") else 64
        self.idle = [
            VCPU(DOMID_IDLE, c, idle_width, RUNSTATE_running, 0, 0, c, running_on=c)
            for c in range(self.nr_pcpus)
        ]
        self.curr: list[VCPU] = list(self.idle)
        self.batch: Batch | None = None
        self._published = False
        #: TSC of the last record emitted in batch mode, on any pCPU.
        self.last_tsc = -1
        self._sched_ids = _SCHED_SEED if abi == ABI_SEED else _SCHED_XEN4
        self.tslice_ns = SEED_TSLICE_NS if abi == ABI_SEED else XEN4_TSLICE_NS
        for c in range(self.nr_pcpus):
            tb.set_current(c, DOMID_IDLE, c, idle_width)

    # ---- time ------------------------------------------------------------------------------
    def tsc_at(self, ns: int) -> int:
        """The TSC at system time ``ns``."""
        return self.start_tsc + ns * self.tsc_hz // 1_000_000_000

    @property
    def tsc(self) -> int:
        """The TSC now."""
        return self.tsc_at(self.now_ns)

    def set_time(self, ns: int) -> None:
        """Move system time to ``ns`` (never backwards)."""
        if ns < self.now_ns:
            raise ValueError(f"time goes backwards: {ns} < {self.now_ns}")
        self.now_ns = ns
        self.clock.now = self.tsc_at(ns)

    def advance(self, ns: int) -> None:
        """Move system time forward by ``ns`` nanoseconds."""
        self.set_time(self.now_ns + ns)

    # ---- domains ---------------------------------------------------------------------------
    def add_domain(
        self, domid: int, vcpus: int, width: int = 64, name: str = "", shadow: bool = False
    ) -> Domain:
        """Create a domain whose vCPUs are runnable from now on (no records are emitted)."""
        if not 0 <= domid < 0x7FF0:
            raise XentraceError(f"domain id {domid} out of range 0..{0x7FF0 - 1}")
        if domid in self.domains:
            raise XentraceError(f"domain {domid} already exists")
        if not 1 <= vcpus <= 4096:
            raise XentraceError(f"domain {domid}: vcpus must be 1..4096")
        try:
            check_combo(self.abi, self.arch, width)
        except ValueError as e:
            raise XentraceError(f"domain {domid}: {e}") from None
        d = Domain(domid, DomainSpec(domid, vcpus, width, name).label, width, shadow=shadow)
        for v in range(vcpus):
            d.vcpus.append(
                VCPU(
                    domid, v, width, RUNSTATE_runnable, self.now_ns, self.now_ns, v % self.nr_pcpus
                )
            )
        self.domains[domid] = d
        if self._published:
            self.publish()
        return d

    def vcpu(self, domid: int, vcpu_id: int) -> VCPU:
        """``d<domid>v<vcpu_id>``; the idle domain's vCPU n is pCPU n's idle vCPU."""
        if domid == DOMID_IDLE:
            if not 0 <= vcpu_id < self.nr_pcpus:
                raise XentraceError(f"no idle vCPU {vcpu_id} (pCPUs 0..{self.nr_pcpus - 1})")
            return self.idle[vcpu_id]
        d = self.domains.get(domid)
        if d is None:
            raise XentraceError(f"no domain {domid}")
        if not 0 <= vcpu_id < len(d.vcpus):
            raise XentraceError(f"domain {domid} has no vCPU {vcpu_id}")
        return d.vcpus[vcpu_id]

    def host_info(self) -> dict:
        """What ``xl info``/``xl list`` would say, plus the ABI: for the recorder's sidecar."""
        return {
            "tsc_hz": self.tsc_hz,
            "nr_pcpus": self.nr_pcpus,
            "abi": self.abi,
            "arch": self.arch,
            "start_tsc": self.start_tsc,
            "domains": [
                {
                    "domid": d.domid,
                    "name": d.name,
                    "vcpus": len(d.vcpus),
                    "width": d.width,
                    "shadow": d.shadow,
                }
                for d in sorted(self.domains.values(), key=lambda d: d.domid)
            ],
        }

    def publish(self) -> str:
        """Write :meth:`host_info` where a recorder attaching to ``tb`` finds it (and again
        whenever a domain is added)."""
        self._published = True
        path = host_info_path(self.tb.name)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.host_info(), f)
        os.replace(tmp, path)
        return path

    # ---- emission --------------------------------------------------------------------------
    def _rec_tsc(self, cpu: int) -> int:
        # One machine-wide sequence: records of one instant keep their causal order across
        # pCPUs (a vCPU leaves one pCPU before another one switches to it).
        tsc = max(self.tsc, self.last_tsc + REC_SPACING)
        self.last_tsc = tsc
        return tsc

    def _sched(self, cpu: int, name: str, *words: int) -> None:
        """A timed scheduler record ``TRACE_TIME(id, words...)`` on ``cpu``."""
        self._timed(cpu, self._sched_ids[name], [w & U32 for w in words])

    def _timed(self, cpu: int, event: int, words: Sequence[int]) -> None:
        if self.batch is not None:
            self.batch.add(
                cpu, self._rec_tsc(cpu), event | TRC_HD_CYCLE_FLAG, words, self.curr[cpu].cur
            )
        else:
            self.tb.TRACE_TIME(cpu, event, *words)

    def _pv(self, cpu: int, point: str, **values: int) -> None:
        """A PV record in batch mode (layout from the current vCPU's width)."""
        assert self.batch is not None
        ev, payload = encode(point, self.abi, self.arch, self.curr[cpu].width, **values)
        words = struct.unpack(f"<{len(payload) // 4}I", payload)
        self.batch.add(cpu, self._rec_tsc(cpu), ev | TRC_HD_CYCLE_FLAG, words, self.curr[cpu].cur)

    # ---- scheduler -------------------------------------------------------------------------
    def _runstate_change(self, cpu: int, v: VCPU, new: int) -> None:
        """``vcpu_runstate_change``: trace (xen-4) and update, only if the state changes."""
        if v.runstate == new:
            return
        if self.abi == ABI_XEN4:
            self._timed(cpu, E.runstate_change_event(v.runstate, new), [v.word])
        v.runstate = new
        v.runstate_entry = self.now_ns

    def slice_for(self, v: VCPU) -> int:
        """``next_time`` the scheduler gives ``v`` (ns; -1 = no limit, idle in xen-4)."""
        if v.is_idle and self.abi == ABI_XEN4:
            return -1
        return self.tslice_ns

    def wake(self, v: VCPU, cpu: int | None = None) -> None:
        """``vcpu_wake`` executed on ``cpu`` (default ``v.processor``): WAKE record, then
        blocked/offline -> runnable if ``v`` is runnable again."""
        cpu = v.processor if cpu is None else cpu
        if self.abi == ABI_XEN4:
            self._sched(cpu, "wake", v.domid, v.vcpu_id)
        v.blocked = False
        if not v.paused and v.runstate >= RUNSTATE_blocked:
            self._runstate_change(cpu, v, RUNSTATE_runnable)
        if self.abi == ABI_SEED:  # the seed traced WAKE at the end of vcpu_wake
            self._sched(cpu, "wake", v.domid, v.vcpu_id)

    def block(self, cpu: int) -> VCPU:
        """``vcpu_block`` by the vCPU running on ``cpu``: BLOCK record, ``_VPF_blocked`` set.

        The caller then runs :meth:`schedule` (Xen raises SCHEDULE_SOFTIRQ).
        """
        v = self._running_guest(cpu, "block")
        v.blocked = True
        self._sched(cpu, "block", v.domid, v.vcpu_id)
        return v

    def yield_(self, cpu: int) -> VCPU:
        """``vcpu_yield`` by the vCPU running on ``cpu``: YIELD record (then schedule)."""
        v = self._running_guest(cpu, "yield")
        self._sched(cpu, "yield", v.domid, v.vcpu_id)
        return v

    def sleep(self, v: VCPU, cpu: int | None = None) -> None:
        """``vcpu_sleep_nosync`` (a pause): SLEEP record; a queued vCPU goes offline at once,
        a running one when its pCPU next schedules."""
        cpu = v.processor if cpu is None else cpu
        self._sched(cpu, "sleep", v.domid, v.vcpu_id)
        v.paused = True
        if v.running_on is None and v.runstate == RUNSTATE_runnable:
            self._runstate_change(cpu, v, RUNSTATE_offline)

    def _running_guest(self, cpu: int, what: str) -> VCPU:
        v = self.curr[cpu]
        if v.is_idle:
            raise XentraceError(f"pcpu {cpu} runs the idle vCPU: nothing to {what}")
        return v

    def schedule(self, cpu: int, next_v: VCPU, slice_ns: int | None = None) -> None:
        """Run the scheduler on ``cpu`` with the decision ``next_v`` (Xen's ``schedule()``).

        prev (the vCPU running there) leaves as blocked, offline (paused) or runnable; when
        ``next_v`` is prev it continues.  ``slice_ns`` is the ``next_time`` reported (default
        :meth:`slice_for`).
        """
        prev = self.curr[cpu]
        now = self.now_ns
        slice_ns = self.slice_for(next_v) if slice_ns is None else slice_ns
        if next_v is prev:
            if self.abi == ABI_XEN4:
                self._sched(
                    cpu, "infcont", prev.domid, prev.vcpu_id, now - prev.runstate_entry, slice_ns
                )
                self._timed(cpu, E.TRC_SCHED_CONTINUE_RUNNING, [prev.word])
            return
        self._check_next(cpu, next_v)
        if self.abi == ABI_XEN4:
            wait = now - next_v.unit_entry if next_v.runstate == RUNSTATE_runnable else 0
            self._sched(cpu, "infprev", prev.domid, prev.vcpu_id, now - prev.unit_entry)
            self._sched(cpu, "infnext", next_v.domid, next_v.vcpu_id, wait, slice_ns)
            self._sched(cpu, "switch", prev.domid, prev.vcpu_id, next_v.domid, next_v.vcpu_id)
        else:
            wait = now - next_v.runstate_entry if next_v.runstate == RUNSTATE_runnable else 0
            self._sched(cpu, "infprev", prev.domid, now - prev.runstate_entry)
            self._sched(cpu, "infnext", next_v.domid, wait, slice_ns)
        if prev.is_idle:
            new = RUNSTATE_runnable
        elif prev.blocked:
            new = RUNSTATE_blocked
        elif prev.paused:
            new = RUNSTATE_offline
        else:
            new = RUNSTATE_runnable
        self._runstate_change(cpu, prev, new)
        self._runstate_change(cpu, next_v, RUNSTATE_running)
        if self.abi == ABI_SEED:  # the seed traced SWITCH after the runstate bookkeeping
            self._sched(cpu, "switch", prev.domid, prev.vcpu_id, next_v.domid, next_v.vcpu_id)
        prev.running_on = None
        prev.unit_entry = now  # unit_context_saved
        next_v.running_on = cpu
        next_v.unit_entry = now
        next_v.processor = cpu
        next_v.gen += 1
        self.curr[cpu] = next_v
        self.tb.set_current(cpu, next_v.domid, next_v.vcpu_id, next_v.width)

    def _check_next(self, cpu: int, v: VCPU) -> None:
        if v.is_idle:
            if v.vcpu_id != cpu:
                raise XentraceError(f"pcpu {cpu} cannot run the idle vCPU of pcpu {v.vcpu_id}")
            return
        if v.running_on is not None:
            raise XentraceError(f"{v!r} is already running on pcpu {v.running_on}")
        if v.blocked or v.paused or v.runstate != RUNSTATE_runnable:
            raise XentraceError(f"{v!r} is not runnable ({RUNSTATE_NAMES[v.runstate]})")

    def pause_domain(self, domid: int, cpu: int = 0) -> None:
        """``domain_pause`` run on ``cpu``: a SLEEP record per vCPU; queued vCPUs go offline
        at once, running ones are switched to their pCPU's idle vCPU (prev -> offline);
        blocked ones stay blocked."""
        d = self.domains[domid]
        for v in d.vcpus:
            if not v.paused:
                self.sleep(v, cpu)
        for v in d.vcpus:
            if v.running_on is not None:
                self.schedule(v.running_on, self.idle[v.running_on])

    # ---- guest operations (PV call sites) ---------------------------------------------------
    def _guest(self, cpu: int) -> VCPU:
        v = self.curr[cpu]
        if v.is_idle:
            raise XentraceError(f"pcpu {cpu} runs the idle vCPU: schedule a guest vCPU first")
        return v

    def hypercall(self, cpu: int, nr: int, args: Sequence[int] = (), eip: int = 0) -> None:
        """A hypercall from guest kernel mode: HYPERCALL_V2 (xen-4) or v1 ``[eip][eax]`` (seed;
        numbers >= 64 were rejected before the trace call)."""
        self._guest(cpu)
        if self.abi == ABI_SEED and nr >= NR_HYPERCALLS_SEED:
            return
        if self.batch is None:
            self.pv.hypercall(cpu, nr, args, eip)
        elif self.abi == ABI_SEED:
            self._pv(cpu, "hypercall", eip=eip, eax=nr)
        else:
            vals = {f"arg{i}": a for i, a in enumerate(args)}
            self._pv(cpu, "hypercall_v2", op=nr, **vals)

    def multicall(
        self, cpu: int, calls: Sequence[tuple[int, Sequence[int]]], eip: int = 0, list_addr: int = 0
    ) -> None:
        """``HYPERVISOR_multicall(list, n)``: its hypercall record, then (xen-4) one sub-call
        record per entry, each traced before that entry runs."""
        self.hypercall(cpu, HYPERVISOR_multicall, (list_addr, len(calls)), eip)
        if self.abi == ABI_SEED:
            return
        for nr, args in calls:
            if self.batch is None:
                self.pv.multicall_call(cpu, nr, args)
            else:
                vals = {f"arg{i}": a for i, a in enumerate(args)}
                self._pv(cpu, "hypercall_subcall", op=nr, **vals)

    def inject_event(
        self,
        cpu: int,
        vector: int,
        eip: int,
        *,
        software: bool = False,
        error_code: int = 0,
        cr2: int = 0,
        guest_user: bool = False,
    ) -> None:
        """``pv_inject_event``: a hardware #PF is traced as PAGE_FAULT (error code's U bit
        recomputed from the guest's mode); anything else, software interrupts included, TRAP."""
        self._guest(cpu)
        if vector == TRAP_page_fault and not software:
            ec = (error_code & ~PFEC_user_mode) | (PFEC_user_mode if guest_user else 0)
            self._point(cpu, "page_fault", eip=eip, addr=cr2, error_code=ec)
            return
        use_ec = not software and vector in X86_EXC_HAVE_EC
        self._point(
            cpu, "trap", eip=eip, trapnr=vector, use_error_code=use_ec, error_code=error_code
        )

    def general_protection(
        self, cpu: int, eip: int, error_code: int, emulated: bool, next_eip: int
    ) -> None:
        """``do_general_protection``: EMULATE_PRIVOP only for #GP(0) emulated successfully
        (``next_eip`` = rip after emulation); otherwise the #GP is bounced (TRAP 13)."""
        if error_code == 0 and emulated:
            self._guest(cpu)
            self._point(cpu, "emulate_privop", eip=next_eip)
        else:
            self.inject_event(cpu, 13, eip, error_code=error_code)

    def invalid_op(self, cpu: int, eip: int, forced: bool) -> None:
        """#UD: the forced-emulation prefix is emulated (FORCED_INVALID_OP with the rip after
        it), anything else is bounced as TRAP 6."""
        if forced:
            self._guest(cpu)
            self._point(cpu, "forced_invalid_op", eip=eip + FORCED_INVALID_OP_LEN)
        else:
            self.inject_event(cpu, 6, eip)

    def device_not_available(self, cpu: int, eip: int, guest_ts: bool) -> None:
        """#NM: lazy FPU restore; with the guest's virtual CR0.TS set #NM is injected (TRAP 7),
        else MATH_STATE_RESTORE (as before Xen removed lazy FPU, 2026)."""
        if guest_ts:
            self.inject_event(cpu, 7, eip)
        else:
            self._guest(cpu)
            self._point(cpu, "math_state_restore")

    def shadow_fault(self, cpu: int, eip: int, addr: int, error_code: int, fixed: bool) -> None:
        """A #PF in a shadow-mode domain: PAGING_FIXUP when ``paging_fault`` fixed it, else
        the fault goes to the guest (PAGE_FAULT)."""
        v = self._guest(cpu)
        if fixed and self.domains[v.domid].shadow:
            self._point(cpu, "paging_fixup", eip=eip, addr=addr)
        else:
            self.inject_event(cpu, TRAP_page_fault, eip, error_code=error_code, cr2=addr)

    def ldt_fault(
        self,
        cpu: int,
        eip: int,
        offset: int,
        mapped: bool,
        guest_mode: bool,
        error_code: int = 0,
        ldt_base: int = 0,
    ) -> None:
        """A #PF in the vCPU's LDT shadow area: GDT_LDT_MAPPING_FAULT only when the mapping
        succeeded and the fault came from guest context.  An unmappable LDT page faulted from
        guest mode goes back to the guest as a #PF at ``ldt_base + offset``; from Xen context
        the ordinary #PF handling takes over and nothing is traced here."""
        self._guest(cpu)
        if mapped and guest_mode:
            self._point(cpu, "gdt_ldt_mapping_fault", eip=eip, offset=offset)
        elif not mapped and guest_mode:
            self.inject_event(
                cpu, TRAP_page_fault, eip, error_code=error_code, cr2=ldt_base + offset
            )

    def ptwr(self, cpu: int, addr: int, npte: int, eip: int, size: int = 8) -> None:
        """A write to a page-table page emulated: PTWR_EMULATION with the PTE address (aligned
        down to 8 for a sub-word write) and the full new PTE."""
        self._guest(cpu)
        if size < 8:
            addr &= ~7
        self._point(cpu, "ptwr_emulation", npte=npte, addr=addr, eip=eip)

    def _point(self, cpu: int, point: str, **values: int) -> None:
        if self.batch is None:
            getattr(self.pv, point)(cpu, **values)
            return
        if point == "trap":
            if self.abi == ABI_XEN4 and not values["use_error_code"]:
                values["error_code"] = -1  # X86_EVENT_NO_EC
            values["use_error_code"] = int(bool(values["use_error_code"]))
        if point == "ptwr_emulation":
            values["pte"] = values.pop("npte")
        self._pv(cpu, point, **values)
