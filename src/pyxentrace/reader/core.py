"""The streaming reader: file or stdin -> time-ordered ``RecordBatch`` es with a report.

Pipeline per round: the compiled scan fills pending rows (file order) up to a batch size; the
merger emits, in time order, every pending row at or below a watermark; the rest waits.
The watermark is the smallest latest-TSC over pCPUs that still have windows ahead (known from
a header pre-scan of regular files), and never less than ``max TSC seen - reorder window``.
A row older than what was already emitted is flagged late and counted.
"""

from __future__ import annotations

import mmap
import os
import stat
import sys
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from ..errors import XentraceError
from . import scan as S
from .batch import COLUMNS, RecordBatch
from .merge_kernel import mark_late, merge_emit
from .prescan import PRESCAN_END, PRESCAN_OK, prescan_windows
from .report import Anomaly, ReadReport, describe

DEFAULT_BATCH_ROWS = 1 << 18
DEFAULT_REORDER_WINDOW_S = 2.0
MAX_PENDING_ROWS = 8 << 20
MAX_KEPT_ANOMALIES = 1000
STREAM_CHUNK = 16 << 20
RELEASE_BYTES = 64 << 20  # give mapped file pages back to the kernel every this many bytes
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


class _Pending:
    """Row storage in file order: the scan writes after ``n``; the merger compacts."""

    def __init__(self, capacity: int):
        self.b = RecordBatch.empty(capacity)
        self.n = 0

    @property
    def capacity(self) -> int:
        return len(self.b)

    def grow(self, capacity: int) -> None:
        nb = RecordBatch.empty(capacity)
        for c in COLUMNS:
            getattr(nb, c)[: self.n] = getattr(self.b, c)[: self.n]
        self.b = nb

    def tail(self) -> tuple[np.ndarray, ...]:
        b, n = self.b, self.n
        return (
            b.offset[n:],
            b.cpu[n:],
            b.tsc[n:],
            b.flags[n:],
            b.event[n:],
            b.nwords[n:],
            b.words[n:],
        )


class TraceReader:
    """Read one xentrace file (path, or ``-`` for stdin) as time-ordered record batches.

    Iterate :meth:`batches` once; :attr:`report` is complete when the iterator is exhausted.
    ``cpu_hz`` only converts the reorder window to cycles.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        cpu_hz: float = 2.4e9,
        reorder_window_s: float = DEFAULT_REORDER_WINDOW_S,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        ordered: bool = True,
        stdin: BinaryIO | None = None,
    ):
        self.path = os.fspath(path)
        self.cpu_hz = float(cpu_hz)
        self.window_cycles = int(reorder_window_s * self.cpu_hz)
        self.batch_rows = max(1, int(batch_rows))
        self.ordered = ordered
        self._stdin = stdin
        self.report = ReadReport(path=self.path)
        self._consumed = False
        self._extra_anoms: list[tuple[int, int, int, int]] = []

    # ---- public -------------------------------------------------------------------------
    def batches(self) -> Iterator[RecordBatch]:
        if self._consumed:
            raise XentraceError("a TraceReader can be iterated once", path=self.path)
        self._consumed = True
        if self.path == "-":
            yield from self._run_stream(self._stdin or sys.stdin.buffer)
            return
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise XentraceError(f"cannot open: {e.strerror}", path=self.path) from None
        with f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode):
                yield from self._run_file(f, st.st_size)
            else:
                yield from self._run_stream(f)

    def __iter__(self) -> Iterator[RecordBatch]:
        return self.batches()

    # ---- sources ------------------------------------------------------------------------
    def _run_file(self, f: BinaryIO, size: int) -> Iterator[RecordBatch]:
        self.report.size = size
        nwords = size // 4
        if size % 4:
            self._add_anomaly(nwords * 4, S.A_TRAILING_BYTES, size % 4, 0)
        if nwords == 0:
            self._init_state(0, None)
            self._finish_stats()
            return
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            w = np.frombuffer(mm, dtype="<u4", count=nwords)
            active_end = self._prescan(mm, w)
            self._init_state(nwords, active_end)
            released = 0
            while True:
                status = self._scan(w, 0, True)
                yield from self._merge(final=status == S.RET_EOF)
                pos_bytes = int(self._st[S.S_POS]) * 4
                floor = (pos_bytes // mmap.PAGESIZE) * mmap.PAGESIZE
                if floor - released >= RELEASE_BYTES:
                    mm.madvise(mmap.MADV_DONTNEED, 0, floor)
                    released = floor
                if status == S.RET_EOF:
                    break
            del w
        finally:
            self._finish_stats()
            try:
                mm.close()
            except BufferError:
                pass

    @staticmethod
    def _prescan(mm: mmap.mmap, w: np.ndarray) -> np.ndarray | None:
        """Where each pCPU's last window ends, or None if the headers are not all sound."""
        last_end = np.zeros(S.MAX_CPUS, dtype=np.int64)
        pos, step = 0, RELEASE_BYTES // 4
        while True:
            pos, status = prescan_windows(w, last_end, pos, pos + step)
            # the walk faults pages in around every header: give them back as we go
            mm.madvise(mmap.MADV_DONTNEED, 0, (pos * 4 // mmap.PAGESIZE) * mmap.PAGESIZE)
            if status != PRESCAN_OK:
                return last_end if status == PRESCAN_END else None

    def _run_stream(self, f: BinaryIO) -> Iterator[RecordBatch]:
        self._init_state(-1, None)
        buf = b""
        base = 0  # absolute word index of buf[0]
        eof = False
        total = 0
        try:
            while True:
                # drop what the scan has passed
                pos = int(self._st[S.S_POS])
                drop = min((pos - base) * 4, len(buf))
                buf = buf[drop:]
                base += drop // 4
                skip = (pos - base) * 4  # a skipped window may end beyond what we hold
                while not eof and (len(buf) < STREAM_CHUNK or skip > 0):
                    chunk = f.read(STREAM_CHUNK)
                    if not chunk:
                        eof = True
                        break
                    total += len(chunk)
                    buf += chunk
                    if skip > 0:
                        d = min(skip, len(buf) - len(buf) % 4)
                        buf = buf[d:]
                        base += d // 4
                        skip -= d
                usable = len(buf) - len(buf) % 4
                if eof and len(buf) % 4:
                    self._add_anomaly((base * 4) + usable, S.A_TRAILING_BYTES, len(buf) % 4, 0)
                    buf = buf[:usable]
                w = np.frombuffer(buf, dtype="<u4", count=usable // 4)
                if eof:
                    self._st[S.S_FILE_WORDS] = base + w.shape[0]
                status = self._scan(w, base, eof)
                while status == S.RET_OUT_FULL or status == S.RET_TABLE_FULL:
                    yield from self._merge(final=False)
                    status = self._scan(w, base, eof)
                yield from self._merge(final=status == S.RET_EOF)
                if status == S.RET_EOF:
                    break
        finally:
            self.report.size = total
            self._finish_stats()

    # ---- state, scan, merge ---------------------------------------------------------------
    def _init_state(self, file_words: int, active_end: np.ndarray | None) -> None:
        self._st = S.new_state(file_words)
        self._last_tsc = np.zeros(S.MAX_CPUS, dtype=np.uint64)
        self._first_tsc = np.zeros(S.MAX_CPUS, dtype=np.uint64)
        self._has_tsc = np.zeros(S.MAX_CPUS, dtype=np.uint8)
        self._counters = np.zeros(S.C_NCOUNTERS, dtype=np.int64)
        self._anom = np.zeros((MAX_KEPT_ANOMALIES, 4), dtype=np.int64)
        self._keys, self._counts, self._nbytes = S.new_table()
        self._table_used = 0
        self._pending = _Pending(self.batch_rows * 2)
        self._active_end = active_end
        self._emitted_upto = np.uint64(0)
        self._have_emitted = False
        self._max_seen = np.uint64(0)
        self._late = 0

    def _add_anomaly(self, off: int, code: int, a: int, b: int) -> None:
        self._extra_anoms.append((off, code, a, b))

    def _scan(self, w: np.ndarray, base: int, eof: bool) -> int:
        p = self._pending
        while True:
            room = min(self.batch_rows, p.capacity - p.n)
            if room <= 0:
                return S.RET_OUT_FULL
            start = p.n
            tail = p.tail()
            status, n, used = S.scan(
                w,
                base,
                eof,
                self._st,
                self._last_tsc,
                self._first_tsc,
                self._has_tsc,
                self._counters,
                self._anom,
                self._keys,
                self._counts,
                self._nbytes,
                self._table_used,
                *(t[:room] for t in tail),
            )
            self._table_used = used
            p.n += n
            if n and self._have_emitted:
                self._late += mark_late(
                    p.b.tsc,
                    p.b.flags,
                    p.b.cpu,
                    p.b.offset,
                    start,
                    p.n,
                    self._emitted_upto,
                    S.FLAG_LATE,
                    self._anom,
                    self._counters,
                    S.C_ANOMALIES,
                    S.A_LATE,
                )
            if n:
                mx = p.b.tsc[start : p.n].max()
                if mx > self._max_seen:
                    self._max_seen = mx
            if status == S.RET_TABLE_FULL:
                self._keys, self._counts, self._nbytes = S.grow_table(
                    self._keys, self._counts, self._nbytes
                )
                continue
            return status

    def _watermark(self) -> np.uint64:
        floor = self._max_seen - np.uint64(min(self.window_cycles, int(self._max_seen)))
        if self._active_end is None:
            return floor
        pos_bytes = int(self._st[S.S_POS]) * 4
        active = self._active_end > pos_bytes
        if not active.any():
            return _U64_MAX
        # rows at exactly a pCPU's latest TSC may still tie with rows not read yet: wait
        m = self._last_tsc[active].min()
        m = m - np.uint64(1) if m > 0 else m
        return m if m > floor else floor

    def _merge(self, final: bool) -> Iterator[RecordBatch]:
        p = self._pending
        if p.n == 0:
            return
        if not self.ordered:
            out = RecordBatch(*(getattr(p.b, c)[: p.n].copy() for c in COLUMNS))
            p.n = 0
            yield out
            return
        wm = _U64_MAX if final else self._watermark()
        out = self._emit(wm)
        if not final and p.n > MAX_PENDING_ROWS:
            # memory bound: emit the oldest rows even though a pCPU may still be behind
            k = p.n - MAX_PENDING_ROWS // 2
            wm = np.partition(p.b.tsc[: p.n], k)[k]
            more = self._emit(wm)
            out = more if out is None else RecordBatch.concat([out, more])
        if p.n + self.batch_rows > p.capacity:
            p.grow(max(p.capacity * 2, p.n + self.batch_rows))
        if out is not None:
            yield out

    def _emit(self, wm: np.uint64) -> RecordBatch | None:
        p = self._pending
        b = p.b
        out = RecordBatch.empty(p.n)
        nt, kept = merge_emit(
            p.n,
            wm,
            b.offset,
            b.cpu,
            b.tsc,
            b.flags,
            b.event,
            b.nwords,
            b.words,
            out.offset,
            out.cpu,
            out.tsc,
            out.flags,
            out.event,
            out.nwords,
            out.words,
        )
        p.n = kept
        if nt == 0:
            return None
        out = out.take(slice(0, nt))
        last = out.tsc.max()
        if not self._have_emitted or last > self._emitted_upto:
            self._emitted_upto = last
        self._have_emitted = True
        return out

    def _finish_stats(self) -> None:
        r = self.report
        if not hasattr(self, "_counters"):
            return
        c = self._counters
        r.windows = int(c[S.C_WINDOWS])
        r.records = int(c[S.C_RECORDS])
        r.bytes = int(c[S.C_BYTES])
        r.rows = int(c[S.C_ROWS])
        r.wrap_records = int(c[S.C_WRAP])
        r.wrap_bytes = int(c[S.C_WRAP_BYTES])
        r.lost_records = int(c[S.C_LOST_ROWS])
        r.lost_count = int(c[S.C_LOST_SUM])
        r.untimed = int(c[S.C_UNTIMED])
        r.skipped_bytes = int(c[S.C_SKIPPED_BYTES])
        r.tsc_backwards = int(c[S.C_TSC_BACKWARDS])
        r.late_records = self._late
        kept = min(int(c[S.C_ANOMALIES]), MAX_KEPT_ANOMALIES)
        raw = [tuple(int(x) for x in self._anom[i]) for i in range(kept)] + self._extra_anoms
        raw.sort(key=lambda t: t[0])
        r.anomalies = [Anomaly(o, code, describe(code, a, b)) for o, code, a, b in raw]
        r.anomaly_count = int(c[S.C_ANOMALIES]) + len(self._extra_anoms)
        used = self._keys != -1
        r.volume_keys = self._keys[used].copy()
        r.volume_counts = self._counts[used].copy()
        r.volume_bytes = self._nbytes[used].copy()
        timed = self._has_tsc.astype(bool)
        if timed.any():
            r.first_tsc = int(self._first_tsc[timed].min())
            r.last_tsc = int(self._last_tsc[timed].max())


def read(path: str | os.PathLike, **kw) -> tuple[RecordBatch, ReadReport]:
    """Read a whole (small) trace into one batch; for large files iterate ``TraceReader``."""
    rd = TraceReader(path, **kw)
    b = RecordBatch.concat(list(rd.batches()))
    return b, rd.report
