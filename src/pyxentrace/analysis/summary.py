"""``summary``: PV events and runstates per domain and vCPU, computed in one streaming pass.

:func:`compute_summary` reads the trace in file order (time order when a time range is
filtered), runs the per-pCPU attribution + PV counting kernel on each batch and feeds the
scheduling records to the runstate engine (:mod:`.engine`), which merges them into xenalyze's
order. The :class:`Summary` it returns renders as JSON (:meth:`Summary.to_dict`), text
(:mod:`.render_text`) or xenalyze's ``--summary`` text (:mod:`.render_xenalyze`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..format import xen_names as xn
from ..format.meta import Clock, resolve_clock
from ..reader import TraceReader
from ..reader.report import ReadReport
from . import attribution as A
from . import engine as E
from . import pvstats as PS
from .filters import Filters
from .keys import DEFAULT_DOMAIN, DOMAIN_SHIFT, key_label, make_key

#: JSON names of the PV minors (the spec's field names), in xenalyze's numeric order.
PV_JSON_NAMES: dict[int, str] = {
    1: "hypercall_v1",
    3: "trap",
    4: "page_fault",
    5: "forced_invalid_op",
    6: "emulate_privop",
    7: "emulate_4gb",
    8: "math_state_restore",
    9: "paging_fixup",
    10: "gdt_ldt_mapping_fault",
    11: "ptwr_emulation",
    12: "ptwr_emulation_pae",
    13: "hypercall_v2",
    14: "hypercall_subcall",
}
#: Counted conditions of PV records (see :meth:`Summary.pv_conditions`).
PV_CONDITIONS = {
    "bad_size": PS.X_BAD_SIZE,
    "unknown_id": PS.X_UNKNOWN_ID,
    "ptwr_wrong_flag": PS.X_PTWR_FLAG,
}
PFEC_NAMES = {
    0: "present",
    1: "write",
    2: "user",
    3: "reserved",
    4: "ifetch",
    5: "pkey",
    6: "shstk",
}


@dataclass
class RunstateStat:
    """One runstate line: samples count, cycles, and xenalyze's {p5|p50|p95}."""

    name: str
    count: int
    cycles: int
    events: int
    p5: int
    p50: int
    p95: int

    @property
    def avg(self) -> int:
        """``cycles / count`` as xenalyze prints it (unsigned division, signed print)."""
        if not self.count:
            return 0
        q = (self.cycles & 0xFFFFFFFFFFFFFFFF) // self.count
        return q - (1 << 64) if q >= 1 << 63 else q


@dataclass
class VcpuRunstates:
    states: list[RunstateStat] = field(default_factory=list)  # runstates then runnable subs
    runnable: list[RunstateStat] = field(default_factory=list)
    affinity: RunstateStat | None = None
    affinity_pcpu: list[tuple[int, RunstateStat]] = field(default_factory=list)


@dataclass
class Summary:
    """Everything ``summary`` prints, for every format."""

    path: str
    clock: Clock
    report: ReadReport
    filters: Filters
    first_tsc: int  # first timed record
    last_tsc: int
    xen_first_tsc: int  # xenalyze's P.f.first_tsc (a lost record's first_tsc counts)
    xen_last_tsc: int
    slots: PS.SlotTable
    engine: E.EngineResults
    pcpu_rows: dict[int, int]
    notes: list[str] = field(default_factory=list)

    # ---- time ----------------------------------------------------------------------------------
    @property
    def cpu_hz(self) -> float:
        return self.clock.hz

    @property
    def duration_s(self) -> float:
        lo, hi = self.first_tsc, self.last_tsc
        if self.filters.has_time:
            flo, fhi = self.filters.tsc_range(self.first_tsc, self.cpu_hz)
            lo, hi = max(lo, flo), min(hi, fhi)
        return max(0, hi - lo) / self.cpu_hz

    # ---- vCPUs ---------------------------------------------------------------------------------
    def keys(self, mode: int = 0) -> list[int]:
        """vCPU keys with PV records (``mode`` 0 ours, 1 xenalyze's), filtered, sorted."""
        out = []
        for k in self.slots.keys():
            s = self.slots.slot(k)
            if self.slots.minor_t[mode, s].any() and self.filters.key_selected(k):
                out.append(k)
        return sorted(out, key=_key_order)

    def runstate_keys(self) -> list[int]:
        """vCPU keys known to the runstate engine (xenalyze's domains and vCPUs), filtered."""
        out = []
        for d, did in self.engine.domains():
            for _v, vid in self.engine.vcpus(d):
                k = make_key(did, vid)
                if self.filters.key_selected(k):
                    out.append(k)
        return out

    def pv_counts(self, key: int, mode: int = 0) -> dict[int, int]:
        """``{minor: count}`` of a vCPU."""
        s = self.slots.slot(key)
        if s < 0:
            return {}
        row = self.slots.minor_t[mode, s]
        return {int(m): int(row[m]) for m in np.nonzero(row)[0]}

    def hypercalls(self, key: int, kind: int, mode: int = 0) -> dict[int, int]:
        """``{op: count}`` for kind 0 (v1), 1 (v2), 2 (sub-calls); op 64 = "64 or more"."""
        s = self.slots.slot(key)
        if s < 0:
            return {}
        row = self.slots.hc_t[mode, s, kind]
        return {int(o): int(row[o]) for o in np.nonzero(row)[0]}

    def traps(self, key: int, mode: int = 0) -> dict[int, int]:
        s = self.slots.slot(key)
        if s < 0:
            return {}
        row = self.slots.trap_t[mode, s, : PS.NVEC + 1]
        return {int(v): int(row[v]) for v in np.nonzero(row)[0]}

    def pfec(self, key: int) -> dict[int, int]:
        """``{error code bits 0-6: count}`` of a vCPU's page faults."""
        s = self.slots.slot(key)
        if s < 0:
            return {}
        row = self.slots.pf_t[s, : PS.PFEC_COMBOS]
        return {int(v): int(row[v]) for v in np.nonzero(row)[0]}

    def misc(self, key: int, col: int) -> int:
        s = self.slots.slot(key)
        return int(self.slots.misc_t[s, col]) if s >= 0 else 0

    def pv_conditions(self) -> dict[str, int]:
        """PV records counted but not (fully) decoded, over all vCPUs (our attribution).

        ``bad_size``: the payload size fits no layout of the id; ``unknown_id``: the id is not
        in the PV layout table (both are counted under their minor only); ``ptwr_wrong_flag``:
        PTWR records whose 64-bit flag disagrees with the minor (decoded by their size;
        xenalyze stops at them).
        """
        return _pv_condition_counts(self.slots.misc_t)

    # ---- runstates -----------------------------------------------------------------------------
    def _stat(self, sid: int, name: str, self_weighted: bool = True) -> RunstateStat:
        from .percentile import xenalyze_triplet

        count, cycles, events = self.engine.summary(sid)
        p5 = p50 = p95 = 0
        if count:
            p5, p50, p95 = (
                int(x) for x in xenalyze_triplet(self.engine.samples(sid), self_weighted)
            )
        return RunstateStat(name, count, cycles, events, p5, p50, p95)

    def vcpu_runstates(self, key: int) -> VcpuRunstates | None:
        """xenalyze's per-vCPU runstate lines (counts > 0 only) and cpu affinity."""
        dom, vid = key >> DOMAIN_SHIFT, key & 0xFFFF
        eng = self.engine.eng
        d = 0 if dom == DEFAULT_DOMAIN else int(eng.did_map[dom]) if dom <= 0xFFFF else -1
        if d < 0 or vid > E.MAX_VID or eng.dvid[d, vid] < 0:
            return None
        v = int(eng.dvid[d, vid])
        out = VcpuRunstates()
        for i, name in enumerate(E.RUNSTATE_NAMES):
            st = self._stat(self.engine.vcpu_sid(v, i), name)
            if st.count:
                out.states.append(st)
        for j, name in enumerate(E.RUNNABLE_NAMES):
            if j == 0:
                continue
            st = self._stat(self.engine.vcpu_sid(v, E.RS_MAX + j), name)
            if st.count:
                out.runnable.append(st)
        aff = self._stat(self.engine.vcpu_sid(v, E.VS_AFF), "cpu affinity", False)
        out.affinity = aff if aff.count else None
        for p, sid in self.engine.affinity(v):
            st = self._stat(sid, f"[{p}]", False)
            if st.count:
                out.affinity_pcpu.append((p, st))
        return out

    def domain_runstates(self, did: int) -> list[RunstateStat]:
        eng = self.engine.eng
        d = int(eng.did_map[did]) if 0 <= did <= 0xFFFF else -1
        if d < 0:
            return []
        out = []
        for i, name in enumerate(E.DOMAIN_RUNSTATE_NAMES):
            st = self._stat(self.engine.domain_sid(d, i), name)
            if st.count:
                out.append(st)
        return out

    # ---- JSON ----------------------------------------------------------------------------------
    def to_dict(self, top: int = 10) -> dict:
        """The JSON document of ``summary --format json``."""
        keys = sorted(set(self.keys(0)) | set(self.runstate_keys()), key=_key_order)
        vcpus = {}
        dur = self.duration_s
        for k in keys:
            vcpus[key_label(k)] = self._vcpu_dict(k, dur, top)
        r = self.report
        return {
            "path": self.path,
            "cpu_hz": self.cpu_hz,
            "cpu_hz_source": self.clock.source,
            "duration_s": dur,
            "first_tsc": self.first_tsc,
            "last_tsc": self.last_tsc,
            "records": r.records,
            "pcpus": sorted(self.pcpu_rows),
            "lost": {
                "records": r.lost_records,
                "count": r.lost_count,
                "wrap_records": r.wrap_records,
            },
            "filters": _filters_dict(self.filters),
            "vcpus": vcpus,
            "domains": self._domains_dict(),
            "notes": list(self.notes),
            "pv_conditions": self.pv_conditions(),
            "xenalyze_engine": {
                "fatal_conditions": self.engine.fatal,
                "strange_conditions": self.engine.strange,
                "tsc_skew_corrections": self.engine.skew_events,
                "tsc_skew_loops": self.engine.skew_loops,
                "tsc_skew_offsets": {str(p): o for p, o in self.engine.skew_offsets.items()},
            },
            "eip_tables_approximate": self.slots.eip_approximate,
        }

    def _vcpu_dict(self, key: int, dur: float, top: int) -> dict:
        counts = self.pv_counts(key)
        pv: dict = {}
        pv["hypercall"] = counts.get(1, 0) + counts.get(13, 0)
        for m, name in PV_JSON_NAMES.items():
            if m in (1, 13):
                continue
            if m == 14:
                pv["hypercall_subcall"] = counts.get(14, 0)
            elif m == 11:
                pv["ptwr_emulation"] = counts.get(11, 0) + counts.get(12, 0)
            elif m != 12:
                pv[name] = counts.get(m, 0)
        pv["hypercall_v1"] = counts.get(1, 0)
        pv["hypercall_v2"] = counts.get(13, 0)
        pv["ptwr_emulation_pae"] = counts.get(12, 0)
        other = {str(m): c for m, c in counts.items() if m not in PV_JSON_NAMES}
        if other:
            pv["unknown_minors"] = other
        entry = _merge(self.hypercalls(key, 0), self.hypercalls(key, 1))
        pv["hypercalls"] = {_op_key(o): c for o, c in sorted(entry.items())}
        pv["hypercall_names"] = {_op_key(o): _op_name(o) for o in sorted(entry)}
        sub = self.hypercalls(key, 2)
        pv["subcalls"] = {_op_key(o): c for o, c in sorted(sub.items())}
        pv["traps"] = {_vec_key(v): c for v, c in sorted(self.traps(key).items())}
        pv["traps_with_error_code"] = self.misc(key, PS.X_TRAP_EC)
        pf = self.pfec(key)
        pv["page_fault_error_codes"] = {f"{c:#x}": n for c, n in sorted(pf.items())}
        pv["page_fault_bits"] = {
            name: sum(n for c, n in pf.items() if c >> bit & 1) for bit, name in PFEC_NAMES.items()
        }
        pv["page_fault_high_bits"] = self.misc(key, PS.X_PF_HIGHBITS)
        pv["mmu_update_preempted"] = self.misc(key, PS.X_MMU_PREEMPTED)
        for name, col in PV_CONDITIONS.items():
            pv[name] = self.misc(key, col)
        pv["top_eips"] = {
            t: [{"eip": f"{e:#x}", "count": c} for e, c in lst]
            for t, lst in self.slots.top_eips(self.slots.slot(key), top).items()
        }
        total = sum(counts.values())
        pv["total"] = total
        pv["rate_per_s"] = total / dur if dur > 0 else None
        out: dict = {"pv": pv, "runstates": {}}
        rs = self.vcpu_runstates(key)
        if rs is not None:
            out["runstates"] = {s.name: _rs_dict(s, self.cpu_hz) for s in rs.states}
            out["runnable"] = {s.name: _rs_dict(s, self.cpu_hz) for s in rs.runnable}
            if rs.affinity is not None:
                out["cpu_affinity"] = {
                    "count": rs.affinity.count,
                    "cycles": rs.affinity.cycles,
                    "per_pcpu": {str(p): s.count for p, s in rs.affinity_pcpu},
                }
        out["lost"] = {
            "began_while_current": self.misc(key, PS.X_LOST_AT_START),
            "named": self.misc(key, PS.X_LOST_NAMED),
            "count_named": self.misc(key, PS.X_LOST_COUNT),
        }
        return out

    def _domains_dict(self) -> dict:
        out = {}
        for _d, did in self.engine.domains():
            if self.filters.domains and did not in self.filters.domains:
                continue
            out[xn.domain_label(did)] = {
                "runstates": {s.name: _rs_dict(s, self.cpu_hz) for s in self.domain_runstates(did)}
            }
        return out


def _rs_dict(s: RunstateStat, hz: float) -> dict:
    return {
        "count": s.count,
        "cycles": s.cycles,
        "seconds": s.cycles / hz,
        "avg_cycles": s.avg,
        "p5": s.p5,
        "p50": s.p50,
        "p95": s.p95,
    }


def _merge(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _op_key(op: int) -> str:
    return ">=64" if op >= PS.HC_OPS else str(op)


def _vec_key(v: int) -> str:
    return ">=256" if v >= PS.NVEC else str(v)


def _op_name(op: int) -> str:
    return "other" if op >= PS.HC_OPS else xn.hypercall_name(op)


def _key_order(key: int) -> tuple[int, int, int]:
    """NONE last, DEFAULT after real domains, then domain and vCPU."""
    if key < 0:
        return (3, 0, 0)
    dom, vcpu = key >> DOMAIN_SHIFT, key & 0xFFFF
    return (2 if dom == DEFAULT_DOMAIN else 0, dom, vcpu)


def _filters_dict(f: Filters) -> dict:
    return {
        "from_s": f.from_s,
        "to_s": f.to_s,
        "cpus": sorted(f.cpus),
        "domains": sorted(f.domains),
        "vcpus": sorted(key_label(k) for k in f.vcpus),
    }


# ---- computation ---------------------------------------------------------------------------------
def compute_summary(
    path: str | os.PathLike,
    cpu_hz: float | None = None,
    filters: Filters | None = None,
    *,
    clock: Clock | None = None,
    batch_rows: int | None = None,
    eip_capacity: int = 1 << 14,
) -> Summary:
    """Run the summary analyses over a trace file (``-`` for stdin) in one streaming pass."""
    path = os.fspath(path)
    filters = filters or Filters()
    clock = clock or resolve_clock(path, cpu_hz)
    kw = {"cpu_hz": clock.hz}
    if batch_rows:
        kw["batch_rows"] = batch_rows
    # a time range needs the trace's first TSC before counting starts: read in time order
    reader = TraceReader(path, ordered=filters.has_time, **kw)
    return _run(reader, path, clock, filters, eip_capacity)


class _State:
    """What the streaming pass carries from batch to batch."""

    def __init__(self, filters: Filters, clock: Clock, eip_cap: int):
        self.filters = filters
        self.clock = clock
        self.eip_cap = eip_cap
        self.pst = A.new_state()
        self.slots = PS.SlotTable(eip_capacity=max(eip_cap, 1))
        self.eng: E.XenalyzeEngine | None = None
        self.cpu_mask = filters.cpu_mask(self.pst.shape[0])
        self.t_lo, self.t_hi = 0, (1 << 63) - 1
        self.origin: int | None = None
        self.lost_first: list[int] = []
        self.kind_buf = np.empty(0, dtype=np.int8)
        self.ev_row, self.stab = PS.summary_table()[:2]

    def batch(self, b) -> None:
        n = len(b)
        if self.eng is None:
            timed = (b.flags & 1) == 0
            self.origin = int(b.tsc[timed].min()) if timed.any() else 0
            clip = None
            if self.filters.has_time:
                self.t_lo, self.t_hi = self.filters.tsc_range(self.origin, self.clock.hz)
                clip = (self.t_lo, self.t_hi)
            self.eng = E.XenalyzeEngine(clip=clip)
        if self.kind_buf.shape[0] < n:
            self.kind_buf = np.empty(max(n, 2 * self.kind_buf.shape[0]), dtype=np.int8)
        kind = self.kind_buf[:n]
        kind.fill(-1)
        slots, pst = self.slots, self.pst
        start = 0
        while True:
            st, start = PS.scan_batch(
                b.cpu,
                b.tsc,
                b.flags,
                b.event,
                b.nwords,
                b.words,
                start,
                pst,
                slots.hkeys,
                slots.hslots,
                slots.smeta,
                slots.maxslots,
                slots.row_t,
                slots.hc_t,
                slots.trap_t,
                slots.pf_t,
                slots.misc_t,
                slots.et,
                slots.emeta,
                self.eip_cap > 0,
                np.int64(self.t_lo),
                np.int64(self.t_hi),
                self.cpu_mask,
                kind,
                self.ev_row,
                self.stab,
            )
            if st == PS.ST_DONE:
                break
            slots.grow()
        eng = self.eng
        sel = np.nonzero(kind >= 0)[0]
        if sel.shape[0]:
            k = kind[sel]
            lost = sel[k == 2]
            if lost.shape[0]:
                w = b.words[lost]
                self.lost_first.extend(
                    (w[:, 2].astype(np.int64) | (w[:, 3].astype(np.int64) << 32)).tolist()
                )
            eng.feed(
                b.cpu[sel].astype(np.int32),
                k,
                b.tsc[sel],
                (b.flags[sel] & 1).astype(np.uint8),
                b.event[sel].astype(np.int64),
                b.words[sel, :4].astype(np.int64),
            )
        eng.set_pcpus(pst[:, A.S_SEEN], pst[:, A.S_FIRST_TSC], pst[:, A.S_LAST_TSC])
        eng.run(final=False)


def _pv_condition_counts(misc: np.ndarray) -> dict[str, int]:
    return {name: int(misc[:, col].sum()) for name, col in PV_CONDITIONS.items()}


def _pv_notes(misc: np.ndarray) -> list[str]:
    n = _pv_condition_counts(misc)
    bad, unknown, ptwr = n["bad_size"], n["unknown_id"], n["ptwr_wrong_flag"]
    out = []
    if bad:
        out.append(
            f"{bad} PV records have a payload size no layout of their id has: counted under "
            "their event only (no hypercall, vector, error code or EIP)"
        )
    if unknown:
        out.append(
            f"{unknown} PV records have ids outside the PV layout table: counted under their "
            "minor only, not decoded"
        )
    if ptwr:
        out.append(
            f"{ptwr} PTWR records carry the wrong 64-bit flag for their minor (11 without it, "
            "12 with it): decoded by their size; xenalyze stops at these (ERR_RECORD)"
        )
    return out


def _run(reader: TraceReader, path: str, clock: Clock, filters: Filters, eip_cap: int) -> Summary:
    st = _State(filters, clock, eip_cap)
    # batch k is counted in a worker thread (the kernels release the GIL) while this thread
    # pulls batch k+1 from the reader; at most two batches are alive at a time
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for b in reader.batches():
            if len(b) == 0:
                continue
            if pending is not None:
                pending.result()
            pending = pool.submit(st.batch, b)
        if pending is not None:
            pending.result()
    pst, slots, eng, lost_first, origin = st.pst, st.slots, st.eng, st.lost_first, st.origin
    slots.finish()
    report = reader.report
    if eng is None:
        eng = E.XenalyzeEngine()
    seen = np.nonzero(pst[:, A.S_SEEN])[0]
    last_per = {int(c): int(pst[c, A.S_LAST_TSC]) for c in seen}
    eng.finish(last_per)
    firsts = [int(pst[c, A.S_FIRST_TSC]) for c in seen if pst[c, A.S_FIRST_TSC]]
    first = min(firsts) if firsts else 0
    last = max(last_per.values()) if last_per else 0
    xfirst = min([first] + [x for x in lost_first if 0 < x]) if firsts else 0
    skew = eng.pc[:, E.P_SKEW]
    xlast = max((int(pst[c, A.S_LAST_TSC]) + int(skew[c]) for c in seen), default=0)
    res = eng.results(xlast)
    notes = []
    if res.fatal:
        notes.append(
            f"{res.fatal} scheduling inconsistencies where xenalyze would have stopped; "
            "kept going (see docs/xenalyze-compat.md)"
        )
    if slots.eip_approximate:
        notes.append("top-EIP tables overflowed: counts of rare addresses are approximate")
    notes.extend(_pv_notes(slots.misc_t))
    if filters.cpus:
        notes.append(
            f"--cpu {','.join(str(c) for c in sorted(filters.cpus))}: PV events are counted from "
            "these pCPUs only; runstates and cpu affinity cover every pCPU (a vCPU's runstates "
            "span the pCPUs it runs on)"
        )
    if report.lost_records:
        notes.append(
            f"{report.lost_records} lost-records records: the hypervisor dropped "
            f"{report.lost_count} records"
        )
    if origin is None:
        origin = 0
    return Summary(
        path=path,
        clock=clock,
        report=report,
        filters=filters,
        first_tsc=first,
        last_tsc=last,
        xen_first_tsc=xfirst,
        xen_last_tsc=xlast,
        slots=slots,
        engine=res,
        pcpu_rows={int(c): int(pst[c, A.S_ROWS]) for c in seen},
        notes=notes,
    )
