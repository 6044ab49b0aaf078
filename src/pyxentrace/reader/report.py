"""What the reader found in a file: counts, per-(pCPU, event) volume, anomalies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import scan as S


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One problem found in the file, at a byte offset."""

    offset: int
    code: int
    message: str

    def to_dict(self) -> dict:
        return {"offset": self.offset, "message": self.message}


def describe(code: int, a: int, b: int) -> str:
    """The one-line message for an anomaly code and its two arguments."""
    if code == S.A_BAD_WINDOW_HEADER:
        return (
            f"expected a CPU_CHANGE window header {S.CPU_CHANGE_HEADER:#010x}, "
            f"found {a & 0xFFFFFFFF:#010x}"
        )
    if code == S.A_WINDOW_SIZE:
        return f"window header with an impossible byte count {a} (not a multiple of 4 or > 1 GiB)"
    if code == S.A_CPU_RANGE:
        return f"window header for pCPU {a}, out of range 0..{S.MAX_CPUS - 1}; skipped {b} bytes"
    if code == S.A_WINDOW_PAST_EOF:
        return f"window claims {a} bytes but only {max(b, 0)} remain before end of file"
    if code == S.A_RECORD_OVERRUNS_WINDOW:
        return (
            f"record of {a} bytes does not fit its window ({b} bytes left); rest of window skipped"
        )
    if code == S.A_TRUNCATED:
        return f"file ends inside a record or window: expected {a} bytes, {b} available"
    if code == S.A_GARBAGE_HEADER:
        return (
            f"garbage record header {a & 0xFFFFFFFF:#010x} (event class must have exactly "
            f"one bit set); record skipped"
        )
    if code == S.A_TSC_BACKWARDS:
        return f"TSC goes backwards on pCPU {a} by {b} cycles"
    if code == S.A_CPU_CHANGE_IN_WINDOW:
        return f"CPU_CHANGE record inside a window of pCPU {a}; skipped"
    if code == S.A_RESYNC:
        return f"skipped {a} bytes looking for the next window header"
    if code == S.A_LATE:
        return (
            f"record on pCPU {a} arrived {b} cycles later than the reorder window "
            f"allows; emitted out of time order and flagged late"
        )
    if code == S.A_TRAILING_BYTES:
        return f"{a} trailing bytes after the last whole word"
    return f"anomaly {code} ({a}, {b})"


@dataclass
class ReadReport:
    """Per-file report, complete once the reader has been exhausted."""

    path: str
    size: int | None = None
    windows: int = 0
    records: int = 0  # every record except CPU_CHANGE headers (wrap, lost included)
    bytes: int = 0  # bytes of those records
    rows: int = 0  # records delivered as rows (records minus wrap)
    wrap_records: int = 0
    wrap_bytes: int = 0
    lost_records: int = 0
    lost_count: int = 0  # sum of LOST_RECORDS counts: records the hypervisor dropped
    untimed: int = 0
    skipped_bytes: int = 0
    tsc_backwards: int = 0
    late_records: int = 0
    anomaly_count: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    first_tsc: int | None = None
    last_tsc: int | None = None
    volume_keys: np.ndarray | None = None  # (cpu << 28) | event
    volume_counts: np.ndarray | None = None
    volume_bytes: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.anomaly_count == 0

    @property
    def pcpus(self) -> list[int]:
        if self.volume_keys is None or self.volume_keys.size == 0:
            return []
        return sorted({int(k) >> 28 for k in self.volume_keys})

    def volume(self) -> list[tuple[int, int, int, int]]:
        """[(cpu, event, count, bytes)] sorted by cpu then event."""
        if self.volume_keys is None:
            return []
        rows = [
            (int(k) >> 28, int(k) & 0x0FFFFFFF, int(c), int(b))
            for k, c, b in zip(self.volume_keys, self.volume_counts, self.volume_bytes, strict=True)
        ]
        return sorted(rows)
