"""Perfetto timeline (``.pftrace``): protobuf TrackEvent packets, written streaming.

Layout (Perfetto's process/thread model):

* process ``Xen`` with one thread track per pCPU (``pCPU 3``): a slice per vCPU occupancy
  (``d0v1``, ``d[IDLE]v3``), lost-record markers, and every record that belongs to no vCPU
  (scheduler internals, records before the first scheduling record, ...) as an instant;
* one process per domain (``d0``, ``d1``, ``d[IDLE]`` - dom0 is a VM like any other), one
  thread track per vCPU (``d0v1``): runstate slices (``running``, ``runnable``, ``blocked``,
  ``offline``) and the vCPU's PV events as instants - or, with ``pv_slices``, as slices that end
  at the next record of the same pCPU or the next event of the same vCPU track, whichever comes
  first (a vCPU track has at most one open PV slice, always innermost) - with their decoded
  fields as arguments.

Every slice end carries the name of the slice it closes, so a reader can check the pairing
(Perfetto's trace processor does).

Names, categories, argument names and string argument values are interned; each batch of
records becomes one run of concatenated ``Trace.packet`` messages, so memory stays bounded.
Timestamps are ns since the first timed record.
"""

from __future__ import annotations

from typing import BinaryIO

import numpy as np

from ..analysis.decode import SUBCMD_OPS, decode_columns, subcmd_name
from ..analysis.keys import DEFAULT_DOMAIN, DOMAIN_SHIFT, key_label
from ..format import events as ev
from ..format.xen_names import PFEC_BITS, domain_label, hypercall_name, vector_name
from . import perfetto_kernel as K
from . import protobuf as P
from .perfetto_packets import (
    ID_ANNOTATION_NAMES,
    ID_CATEGORIES,
    ID_EVENT_NAMES,
    ID_STRING_VALUES,
    PKT_TRACK_DESCRIPTOR,
    PRIO_BEGIN,
    PRIO_END,
    PRIO_INSTANT,
    PRIO_PCPU_END,
    PRIO_PV_BEGIN,
    PRIO_PV_END,
    Args,
    Events,
    Interner,
)
from .runstates import STATE_NAMES, RunstateTracker, Transitions, runstate_rows
from .source import Rows

# pids/tids (int32) and track uuids
XEN_PID = 10_000
DOM_PID_BASE = 100_000
PID_STRIDE = 4096
UUID_XEN = 1
UUID_PCPU = 0x10_0000
UUID_DOM = 0x1_0000_0000
UUID_VCPU = 0x2_0000_0000

_PV_MAIN = ev.TRC_PV >> ev.TRC_CLS_SHIFT
_HYPERCALL_MINORS = (1, 13)


def pcpu_uuid(cpu: int) -> int:
    return UUID_PCPU + cpu


def vcpu_uuid(key: int) -> int:
    return UUID_VCPU + key


def pfec_text(code: int) -> str:
    """``P|W|U`` style rendering of a page-fault error code (``-`` for 0)."""
    names = [n for bit, n in PFEC_BITS.items() if code & bit]
    return "|".join(names) or "-"


class PerfettoWriter:
    """Write a trace's :class:`Rows` as Perfetto packets to a binary stream."""

    def __init__(self, out: BinaryIO, *, pv_slices: bool = False, other_records: bool = True):
        self.out = out
        self.pv_slices = pv_slices
        self.other_records = other_records
        self.intern = Interner()
        self.rs = RunstateTracker()
        self._pcpus: set[int] = set()
        self._domains: set[int] = set()
        self._vcpus: set[int] = set()
        # vCPU key -> (track uuid, begin ns, pCPU, name iid) of its open PV slice
        self._pending_pv: dict[int, tuple[int, int, int, int]] = {}
        self.bytes = 0
        self.last_ns = 0
        self._write(self._xen_process())
        self._write(self.intern.packet(first=True))

    # ---- output ----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.bytes += len(data)

    def _cat(self, name: str) -> int:
        return self.intern.iid(ID_CATEGORIES, name)

    # ---- tracks ----------------------------------------------------------------------
    @staticmethod
    def _track(uuid: int, *fields: bytes) -> bytes:
        return P.message(1, P.message(PKT_TRACK_DESCRIPTOR, P.uint(1, uuid), *fields))

    def _xen_process(self) -> bytes:
        proc = P.message(3, P.uint(1, XEN_PID), P.string(6, "Xen"))
        return self._track(UUID_XEN, proc)

    def _ensure_pcpu(self, cpu: int, buf: list[bytes]) -> None:
        if cpu in self._pcpus:
            return
        self._pcpus.add(cpu)
        th = P.message(
            4, P.uint(1, XEN_PID), P.uint(2, XEN_PID + 1 + cpu), P.string(5, f"pCPU {cpu}")
        )
        buf.append(self._track(pcpu_uuid(cpu), P.uint(5, UUID_XEN), th))

    def _ensure_vcpu(self, key: int, buf: list[bytes]) -> None:
        if key in self._vcpus:
            return
        self._vcpus.add(key)
        dom, v = key >> DOMAIN_SHIFT, key & 0xFFFF
        pid = DOM_PID_BASE + dom * PID_STRIDE
        if dom not in self._domains:
            self._domains.add(dom)
            proc = P.message(3, P.uint(1, pid), P.string(6, domain_label(dom)))
            buf.append(self._track(UUID_DOM + dom, proc))
        th = P.message(
            4,
            P.uint(1, pid),
            P.uint(2, pid + 1 + (v % (PID_STRIDE - 1))),
            P.string(5, key_label(key)),
        )
        buf.append(self._track(vcpu_uuid(key), P.uint(5, UUID_DOM + dom), th))

    # ---- records ----------------------------------------------------------------------
    def add(self, rows: Rows) -> None:
        """Convert one time-ordered batch."""
        b = rows.b
        n = len(b)
        if n == 0:
            return
        tracks: list[bytes] = []
        for c in np.unique(b.cpu).tolist():
            self._ensure_pcpu(c, tracks)
        evs = Events()
        t_ns = rows.t_ns
        self.last_ns = max(self.last_ns, int(t_ns.max()))
        key = rows.key
        dom = key >> DOMAIN_SHIFT
        on_vcpu = (key >= 0) & (dom != DEFAULT_DOMAIN)
        is_pv = (b.event >> 16) == _PV_MAIN
        rs = runstate_rows(b.event, b.nwords)
        ri = np.nonzero(rs)[0]
        tr = self.rs.feed(b.event[ri], b.words[ri, 0], b.tsc[ri], b.cpu[ri]) if ri.size else None

        # PV events on their vCPU's track
        pv_rows = np.nonzero(is_pv & on_vcpu)[0]
        for k in np.unique(key[pv_rows]).tolist():
            self._ensure_vcpu(k, tracks)
        bounds = None
        if self.pv_slices and (pv_rows.size or self._pending_pv):
            bounds = self._pv_bounds(b.cpu, t_ns, key, pv_rows, ri, tr, evs)
        if pv_rows.size:
            self._pv_events(b, t_ns, key, pv_rows, evs, bounds)
        # runstate transitions: slices on vCPU and pCPU tracks
        if tr is not None:
            self._runstate_events(tr, t_ns[ri], evs, tracks)
        # everything else on the pCPU track
        other = ~rs & ~(is_pv & on_vcpu)
        if not self.other_records:
            other &= (b.event == ev.TRC_LOST_RECORDS) | is_pv
        oi = np.nonzero(other)[0]
        if oi.size:
            self._other_events(b, t_ns, key, oi, evs)
        payload = evs.encode()
        self._write(b"".join(tracks))
        self._write(self.intern.packet())
        self._write(payload)

    def _pv_events(self, b, t_ns, key, idx, evs: Events, bounds) -> None:
        sub = b.take(idx)
        c = decode_columns(sub.event, sub.nwords, sub.words)
        n = idx.size
        names, cats = self._pv_names(sub, c)
        args = Args(n)
        A = self.intern.iid
        args.add(A(ID_ANNOTATION_NAMES, "pcpu"), K.ARG_UINT, sub.cpu, np.ones(n, bool))
        args.add(A(ID_ANNOTATION_NAMES, "hypercall"), K.ARG_UINT, c["op"], c["op"] >= 0)
        # a named sub-command as a string, any other number as a number (keeps the interning
        # tables bounded whatever the payloads hold)
        cmd = c["subcmd"]
        named = np.zeros(n, bool)
        for op, table in SUBCMD_OPS.items():
            named |= (c["op"] == op) & np.isin(cmd, np.fromiter(table, np.int64))
        if named.any():
            self._str_arg(
                args,
                "subcmd",
                (c["op"].astype(np.int64) << 32) | cmd,
                named,
                lambda k: subcmd_name(k >> 32, k & 0xFFFFFFFF) or str(k),
            )
        args.add(A(ID_ANNOTATION_NAMES, "subcmd"), K.ARG_UINT, cmd, (cmd >= 0) & ~named)
        args.add(A(ID_ANNOTATION_NAMES, "count"), K.ARG_UINT, c["count"], c["count"] >= 0)
        for i in range(6):
            args.add(
                A(ID_ANNOTATION_NAMES, f"arg{i}"), K.ARG_UINT, c[f"arg{i}"], c[f"arg{i}_valid"]
            )
        self._str_arg(args, "vector", c["vector"], c["vector"] >= 0, vector_name)
        args.add(
            A(ID_ANNOTATION_NAMES, "error_code"), K.ARG_PTR, c["error_code"], c["error_code_valid"]
        )
        pf = c["error_code_valid"] & (c["minor"] == ev.PV_PAGE_FAULT)
        self._str_arg(args, "pfec", c["error_code"], pf, pfec_text)
        for col in ("eip", "addr", "ldt_offset", "pte"):
            args.add(A(ID_ANNOTATION_NAMES, col), K.ARG_PTR, c[col], c[col + "_valid"])
        uuid = vcpu_uuid(0) + key[idx].astype(np.uint64)
        ts = t_ns[idx]
        if bounds is None:
            evs.add(ts, PRIO_INSTANT, K.TYPE_INSTANT, uuid, names, cats, args.take(np.arange(n)))
            return
        nxt, has = bounds
        point = has & (nxt <= ts)  # the next record is at the same time: an instant
        sl = np.nonzero(~point)[0]
        pt = np.nonzero(point)[0]
        evs.add(ts[pt], PRIO_INSTANT, K.TYPE_INSTANT, uuid[pt], names[pt], cats[pt], args.take(pt))
        evs.add(
            ts[sl], PRIO_PV_BEGIN, K.TYPE_SLICE_BEGIN, uuid[sl], names[sl], cats[sl], args.take(sl)
        )
        ended = sl[has[sl]]
        evs.add(nxt[ended], PRIO_PV_END, K.TYPE_SLICE_END, uuid[ended], names[ended], 0)
        for j in sl[~has[sl]].tolist():  # nothing after it on its pCPU or track in this batch
            k = int(key[idx[j]])
            self._pending_pv[k] = (int(uuid[j]), int(ts[j]), int(b.cpu[idx[j]]), int(names[j]))

    def _str_arg(
        self, args: Args, name: str, values: np.ndarray, valid: np.ndarray, render
    ) -> None:
        """A string argument, interned per distinct value."""
        if not valid.any():
            return
        v = np.where(valid, values, 0).astype(np.int64)
        uniq, inv = np.unique(v, return_inverse=True)
        iids = self.intern.iids(ID_STRING_VALUES, [render(int(x)) for x in uniq])[inv]
        args.add(self.intern.iid(ID_ANNOTATION_NAMES, name), K.ARG_STR, iids, valid)

    def _pv_names(self, sub, c) -> tuple[np.ndarray, np.ndarray]:
        """Event names (``hypercall iret``, ``subcall mmu_update``, ``page_fault64``...)."""
        opv = c["op"].astype(np.int64)
        has_op = opv >= 0
        combo = np.where(
            has_op,
            (sub.event.astype(np.int64) << 24) | opv,
            sub.event.astype(np.int64) << 24 | 0xFFFFFF,
        )
        uniq, inv = np.unique(combo, return_inverse=True)
        names = []
        for c in uniq.tolist():
            e, o = c >> 24, c & 0xFFFFFF
            m = e & 0xFF
            if o != 0xFFFFFF and m in _HYPERCALL_MINORS:
                names.append(f"hypercall {hypercall_name(o)}")
            elif o != 0xFFFFFF and m == ev.PV_HYPERCALL_SUBCALL:
                names.append(f"subcall {hypercall_name(o)}")
            else:
                names.append(ev.event_name(e))
        iids = self.intern.iids(ID_EVENT_NAMES, names)[inv]
        return iids, np.full(len(sub), self._cat("pv"), np.uint64)

    def _pv_bounds(self, cpu, t_ns, key, pv_rows, ri, tr, evs: Events):
        """``(end time, has end)`` of each PV row's slice in this batch: the next record of the
        same pCPU or the next event on the same vCPU track (a PV event or a runstate slice
        ending or beginning), whichever comes first. Slices left open by the previous batch end
        here the same way (at their pCPU's first record or their track's first event)."""
        n = cpu.shape[0]
        # next record of the same pCPU
        cpus = cpu.astype(np.int64)
        order = np.lexsort((np.arange(n), cpus))  # by pCPU, time order kept
        sc = cpus[order]
        same = sc[1:] == sc[:-1]
        nxt_cpu = np.full(n, -1, np.int64)
        nxt_cpu[order[:-1][same]] = order[1:][same]
        first_of_cpu = dict(
            zip(sc[np.r_[True, ~same]].tolist(), order[np.r_[True, ~same]].tolist(), strict=True)
        )
        # next event of the same vCPU track: PV rows and runstate rows that end or begin a slice
        if tr is not None:
            moves = (tr.prev_state >= 0) | (tr.new_state >= 0)
            t_rows = np.concatenate([pv_rows, ri[moves]])
            t_keys = np.concatenate([key[pv_rows], tr.key[moves]])
        else:
            t_rows, t_keys = pv_rows, key[pv_rows]
        m = t_rows.shape[0]
        order = np.lexsort((t_rows, t_keys))
        sk, sr = t_keys[order], t_rows[order]
        same = sk[1:] == sk[:-1]
        nxt_sorted = np.full(m, -1, np.int64)
        nxt_sorted[:-1][same] = sr[1:][same]
        nxt_track = np.empty(m, np.int64)
        nxt_track[order] = nxt_sorted
        heads = np.r_[True, ~same] if m else np.zeros(0, bool)
        first_of_track = dict(zip(sk[heads].tolist(), sr[heads].tolist(), strict=True))
        # the earlier of the two, per PV row
        a = nxt_cpu[pv_rows]
        bt = nxt_track[: pv_rows.shape[0]]
        ta = np.where(a >= 0, t_ns[np.maximum(a, 0)], np.iinfo(np.int64).max)
        tb = np.where(bt >= 0, t_ns[np.maximum(bt, 0)], np.iinfo(np.int64).max)
        has = (a >= 0) | (bt >= 0)
        nxt = np.minimum(ta, tb)
        # slices left open by the previous batch
        ends = []
        for k, (u, t0, c, name) in list(self._pending_pv.items()):
            cand = [
                int(t_ns[r]) for r in (first_of_cpu.get(c), first_of_track.get(k)) if r is not None
            ]
            if cand:
                ends.append((max(t0, min(cand)), u, name))
                del self._pending_pv[k]
        if ends:
            et, eu, en = (np.array(x) for x in zip(*ends, strict=True))
            evs.add(
                et, PRIO_PV_END, K.TYPE_SLICE_END, eu.astype(np.uint64), en.astype(np.uint64), 0
            )
        return nxt, has

    def _runstate_events(
        self, tr: Transitions, ts: np.ndarray, evs: Events, tracks: list[bytes]
    ) -> None:
        cat = self._cat("runstate")
        state_iid = self.intern.iids(ID_EVENT_NAMES, list(STATE_NAMES))
        for k in np.unique(tr.key).tolist():
            self._ensure_vcpu(k, tracks)
        vu = vcpu_uuid(0) + tr.key.astype(np.uint64)
        end = tr.prev_state >= 0
        evs.add(
            ts[end],
            PRIO_END,
            K.TYPE_SLICE_END,
            vu[end],
            state_iid[tr.prev_state[end].astype(np.int64)],
            0,
        )
        beg = tr.new_state >= 0
        evs.add(
            ts[beg],
            PRIO_BEGIN,
            K.TYPE_SLICE_BEGIN,
            vu[beg],
            state_iid[tr.new_state[beg].astype(np.int64)],
            cat,
        )
        pe = tr.pcpu_end >= 0
        evs.add(
            ts[pe],
            PRIO_PCPU_END,
            K.TYPE_SLICE_END,
            np.uint64(UUID_PCPU) + tr.pcpu_end[pe].astype(np.uint64),
            self._label_iids(tr.key[pe]),
            0,
        )
        kick = tr.kicked >= 0
        evs.add(
            ts[kick],
            PRIO_PCPU_END,
            K.TYPE_SLICE_END,
            np.uint64(UUID_PCPU) + tr.pcpu_begin[kick].astype(np.uint64),
            self._label_iids(tr.kicked[kick]),
            0,
        )
        pb = np.nonzero(tr.pcpu_begin >= 0)[0]
        if pb.size:
            evs.add(
                ts[pb],
                PRIO_BEGIN,
                K.TYPE_SLICE_BEGIN,
                np.uint64(UUID_PCPU) + tr.pcpu_begin[pb].astype(np.uint64),
                self._label_iids(tr.key[pb]),
                self._cat("sched"),
            )

    def _label_iids(self, keys: np.ndarray) -> np.ndarray:
        """Interned event-name ids of vCPU labels (``d0v1``), the pCPU slices' names."""
        if keys.shape[0] == 0:
            return np.zeros(0, np.uint64)
        uk, inv = np.unique(keys, return_inverse=True)
        return self.intern.iids(ID_EVENT_NAMES, [key_label(int(k)) for k in uk])[inv.ravel()]

    def _other_events(self, b, t_ns, key, idx, evs: Events) -> None:
        sub = b.take(idx)
        n = idx.size
        A = self.intern.iid
        ue, inv = np.unique(sub.event, return_inverse=True)
        names = self.intern.iids(ID_EVENT_NAMES, [ev.event_name(int(e)) for e in ue])[inv]
        cats = self.intern.iids(ID_CATEGORIES, [ev.class_name(int(e)) for e in ue])[inv]
        args = Args(n)
        lost = (sub.event == ev.TRC_LOST_RECORDS) & (sub.nwords >= 1)
        if lost.any():
            args.add(A(ID_ANNOTATION_NAMES, "lost"), K.ARG_UINT, sub.words[:, 0], lost)
        uk, kinv = np.unique(key[idx], return_inverse=True)
        labels = self.intern.iids(ID_STRING_VALUES, [key_label(int(k)) for k in uk])[kinv]
        args.add(A(ID_ANNOTATION_NAMES, "vcpu"), K.ARG_STR, labels, np.ones(n, bool))
        for i in range(7):
            args.add(
                A(ID_ANNOTATION_NAMES, f"w{i}"),
                K.ARG_PTR,
                sub.words[:, i],
                (sub.nwords > i) & ~lost,
            )
        uuid = np.uint64(UUID_PCPU) + sub.cpu.astype(np.uint64)
        evs.add(t_ns[idx], PRIO_INSTANT, K.TYPE_INSTANT, uuid, names, cats, args.take(np.arange(n)))

    def finish(self) -> None:
        """End every slice still open, at the last record's time (innermost first)."""
        evs = Events()
        t = self.last_ns
        ends: list[tuple[int, int, int, int]] = []  # (prio, track uuid, name iid, not before)
        for u, t0, _c, name in self._pending_pv.values():
            ends.append((PRIO_PV_END, u, name, t0))
        self._pending_pv.clear()
        states = self.intern.iids(ID_EVENT_NAMES, list(STATE_NAMES))
        for k, state, _since in self.rs.open_intervals():
            ends.append((PRIO_END, vcpu_uuid(k), int(states[state]), 0))
        for cpu, k in self.rs.open_pcpus():
            name = self.intern.iid(ID_EVENT_NAMES, key_label(k))
            ends.append((PRIO_PCPU_END, pcpu_uuid(cpu), name, 0))
        for prio, u, name, t0 in ends:
            evs.add(
                np.array([max(t, t0)]), prio, K.TYPE_SLICE_END, np.array([u], np.uint64), name, 0
            )
        self._write(self.intern.packet())
        self._write(evs.encode())
        self.out.flush()
