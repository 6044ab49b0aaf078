"""Time-binned data for the HTML report, gathered in one streaming pass: time in each runstate
per vCPU and bin, PV event counts per kind and bin, and lost-record markers.

Memory is bounded by (vCPUs x states x bins), whatever the trace length.
"""

from __future__ import annotations

import numpy as np

from ..analysis.keys import key_label
from ..format import events as ev
from .runstates import STATE_NAMES, RunstateTracker, runstate_rows
from .source import Rows

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
    """Accumulate one trace's :class:`Rows` into ``bins`` equal bins over ``[0, span_ns]``."""

    def __init__(self, span_ns: int, bins: int = 600, hz: float = 2.4e9):
        self.bins = max(1, int(bins))
        self.span_ns = max(1, int(span_ns))
        self.bin_ns = self.span_ns / self.bins
        self.hz = hz
        self.rs = RunstateTracker()
        self._row: dict[int, int] = {}
        self._time = np.zeros((0, len(STATE_NAMES), self.bins), np.float64)
        self.rates = np.zeros((len(RATE_KINDS), self.bins), np.int64)
        self.lost: list[dict] = []
        self.lost_total = 0
        self.untracked = 0
        self.last_ns = 0
        self._origin_ns = 0

    # ---- input ----------------------------------------------------------------------
    def add(self, rows: Rows, ns_of_tsc) -> None:
        """Add a batch; ``ns_of_tsc`` converts TSC arrays to ns (the source's clock)."""
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
        for i in lost.tolist():
            self.lost_total += int(b.words[i, 0])
            if len(self.lost) < MAX_LOST_MARKERS:
                self.lost.append(
                    {"t": int(t[i]) / 1e9, "cpu": int(b.cpu[i]), "count": int(b.words[i, 0])}
                )
        ri = np.nonzero(runstate_rows(b.event, b.nwords))[0]
        if ri.size:
            tr = self.rs.feed(b.event[ri], b.words[ri, 0], b.tsc[ri], b.cpu[ri])
            ended = tr.prev_state >= 0
            if ended.any():
                self._intervals(
                    tr.key[ended],
                    tr.prev_state[ended],
                    ns_of_tsc(tr.prev_since[ended]),
                    t[ri][ended],
                )

    def finish(self, ns_of_tsc) -> None:
        """Close the intervals still open at the last record."""
        open_ = self.rs.open_intervals()
        if not open_:
            return
        keys = np.array([k for k, _s, _t in open_], np.int64)
        states = np.array([s for _k, s, _t in open_], np.int8)
        since = ns_of_tsc(np.array([t for _k, _s, t in open_], np.int64))
        self._intervals(keys, states, since, np.full(keys.shape[0], self.last_ns, np.int64))

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

    def _intervals(self, keys, states, t0, t1) -> None:
        """Add time in ``states`` over ``[t0, t1)`` (ns) to each vCPU's bins."""
        t0 = np.clip(np.asarray(t0, np.float64), 0, self.span_ns)
        t1 = np.clip(np.asarray(t1, np.float64), 0, self.span_ns)
        ok = t1 > t0
        if not ok.any():
            return
        rows = self._rows_of(keys[ok])
        st = states[ok].astype(np.int64)
        t0, t1 = t0[ok], t1[ok]
        tracked = rows >= 0
        rows, st, t0, t1 = rows[tracked], st[tracked], t0[tracked], t1[tracked]
        w = self.bin_ns
        b0 = np.minimum((t0 // w).astype(np.int64), self.bins - 1)
        b1 = np.minimum((t1 // w).astype(np.int64), self.bins - 1)
        flat = self._time.reshape(-1)
        base = (rows * len(STATE_NAMES) + st) * self.bins
        same = b0 == b1
        np.add.at(flat, base[same] + b0[same], t1[same] - t0[same])
        d = ~same
        if d.any():
            np.add.at(flat, base[d] + b0[d], (b0[d] + 1) * w - t0[d])
            np.add.at(flat, base[d] + b1[d], t1[d] - b1[d] * w)
            # full bins in between: a difference array per (vCPU, state) row
            nr = self._time.shape[0] * len(STATE_NAMES)
            diff = np.zeros((nr, self.bins + 1))
            line = base[d] // self.bins
            np.add.at(diff, (line, b0[d] + 1), w)
            np.add.at(diff, (line, b1[d]), -w)
            flat += np.cumsum(diff, axis=1)[:, : self.bins].reshape(-1)

    # ---- output ----------------------------------------------------------------------
    def timeline(self) -> dict:
        """Per vCPU: merged stacked segments ``[bin0, bin1, state, y0, height]`` (fractions)."""
        order = sorted(self._row, key=_order)
        shown = order[:MAX_TIMELINE_VCPUS]
        out = []
        for k in shown:
            frac = np.clip(self._time[self._row[k]] / self.bin_ns, 0.0, 1.0)
            frac = np.round(frac, 2)
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
        """Seconds in each state per vCPU label (what the timeline shows), for cross-checks."""
        return {
            key_label(k): {
                s: float(self._time[r, i].sum() / 1e9) for i, s in enumerate(STATE_NAMES)
            }
            for k, r in self._row.items()
        }


def _order(key: int) -> tuple[int, int, int]:
    dom, vcpu = key >> 16, key & 0xFFFF
    return (1 if dom >= 0x7FF0 else 0, dom, vcpu)
