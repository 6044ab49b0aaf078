"""File inventory behind ``pyxentrace info``: counts and bytes per class/event/pCPU, time span,
out-of-order extent, lost/wrap counts and anomalies — one pass, file order, bounded memory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..format import events as ev
from ..format.meta import Clock
from . import scan as S
from .core import TraceReader
from .report import ReadReport

#: anomaly codes that mean the file itself is damaged (exit 1); others are warnings
STRUCTURAL = frozenset(
    {
        S.A_BAD_WINDOW_HEADER,
        S.A_WINDOW_SIZE,
        S.A_CPU_RANGE,
        S.A_WINDOW_PAST_EOF,
        S.A_RECORD_OVERRUNS_WINDOW,
        S.A_TRUNCATED,
        S.A_GARBAGE_HEADER,
        S.A_CPU_CHANGE_IN_WINDOW,
        S.A_RESYNC,
        S.A_TRAILING_BYTES,
    }
)


@dataclass
class TraceInfo:
    path: str
    clock: Clock
    report: ReadReport
    max_disorder_cycles: int = 0
    per_event: dict[int, list[int]] = field(default_factory=dict)  # event -> [count, bytes]
    per_class: dict[str, list[int]] = field(default_factory=dict)
    per_cpu_class: dict[int, dict[str, list[int]]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        r = self.report
        if r.first_tsc is None or r.last_tsc is None:
            return 0.0
        return max(0, r.last_tsc - r.first_tsc) / self.clock.hz

    def to_dict(self) -> dict:
        r = self.report
        return {
            "path": self.path,
            "size": r.size,
            "records": r.records,
            "bytes": r.bytes,
            "windows": r.windows,
            "pcpus": r.pcpus,
            "cpu_hz": self.clock.hz,
            "cpu_hz_source": self.clock.source,
            "first_tsc": r.first_tsc,
            "last_tsc": r.last_tsc,
            "duration_s": self.duration_s,
            "max_disorder_s": self.max_disorder_cycles / self.clock.hz,
            "classes": {k: {"records": v[0], "bytes": v[1]} for k, v in self.per_class.items()},
            "events": {f"{e:#010x}": v[0] for e, v in sorted(self.per_event.items())},
            "event_bytes": {f"{e:#010x}": v[1] for e, v in sorted(self.per_event.items())},
            "event_names": {f"{e:#010x}": ev.event_name(e) for e in sorted(self.per_event)},
            "per_cpu": {
                str(c): {k: {"records": v[0], "bytes": v[1]} for k, v in d.items()}
                for c, d in sorted(self.per_cpu_class.items())
            },
            "wrap_records": r.wrap_records,
            "lost_records": r.lost_records,
            "lost_count": r.lost_count,
            "untimed_records": r.untimed,
            "tsc_backwards": r.tsc_backwards,
            "skipped_bytes": r.skipped_bytes,
            "anomaly_count": r.anomaly_count,
            "anomalies": [a.to_dict() for a in r.anomalies],
        }


def trace_info(path: str | os.PathLike, clock: Clock, progress=None) -> TraceInfo:
    """Scan ``path`` once (file order) and build its inventory."""
    rd = TraceReader(path, cpu_hz=clock.hz, ordered=False)
    running = np.uint64(0)
    disorder = 0
    for b in rd.batches():
        timed = (b.flags & S.FLAG_UNTIMED) == 0
        t = b.tsc[timed]
        if t.size:
            acc = np.maximum.accumulate(t)
            prev = np.empty_like(acc)
            prev[0] = running
            prev[1:] = acc[:-1]
            d = int((prev - np.minimum(prev, t)).max())
            disorder = max(disorder, d)
            running = max(running, acc[-1])
        if progress is not None:
            progress(int(b.offset[-1]) if len(b) else 0)
    info = TraceInfo(os.fspath(path), clock, rd.report, disorder)
    for cpu, event, count, nbytes in rd.report.volume():
        pe = info.per_event.setdefault(event, [0, 0])
        pe[0] += count
        pe[1] += nbytes
        cls = ev.class_name(event)
        pc = info.per_class.setdefault(cls, [0, 0])
        pc[0] += count
        pc[1] += nbytes
        cc = info.per_cpu_class.setdefault(cpu, {}).setdefault(cls, [0, 0])
        cc[0] += count
        cc[1] += nbytes
    return info
