"""The recorder in-process: the -M ring keeps the newest windows, -r reserve, window format."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from pyxentrace.hypervisor import TraceBuffers
from pyxentrace.recorder import Recorder, RecorderOptions, TraceOutput
from pyxentrace.recorder.output import DiskFull

from .conftest import records, windows

EV = 0x0002800A


def make(tmp: Path, **opts) -> tuple[TraceBuffers, Recorder, TraceOutput, Path]:
    tb = TraceBuffers.create(nr_cpus=2)
    path = tmp / "t.bin"
    out = TraceOutput(str(path), opts.pop("reserve_mb", 0))
    rec = Recorder(tb, out, RecorderOptions(tbuf_pages=1, **opts))
    rec.setup()
    return tb, rec, out, path


def produce(tb: TraceBuffers, cpu: int, first: int, n: int) -> None:
    for seq in range(first, first + n):
        tb.clock.now = seq
        tb.TRACE_TIME(cpu, EV, seq)


def seqs(data: bytes) -> list[int]:
    return [struct.unpack("<I", p)[0] for e, _, p in records(data) if e == EV]


def test_ring_keeps_the_newest_whole_windows(tmp: Path) -> None:
    # 1-page buffers: a full window is 12 + 4088 bytes; the ring holds two of them.
    tb, rec, out, path = make(tmp, memory_buffer=2 * 4100)
    try:
        for w in range(10):
            produce(tb, w % 2, 100 * w, 100)  # 100 records of 16 bytes: a 1612-byte window
            rec._pass()
        rec.request_stop()
        stats = rec.run()
        assert stats.exit == "ok"
        ws = windows(path.read_bytes())
        assert [cpu for cpu, _ in ws] == [1, 0, 1, 0, 1]
        assert [seqs(d)[0] for _, d in ws] == [500, 600, 700, 800, 900]
        assert rec.ring.dropped_windows == 5 and rec.ring.dropped_bytes >= 5 * 1612  # + WRAPs
    finally:
        rec.close()
        out.close()
        tb.close()


def test_ring_with_nothing_captured_writes_nothing(tmp: Path) -> None:
    tb, rec, out, path = make(tmp, memory_buffer=1 << 20)
    try:
        rec.request_stop()
        rec.run()
        assert path.stat().st_size == 0
    finally:
        rec.close()
        out.close()
        tb.close()


def test_ring_smaller_than_a_window_is_refused(tmp: Path) -> None:
    from pyxentrace.errors import XentraceError

    with pytest.raises(XentraceError, match="smaller than one full window"):
        make(tmp, memory_buffer=4000)


def test_wrapped_window_is_one_header_two_chunks(tmp: Path) -> None:
    tb, rec, out, path = make(tmp)
    try:
        produce(tb, 0, 0, 200)  # 3200 bytes
        rec._pass()
        produce(tb, 0, 200, 100)  # wraps at 4088: a WRAP record pads the end
        rec._pass()
        out.close()
        ws = windows(path.read_bytes())
        assert len(ws) == 2 and ws[1][0] == 0
        second = records(ws[1][1])
        assert [e for e, _, _ in second].count(0x0001F002) == 1
        assert seqs(ws[1][1]) == list(range(200, 300))
    finally:
        rec.close()
        tb.close()


def test_reserve_stops_before_writing(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, rec, out, path = make(tmp, reserve_mb=100)
    try:
        produce(tb, 0, 0, 10)
        rec._pass()  # plenty of space
        size = path.stat().st_size
        real = os.fstatvfs

        class Full:
            def __init__(self, st: os.statvfs_result):
                self.f_frsize, self.f_bavail = st.f_frsize, (100 << 20) // st.f_frsize

        monkeypatch.setattr(os, "fstatvfs", lambda fd: Full(real(fd)))
        produce(tb, 0, 10, 10)
        with pytest.raises(DiskFull, match="disk space limit reached"):
            rec._pass()
        assert path.stat().st_size == size  # nothing partial
    finally:
        rec.close()
        out.close()
        tb.close()
