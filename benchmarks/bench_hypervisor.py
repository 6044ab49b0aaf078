"""Events/s through the PV trace points into the shared-memory trace buffers (one core).

Measures the single-call path (``PVTracer`` methods, ``TRACE_TIME``) and the bulk path
(``PVTracer.bulk``: numpy encoding + the numba writer; and ``trace_bulk`` on pre-encoded
arrays).  A consumer drains in-process between batches (``cons = prod``), so records are
written, not lost; the script checks the counters and prints rates.  No assertions on time.

    python benchmarks/bench_hypervisor.py [--events N] [--batch B] [--pages P]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pyxentrace.hypervisor import PVTracer, TraceBuffers

# Calibration mix (DESIGN.md, one PV dom0 vCPU): hypercall numbers and their weights.
HYPERCALL_MIX = {23: 159268, 24: 32036, 3: 28746, 25: 28746, 26: 27473, 32: 16531, 1: 13644,
                 29: 11669, 17: 3021}


def drain(tb: TraceBuffers) -> None:
    for b in tb.map_tbufs().values():
        b.cons = b.prod


def bench_single(tb: TraceBuffers, pv: PVTracer, n: int) -> dict[str, float]:
    out = {}
    rng = np.random.default_rng(1)
    ops = rng.choice(list(HYPERCALL_MIX), n, p=np.array(list(HYPERCALL_MIX.values()))
                     / sum(HYPERCALL_MIX.values())).tolist()
    cases = {
        "TRACE_TIME (2 words)": lambda i: tb.TRACE_TIME(0, 0x0002800A, i, 7),
        "pv.hypercall (v2, calibration mix)": lambda i: pv.hypercall(0, ops[i], (1, 2, 3)),
        "pv.emulate_privop": lambda i: pv.emulate_privop(0, 0xFFFFFFFF81000000 + i),
        "pv.trap": lambda i: pv.trap(0, 13, 0xFFFFFFFF81000000 + i, True, 0),
        "pv.ptwr_emulation": lambda i: pv.ptwr_emulation(0, 0x7000 + 8 * i, 0x67, 0x1000),
    }
    for name, call in cases.items():
        drain(tb)
        w0 = tb.counters(0)["written"]
        t0 = time.perf_counter()
        for i in range(n):
            if i & 4095 == 0:
                drain(tb)
            call(i)
        dt = time.perf_counter() - t0
        assert tb.counters(0)["written"] - w0 == n, "records were lost: enlarge --pages"
        out[name] = n / dt
    return out


def bench_bulk(tb: TraceBuffers, pv: PVTracer, n: int, batch: int) -> dict[str, float]:
    rng = np.random.default_rng(2)
    w = np.array(list(HYPERCALL_MIX.values()), dtype=float)
    ops = rng.choice(list(HYPERCALL_MIX), batch, p=w / w.sum()).astype(np.uint64)
    eip = 0xFFFFFFFF81000000 + np.arange(batch, dtype=np.uint64)
    args = rng.integers(0, 1 << 32, (3, batch), dtype=np.uint64)
    out = {}
    points = {
        "bulk pv.hypercall (v2, calibration mix)":
            ("hypercall", dict(op=ops, arg0=args[0], arg1=args[1], arg2=args[2])),
        "bulk pv.emulate_privop": ("emulate_privop", dict(eip=eip)),
        "bulk pv.ptwr_emulation": ("ptwr_emulation", dict(addr=eip, npte=args[0], eip=eip)),
    }
    for name, (point, vals) in points.items():
        drain(tb)
        pv.bulk(point, 0, np.zeros(batch, np.uint64), **vals)  # warm-up (numba compile)
        w0 = tb.counters(0)["written"]
        done, t0 = 0, time.perf_counter()
        while done < n:
            drain(tb)
            tsc = np.arange(done, done + batch, dtype=np.uint64)
            pv.bulk(point, 0, tsc, **vals)
            done += batch
        dt = time.perf_counter() - t0
        assert tb.counters(0)["written"] - w0 == done, "records were lost: enlarge --pages"
        out[name] = done / dt
    # The writer alone, on pre-encoded records (24-byte V2 records).
    events = np.full(batch, 0x8020100D, np.uint32)
    words = np.zeros((batch, 7), np.uint32)
    words[:, 0] = 24 | 0x00500000
    extra = np.full(batch, 12)
    cpus = np.zeros(batch, np.int64)
    tb.trace_bulk(cpus, events, extra, words, np.zeros(batch, np.uint64))
    drain(tb)
    done, t0 = 0, time.perf_counter()
    while done < n:
        drain(tb)
        tb.trace_bulk(cpus, events, extra, words, np.arange(done, done + batch, dtype=np.uint64))
        done += batch
    out["trace_bulk (pre-encoded, 24-byte records)"] = done / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2_000_000, help="events per bulk case")
    ap.add_argument("--single", type=int, default=100_000, help="events per single-call case")
    ap.add_argument("--batch", type=int, default=32768, help="events per bulk call")
    ap.add_argument("--pages", type=int, default=512, help="trace buffer pages per CPU")
    a = ap.parse_args()
    with TraceBuffers.create(nr_cpus=1, tbuf_size=a.pages) as tb:
        tb.set_current(0, 0, 0, 64)
        pv = PVTracer(tb, "xen-4", "x86_64")
        print(f"trace buffers: 1 CPU, {a.pages} pages, data_size {tb.data_size}")
        print("single-call path (events/s):")
        for name, rate in bench_single(tb, pv, a.single).items():
            print(f"  {name:45s} {rate:>14,.0f}")
        print(f"bulk path, {a.batch} events per call (events/s):")
        for name, rate in bench_bulk(tb, pv, a.events, a.batch).items():
            print(f"  {name:45s} {rate:>14,.0f}")
        c = tb.counters()
        print(f"counters: offered {c['offered']:,} written {c['written']:,} lost {c['lost']:,} "
              f"wraps {c['wraps']:,}")


if __name__ == "__main__":
    main()
