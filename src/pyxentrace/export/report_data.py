"""Time-binned data for the HTML report: time in each runstate per vCPU and bin, PV event
counts per kind and bin, and lost-record markers.

The runstate time is the summary's own: :func:`add_summary_runstates` places in time every interval
that analysis's runstate engine (xenalyze's rules) added to the summary table, so the chart and
the table agree - lost records put vCPUs in the ``lost`` state, and time the table does not
account for (before a vCPU's first known state, the interval still open at the end) is
``unknown``. PV rates and lost markers come from one streaming pass over the records.

Memory is bounded by (vCPUs x states x bins), whatever the trace length (beyond the engine's
interval log, which the summary keeps anyway).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..analysis import engine as E
from ..analysis.keys import DOMAIN_SHIFT, key_label
from ..format import events as ev
from .source import Rows

#: The runstates of the summary table (xenalyze's names), then time no interval accounts for.
STATE_NAMES = (*E.RUNSTATE_NAMES, "unknown")
UNKNOWN = len(STATE_NAMES) - 1

#: PV kinds of the rate chart, by PV minor (0x00201nnn / 0x0020f0nn, bits 0-7).
RATE_KINDS = (
    ("hypercall", (1, 13)),
    ("multicall sub-call", (14,)),
    ("page_fault", (4,)),
    ("emulate_privop", (6,)),
    ("ptwr_emulation", (11, 12)),
    ("trap", (3,)),
    ("other PV", ()),
)
MAX_LOST_MARKERS = 5000
MAX_TIMELINE_VCPUS = 128
#: vCPUs whose time is binned at all (a damaged trace can name any number of them)
MAX_TRACKED_VCPUS = 1024


def _kind_table() -> np.ndarray:
    t = np.full(256, len(RATE_KINDS) - 1, np.int64)
    for k, (_name, minors) in enumerate(RATE_KINDS):
        for m in minors:
            t[m] = k
    return t


_KIND = _kind_table()
_PV_MAIN = ev.TRC_PV >> ev.TRC_CLS_SHIFT


class TimelineCollector:
    """Accumulate one trace into ``bins`` equal bins over ``[0, span_ns]``: PV rates and lost
    markers from :meth:`add` (every batch), runstate time from :func:`add_summary_runstates`."""

    def __init__(self, span_ns: int, bins: int = 600, hz: float = 2.4e9):
        self.bins = max(1, int(bins))
        self.span_ns = max(1, int(span_ns))
        self.bin_ns = self.span_ns / self.bins
        self.hz = hz
        self._row: dict[int, int] = {}
        self._time = np.zeros((0, len(STATE_NAMES), self.bins), np.float64)
        self.rates = np.zeros((len(RATE_KINDS), self.bins), np.int64)
        self.lost_bins = np.zeros(self.bins, np.int64)  # records dropped, by marker bin
        self.lost_markers = np.zeros(self.bins, np.int64)  # LOST_RECORDS records per bin
        self.lost: list[dict] = []
        self.lost_total = 0
        self.untracked = 0
        self.last_ns = 0

    # ---- input ----------------------------------------------------------------------
    def add(self, rows: Rows) -> None:
        """Add a batch of records (PV rates, lost-record markers)."""
        b = rows.b
        if len(b) == 0:
            return
        t = rows.t_ns
        self.last_ns = max(self.last_ns, int(t.max()))
        pv = (b.event >> 16) == _PV_MAIN
        if pv.any():
            kind = _KIND[(b.event[pv] & 0xFF).astype(np.int64)]
            bi = self._bin(t[pv])
            np.add.at(self.rates, (kind, bi), 1)
        lost = np.nonzero((b.event == ev.TRC_LOST_RECORDS) & (b.nwords >= 1))[0]
        if lost.size:
            counts = b.words[lost, 0].astype(np.int64)
            self.lost_total += int(counts.sum())
            bi = self._bin(t[lost])
            np.add.at(self.lost_bins, bi, counts)
            np.add.at(self.lost_markers, bi, 1)
            room = MAX_LOST_MARKERS - len(self.lost)
            for i in lost[: max(0, room)].tolist():
                self.lost.append(
                    {"t": int(t[i]) / 1e9, "cpu": int(b.cpu[i]), "count": int(b.words[i, 0])}
                )

    # ---- binning ----------------------------------------------------------------------
    def _bin(self, t_ns: np.ndarray) -> np.ndarray:
        return np.clip((t_ns / self.bin_ns).astype(np.int64), 0, self.bins - 1)

    def _rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key in the time table (-1: beyond MAX_TRACKED_VCPUS, not binned)."""
        out = np.empty(keys.shape[0], np.int64)
        for j, k in enumerate(keys.tolist()):
            r = self._row.get(k)
            if r is None:
                if len(self._row) >= MAX_TRACKED_VCPUS:
                    self.untracked += 1
                    r = -1
                else:
                    r = self._row[k] = len(self._row)
            out[j] = r
        if len(self._row) > self._time.shape[0]:
            add = max(len(self._row), 2 * self._time.shape[0]) - self._time.shape[0]
            self._time = np.concatenate(
                [self._time, np.zeros((add, len(STATE_NAMES), self.bins))], axis=0
            )
        return out

    # ---- output ----------------------------------------------------------------------
    def timeline(self) -> dict:
        """Per vCPU: merged stacked segments ``[bin0, bin1, state, y0, height]`` (fractions of
        the bin in hundredths, rounded so that each state's total over the row stays within
        half a hundredth of a bin of the exact one; what no interval covers is ``unknown``)."""
        order = sorted(self._row, key=_order)
        shown = order[:MAX_TIMELINE_VCPUS]
        out = []
        for k in shown:
            frac = np.clip(self._time[self._row[k]] / self.bin_ns, 0.0, 1.0)
            frac[UNKNOWN] = np.clip(1.0 - frac[:UNKNOWN].sum(axis=0), 0.0, 1.0)
            frac = _round_along(frac)
            segs = []
            prev, start = None, 0
            for i in range(self.bins + 1):
                col = tuple(frac[:, i]) if i < self.bins else None
                if col != prev:
                    if prev is not None and any(prev):
                        y = 0.0
                        for s, f in enumerate(prev):
                            if f > 0:
                                segs.append([start, i, s, round(y, 2), round(f, 2)])
                                y += f
                    prev, start = col, i
            out.append({"label": key_label(k), "segs": segs})
        return {
            "t0": 0.0,
            "t1": self.span_ns / 1e9,
            "bins": self.bins,
            "bin_s": self.bin_ns / 1e9,
            "states": list(STATE_NAMES),
            "vcpus": out,
            "omitted": max(0, len(order) - len(shown)),
        }

    def lost_series(self) -> list[list[int]]:
        """``[bin, records dropped, LOST_RECORDS records]`` of every bin with lost records."""
        nz = np.nonzero(self.lost_markers)[0]
        return [[int(i), int(self.lost_bins[i]), int(self.lost_markers[i])] for i in nz]

    def rate_series(self) -> dict:
        series = [
            {"name": name, "values": self.rates[k].tolist(), "total": int(self.rates[k].sum())}
            for k, (name, _m) in enumerate(RATE_KINDS)
            if self.rates[k].any()
        ]
        return {
            "t0": 0.0,
            "t1": self.span_ns / 1e9,
            "bins": self.bins,
            "bin_s": self.bin_ns / 1e9,
            "series": series,
        }

    def state_seconds(self) -> dict[str, dict[str, float]]:
        """Seconds in each state per vCPU label (before rounding to the chart's fractions)."""
        return {
            key_label(k): {
                s: float(self._time[r, i].sum() / 1e9) for i, s in enumerate(STATE_NAMES[:UNKNOWN])
            }
            for k, r in self._row.items()
        }


@nb.njit(cache=True)
def _bin_engine_log(
    sid, cycles, n, stride, nstates, dbase, row_of, end_tsc, origin, ns_per_tsc, span, width, time
):
    """Walk the engine's interval log backwards, placing each vCPU-state interval just before
    the one of the same vCPU that follows it, and add its time to ``time[row, state, bin]``."""
    end = end_tsc.copy()
    nb_ = time.shape[2]
    for i in range(n - 1, -1, -1):
        s = sid[i]
        if s >= dbase:
            continue  # a domain or cpu-affinity sample
        st = s % stride
        if st >= nstates:
            continue  # a runnable sub-state or affinity sample
        v = s // stride
        t1 = end[v]
        t0 = t1 - cycles[i]
        end[v] = t0
        r = row_of[v]
        if r < 0:
            continue
        a = min(max((t0 - origin) * ns_per_tsc, 0.0), span)
        b = min(max((t1 - origin) * ns_per_tsc, 0.0), span)
        if b <= a:
            continue
        b0 = min(int(a // width), nb_ - 1)
        b1 = min(int(b // width), nb_ - 1)
        if b0 == b1:
            time[r, st, b0] += b - a
        else:
            time[r, st, b0] += (b0 + 1) * width - a
            for k in range(b0 + 1, b1):
                time[r, st, k] += width
            time[r, st, b1] += b - b1 * width


def add_summary_runstates(tl: TimelineCollector, summary, origin_tsc: int) -> None:
    """Add to ``tl`` every runstate interval the summary's engine counted, placed in time.

    The engine logs each interval as (vCPU and state, cycles) in the order it closes them; a
    vCPU's intervals follow one another (each state begins where the previous one ended), and
    the last one ends where the vCPU's current state began. So each vCPU's log, read from its
    end, places every interval exactly - and the chart adds up to the summary table. Only a
    scheduling inconsistency (counted in the summary's ``strange_conditions`` /
    ``fatal_conditions``) leaves a gap the log cannot show: intervals before it are then drawn
    shifted by that gap (the totals stay exact). The default domain's vCPUs (not in the table)
    are left out.
    """
    eng = summary.engine.eng
    n = int(eng.meta[E.M_NSAMP])
    nv = int(eng.meta[E.M_NVCPU])
    if n == 0 or nv == 0:
        return
    vc = eng.vc[:nv]
    dom = vc[:, E.V_DOM]
    real = dom != E.DEFAULT_DOMAIN_INDEX
    keys = (eng.dm[dom, E.D_DID].astype(np.int64) << DOMAIN_SHIFT) | vc[:, E.V_VID]
    row_of = np.full(nv, -1, np.int64)
    if real.any():
        row_of[real] = tl._rows_of(keys[real])
    _bin_engine_log(
        eng.ss,
        eng.sv,
        n,
        E.VS_STRIDE,
        E.RS_MAX,
        eng.dbase,
        row_of,
        np.ascontiguousarray(vc[:, E.V_RS_TSC], np.int64),
        np.int64(origin_tsc),
        1e9 / tl.hz,
        float(tl.span_ns),
        float(tl.bin_ns),
        tl._time,
    )


def _round_along(frac: np.ndarray) -> np.ndarray:
    """Hundredths of each row (state) of ``frac`` [states, bins], rounded through the row's
    running sum: small shares spread over many bins add up instead of rounding to zero."""
    cum = np.round(np.cumsum(frac, axis=1) * 100)
    steps = np.diff(cum, axis=1, prepend=0.0)
    return np.clip(steps, 0, 100) / 100


def _order(key: int) -> tuple[int, int, int]:
    dom, vcpu = key >> 16, key & 0xFFFF
    return (1 if dom >= 0x7FF0 else 0, dom, vcpu)
