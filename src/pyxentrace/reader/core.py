"""The streaming reader: file or stdin -> time-ordered ``RecordBatch`` es with a report.

Pipeline: the compiled scan fills a buffer with up to a batch of rows in file order (for a
regular file in a thread of its own, so scanning and merging use two cores); the compiled
merger emits, in time order, every held or new row at or below a watermark; the rest is held.
The watermark is the smallest latest-TSC over pCPUs that still have windows ahead (known from
a header pre-scan of regular files), and never less than ``max TSC seen - reorder window``.
A row older than what was already emitted is flagged late and counted.
"""

from __future__ import annotations

import mmap
import os
import queue
import stat
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

import numpy as np

from ..errors import XentraceError
from . import scan as S
from .batch import RecordBatch
from .merge_kernel import mark_late, merge_emit
from .prescan import PRESCAN_END, PRESCAN_OK, prescan_windows
from .report import Anomaly, ReadReport, describe
from .rows import empty_rows, max_tsc, to_batch
from .scan import R_TSC

DEFAULT_BATCH_ROWS = 1 << 18
DEFAULT_REORDER_WINDOW_S = 2.0
MAX_PENDING_ROWS = 8 << 20
MAX_KEPT_ANOMALIES = 1000
STREAM_CHUNK = 16 << 20
RELEASE_BYTES = 64 << 20  # give mapped file pages back to the kernel every this many bytes
_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


class _Held:
    """Rows held back by the merger (file order), compacted to the front after each merge."""

    def __init__(self, capacity: int):
        self.rows = empty_rows(capacity)
        self.n = 0

    def reserve(self, capacity: int) -> None:
        if capacity <= self.rows.shape[0]:
            return
        nr = empty_rows(max(capacity, 2 * self.rows.shape[0]))
        nr[: self.n] = self.rows[: self.n]
        self.rows = nr


class _Scanned(NamedTuple):
    """One scan result handed from the scanner to the merger."""

    buf: np.ndarray  # rows [0, n) in file order (see rows.py)
    n: int
    status: int
    last_tsc: np.ndarray  # per-pCPU latest TSC when this scan ended
    pos_bytes: int  # scan position when this scan ended


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
        threads: bool = True,
        stdin: BinaryIO | None = None,
    ):
        self.path = os.fspath(path)
        self.cpu_hz = float(cpu_hz)
        self.window_cycles = int(reorder_window_s * self.cpu_hz)
        self.batch_rows = max(1, int(batch_rows))
        self.ordered = ordered
        self.threads = threads
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
        w = np.frombuffer(mm, dtype="<u4", count=nwords)
        stop = threading.Event()
        q: queue.Queue = queue.Queue(maxsize=2)
        worker = None
        try:
            self._init_state(nwords, self._prescan(mm, w))
            if self.threads:
                worker = threading.Thread(
                    target=self._scan_worker, args=(mm, w, q, stop), daemon=True
                )
                worker.start()
                scans = self._from_queue(q)
            else:
                scans = self._file_scans(mm, w, stop)
            yield from self._merge_scans(scans)
        finally:
            stop.set()
            if worker is not None:
                while worker.is_alive():  # unblock a worker waiting on a full queue
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        worker.join(0.01)
            self._finish_stats()
            del w
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

    def _file_scans(self, mm: mmap.mmap, w: np.ndarray, stop: threading.Event):
        """Scan the whole mapped file, batch by batch, releasing pages behind the scan."""
        released = 0
        while not stop.is_set():
            sc = self._scan_batch(w, 0, True)
            floor = (sc.pos_bytes // mmap.PAGESIZE) * mmap.PAGESIZE
            if floor - released >= RELEASE_BYTES:
                mm.madvise(mmap.MADV_DONTNEED, 0, floor)
                released = floor
            yield sc
            if sc.status == S.RET_EOF:
                return

    def _scan_worker(self, mm, w, q: queue.Queue, stop: threading.Event) -> None:
        try:
            for sc in self._file_scans(mm, w, stop):
                while not stop.is_set():
                    try:
                        q.put(sc, timeout=0.05)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # re-raised in the consumer
            q.put(e)

    @staticmethod
    def _from_queue(q: queue.Queue):
        while True:
            sc = q.get()
            if isinstance(sc, BaseException):
                raise sc
            yield sc
            if sc.status == S.RET_EOF:
                return

    def _run_stream(self, f: BinaryIO) -> Iterator[RecordBatch]:
        self._init_state(-1, None)
        total = 0

        def scans():
            nonlocal total
            buf = b""
            base = 0  # absolute word index of buf[0]
            eof = False
            while True:
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
                    self._add_anomaly(base * 4 + usable, S.A_TRAILING_BYTES, len(buf) % 4, 0)
                    buf = buf[:usable]
                w = np.frombuffer(buf, dtype="<u4", count=usable // 4)
                if eof:
                    self._st[S.S_FILE_WORDS] = base + w.shape[0]
                while True:
                    sc = self._scan_batch(w, base, eof)
                    yield sc
                    if sc.status != S.RET_OUT_FULL:
                        break
                if sc.status == S.RET_EOF:
                    return

        try:
            yield from self._merge_scans(scans())
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
        self._late_counters = np.zeros(S.C_NCOUNTERS, dtype=np.int64)
        self._late_anom = np.zeros((MAX_KEPT_ANOMALIES, 4), dtype=np.int64)
        self._keys, self._counts, self._nbytes = S.new_table()
        self._table_used = 0
        self._held = _Held(self.batch_rows * 2)
        self._free: list[np.ndarray] = []
        self._out: np.ndarray | None = None
        self._active_end = active_end
        self._emitted_upto = np.uint64(0)
        self._have_emitted = False
        self._max_seen = np.uint64(0)
        self._late = 0

    def _add_anomaly(self, off: int, code: int, a: int, b: int) -> None:
        self._extra_anoms.append((off, code, a, b))

    def _scan_batch(self, w: np.ndarray, base: int, eof: bool) -> _Scanned:
        """Scan up to ``batch_rows`` rows into a scan buffer (runs in the scanner thread)."""
        try:
            buf = self._free.pop()
        except IndexError:
            buf = empty_rows(self.batch_rows)
        n = 0
        while True:
            status, got, used = S.scan(
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
                buf[n:],
            )
            self._table_used = used
            n += got
            if status == S.RET_TABLE_FULL:
                self._keys, self._counts, self._nbytes = S.grow_table(
                    self._keys, self._counts, self._nbytes
                )
                continue
            break
        return _Scanned(buf, n, status, self._last_tsc.copy(), int(self._st[S.S_POS]) * 4)

    def _watermark(self, sc: _Scanned) -> np.uint64:
        floor = self._max_seen - np.uint64(min(self.window_cycles, int(self._max_seen)))
        if self._active_end is None:
            return floor
        active = self._active_end > sc.pos_bytes
        if not active.any():
            return _U64_MAX
        # rows at exactly a pCPU's latest TSC may still tie with rows not read yet: wait
        m = sc.last_tsc[active].min()
        m = m - np.uint64(1) if m > 0 else m
        return m if m > floor else floor

    def _merge_scans(self, scans) -> Iterator[RecordBatch]:
        for sc in scans:
            final = sc.status == S.RET_EOF
            if not self.ordered:
                if sc.n:
                    yield to_batch(sc.buf, sc.n)
                self._free.append(sc.buf)
                continue
            if sc.n:
                if self._have_emitted:
                    self._late += mark_late(
                        sc.buf,
                        sc.n,
                        self._emitted_upto,
                        self._late_anom,
                        self._late_counters,
                        S.C_ANOMALIES,
                        S.A_LATE,
                    )
                mx = max_tsc(sc.buf, sc.n)
                if mx > self._max_seen:
                    self._max_seen = mx
            wm = _U64_MAX if final else self._watermark(sc)
            out = self._emit(sc.buf, sc.n, wm)
            self._free.append(sc.buf)
            h = self._held
            if not final and h.n > MAX_PENDING_ROWS:
                # memory bound: emit the oldest rows even though a pCPU may still be behind
                k = h.n - MAX_PENDING_ROWS // 2
                wm = np.partition(h.rows[: h.n, R_TSC], k)[k]
                more = self._emit(sc.buf, 0, wm)
                out = more if out is None else RecordBatch.concat([out, more])
            if out is not None:
                yield out

    def _emit(self, new: np.ndarray, nn: int, wm: np.uint64) -> RecordBatch | None:
        h = self._held
        h.reserve(h.n + nn)
        if self._out is None or self._out.shape[0] < h.n + nn:
            self._out = empty_rows(max(h.n + nn, self.batch_rows))
        nt, kept = merge_emit(h.n, h.rows, nn, new, wm, self._out)
        h.n = kept
        if nt == 0:
            return None
        out = to_batch(self._out, nt)
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
        nlate = int(self._late_counters[S.C_ANOMALIES])
        raw = [tuple(int(x) for x in self._anom[i]) for i in range(kept)] + self._extra_anoms
        raw += [
            tuple(int(x) for x in self._late_anom[i]) for i in range(min(nlate, MAX_KEPT_ANOMALIES))
        ]
        raw.sort(key=lambda t: t[0])
        r.anomalies = [Anomaly(o, code, describe(code, a, b)) for o, code, a, b in raw]
        r.anomaly_count = int(c[S.C_ANOMALIES]) + len(self._extra_anoms) + nlate
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
