"""One streaming pass over a trace for the exporters: time-ordered batches with nanosecond time
and the vCPU each record is attributed to (analysis's ``Attributor``).

Time zero is the first timed record of the trace; nanoseconds come from the TSC rate of
:func:`pyxentrace.format.meta.resolve_clock` (``--cpu-hz``, the sidecar, else 2.4 GHz assumed).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..analysis.dump import Attributor, ns_since
from ..errors import XentraceError
from ..format.meta import Clock, resolve_clock
from ..reader import TraceReader
from ..reader.batch import RecordBatch
from ..reader.info import STRUCTURAL
from .progress import Warnings

#: Rows handed to the exporters at a time (reader batches are cut to this size): bounds memory.
CHUNK_ROWS = 1 << 17


@dataclass
class Rows:
    """A time-ordered batch: raw columns, time in ns, and the attributed vCPU key per row."""

    b: RecordBatch
    t_ns: np.ndarray  # int64, ns since the first timed record
    att: dict[str, np.ndarray]  # analysis's attribution: key, key_xenalyze, parent, ...

    @property
    def key(self) -> np.ndarray:
        """int64 vCPU key of each row (analysis.keys): domain << 16 | vcpu; -1 none."""
        return self.att["key"]

    def __len__(self) -> int:
        return len(self.b)


class TraceSource:
    """Iterate a trace once as :class:`Rows`; :attr:`done` (bytes) tracks progress."""

    def __init__(
        self, path: str | os.PathLike, cpu_hz: float | None = None, batch_rows: int | None = None
    ):
        self.path = os.fspath(path)
        if self.path != "-":
            try:
                open(self.path, "rb").close()
            except OSError as e:
                raise XentraceError(f"cannot open: {e.strerror}", path=self.path) from None
        self.clock: Clock = resolve_clock(self.path, cpu_hz)
        kw = {"batch_rows": batch_rows} if batch_rows else {}
        self.reader = TraceReader(self.path, cpu_hz=self.clock.hz, **kw)
        self.size = _regular_size(self.path)
        self.origin: int | None = None
        self.last_tsc: int = 0
        self.done = 0
        self.rows = 0
        self._attribute = Attributor()

    @property
    def report(self):
        return self.reader.report

    def ns(self, tsc: np.ndarray | int) -> np.ndarray:
        """TSC -> int64 ns since the origin (exact integer arithmetic; earlier TSCs give 0)."""
        return ns_since(np.atleast_1d(np.asarray(tsc)), self.origin or 0, self.clock.hz)

    def __iter__(self) -> Iterator[Rows]:
        for b in self.reader.batches():
            n = len(b)
            if n == 0:
                continue
            if self.origin is None:
                timed = (b.flags & 1) == 0
                self.origin = int(b.tsc[timed].min()) if timed.any() else int(b.tsc.min())
            att = self._attribute(b)
            t_ns = self.ns(b.tsc)
            self.last_tsc = max(self.last_tsc, int(b.tsc.max()))
            for lo in range(0, n, CHUNK_ROWS):
                part = slice(lo, min(n, lo + CHUNK_ROWS))
                rows = Rows(b.take(part), t_ns[part], {k: v[part] for k, v in att.items()})
                self.rows += len(rows)
                if self.size:
                    self.done = int(rows.b.offset.max())
                yield rows
        if self.size:
            self.done = self.size

    def warnings(self, into: Warnings, lost: bool = True) -> None:
        """Add the clock and reader findings (lost, late, damaged) to ``into``."""
        w = self.clock.warning()
        if w:
            into.add(w)
        r = self.report
        if lost and r.lost_count:
            into.add(
                f"{self.path}: the hypervisor dropped {r.lost_count:,} records "
                f"({r.lost_records:,} LOST_RECORDS markers)"
            )
        if r.late_records:
            into.add(f"{self.path}: {r.late_records:,} records arrived too late for time order")
        if r.anomalies and self.damage() is None:
            first = r.anomalies[0]
            more = r.anomaly_count - 1
            tail = f" (and {more} more)" if more > 0 else ""
            into.add(f"{self.path}: offset {first.offset}: {first.message}{tail}")

    def damage(self) -> str | None:
        """The one-line error for a damaged file (its first structural anomaly), else None."""
        r = self.report
        bad = [a for a in r.anomalies if a.code in STRUCTURAL]
        if not bad:
            return None
        more = r.anomaly_count - 1
        tail = f" (and {more} more)" if more > 0 else ""
        return f"{self.path}: offset {bad[0].offset}: {bad[0].message}{tail}"


def _regular_size(path: str) -> int | None:
    if path == "-":
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
