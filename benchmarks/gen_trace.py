"""Generate a large synthetic xentrace file: PV-heavy dom0 mix with scheduler records.

    python benchmarks/gen_trace.py OUT.bin [--records 20000000] [--pcpus 4] [--seed 1]

Each pCPU runs blocks of 45 PV records (xen-4 ids, 64-bit guest) followed by a context switch
(INFPREV, INFNEXT, SWITCH, two RUNSTATE_CHANGEs) between a dom0 vCPU and the idle vCPU.
Records are cut into xentrace windows by poll period, CPUs in ascending order per pass, so
the file has the real interleaving (windows out of time order across pCPUs). Payload words
that carry no meaning for the benchmark are random. Written with numpy in a few seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

H = 1 << 31  # timed


def hdr(event: int, nw: int) -> int:
    return H | (nw << 28) | event


# type: (header, payload words template (None = filled later), size in words incl. tsc)
PV_TYPES = [
    # weight, event, nwords
    (0.40, 0x0020100D, 1),  # hypercall v2, op only (iret etc.)
    (0.06, 0x0020100D, 2),  # hypercall v2 with one arg (mmu_update / mmuext_op)
    (0.04, 0x0020100D, 3),  # v2 two args (vcpu_op)
    (0.31, 0x00201106, 2),  # emulate privop 64
    (0.07, 0x0020110B, 6),  # ptwr 64
    (0.09, 0x00201104, 5),  # page fault 64
    (0.02, 0x00201103, 3),  # trap 64
    (0.01, 0x0020200E, 1),  # subcall
]
SCHED = [
    (0x0002800E, 3),  # INFPREV
    (0x0002800F, 4),  # INFNEXT
    (0x0002800A, 4),  # SWITCH
    (0x00021011, 1),  # RUNSTATE running->runnable (prev)
    (0x00021101, 1),  # RUNSTATE runnable->running (next)
]
BLOCK_PV = 45
BLOCK = BLOCK_PV + len(SCHED)


def cpu_stream(
    rng, cpu: int, nrec: int, tsc_hz: float, rate: float, tsc0: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (words uint32, record start word index, record tsc) for one pCPU segment."""
    nblocks = max(1, nrec // BLOCK)
    nrec = nblocks * BLOCK
    w = np.array([t[0] for t in PV_TYPES])
    pv_kind = rng.choice(len(PV_TYPES), size=(nblocks, BLOCK_PV), p=w / w.sum())
    kinds = np.empty((nblocks, BLOCK), dtype=np.int64)
    kinds[:, :BLOCK_PV] = pv_kind
    kinds[:, BLOCK_PV:] = len(PV_TYPES) + np.arange(len(SCHED))
    kinds = kinds.reshape(-1)
    table_ev = np.array([t[1] for t in PV_TYPES] + [s[0] for s in SCHED], dtype=np.uint32)
    table_nw = np.array([t[2] for t in PV_TYPES] + [s[1] for s in SCHED], dtype=np.int64)
    nw = table_nw[kinds]
    size = 3 + nw  # header + tsc + payload
    start = np.zeros(nrec, dtype=np.int64)
    np.cumsum(size[:-1], out=start[1:])
    total = int(start[-1] + size[-1])
    out = rng.integers(0, 1 << 32, size=total, dtype=np.uint64).astype(np.uint32)
    gaps = rng.exponential(tsc_hz / rate, size=nrec).astype(np.uint64) + np.uint64(1)
    tsc = np.uint64(tsc0) + np.cumsum(gaps)
    out[start] = np.uint32(H) | (nw.astype(np.uint32) << np.uint32(28)) | table_ev[kinds]
    out[start + 1] = (tsc & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    out[start + 2] = (tsc >> np.uint64(32)).astype(np.uint32)
    # hypercall op words: v2 with presence bits
    k = kinds
    ops = np.array([23, 26, 24], dtype=np.uint32)  # iret, mmuext_op, vcpu_op
    flags = np.array([0, 0x00400000, 0x00500000], dtype=np.uint32)
    for i in range(3):
        sel = start[k == i]
        out[sel + 3] = ops[i] | flags[i]
    out[start[k == 7] + 3] = 14  # subcall update_va_mapping
    # trap word: vector 13 with error code 0
    out[start[k == 6] + 5] = 0x0000800D
    # scheduler payloads: alternate dom0 vCPU <-> idle
    base = start.reshape(nblocks, BLOCK)[:, BLOCK_PV:]
    blk = np.arange(nblocks)
    to_idle = (blk % 2) == 0
    dom = np.where(to_idle, 0, 0x7FFF).astype(np.uint32)  # prev domain
    ndom = np.where(to_idle, 0x7FFF, 0).astype(np.uint32)
    vcpu = np.uint32(cpu)
    out[base[:, 0] + 3] = dom
    out[base[:, 0] + 4] = vcpu
    out[base[:, 1] + 3] = ndom
    out[base[:, 1] + 4] = vcpu
    out[base[:, 2] + 3] = dom
    out[base[:, 2] + 4] = vcpu
    out[base[:, 2] + 5] = ndom
    out[base[:, 2] + 6] = vcpu
    out[base[:, 3] + 3] = (dom << np.uint32(16)) | vcpu
    out[base[:, 4] + 3] = (ndom << np.uint32(16)) | vcpu
    return out, start, tsc


SEGMENT = 4_000_000  # records per pCPU generated at a time: memory stays bounded


def generate(
    path: str,
    records: int,
    pcpus: int,
    seed: int,
    tsc_hz: float = 2.4e9,
    poll_s: float = 0.1,
    rate: float = 400_000.0,
) -> dict:
    """Write the trace in segments; windows are cut at poll-period boundaries."""
    rng = np.random.default_rng(seed)
    period = int(poll_s * tsc_hz)
    per_cpu = records // pcpus
    tsc0 = [1_000_000] * pcpus
    done = [0] * pcpus
    nrec = 0
    with open(path, "wb") as f:
        while min(done) < per_cpu:
            streams = []
            for c in range(pcpus):
                n = min(SEGMENT, per_cpu - done[c])
                streams.append(cpu_stream(rng, c, n, tsc_hz, rate, tsc0[c]) if n > 0 else None)
            live = [s for s in streams if s is not None]
            lo = min(int(s[2][0]) for s in live) // period
            hi = max(int(s[2][-1]) for s in live) // period + 1
            edges = np.arange(lo, hi + 1, dtype=np.uint64) * np.uint64(period)
            cuts = []
            for s in streams:
                if s is None:
                    cuts.append(None)
                    continue
                words, start, tsc = s
                cuts.append(np.append(start, words.shape[0])[np.searchsorted(tsc, edges)])
            for p in range(len(edges) - 1):
                for c, s in enumerate(streams):
                    if s is None:
                        continue
                    a, b = int(cuts[c][p]), int(cuts[c][p + 1])
                    if b > a:
                        f.write(np.array([0x2001F003, c, (b - a) * 4], np.uint32).tobytes())
                        f.write(s[0][a:b].tobytes())
            for c, s in enumerate(streams):
                if s is not None:
                    tsc0[c] = int(s[2][-1])
                    done[c] += s[1].shape[0]
                    nrec += s[1].shape[0]
    return {"records": nrec, "pcpus": pcpus}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--records", type=int, default=20_000_000)
    ap.add_argument("--pcpus", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    t = time.perf_counter()
    info = generate(a.out, a.records, a.pcpus, a.seed)
    print(
        f"wrote {a.out}: {info['records']:,} records on {a.pcpus} pCPUs in "
        f"{time.perf_counter() - t:.1f} s"
    )


if __name__ == "__main__":
    main()
