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
#: ``DOMID_FIRST_RESERVED``: ids from here up are Xen's own (DOMID_IDLE = 0x7FFF among them).
DOMID_FIRST_RESERVED = 0x7FF0
#: The TSC is a 64-bit counter.
TSC_MAX = (1 << 64) - 1
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


def check_domain_spec(d: DomainSpec, abi: str, arch: str) -> None:
    """A domain the hypervisor ``abi``/``arch`` can have: id below the reserved ones, 1..4096
    vCPUs, a guest width that build runs."""
    if not 0 <= d.domid < DOMID_FIRST_RESERVED:
        raise XentraceError(f"domain id {d.domid} out of range 0..{DOMID_FIRST_RESERVED - 1}")
    if not 1 <= d.vcpus <= 4096:
        raise XentraceError(f"domain {d.domid}: vcpus must be 1..4096")
    try:
        check_combo(abi, arch, d.width)
    except ValueError as e:
        raise XentraceError(f"domain {d.domid}: {e}") from None


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


# ---- call-site rules (spec §2.5), vectorised ---------------------------------------------------
#
# One implementation of "which trace point, with which values" for every guest operation.
# Each rule takes n operations as arrays (or scalars, broadcast) and returns the records they
# produce as :class:`Site` groups: the trace point (a :class:`~.pv.PVTracer` method), the
# indices of the operations that reach it, and the method's arguments for those.  The
# :class:`Machine` methods call them with n = 1; the workloads with whole arrays.


@dataclass(frozen=True)
class Site:
    """Operations ``sel`` (indices into the rule's inputs) reach trace point ``point`` with
    ``values`` (arguments of the :class:`~.pv.PVTracer` method of that name)."""

    point: str
    sel: np.ndarray
    values: dict[str, np.ndarray]


_HAVE_EC_BITS = sum(1 << v for v in X86_EXC_HAVE_EC)


def _arr(v: object, n: int, dtype: type = np.int64) -> np.ndarray:
    a = np.asarray(v, dtype=dtype)
    return a if a.ndim else np.full(n, a, dtype=dtype)


def _n(*vals: object) -> int:
    """The number of operations: the length of the array arguments (scalars broadcast)."""
    sizes = {np.size(v) for v in vals if np.ndim(v) > 0}
    if len(sizes) > 1:
        raise ValueError(f"operation arrays of different lengths {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def _site(point: str, mask: np.ndarray, **values: np.ndarray) -> Site:
    sel = np.flatnonzero(mask)
    return Site(point, sel, {k: v[sel] for k, v in values.items()})


def inject_event_sites(
    vector: object,
    eip: object,
    *,
    software: object = False,
    error_code: object = 0,
    cr2: object = 0,
    guest_user: object = False,
) -> list[Site]:
    """``pv_inject_event``: a vector-14 hardware exception -> PAGE_FAULT, its error code's U
    bit recomputed from the guest's mode; every other event, software interrupts included,
    -> TRAP, with ``use_error_code`` only for hardware exceptions that push one
    (``X86_EXC_HAVE_EC``)."""
    n = _n(vector, eip, software, error_code, cr2, guest_user)
    vec, rip = _arr(vector, n), _arr(eip, n, np.uint64)
    sw, ec = _arr(software, n, bool), _arr(error_code, n)
    pf = (vec == TRAP_page_fault) & ~sw
    pf_ec = (ec & ~PFEC_user_mode) | np.where(_arr(guest_user, n, bool), PFEC_user_mode, 0)
    use_ec = ~sw & (vec >= 0) & (vec < 32) & ((_HAVE_EC_BITS >> (vec & 31)) & 1).astype(bool)
    return [
        _site("page_fault", pf, eip=rip, addr=_arr(cr2, n, np.uint64), error_code=pf_ec),
        _site("trap", ~pf, eip=rip, trapnr=vec, use_error_code=use_ec, error_code=ec),
    ]


def general_protection_sites(
    eip: object, error_code: object, emulated: object, next_eip: object
) -> list[Site]:
    """``do_general_protection``: EMULATE_PRIVOP (at the rip after emulation) only for a #GP(0)
    that was emulated; any other #GP is bounced to the guest (TRAP 13)."""
    n = _n(eip, error_code, emulated, next_eip)
    ec = _arr(error_code, n)
    ok = (ec == 0) & _arr(emulated, n, bool)
    out = [_site("emulate_privop", ok, eip=_arr(next_eip, n, np.uint64))]
    bad = ~ok
    rip = _arr(eip, n, np.uint64)
    return out + _within(bad, inject_event_sites(13, rip[bad], error_code=ec[bad]))


def invalid_op_sites(eip: object, forced: object) -> list[Site]:
    """#UD: the forced-emulation prefix is emulated (FORCED_INVALID_OP at the rip after it);
    any other #UD is bounced (TRAP 6)."""
    n = _n(eip, forced)
    rip, f = _arr(eip, n, np.uint64), _arr(forced, n, bool)
    out = [_site("forced_invalid_op", f, eip=rip + np.uint64(FORCED_INVALID_OP_LEN))]
    return out + _within(~f, inject_event_sites(6, rip[~f]))


def device_not_available_sites(eip: object, guest_ts: object) -> list[Site]:
    """#NM: with the guest's virtual CR0.TS set #NM is injected (TRAP 7), else the lazy FPU
    restore traces MATH_STATE_RESTORE (until Xen removed lazy FPU, 2026)."""
    n = _n(eip, guest_ts)
    ts = _arr(guest_ts, n, bool)
    rip = _arr(eip, n, np.uint64)
    return [_site("math_state_restore", ~ts)] + _within(ts, inject_event_sites(7, rip[ts]))


def shadow_fault_sites(
    eip: object, addr: object, error_code: object, fixed: object, shadow: object
) -> list[Site]:
    """A #PF in a domain: PAGING_FIXUP only when the domain is in PV shadow mode and
    ``paging_fault`` fixed it; otherwise the fault goes to the guest (PAGE_FAULT)."""
    n = _n(eip, addr, error_code, fixed, shadow)
    rip, cr2 = _arr(eip, n, np.uint64), _arr(addr, n, np.uint64)
    ok = _arr(fixed, n, bool) & _arr(shadow, n, bool)
    out = [_site("paging_fixup", ok, eip=rip, addr=cr2)]
    bad = ~ok
    ec = _arr(error_code, n)[bad]
    return out + _within(
        bad, inject_event_sites(TRAP_page_fault, rip[bad], error_code=ec, cr2=cr2[bad])
    )


def ldt_fault_sites(
    eip: object,
    offset: object,
    mapped: object,
    guest_mode: object,
    error_code: object = 0,
    ldt_base: object = 0,
) -> list[Site]:
    """A #PF in the vCPU's LDT shadow area: GDT_LDT_MAPPING_FAULT only when the mapping
    succeeded and the fault came from guest context; an unmappable LDT page faulted from guest
    mode is bounced as a #PF at ``ldt_base + offset``; from Xen context nothing is traced."""
    n = _n(eip, offset, mapped, guest_mode, error_code, ldt_base)
    rip, off = _arr(eip, n, np.uint64), _arr(offset, n, np.uint64)
    mp, gm = _arr(mapped, n, bool), _arr(guest_mode, n, bool)
    cr2 = _arr(ldt_base, n, np.uint64) + off
    out = [_site("gdt_ldt_mapping_fault", mp & gm, eip=rip, offset=off)]
    bounce = ~mp & gm
    ec = _arr(error_code, n)[bounce]
    return out + _within(
        bounce, inject_event_sites(TRAP_page_fault, rip[bounce], error_code=ec, cr2=cr2[bounce])
    )


def ptwr_sites(addr: object, npte: object, eip: object, size: object = 8) -> list[Site]:
    """A write to a page-table page emulated: PTWR_EMULATION with the full new PTE and the
    write's address, aligned down to 8 for a sub-word write."""
    n = _n(addr, npte, eip, size)
    a = _arr(addr, n, np.uint64)
    a = np.where(_arr(size, n) < 8, a & ~np.uint64(7), a)
    every = np.ones(n, dtype=bool)
    return [
        _site(
            "ptwr_emulation",
            every,
            addr=a,
            npte=_arr(npte, n, np.uint64),
            eip=_arr(eip, n, np.uint64),
        )
    ]


def _within(mask: np.ndarray, sites: list[Site]) -> list[Site]:
    """Sites of a rule run on the operations in ``mask`` only, renumbered to all of them."""
    where = np.flatnonzero(mask)
    return [Site(s.point, where[s.sel], s.values) for s in sites]


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
        tsc = self.tsc_at(ns)
        if tsc > TSC_MAX:
            raise XentraceError(
                f"system time {ns} ns would put the TSC at {tsc:#x}, past 2**64-1 "
                f"(at {self.tsc_hz} Hz from {self.start_tsc:#x})"
            )
        self.now_ns = ns
        self.clock.now = tsc

    def advance(self, ns: int) -> None:
        """Move system time forward by ``ns`` nanoseconds."""
        self.set_time(self.now_ns + ns)

    # ---- domains ---------------------------------------------------------------------------
    def add_domain(
        self, domid: int, vcpus: int, width: int = 64, name: str = "", shadow: bool = False
    ) -> Domain:
        """Create a domain whose vCPUs are runnable from now on (no records are emitted)."""
        check_domain_spec(DomainSpec(domid, vcpus, width, name), self.abi, self.arch)
        if domid in self.domains:
            raise XentraceError(f"domain {domid} already exists")
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
        """``pv_inject_event`` (see :func:`inject_event_sites`)."""
        self._guest(cpu)
        self._sites(
            cpu,
            inject_event_sites(
                vector,
                eip,
                software=software,
                error_code=error_code,
                cr2=cr2,
                guest_user=guest_user,
            ),
        )

    def general_protection(
        self, cpu: int, eip: int, error_code: int, emulated: bool, next_eip: int
    ) -> None:
        """``do_general_protection`` (see :func:`general_protection_sites`)."""
        self._guest(cpu)
        self._sites(cpu, general_protection_sites(eip, error_code, emulated, next_eip))

    def invalid_op(self, cpu: int, eip: int, forced: bool) -> None:
        """#UD (see :func:`invalid_op_sites`)."""
        self._guest(cpu)
        self._sites(cpu, invalid_op_sites(eip, forced))

    def device_not_available(self, cpu: int, eip: int, guest_ts: bool) -> None:
        """#NM (see :func:`device_not_available_sites`)."""
        self._guest(cpu)
        self._sites(cpu, device_not_available_sites(eip, guest_ts))

    def shadow_fault(self, cpu: int, eip: int, addr: int, error_code: int, fixed: bool) -> None:
        """A #PF while the current domain may be in shadow mode (see
        :func:`shadow_fault_sites`)."""
        v = self._guest(cpu)
        shadow = self.domains[v.domid].shadow
        self._sites(cpu, shadow_fault_sites(eip, addr, error_code, fixed, shadow))

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
        """A #PF in the vCPU's LDT shadow area (see :func:`ldt_fault_sites`)."""
        self._guest(cpu)
        self._sites(cpu, ldt_fault_sites(eip, offset, mapped, guest_mode, error_code, ldt_base))

    def ptwr(self, cpu: int, addr: int, npte: int, eip: int, size: int = 8) -> None:
        """A page-table write emulated (see :func:`ptwr_sites`)."""
        self._guest(cpu)
        self._sites(cpu, ptwr_sites(addr, npte, eip, size))

    def _sites(self, cpu: int, sites: list[Site]) -> None:
        """Emit, at once through the PV trace points, the records of one operation."""
        if self.batch is not None:
            raise RuntimeError("guest operations in batch mode go through the workload's bulk path")
        for site in sites:
            for k in range(len(site.sel)):
                values = {name: int(v[k]) for name, v in site.values.items()}
                getattr(self.pv, site.point)(cpu, **values)
