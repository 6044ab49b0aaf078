"""A real consumer in another process drains the buffers while the producer fills them.

The consumer attaches by name only (``spawn``: nothing inherited but two events and a queue),
reads ``t_info``, maps every CPU's buffer, waits on VIRQ_TBUF with a poll timeout, copies
windows and publishes ``cons`` like xentrace.  Each record carries a per-CPU sequence number,
so every gap the consumer sees must equal the LOST_RECORDS counts in between.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from pyxentrace.hypervisor import TraceBuffers

from .conftest import parse_records

WRAP, LOST = 0x0001F002, 0x0001F001
EV = 0x0002800A | 1 << 31


def consumer_main(name: str, ready, done, out) -> None:  # noqa: ANN001 (mp primitives)
    tb = TraceBuffers.attach(name)
    bufs = tb.map_tbufs()
    tb.bind_virq()
    ready.set()
    state = {cpu: {"records": 0, "lost": 0, "bad_gaps": 0, "last": -1, "since": 0}
             for cpu in bufs}
    wakeups = 0
    final = False
    while True:
        wakeups += tb.wait_virq(0.005)
        for cpu, b in bufs.items():
            cons, prod = b.cons, b.prod
            if cons == prod:
                continue
            st = state[cpu]
            for r in parse_records(b.window(cons, prod)):
                if r.event == LOST:
                    n = int.from_bytes(r.payload[:4], "little")
                    st["lost"] += n
                    st["since"] += n
                elif r.event != WRAP:
                    seq = int.from_bytes(r.payload[:4], "little")
                    st["bad_gaps"] += seq - st["last"] - 1 != st["since"]
                    st["last"], st["since"] = seq, 0
                    st["records"] += 1
            b.cons = prod
        if final:
            break
        final = done.is_set()
    out.put({"state": state, "wakeups": wakeups})
    tb.close()


def test_consumer_in_another_process() -> None:
    ctx = mp.get_context("spawn")
    tb = TraceBuffers.create(nr_cpus=2, tbuf_size=2)
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=consumer_main, args=(tb.name, ready, done, out))
    proc.start()
    try:
        assert ready.wait(30), "consumer did not start"
        seq = [0, 0]
        # Single calls first (the consumer keeps up), then bulk batches (it cannot always).
        for i in range(3000):
            cpu = i & 1
            tb.clock.now = i
            tb.TRACE_TIME(cpu, EV, seq[cpu], 1, 2, 3, 4, 5, 6)
            seq[cpu] += 1
        for batch in range(60):
            n = 2000
            cpus = np.arange(n) & 1
            words = np.zeros((n, 7), np.uint32)
            for cpu in (0, 1):
                sel = cpus == cpu
                words[sel, 0] = np.arange(seq[cpu], seq[cpu] + sel.sum())
                seq[cpu] += int(sel.sum())
            tb.trace_bulk(cpus, np.full(n, EV, np.uint32), np.full(n, 28), words,
                          np.full(n, 10_000 + batch, np.uint64))
            time.sleep(0.002)
        done.set()
        result = out.get(timeout=60)
        proc.join(30)
        counts = {cpu: tb.counters(cpu) for cpu in (0, 1)}
    finally:
        if proc.is_alive():
            proc.kill()
        tb.close()
    assert proc.exitcode == 0
    assert result["wakeups"] > 0
    for cpu, st in result["state"].items():
        k = counts[cpu]
        assert k["offered"] == k["written"] + k["lost"] == seq[cpu] and k["filtered"] == 0
        assert st["records"] == k["written"]
        assert st["lost"] + k["pending_lost"] == k["lost"]
        assert st["bad_gaps"] == 0
    # The schedule must exercise both delivery and loss.
    assert sum(st["records"] for st in result["state"].values()) > 3000
    assert sum(k["lost"] for k in counts.values()) > 0
