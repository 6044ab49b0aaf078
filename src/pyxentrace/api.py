"""The Python API: ``pyxentrace.open(path)`` returns a :class:`Trace`.

t = pyxentrace.open("trace.bin")          # cpu_hz: argument, sidecar tsc_hz, else 2.4 GHz
for rec in t.records(): ...               # time-ordered, decoded (slow: one Python object each)
for batch in t.batches(): ...             # time-ordered numpy column batches (fast)
table = t.to_arrow()                      # decoded PV columns + domain/vCPU attribution
doc = t.summary()                         # the JSON document of ``pyxentrace summary``
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import XentraceError
from .format.meta import Clock, resolve_clock
from .reader import ReadReport, RecordBatch, TraceReader

__all__ = ["Record", "Trace"]


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded record (see :meth:`Trace.records`)."""

    offset: int
    cpu: int
    tsc: int
    time_s: float
    untimed: bool
    event: int
    name: str
    vcpu: str  # our attribution label: d1v0, d[IDLE]v3, d[DEFAULT]v0, d?v?
    words: tuple[int, ...]
    fields: dict = field(default_factory=dict)  # decoded fields, absent ones left out


class Trace:
    """A xentrace file (or ``-`` for stdin, readable once) and the analyses over it."""

    def __init__(self, path: str | os.PathLike, cpu_hz: float | None = None):
        self.path = os.fspath(path)
        if self.path != "-" and not os.path.exists(self.path):
            raise XentraceError("no such file", path=self.path)
        self.clock: Clock = resolve_clock(self.path, cpu_hz)
        self._report: ReadReport | None = None
        self._used_stdin = False

    # ---- clock ---------------------------------------------------------------------------------
    @property
    def cpu_hz(self) -> float:
        return self.clock.hz

    @property
    def cpu_hz_assumed(self) -> bool:
        """True when neither an argument nor a sidecar gave the TSC rate (2.4 GHz assumed)."""
        return self.clock.assumed

    # ---- reading -------------------------------------------------------------------------------
    def _claim_stdin(self) -> None:
        """Each pass reads the file again; stdin can be read only once."""
        if self.path == "-":
            if self._used_stdin:
                raise XentraceError("stdin can be read only once", path="-")
            self._used_stdin = True

    def _reader(self, **kw) -> TraceReader:
        self._claim_stdin()
        return TraceReader(self.path, cpu_hz=self.clock.hz, **kw)

    def batches(self, **reader_kw) -> Iterator[RecordBatch]:
        """Time-ordered :class:`~pyxentrace.reader.RecordBatch` es (the reader's columns)."""
        rd = self._reader(**reader_kw)
        yield from rd.batches()
        self._report = rd.report

    def _attributed(self) -> Iterator[tuple[RecordBatch, dict, int]]:
        from .analysis.dump import Attributor

        attrib = Attributor()
        first: int | None = None
        for b in self.batches():
            if len(b) == 0:
                continue
            if first is None:
                timed = (b.flags & 1) == 0
                first = int(b.tsc[timed].min()) if timed.any() else 0
            yield b, attrib(b), first

    def records(self) -> Iterator[Record]:
        """Every record in time order as a :class:`Record` with decoded fields.

        Only fields the record carries are present: a PV record the decoding table cannot
        decode as it is has ``size_ok=False`` and no fields past its payload (an unknown id
        none at all).
        """
        from .analysis.decode import decode_columns, event_names
        from .analysis.keys import labels_of_keys

        for b, a, first in self._attributed():
            c = decode_columns(b.event, b.nwords, b.words)
            names = event_names(b.event)
            labels = labels_of_keys(a["key"])
            keys = [k for k in c if not k.endswith("_valid")]
            for i in range(len(b)):
                fields = {}
                for k in keys:
                    v = c[k][i]
                    valid = c.get(k + "_valid")
                    if valid is not None and not valid[i]:
                        continue
                    if valid is None and _absent(k, v):
                        continue
                    fields[k] = v.item() if hasattr(v, "item") else v
                if a["parent"][i] >= 0:
                    fields["multicall_parent"] = int(a["parent"][i])
                    fields["subcall_index"] = int(a["subcall_index"][i])
                nw = int(b.nwords[i])
                yield Record(
                    offset=int(b.offset[i]),
                    cpu=int(b.cpu[i]),
                    tsc=int(b.tsc[i]),
                    time_s=(int(b.tsc[i]) - first) / self.cpu_hz,
                    untimed=bool(b.flags[i] & 1),
                    event=int(b.event[i]),
                    name=str(names[i]),
                    vcpu=str(labels[i]),
                    words=tuple(int(w) for w in b.words[i, :nw]),
                    fields=fields,
                )

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    # ---- tables --------------------------------------------------------------------------------
    def to_arrow(self):
        """A ``pyarrow.Table``: reader columns, decoded PV and scheduler fields, attribution."""
        import pyarrow as pa

        from .analysis.table import arrow_batch, unify

        parts = [arrow_batch(b, a, first, self.cpu_hz) for b, a, first in self._attributed()]
        if not parts:
            empty = RecordBatch.empty(0)
            from .analysis.dump import Attributor

            parts = [arrow_batch(empty, Attributor()(empty), 0, self.cpu_hz)]
        return pa.Table.from_batches(unify(parts))

    def to_pandas(self):
        """The :meth:`to_arrow` table as a pandas DataFrame (needs pandas)."""
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise XentraceError(
                "to_pandas() needs pandas, which is not installed (pip install pandas); "
                "to_arrow() works without it"
            ) from None
        return self.to_arrow().to_pandas()

    # ---- analyses ------------------------------------------------------------------------------
    def summary_result(self, filters=None):
        """The full :class:`pyxentrace.analysis.summary.Summary` (all formats render from it)."""
        from .analysis.summary import compute_summary

        self._claim_stdin()
        s = compute_summary(self.path, filters=filters, clock=self.clock)
        self._report = s.report
        return s

    def summary(self, filters=None) -> dict:
        """The JSON-shaped summary: ``{"cpu_hz", "duration_s", "vcpus": {"d1v0": {...}}}``."""
        return self.summary_result(filters).to_dict()

    def dump(self, out, fmt: str = "text", filters=None):
        """Write the decoded dump to a binary stream (see :func:`analysis.dump.write_dump`)."""
        from .analysis.dump import write_dump

        self._claim_stdin()
        r = write_dump(self.path, out, clock=self.clock, filters=filters, fmt=fmt)
        self._report = r.report
        return r

    @property
    def report(self) -> ReadReport:
        """The reader's report (counts, lost and wrap records, anomalies) of a full pass."""
        if self._report is None:
            for _ in self.batches():
                pass
        assert self._report is not None
        return self._report


_SENTINEL_MINUS_ONE = {
    "minor",
    "vector",
    "op",
    "subcmd",
    "count",
    "target_vcpu",
    "sched_dom",
    "sched_vcpu",
    "old_state",
    "new_state",
    "next_dom",
    "next_vcpu",
    "lost_count",
}
_FALSE_IS_ABSENT = {
    "pv64",
    "preempted",
    "pte_mfn",
    "pte_flags",
    "pte_nx",
    "pte_pae",
    "lost_first_tsc",
}


def _absent(name: str, value) -> bool:
    """Whether a decoded value only says "not there" (so records() leaves it out)."""
    if name in _SENTINEL_MINUS_ONE:
        return int(value) < 0
    if name == "size_ok":
        return bool(value)  # only a problem is worth reporting
    if name in _FALSE_IS_ABSENT or name.startswith("pf_"):
        return not bool(value)
    return False
