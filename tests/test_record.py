"""Record header and encoding, against hand-computed bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxentrace.format import record as R


def test_header_bits_by_hand():
    # 0x2001f003: event 0x0001f003, 2 extra words, no TSC (xentrace's CPU_CHANGE)
    assert R.unpack_header(0x2001F003) == (0x0001F003, 2, False)
    # 0xC001f001: lost records, 4 words, timed
    assert R.unpack_header(0xC001F001) == (0x0001F001, 4, True)
    assert R.pack_header(0x0020100D, 1, True) == 0x9020100D
    assert R.Header(0x0001F001, 4, True).size == 28


@given(st.integers(0, 0x0FFFFFFF), st.integers(0, 7), st.booleans())
def test_header_round_trip(event, n, cycles):
    w = R.pack_header(event, n, cycles)
    assert 0 <= w < 2**32
    assert R.unpack_header(w) == (event, n, cycles)
    assert R.rec_size(cycles, n) == 4 + 8 * cycles + 4 * n


@pytest.mark.parametrize("event,n", [(1 << 28, 0), (-1, 0), (5, 8)])
def test_header_rejects(event, n):
    with pytest.raises(ValueError):
        R.pack_header(event, n, False)


def test_encode_record_bytes():
    b = R.encode_record(0x00201003, [0xC0101234, 0xFFFF800D], tsc=0x1122334455667788)
    assert b == bytes.fromhex("031020a08877665544332211341210c00d80ffff")
    w = R.encode_window(3, b)
    assert w[:12] == struct.pack("<IiI", 0x2001F003, 3, 20)
