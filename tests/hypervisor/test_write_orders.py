"""The buffer algorithm on hand-computed scenarios (1 page: data_size 4088, high water 2044).

Expected bytes are written out with struct from the spec's record definitions (spec §1.4-1.7).
"""

from __future__ import annotations

import struct

import pytest

from pyxentrace.hypervisor import TraceBuffers

from .conftest import parse_records

DS = 4088
EV = 0x0002800A  # TRC_SCHED_SWITCH: any event passing TRC_ALL
STALE = 0xAA


def rec40(tsc: int, seq: int) -> bytes:
    """A timed 7-word record of EV, payload (seq, 1..6): 40 bytes."""
    return struct.pack("<IQ7I", 0xF002800A, tsc, seq, 1, 2, 3, 4, 5, 6)


def lost_rec(tsc: int, count: int, did: int, vid: int, first_tsc: int) -> bytes:
    return struct.pack("<IQIHHQ", 0xC001F001, tsc, count, did, vid, first_tsc)


def emit(tb: TraceBuffers, tsc: int, seq: int) -> None:
    tb.clock.now = tsc
    tb.TRACE_TIME(0, EV, seq, 1, 2, 3, 4, 5, 6)


@pytest.fixture
def tb(make_tb) -> TraceBuffers:
    t = make_tb(1, pages=1)
    b = t.map_tbufs()[0]
    b.data[:] = bytes([STALE]) * DS  # "data pages are not cleared": make stale bytes visible
    return t


def at(tb: TraceBuffers, start: int) -> None:
    b = tb.map_tbufs()[0]
    b.prod = b.cons = start


def test_sizes(tb: TraceBuffers) -> None:
    assert (tb.data_size, tb.t_buf_highwater, tb.opt_tbuf_size) == (4088, 2044, 1)


def test_plain_record(tb: TraceBuffers) -> None:
    emit(tb, 0x1122334455, 9)
    b = tb.map_tbufs()[0]
    assert (b.cons, b.prod) == (0, 40)
    assert bytes(b.data[:40]) == rec40(0x1122334455, 9)
    assert bytes(b.data[40:44]) == bytes([STALE]) * 4


def test_untimed_and_empty_records(tb: TraceBuffers) -> None:
    tb.TRACE(0, 0x00041001, 7)  # untimed, 1 word
    tb.TRACE_TIME(0, 0x00201008)  # timed, no payload
    tb.clock.now = 5
    tb.trace(0, 0x00201008 | 1 << 31, 8, None)  # NULL payload pointer: 8 stale bytes
    b = tb.map_tbufs()[0]
    assert bytes(b.data[: b.prod]) == (
        struct.pack("<II", 0x10041001, 7) + struct.pack("<IQ", 0x80201008, 0)
        + struct.pack("<IQ", 0xA0201008, 5) + bytes([STALE]) * 8)


@pytest.mark.parametrize("lap", [0, 1])
@pytest.mark.parametrize(("space", "header"), [
    (4, 0x0001F002), (8, 0x1001F002), (12, 0x2001F002), (16, 0x3001F002), (20, 0x4001F002),
    (24, 0x5001F002), (28, 0x6001F002), (32, 0x7001F002), (36, 0xE001F002)])
def test_wrap_then_record(tb: TraceBuffers, space: int, header: int, lap: int) -> None:
    start = lap * DS + DS - space
    at(tb, start)
    emit(tb, 777, 1)
    b = tb.map_tbufs()[0]
    wrap = bytes(b.data[DS - space : DS])
    assert struct.unpack_from("<I", wrap)[0] == header
    if space == 36:  # 36 bytes: TSC + 6 stale words
        assert struct.unpack_from("<Q", wrap, 4)[0] == 777
        assert wrap[12:] == bytes([STALE]) * 24
    else:  # no TSC, stale payload
        assert wrap[4:] == bytes([STALE]) * (space - 4)
    assert bytes(b.data[:40]) == rec40(777, 1)
    # prod moved past the wrap point, modulo 2*data_size.
    assert b.prod == ((lap + 1) * DS + 40) % (2 * DS)
    c = tb.counters(0)
    assert (c["written"], c["wraps"], c["lost"]) == (1, 1, 0)
    window = b.window(start, b.prod)
    assert [r.event for r in parse_records(window)] == [0x0001F002, EV]


def fill_then_drop(tb: TraceBuffers, start: int, n: int, drops: int) -> None:
    """From prod=cons=start, write n 40-byte records, then ``drops`` that do not fit."""
    at(tb, start)
    tb.set_current(0, 7, 1)
    lost0 = tb.counters(0)["lost"]
    for i in range(n):
        emit(tb, 1000 + i, i)
    assert tb.counters(0)["lost"] == lost0
    for j in range(drops):
        emit(tb, 5000 + j, n + j)
    assert tb.counters(0)["lost"] == lost0 + drops
    assert tb.pending_lost(0) == drops


def test_lost_then_record(tb: TraceBuffers) -> None:
    # From 1000: 77 records to 4080, wrap 8, 25 records to 1000: full.  One drop.
    fill_then_drop(tb, 1000, 102, 1)
    b = tb.map_tbufs()[0]
    assert (b.prod, b.cons) == (DS + 1000, 1000)
    b.cons = 1200  # consume 5 records: 200 bytes free, 3088 to the wrap point
    tb.set_current(0, 5, 2)
    emit(tb, 9000, 500)
    assert bytes(b.data[1000:1068]) == lost_rec(9000, 1, 5, 2, 5000) + rec40(9000, 500)
    assert b.prod == DS + 1068
    assert tb.pending_lost(0) == 0
    assert tb.counters(0)["lost_recs"] == 1


def test_wrap_lost_record(tb: TraceBuffers) -> None:
    # From 0: 102 records to 4080 (8 bytes to the wrap point); 3 drops.
    fill_then_drop(tb, 0, 102, 3)
    b = tb.map_tbufs()[0]
    b.cons = 80
    tb.set_current(0, 0, 3)
    emit(tb, 9100, 600)
    assert struct.unpack_from("<I", b.data, 4080)[0] == 0x1001F002
    assert bytes(b.data[:68]) == lost_rec(9100, 3, 0, 3, 5000) + rec40(9100, 600)
    assert b.prod == DS + 68


def test_lost_wrap_record(tb: TraceBuffers) -> None:
    # From 12: 101 records to 4052 (36 to the wrap point, 48 free); a 40-byte record drops.
    fill_then_drop(tb, 12, 101, 2)
    b = tb.map_tbufs()[0]
    b.cons = 52  # 88 free: LOST (28) + WRAP (8) + REC (40) = 76
    tb.set_current(0, 0x7FFF, 0)
    emit(tb, 9200, 700)
    assert bytes(b.data[4052:4080]) == lost_rec(9200, 2, 0x7FFF, 0, 5000)
    assert struct.unpack_from("<I", b.data, 4080)[0] == 0x1001F002
    assert bytes(b.data[:40]) == rec40(9200, 700)
    assert b.prod == DS + 40


def test_lost_record_ends_exactly_at_wrap(tb: TraceBuffers) -> None:
    # From 20: 101 records to 4060 (28 to the wrap point); the LOST record fills it exactly.
    fill_then_drop(tb, 20, 101, 1)
    b = tb.map_tbufs()[0]
    b.cons = 60
    emit(tb, 9300, 800)
    assert bytes(b.data[4060:DS]) == lost_rec(9300, 1, 7, 1, 5000)
    assert bytes(b.data[:40]) == rec40(9300, 800)
    assert tb.counters(0)["wraps"] == 0


def test_first_tsc_is_the_first_drop(tb: TraceBuffers) -> None:
    fill_then_drop(tb, 0, 102, 4)  # drops at TSC 5000..5003
    b = tb.map_tbufs()[0]
    b.cons = b.prod
    emit(tb, 9400, 900)
    (lost,) = [r for r in parse_records(b.window(4080, b.prod)) if r.event == 0x0001F001]
    assert struct.unpack("<IHHQ", lost.payload) == (4, 7, 1, 5000)
    assert lost.tsc == 9400
    # The next loss episode gets a new first_tsc.
    b.prod = b.cons = 0
    fill_then_drop(tb, 0, 102, 0)
    emit(tb, 7777, 1)
    b.cons = b.prod
    emit(tb, 8888, 2)
    recs = parse_records(b.window(4080, b.prod))
    (lost,) = [r for r in recs if r.event == 0x0001F001]
    assert struct.unpack("<IHHQ", lost.payload) == (1, 7, 1, 7777)


def test_full_buffer_counts_every_drop(tb: TraceBuffers) -> None:
    fill_then_drop(tb, 0, 102, 50)
    c = tb.counters(0)
    assert (c["offered"], c["written"], c["lost"], c["filtered"]) == (152, 102, 50, 0)
    assert c["virqs"] == 1  # crossed 2044 once; none while losing


def test_highwater_once_per_upward_crossing(tb: TraceBuffers) -> None:
    rx = tb.bind_virq()
    for i in range(51):  # 2040 bytes: still below 2044
        emit(tb, i, i)
    assert tb.counters(0)["virqs"] == 0 and not rx.wait(0)
    emit(tb, 51, 51)  # 2080: crossing
    assert tb.counters(0)["virqs"] == 1 and rx.wait(0)
    for i in range(20):
        emit(tb, i, i)
    assert tb.counters(0)["virqs"] == 1 and not rx.wait(0)
    b = tb.map_tbufs()[0]
    b.cons = b.prod  # drained: the next crossing notifies again
    for i in range(52):
        emit(tb, i, i)
    assert tb.counters(0)["virqs"] == 2 and rx.wait(0)


def test_oversize_and_misaligned_payloads_rejected(tb: TraceBuffers) -> None:
    tb.trace(0, EV, 32, bytes(32))
    tb.trace(0, EV, 6, bytes(8))
    tb.trace(0, EV | 1 << 31, 30, bytes(32))
    with pytest.raises(ValueError, match="at most 7"):
        tb.TRACE(0, EV, 1, 2, 3, 4, 5, 6, 7, 8)
    c = tb.counters(0)
    assert (c["rejected"], c["offered"], c["lost"], c["written"]) == (3, 0, 0, 0)
    assert tb.map_tbufs()[0].prod == 0
    assert tb.tb_init_done


@pytest.mark.parametrize(("prod", "cons"), [(0, 3), (6, 0), (2 * DS, 0), (0, 2 * DS),
                                            (0, 0xFFFFFFFC)])
def test_bogus_prod_cons_turns_tracing_off(tb: TraceBuffers, prod: int, cons: int) -> None:
    b = tb.map_tbufs()[0]
    b.prod, b.cons = prod, cons
    emit(tb, 1, 1)
    assert not tb.tb_init_done
    c = tb.counters(0)
    # Bogus: the buffer looks full, so the record is counted as lost.
    assert (c["offered"], c["lost"], c["written"]) == (1, 1, 0)
    assert (b.prod, b.cons) == (prod, cons)
    emit(tb, 2, 2)
    assert tb.counters(0)["offered"] == 1  # tracing is off: not even offered


def test_cons_beyond_prod_is_not_caught(tb: TraceBuffers) -> None:
    # Not bogus, but unconsumed > data_size: avail underflows and the write goes ahead.
    b = tb.map_tbufs()[0]
    b.prod, b.cons = 0, 400
    emit(tb, 1, 1)
    assert tb.tb_init_done
    assert b.prod == 40 and tb.counters(0)["written"] == 1


def test_disable_forgets_pending_losses(tb: TraceBuffers) -> None:
    fill_then_drop(tb, 0, 102, 5)
    b = tb.map_tbufs()[0]
    prod, cons = b.prod, b.cons
    tb.disable()
    assert (b.prod, b.cons) == (prod, cons) and tb.pending_lost(0) == 0
    emit(tb, 1, 1)
    assert tb.counters(0)["offered"] == 107
    tb.enable()
    b.cons = b.prod
    emit(tb, 2, 2)
    recs = parse_records(b.window(prod, b.prod))
    assert [r.event for r in recs] == [0x0001F002, EV]  # no LOST record
    assert tb.counters(0)["lost"] == 5  # the model's own counter still shows them


def test_disable_from_another_attachment(tb: TraceBuffers) -> None:
    fill_then_drop(tb, 0, 102, 2)
    other = TraceBuffers.attach(tb.name)
    try:
        other.disable()
        other.enable()
    finally:
        other.close()
    b = tb.map_tbufs()[0]
    b.cons = b.prod
    emit(tb, 2, 2)
    assert [r.event for r in parse_records(b.window(4080, b.prod))] == [0x0001F002, EV]
