"""The streaming reader on hand-built files (expected rows computed here) and real traces."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest

from pyxentrace.format.events import class_name
from pyxentrace.format.record import encode_record, encode_window
from pyxentrace.reader import (
    FLAG_LATE,
    FLAG_NO_TSC_YET,
    FLAG_TSC_BACKWARDS,
    FLAG_UNTIMED,
    TraceReader,
    read,
)
from pyxentrace.reader import scan as S

HZ = 2.4e9


def rec(event, words=(), tsc=None):
    return encode_record(event, list(words), tsc)


def rows_of(b):
    return [
        (
            int(b.offset[i]),
            int(b.cpu[i]),
            int(b.tsc[i]),
            int(b.event[i]),
            tuple(int(x) for x in b.words[i, : b.nwords[i]]),
        )
        for i in range(len(b))
    ]


def build(windows):
    """windows: [(cpu, [record bytes])] -> (file bytes, expected rows in file order)."""
    out = b""
    expect = []
    last = {}
    for cpu, recs in windows:
        body = b""
        base = len(out) + 12
        for r in recs:
            hdr = struct.unpack_from("<I", r)[0]
            ev_, n, timed = hdr & 0x0FFFFFFF, (hdr >> 28) & 7, hdr >> 31
            if timed:
                tsc = struct.unpack_from("<Q", r, 4)[0]
                last[cpu] = tsc
            else:
                tsc = last.get(cpu, 0)
            words = struct.unpack_from(f"<{n}I", r, 4 + 8 * timed)
            if ev_ != 0x0001F002:
                expect.append((base + len(body), cpu, tsc, ev_, tuple(words)))
            body += r
        out += encode_window(cpu, body)
    return out, expect


def sort_time(rows):
    # global time order; ties -> lower pCPU; per pCPU file order (stable)
    return sorted(rows, key=lambda r: (r[2], r[1], r[0]))


def test_hand_built_two_cpus(tmp_path):
    w0a = [
        rec(0x00021101, [0x00010000], 100),
        rec(0x0020100D, [0x17], 150),
        rec(0x00082002, [1, 2, 3]),  # untimed HVM: carries TSC 150
        rec(0x0001F002, [0xDEAD, 0xBEEF]),
    ]  # wrap: skipped
    w1a = [rec(0x0020100D, [0x0010001D, 1], 120), rec(0x00201106, [0x81001234, 0xFFFFFFFF], 180)]
    w0b = [rec(0x0001F001, [5, 0x00000001, 90, 0], 200), rec(0x00201008, [], 210)]
    w1b = [rec(0x0002800A, [0, 1, 2, 3], 205)]
    data, expect = build([(0, w0a), (1, w1a), (0, w0b), (1, w1b)])
    p = tmp_path / "t.bin"
    p.write_bytes(data)
    b, r = read(p)
    assert rows_of(b) == sort_time(expect)
    assert r.records == 9 and r.rows == 8 and r.windows == 4
    assert r.wrap_records == 1 and r.wrap_bytes == 12
    assert r.lost_records == 1 and r.lost_count == 5
    assert r.untimed == 2 and r.anomaly_count == 0  # the HVM record and the wrap record
    assert r.first_tsc == 100 and r.last_tsc == 210
    untimed = b.event == 0x00082002
    assert (b.flags[untimed] & FLAG_UNTIMED).all() and int(b.tsc[untimed][0]) == 150
    assert r.pcpus == [0, 1]


def test_untimed_before_any_tsc_is_flagged(tmp_path):
    data, _ = build([(2, [rec(0x00082002, [7]), rec(0x0020100D, [0x17], 50)])])
    (tmp_path / "t.bin").write_bytes(data)
    b, r = read(tmp_path / "t.bin")
    assert int(b.flags[0]) == FLAG_UNTIMED | FLAG_NO_TSC_YET and int(b.tsc[0]) == 0


def random_trace(rng, ncpu=3, passes=20, per=30):
    t = {c: 1000 for c in range(ncpu)}
    wins = []
    for _ in range(passes):
        for c in range(ncpu):
            recs = []
            for _ in range(int(rng.integers(0, per))):
                t[c] += int(rng.integers(0, 5))  # ties across pCPUs on purpose
                n = int(rng.integers(0, 8))
                if rng.random() < 0.1:
                    recs.append(
                        rec(0x00082000 | int(rng.integers(1, 20)), rng.integers(0, 2**32, n))
                    )
                else:
                    recs.append(
                        rec(0x00201000 | int(rng.integers(1, 15)), rng.integers(0, 2**32, n), t[c])
                    )
            if recs:
                wins.append((c, recs))
    return build(wins)


@pytest.mark.parametrize("batch_rows", [1, 7, 64, 1 << 16])
def test_chunking_invariance(tmp_path, batch_rows):
    rng = np.random.default_rng(batch_rows)
    data, expect = random_trace(rng)
    (tmp_path / "t.bin").write_bytes(data)
    b, r = read(tmp_path / "t.bin", batch_rows=batch_rows)
    assert rows_of(b) == sort_time(expect)
    assert r.anomaly_count == 0


def test_stdin_equals_file(tmp_path):
    rng = np.random.default_rng(5)
    data, expect = random_trace(rng)
    rd = TraceReader("-", stdin=io.BytesIO(data))
    from pyxentrace.reader import RecordBatch

    b = RecordBatch.concat(list(rd.batches()))
    assert rows_of(b) == sort_time(expect)
    assert rd.report.size == len(data)


def test_late_records_counted_not_misplaced(tmp_path):
    # pCPU 1's only window comes after pCPU 0 has run 3 s ahead: beyond a 1 s window
    hz = 1e3  # 1 cycle = 1 ms
    w0 = [rec(0x0020100D, [0x17], t) for t in range(0, 3000, 100)]
    w0b = [rec(0x0020100D, [0x17], t) for t in range(3000, 6000, 100)]
    w1 = [rec(0x0020100D, [0x18], 50)]
    data, expect = build([(0, w0), (0, w0b), (1, w1)])
    (tmp_path / "t.bin").write_bytes(data)
    rd = TraceReader(tmp_path / "t.bin", cpu_hz=hz, reorder_window_s=1.0, batch_rows=8)
    from pyxentrace.reader import RecordBatch

    b = RecordBatch.concat(list(rd.batches()))
    assert len(b) == len(expect)  # nothing dropped
    late = (b.flags & FLAG_LATE) != 0
    assert late.sum() == 1 and int(b.words[late][0, 0]) == 0x18
    assert rd.report.late_records == 1
    assert any("later than the reorder window" in a.message for a in rd.report.anomalies)


def test_late_within_window_is_merged(tmp_path):
    w0 = [rec(0x0020100D, [0x17], t) for t in range(0, 3000, 100)]
    w1 = [rec(0x0020100D, [0x18], 50)]
    data, expect = build([(0, w0), (1, w1)])
    (tmp_path / "t.bin").write_bytes(data)
    b, r = read(tmp_path / "t.bin", cpu_hz=1e3, reorder_window_s=10.0, batch_rows=4)
    assert rows_of(b) == sort_time(expect) and r.late_records == 0


# ---- real traces --------------------------------------------------------------------------

REAL = ["real-credit2-hvm", "real-xen417-pvdom0", "real-xen417-lost"]


def oracle_volume(text):
    sec = text.split("--- Log volume summary ---")[1].split("|--")[0]
    cpu, vol = None, {}
    for line in sec.splitlines():
        m = re.match(r" - cpu (\d+) -", line)
        if m:
            cpu = int(m.group(1))
            continue
        m = re.match(r" (\w+)\s*:\s*(\d+)$", line)
        if m:
            vol[(cpu, m.group(1))] = int(m.group(2))
    return vol


@pytest.fixture(scope="module")
def real(data_dir):
    return {name: read(data_dir / f"{name}.bin") for name in REAL}


def test_credit2_counts(real):
    b, r = real["real-credit2-hvm"]
    # README of the trace: 180,680 records, 187 CPU_CHANGE headers, 27 wrap records
    assert r.records + r.windows == 180_680
    assert r.windows == 187 and r.wrap_records == 27
    assert r.rows == len(b) == 180_680 - 187 - 27
    assert r.untimed == 7_548
    assert r.anomaly_count == 0 and r.late_records == 0


def test_pvdom0_and_lost_counts(real):
    assert sum(x.records + x.windows for x in [real["real-xen417-pvdom0"][1]]) == 611_987
    b, r = real["real-xen417-lost"]
    assert r.records + r.windows == 600_663
    assert r.lost_records == 357 and r.lost_count == 311_218
    assert r.wrap_records == 1_290
    lost = b.event == 0x0001F001
    assert int(b.words[lost, 0].astype(np.int64).sum()) == 311_218


@pytest.mark.parametrize("name", REAL)
def test_volume_equals_xenalyze(real, data_dir, name):
    _, r = real[name]
    ours = {}
    lost_per_cpu = {}
    for cpu, event, count, nbytes in r.volume():
        k = (cpu, class_name(event))
        ours[k] = ours.get(k, 0) + nbytes
        if event == 0x0001F001:
            lost_per_cpu[cpu] = count
    # xenalyze processes (and counts) every LOST_RECORDS record twice (spec §1.4)
    for cpu, n in lost_per_cpu.items():
        ours[(cpu, "gen")] += 28 * n
    assert ours == oracle_volume((data_dir / f"{name}.summary.txt").read_text())


@pytest.mark.parametrize("name", REAL)
def test_time_order(real, name):
    b, _ = real[name]
    assert np.all(np.diff(b.tsc.astype(np.int64)) >= 0)
    for c in np.unique(b.cpu):  # per pCPU, file order is kept
        assert np.all(np.diff(b.offset[b.cpu == c]) > 0)


def test_flag_bits_distinct():
    flags = [FLAG_UNTIMED, FLAG_NO_TSC_YET, FLAG_TSC_BACKWARDS, FLAG_LATE]
    assert len(set(flags)) == 4 and all(f & (f - 1) == 0 for f in flags)
    assert S.CPU_CHANGE_HEADER == 0x2001F003
