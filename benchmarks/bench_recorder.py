"""Recorder benchmark: simulated events per second end to end into the trace file, and the
largest event rate the recorder sustains with zero loss at the default buffer size (32 pages
per pCPU).

    python benchmarks/bench_recorder.py [--seconds 2] [--keep DIR]

1. producer alone: the machine filling big buffers with no recorder (generation rate, per wall
   second and per CPU second - the latter hardly moves when other work shares the CPUs);
2. end to end, as fast as possible: machine + recorder processes -> file (records/s, lost);
3. zero-loss search: the same, paced (--speed) at rising event rates; the largest lossless one;
4. the default ``dom0`` host in real time (the demo's load).
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from pyxentrace.hypervisor import TraceBuffers
from pyxentrace.hypervisor.machine import Machine
from pyxentrace.hypervisor.workloads import WorkloadRunner, get_profile
from pyxentrace.reader import read
from pyxentrace.recorder.simulate import SimulateConfig, simulate

STORM = "hypercall-storm"


def producer_alone(seconds: float) -> tuple[float, float]:
    prof = get_profile(STORM)
    tb = TraceBuffers.create(nr_cpus=prof.pcpus)
    try:
        tb.set_size(8192)
        m = Machine(tb)
        for d in prof.domain_specs("x86_64"):
            m.add_domain(d.domid, d.vcpus, d.width)
        runner = WorkloadRunner(m, prof, 0)
        t0, c0 = time.perf_counter(), time.process_time()
        st = runner.run(seconds, speed=0)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return st.offered / wall, st.offered / cpu
    finally:
        tb.close()


def run(out: str, profile: str, duration: float, speed: float) -> dict:
    t0 = time.perf_counter()
    res = simulate(
        SimulateConfig(
            output=out, profile=profile, duration_s=duration, speed=speed, recorder_args=["-q"]
        )
    )
    total = time.perf_counter() - t0
    batch, report = read(out)
    c = res.counters
    return {
        "wall": res.wall_s,  # the run itself, without process start-up and the final drain
        "total": total,
        "offered": c["offered"],
        "written": c["written"],
        "lost": c["lost"],
        "in_file": len(batch) - report.lost_records,
        "bytes": os.path.getsize(out),
        "sim": res.sim_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="wall seconds per run")
    ap.add_argument("--keep", help="directory for the traces (default: a temporary one)")
    args = ap.parse_args()
    tmp = args.keep or tempfile.mkdtemp(prefix="bench-recorder-")
    out = os.path.join(tmp, "bench.bin")

    load = os.getloadavg()[0]
    print(
        f"{os.cpu_count()} CPUs, load average {load:.2f} (other work competes with the "
        "machine and the recorder for the CPUs)"
    )
    rate, per_cpu = producer_alone(1.0)
    print(
        f"producer alone ({STORM}, bulk path, no recorder): {rate / 1e6:.2f} M events/s "
        f"({per_cpu / 1e6:.2f} M per CPU second)"
    )

    r = run(out, STORM, 2.0, 0)
    print(
        f"end to end, as fast as possible ({STORM}, 32 pages/pCPU): "
        f"{r['in_file'] / r['wall'] / 1e6:.2f} M events/s into the file while running, "
        f"{r['in_file'] / r['total'] / 1e6:.2f} M/s counting start-up and final drain "
        f"({r['in_file']:,} records, {r['bytes'] / 1e6:.1f} MB in {r['total']:.2f} s), "
        f"lost {r['lost']:,} ({100 * r['lost'] / max(r['offered'], 1):.3f} %)"
    )

    sim_rate = r["offered"] / r["sim"]  # events per simulated second of the profile
    best = None
    for target in (0.5e6, 0.75e6, 1.0e6, 1.25e6, 1.5e6, 1.75e6, 2.0e6, 2.5e6, 3.0e6):
        speed = target / sim_rate
        r = run(out, STORM, args.seconds * speed, speed)
        achieved = r["offered"] / r["wall"]
        print(
            f"  paced at {target / 1e6:.2f} M/s: achieved {achieved / 1e6:.2f} M events/s, "
            f"lost {r['lost']:,}"
        )
        if r["lost"] == 0:
            best = max(best or 0.0, achieved)
        elif best is not None:
            break
    if best is None:
        print("largest lossless rate: none of the rates tried")
    else:
        print(
            f"largest event rate sustained with zero loss (32 pages/pCPU): "
            f"{best / 1e6:.2f} M events/s"
        )

    r = run(out, "dom0", 2.0, 1.0)
    print(
        f"dom0 host in real time: {r['offered'] / r['sim'] / 1e3:.0f} k events/s simulated, "
        f"{r['wall']:.2f} s wall for {r['sim']:.1f} s, lost {r['lost']:,}"
    )


if __name__ == "__main__":
    main()
