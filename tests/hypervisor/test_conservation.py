"""Conservation under random producer/consumer schedules, and bulk == single-call bytes.

Every schedule runs on two models at once: one through ``trace()`` call by call, one through
the bulk writer (batches cut at every non-trace operation).  After each batch both must hold
identical bytes and counters; at the end, what a consumer read plus what is still buffered
must account for every record offered:

    offered = written + lost + filtered
    written = data records consumed + data records still buffered
    lost    = sum of LOST_RECORDS counts (consumed + buffered) + pending + forgotten at disable
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxentrace.hypervisor import TraceBuffers

from .conftest import parse_records

WRAP, LOST = 0x0001F002, 0x0001F001
EVENTS = [0x0002800A, 0x00201003, 0x0020200E, 0x00041001, 0x00020001, 0x0010F001]
MASKS = [0x0FFFF000, 0x0020F000, 0x80001000, 0x00201000, 0]
NCPU = 2

cpu = st.integers(0, NCPU - 1)
trace_op = st.tuples(st.just("trace"), cpu, st.sampled_from(EVENTS), st.integers(0, 7),
                     st.booleans(), st.booleans(), st.just(1))
burst_op = st.tuples(st.just("trace"), cpu, st.sampled_from(EVENTS[:3]), st.integers(2, 7),
                     st.just(True), st.just(True), st.integers(40, 250))
OTHER = {
    "bad": st.tuples(st.just("bad"), cpu, st.sampled_from([2, 6, 32, 40])),
    "consume": st.tuples(st.just("consume"), cpu,
                         st.one_of(st.just(1.0), st.just(0.5), st.floats(0, 1))),
    "mask": st.tuples(st.just("mask"), st.sampled_from(MASKS)),
    "cpumask": st.tuples(st.just("cpumask"), st.integers(0, 3)),
    "disable": st.tuples(st.just("disable")),
    "enable": st.tuples(st.just("enable")),
    "current": st.tuples(st.just("current"), cpu, st.integers(0, 0x7FFF), st.integers(0, 127)),
}
#: Op kinds, weighted towards filling and draining; tracing is re-enabled and masks reset often.
KINDS = (["burst"] * 5 + ["trace"] * 3 + ["consume"] * 4 + ["enable"] * 2
         + ["mask", "cpumask", "disable", "current", "bad"])


@st.composite
def schedules(draw: st.DrawFn) -> list[tuple]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=10, max_size=40))
    ops = []
    for k in kinds:
        op = draw({"burst": burst_op, "trace": trace_op, **OTHER}[k])
        if k in ("mask", "cpumask") and draw(st.booleans()):
            op = (k, MASKS[0] if k == "mask" else 3)  # often back to "everything"
        ops.append(op)
    return ops


class Consumer:
    """Reads windows as xentrace does and tallies what it saw, per CPU."""

    def __init__(self) -> None:
        self.records = [0] * NCPU
        self.lost = [0] * NCPU

    def tally(self, cpu: int, data: bytes) -> None:
        for r in parse_records(data):
            if r.event == LOST:
                self.lost[cpu] += int.from_bytes(r.payload[:4], "little")
            elif r.event != WRAP:
                self.records[cpu] += 1


def _consume(tbs: list[TraceBuffers], c: Consumer, cpu: int, frac: float) -> None:
    bufs = [tb.map_tbufs()[cpu] for tb in tbs]
    b = bufs[0]
    cons, prod = b.cons, b.prod
    window = b.window(cons, prod)
    assert all(x.window(x.cons, x.prod) == window for x in bufs[1:])
    recs = parse_records(window)
    k = round(frac * len(recs))
    taken = sum(len(r.raw) for r in recs[:k])
    c.tally(cpu, window[:taken])
    new = (cons + taken) % (2 * b.data_size)
    for x in bufs:
        x.cons = new


def _same(a: TraceBuffers, b: TraceBuffers) -> None:
    for cpu in range(NCPU):
        assert a.counters(cpu) == b.counters(cpu)
        ba, bb = a.map_tbufs()[cpu], b.map_tbufs()[cpu]
        assert (ba.prod, ba.cons) == (bb.prod, bb.cons)
        assert bytes(ba.data) == bytes(bb.data)
    assert a.tb_init_done == b.tb_init_done


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=schedules())
def test_random_schedule_conserves_and_bulk_matches(ops: list[tuple]) -> None:
    single = TraceBuffers.create(nr_cpus=NCPU, tbuf_size=1)
    bulk = TraceBuffers.create(nr_cpus=NCPU, tbuf_size=1)
    try:
        consumer = Consumer()
        forgotten = [0] * NCPU
        batch: list[tuple] = []
        tsc = 1000

        def flush() -> None:
            if batch:
                cpus, evs, ex, words, tscs, has = zip(*batch, strict=True)
                bulk.trace_bulk(np.array(cpus), np.array(evs, np.uint32), np.array(ex),
                                np.array(words, np.uint32), np.array(tscs, np.uint64),
                                has_data=np.array(has))
                batch.clear()
            _same(single, bulk)

        for op in ops:
            kind = op[0]
            if kind in ("trace", "bad"):
                if kind == "trace":
                    _, c, ev, nw, timed, has, count = op
                    event, extra = ev | (timed << 31), 4 * nw
                else:
                    _, c, extra = op
                    event, has, count = 0x0002800A, True, 1
                for _ in range(count):
                    tsc += 7
                    words = [(tsc + k) & 0xFFFFFFFF for k in range(7)]
                    data = b"".join(w.to_bytes(4, "little") for w in words)[:extra]
                    single.clock.now = tsc
                    single.trace(c, event, extra, data if has else None)
                    batch.append((c, event, extra, words, tsc, has))
                continue
            flush()
            if kind == "consume":
                _consume([single, bulk], consumer, op[1], op[2])
            elif kind == "mask":
                for tb in (single, bulk):
                    tb.set_evt_mask(op[1])
            elif kind == "cpumask":
                for tb in (single, bulk):
                    tb.set_cpu_mask(op[1], nr_bits=NCPU)
            elif kind == "disable":
                for c in range(NCPU):
                    forgotten[c] += single.pending_lost(c)
                for tb in (single, bulk):
                    tb.disable()
            elif kind == "enable":
                for tb in (single, bulk):
                    tb.enable()
            elif kind == "current":
                for tb in (single, bulk):
                    tb.set_current(op[1], op[2], op[3])
        flush()

        for c in range(NCPU):
            k = single.counters(c)
            assert k["offered"] == k["written"] + k["lost"] + k["filtered"]
            b = single.map_tbufs()[c]
            rest = Consumer()
            rest.tally(0, b.window(b.cons, b.prod))
            assert k["written"] == consumer.records[c] + rest.records[0]
            assert k["lost"] == (consumer.lost[c] + rest.lost[0] + single.pending_lost(c)
                                 + forgotten[c])
    finally:
        single.close()
        bulk.close()
