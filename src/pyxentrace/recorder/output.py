"""Where windows go: the trace file (whole windows only) and the ``-M`` RAM ring.

Each window is one CPU_CHANGE record (``0x2001f003``, cpu, byte count, no TSC) followed by the
window's bytes (a wrapped window as two chunks under one header), written in one go.  When a
write fails (disk full, file-size limit, closed pipe) or the ``-r`` reserve would be crossed,
a regular file is cut back to the end of its last complete window, so the file stays valid.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
from collections import deque
from collections.abc import Sequence

from pyxentrace.errors import XentraceError
from pyxentrace.format.record import CPU_CHANGE_HEADER, CPU_CHANGE_SIZE
from pyxentrace.recorder.walk import Tally, tally

Chunk = bytes | bytearray | memoryview


def window_header(cpu: int, size: int) -> bytes:
    """The 12-byte CPU_CHANGE record of a window: header word, int32 cpu, u32 byte count."""
    return struct.pack("<IiI", CPU_CHANGE_HEADER, cpu, size)


class DiskFull(XentraceError):  # noqa: N818 (a condition, reported as an error line)
    """The output could not take a window (write failure or ``-r`` reserve reached)."""


class TraceOutput:
    """The output file (or standard output when ``path`` is None or ``-``)."""

    def __init__(self, path: str | None, reserve_mb: int = 0):
        self.reserve_mb = reserve_mb
        if path in (None, "-"):
            self.path = "<stdout>"
            self.fd = sys.stdout.fileno()
            self._owned = False
            if os.isatty(self.fd):
                raise XentraceError(
                    "cannot write a binary trace to a terminal: name an "
                    "output file or redirect standard output"
                )
        else:
            self.path = path
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            except OSError as e:
                raise XentraceError(f"cannot open output: {e.strerror}", path=path) from None
            self._owned = True
        self.regular = stat.S_ISREG(os.fstat(self.fd).st_mode)
        #: Bytes of complete windows written so far.
        self.good = 0
        self.windows = 0

    def _free_mb(self, need: int) -> int:
        st = os.fstatvfs(self.fd)
        return (st.f_bavail * st.f_frsize - need) >> 20

    def check_reserve(self, need: int) -> None:
        """``-r``: refuse a write that would leave no more than the reserve free."""
        if self.reserve_mb and self.regular:
            free = self._free_mb(need)
            if free <= self.reserve_mb:
                raise DiskFull(
                    f"disk space limit reached: writing {need} more bytes would "
                    f"leave {max(free, 0)} MB free, reserve is {self.reserve_mb} MB; "
                    f"the file is valid up to its last complete window "
                    f"({self.good} bytes)",
                    path=self.path,
                )

    def write_window(self, cpu: int, chunks: Sequence[Chunk]) -> int:
        """Write one window (header + chunks); returns its size in the file."""
        size = sum(len(c) for c in chunks)
        total = CPU_CHANGE_SIZE + size
        self.check_reserve(total)
        self._write_all([window_header(cpu, size), *chunks], total)
        self.windows += 1
        return total

    def write_raw(self, data: Chunk) -> None:
        """Write bytes that already form whole windows (the ``-M`` ring at exit)."""
        if len(data):
            self.check_reserve(len(data))
            self._write_all([data], len(data))

    def _write_all(self, parts: list[Chunk], total: int) -> None:
        views = [memoryview(p).cast("B") for p in parts if len(p)]
        parts.clear()
        done = 0
        try:
            while views:
                n = os.writev(self.fd, views)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
                while views and n >= len(views[0]):
                    n -= len(views[0])
                    views.pop(0)
                if views and n:
                    views[0] = views[0][n:]
        except OSError as e:
            self._cut_back()
            why = e.strerror or str(e)
            raise DiskFull(
                f"write failed after {done} of {total} bytes ({why}); the file is valid up "
                f"to its last complete window ({self.good} bytes)",
                path=self.path,
            ) from None
        finally:
            for v in views:
                v.release()
        self.good += total

    def _cut_back(self) -> None:
        if self.regular:
            try:
                os.ftruncate(self.fd, self.good)
            except OSError:
                pass

    def close(self) -> None:
        """Close the file (standard output is left open)."""
        if self._owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MemoryRing:
    """``-M``: the newest whole windows in at most ``size`` bytes, written at exit.

    A window that does not fit drops whole windows from the oldest end.  Unlike xentrace,
    nothing is written when nothing was captured, and a ring smaller than one full window is
    refused up front (see :meth:`check`).
    """

    def __init__(self, size: int):
        self.size = size
        self.used = 0
        self.windows: deque[bytes] = deque()
        self.dropped_windows = 0
        self.dropped_bytes = 0
        #: Per CPU, the records in the windows dropped (counted, since they never reach the file).
        self.dropped: dict[int, Tally] = {}

    def check(self, data_size: int) -> None:
        """Refuse a ring that cannot hold the largest possible window."""
        if self.size < CPU_CHANGE_SIZE + data_size:
            raise XentraceError(
                f"memory buffer of {self.size} bytes is smaller than one full "
                f"window ({CPU_CHANGE_SIZE + data_size} bytes: a CPU_CHANGE "
                f"record and a whole trace buffer)"
            )

    def add(self, cpu: int, chunks: Sequence[Chunk]) -> None:
        """Keep one window, dropping the oldest whole windows to make room."""
        data = b"".join([window_header(cpu, sum(len(c) for c in chunks)), *map(bytes, chunks)])
        if len(data) > self.size:
            raise XentraceError(
                f"window of {len(data)} bytes larger than the memory buffer ({self.size} bytes)"
            )
        while self.used + len(data) > self.size:
            old = self.windows.popleft()
            self.used -= len(old)
            self.dropped_windows += 1
            self.dropped_bytes += len(old)
            (old_cpu,) = struct.unpack_from("<i", old, 4)
            self.dropped.setdefault(old_cpu, Tally()).__iadd__(tally([old[CPU_CHANGE_SIZE:]]))
        self.windows.append(data)
        self.used += len(data)

    def dump(self, out: TraceOutput) -> None:
        """Write the kept windows, oldest first."""
        while self.windows:
            w = self.windows.popleft()
            out.write_raw(w)
            out.windows += 1
            self.used -= len(w)
