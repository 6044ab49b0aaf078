"""The three-step event-mask test (spec §1.4 step 3), case by case, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

T = 1 << 31  # timed: the event still carries bit 31 when it is filtered

# (mask, event as passed to trace(), traced?) - each row's reason in the comment.
TABLE = [
    (0x0FFFF000, T | 0x00201003, True),  # TRC_ALL, PV trap
    (0x0FFFF000, 0x00041001, True),  # TRC_ALL, untimed DOM0OP
    (0xFFFFFFFF, T | 0x00020001, False),  # subclass nibble 0: never traceable
    (0x0FFFF000, 0x0001F003, True),  # class 0x0001, nibble f
    (0x0020F000, T | 0x0020200E, True),  # TRC_PV captures subcalls
    (0x00201000, T | 0x0020200E, False),  # nibble 1 & 2 = 0
    (0x00201000, T | 0x00201003, True),
    (0x0002F000, T | 0x00201003, False),  # step a passes (0x1000), class 0x0002 & 0x0020 = 0
    (0x80001000, T | 0x00201003, True),  # bit 31 quirk: class test passes via bit 15 of >>16
    (0x80001000, 0x00201003, False),  # ... but not for an untimed event
    (0x00000000, T | 0x00201003, False),  # mask 0 drops everything
    (0x00000FFF, 0x00021001, False),  # step a passes (bit 0), class 0 & 2 = 0
    (0x00021000, T | 0x00021101, True),  # SCHED_MIN runstate
    (0x00028000, T | 0x00021101, False),  # verbose nibble 8 & min nibble 1 = 0
    (0x0002F000, T | 0x0002F00A, True),  # seed-era scheduler id
    (0x0020F000, T | 0x0020F103, True),  # seed-era PV id with 64-bit flag
    (0x00100000, T | 0x0010F001, False),  # class ok, step a ok, nibble 0 in the mask
]


@pytest.mark.parametrize(("mask", "event", "traced"), TABLE,
                         ids=[f"{m:08x}-{e:08x}" for m, e, _ in TABLE])
def test_event_mask(make_tb, mask: int, event: int, traced: bool) -> None:
    tb = make_tb(1, pages=1)
    tb.set_evt_mask(mask)
    assert tb.trace_will_trace_event(0, event) is traced
    tb.trace(0, event, 4, b"\x01\x00\x00\x00")
    c = tb.counters(0)
    assert (c["written"], c["filtered"], c["offered"]) == ((1, 0, 1) if traced else (0, 1, 1))
    assert tb.map_tbufs()[0].prod == ((16 if event >> 31 else 8) if traced else 0)


def test_mask_applies_to_the_bulk_writer(make_tb) -> None:
    tb = make_tb(1, pages=1)
    for mask, event, traced in TABLE:
        before = tb.counters(0)["written"]
        tb.set_evt_mask(mask)
        tb.trace_bulk(np.zeros(1, np.int64), np.array([event], np.uint32), np.array([4]),
                      np.ones((1, 7), np.uint32), np.zeros(1, np.uint64))
        assert tb.counters(0)["written"] - before == int(traced), hex(event)
