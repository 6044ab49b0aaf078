"""Damaged files: precise anomalies with offsets, valid records kept, no crash, no hang."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxentrace.format.record import encode_record, encode_window
from pyxentrace.reader import read
from pyxentrace.reader import scan as S


def rec(event, words=(), tsc=None):
    return encode_record(event, list(words), tsc)


def good_windows():
    w0 = b"".join(rec(0x0020100D, [0x17], 100 + i) for i in range(5))  # 5 x 16 bytes
    w1 = b"".join(rec(0x00201106, [1, 2], 100 + i) for i in range(4))  # 4 x 20 bytes
    return encode_window(0, w0), encode_window(1, w1)


def codes(r):
    return [a.code for a in r.anomalies]


def test_truncated_mid_record(tmp_path):
    a, b = good_windows()
    data = a + b[: 12 + 20 * 2 + 6]  # two whole records of the second window, 6 bytes more
    (tmp_path / "t").write_bytes(data)
    bt, r = read(tmp_path / "t")
    assert len(bt) == 5 + 2
    assert S.A_WINDOW_PAST_EOF in codes(r)
    trunc = [x for x in r.anomalies if x.code == S.A_TRUNCATED]
    assert trunc and trunc[0].offset == len(a) + 12 + 40
    assert "expected 20 bytes, 4 available" in trunc[0].message
    assert any(x.code == S.A_TRAILING_BYTES and x.offset == len(data) - 2 for x in r.anomalies)


def test_window_past_eof_message(tmp_path):
    a, _ = good_windows()
    data = a + struct.pack("<IiI", 0x2001F003, 1, 4096) + rec(0x0020100D, [1], 200)
    (tmp_path / "t").write_bytes(data)
    bt, r = read(tmp_path / "t")
    assert len(bt) == 6
    w = [x for x in r.anomalies if x.code == S.A_WINDOW_PAST_EOF][0]
    assert w.offset == len(a) and "claims 4096 bytes but only 16 remain" in w.message


def test_garbage_window_header_resyncs(tmp_path):
    a, b = good_windows()
    junk = b"\x11\x22\x33\x44" * 5
    data = a + junk + b
    (tmp_path / "t").write_bytes(data)
    bt, r = read(tmp_path / "t")
    assert len(bt) == 9  # everything valid kept
    bad = [x for x in r.anomalies if x.code == S.A_BAD_WINDOW_HEADER][0]
    assert bad.offset == len(a) and "found 0x44332211" in bad.message
    skip = [x for x in r.anomalies if x.code == S.A_RESYNC][0]
    assert skip.offset == len(a) and "skipped 20 bytes" in skip.message
    assert r.skipped_bytes == 20


def test_record_does_not_fit_window(tmp_path):
    body = rec(0x0020100D, [0x17], 100) + rec(0x0020100D, [0x17], 101)[:8]  # 8 of 16 bytes
    data = encode_window(0, body) + good_windows()[1]
    (tmp_path / "t").write_bytes(data)
    bt, r = read(tmp_path / "t")
    assert len(bt) == 1 + 4
    x = [x for x in r.anomalies if x.code == S.A_RECORD_OVERRUNS_WINDOW][0]
    assert (
        x.offset == 12 + 16
        and "record of 16 bytes does not fit its window (8 bytes left)" in x.message
    )


def test_cpu_out_of_range(tmp_path):
    a, b = good_windows()
    bad = struct.pack("<IiI", 0x2001F003, 5000, 16) + rec(0x0020100D, [9], 300)
    data = a + bad + b
    (tmp_path / "t").write_bytes(data)
    bt, r = read(tmp_path / "t")
    assert len(bt) == 9 and 9 not in set(bt.words[:, 0].tolist())
    x = [x for x in r.anomalies if x.code == S.A_CPU_RANGE][0]
    assert x.offset == len(a) and "pCPU 5000" in x.message
    neg = struct.pack("<IiI", 0x2001F003, -1, 0)
    (tmp_path / "n").write_bytes(neg + a)
    bt, r = read(tmp_path / "n")
    assert len(bt) == 5 and "pCPU -1" in r.anomalies[0].message


def test_tsc_backwards(tmp_path):
    body = rec(0x0020100D, [1], 500) + rec(0x0020100D, [2], 400) + rec(0x0020100D, [3], 600)
    (tmp_path / "t").write_bytes(encode_window(0, body))
    bt, r = read(tmp_path / "t")
    assert len(bt) == 3 and r.tsc_backwards == 1
    x = [x for x in r.anomalies if x.code == S.A_TSC_BACKWARDS][0]
    assert x.offset == 12 + 16 and "backwards on pCPU 0 by 100 cycles" in x.message


def test_garbage_record_header_in_window(tmp_path):
    body = rec(0x0020100D, [1], 500) + struct.pack("<I", 0x00000007) + rec(0x0020100D, [2], 600)
    (tmp_path / "t").write_bytes(encode_window(0, body))
    bt, r = read(tmp_path / "t")
    assert len(bt) == 2
    x = [x for x in r.anomalies if x.code == S.A_GARBAGE_HEADER][0]
    assert x.offset == 12 + 16


def test_empty_and_tiny_files(tmp_path):
    for data in (b"", b"\x03", b"\x03\xf0\x01\x20", struct.pack("<II", 0x2001F003, 0)):
        (tmp_path / "t").write_bytes(data)
        bt, r = read(tmp_path / "t")
        assert len(bt) == 0
        assert (r.anomaly_count > 0) == (len(data) > 0)


def test_bogus_window_size_does_not_allocate(tmp_path):
    # a window that claims ~1 GiB must not drive memory: it is reported, nothing allocated
    data = struct.pack("<IiI", 0x2001F003, 0, (1 << 30) - 4) + rec(0x0020100D, [1], 5)
    (tmp_path / "t").write_bytes(data)
    bt, r = read(tmp_path / "t")
    assert len(bt) == 1 and S.A_WINDOW_PAST_EOF in codes(r)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fz") / "t"
    p.write_bytes(data)
    bt, r = read(p, batch_rows=3)
    assert len(bt) <= len(data) // 4
    assert r.rows == len(bt)


@pytest.fixture(scope="module")
def real_prefix(data_dir):
    return (data_dir / "real-xen417-pvdom0.bin").read_bytes()[:40000]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.tuples(st.integers(0, 39999), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(100, 40000),
)
def test_mutated_real_trace(tmp_path_factory, real_prefix, flips, cut):
    buf = bytearray(real_prefix[:cut])
    for pos, val in flips:
        if pos < len(buf):
            buf[pos] = val
    p = tmp_path_factory.mktemp("mut") / "t"
    p.write_bytes(bytes(buf))
    bt, r = read(p, batch_rows=50)
    assert r.rows == len(bt)
    assert np.all(bt.offset < len(buf))
