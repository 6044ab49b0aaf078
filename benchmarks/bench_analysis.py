"""Benchmark the analyses on a large trace: summary time, dump lines/s, peak RSS.

    python benchmarks/bench_analysis.py [TRACE] [--repeat 3] [--out DIR]

TRACE defaults to benchmarks/data/bench20m.bin (``python benchmarks/gen_trace.py`` makes it).
Each measurement runs in a fresh process (so peak RSS is its own) and is repeated; the first
repeat warms numba's cache and the file cache, the best of the rest is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "data", "bench20m.bin")


def work(kind: str, trace: str, out_dir: str) -> dict:
    """One measurement in this process; returns seconds, counts and peak RSS."""
    import io
    import resource

    from pyxentrace.analysis.dump import write_dump
    from pyxentrace.analysis.summary import compute_summary
    from pyxentrace.reader import TraceReader

    # warm: load the compiled kernels from numba's cache before the clock starts
    small = os.path.join(HERE, "..", "tests", "data", "pv_trace.bin")
    if os.path.exists(small):
        compute_summary(small)
        write_dump(small, io.BytesIO(), fmt="jsonl" if kind == "dump-jsonl" else "text")
    t0 = time.perf_counter()
    if kind == "read-unordered" or kind == "read-ordered":
        n = 0
        for b in TraceReader(trace, ordered=kind == "read-ordered").batches():
            n += len(b)
        res = {"rows": n}
    elif kind.startswith("summary"):
        s = compute_summary(trace, eip_capacity=0 if kind == "summary-no-eips" else 1 << 14)
        res = {"rows": int(s.report.rows), "vcpus": len(s.keys())}
    elif kind.startswith("dump"):
        fmt = "jsonl" if kind == "dump-jsonl" else "text"
        path = os.path.join(out_dir, f"bench-dump.{fmt}")
        with open(path, "wb") as f:
            r = write_dump(trace, f, fmt=fmt)
        res = {"lines": r.lines, "bytes": os.path.getsize(path)}
        os.unlink(path)
    else:
        raise SystemExit(f"unknown measurement {kind}")
    res["seconds"] = time.perf_counter() - t0
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def run(kind: str, trace: str, out_dir: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, trace, "--out", out_dir]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode:
        raise SystemExit(f"{kind} failed:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", nargs="?", default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="/tmp")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(work(a.worker, a.trace, a.out)))
        return
    if not os.path.exists(a.trace):
        raise SystemExit(f"{a.trace}: missing (python benchmarks/gen_trace.py {a.trace})")
    size = os.path.getsize(a.trace)
    print(f"trace {a.trace}: {size / 1e6:.0f} MB, {os.cpu_count()} CPUs")
    kinds = (
        "read-unordered",
        "read-ordered",
        "summary",
        "summary-no-eips",
        "dump-text",
        "dump-jsonl",
    )
    for kind in kinds:
        runs = [run(kind, a.trace, a.out) for _ in range(max(2, a.repeat))]
        best = min(runs[1:], key=lambda r: r["seconds"])
        line = f"{kind:16s} {best['seconds']:7.3f} s (warm, best of {len(runs) - 1})"
        if "lines" in best:
            line += f"  {best['lines'] / best['seconds'] / 1e6:5.2f} M lines/s"
            line += f"  {best['bytes'] / best['seconds'] / 1e6:6.0f} MB/s written"
        else:
            line += f"  {best['rows'] / best['seconds'] / 1e6:6.1f} M records/s"
        line += f"  peak RSS {max(r['peak_rss_mb'] for r in runs):6.0f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
