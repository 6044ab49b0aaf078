"""Rich tables for ``pyxentrace info``."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..format import events as ev
from ..reader.info import TraceInfo


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


def render_info(ti: TraceInfo, console: Console | None = None) -> None:
    con = console or Console()
    r = ti.report
    clock = ti.clock
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("file", ti.path)
    head.add_row("size", f"{r.size:,} bytes ({_mb(r.size)})" if r.size is not None else "?")
    head.add_row("records", f"{r.records:,} (+{r.windows:,} CPU_CHANGE window headers)")
    head.add_row("pCPUs", ", ".join(map(str, r.pcpus)) or "none")
    hz = f"{clock.hz / 1e9:.3f} GHz ({clock.source})"
    head.add_row("time span", f"{ti.duration_s:.6f} s at {hz}")
    head.add_row(
        "out of order",
        f"pCPU windows up to {ti.max_disorder_cycles / clock.hz * 1e3:.1f} ms out of time order",
    )
    head.add_row("wrap records", f"{r.wrap_records:,} ({r.wrap_bytes:,} bytes, skipped)")
    head.add_row(
        "lost records",
        f"{r.lost_records:,} LOST_RECORDS rows; the hypervisor dropped {r.lost_count:,} records",
    )
    head.add_row("untimed", f"{r.untimed:,} records without TSC")
    if r.tsc_backwards:
        head.add_row("TSC backwards", f"{r.tsc_backwards:,} records")
    head.add_row(
        "anomalies",
        f"{r.anomaly_count:,}"
        + (f" ({r.skipped_bytes:,} bytes skipped)" if r.skipped_bytes else ""),
    )
    con.print(head)

    t = Table(title="Volume per class", title_justify="left")
    for c in ("class", "records", "bytes"):
        t.add_column(c, justify="left" if c == "class" else "right")
    for cls, (n, b) in sorted(ti.per_class.items(), key=lambda kv: -kv[1][1]):
        t.add_row(cls, f"{n:,}", f"{b:,}")
    con.print(t)

    t = Table(title="Volume per pCPU and class (bytes)", title_justify="left")
    classes = [c for c in (*ev.CLASSES, "guest", "unknown") if c in ti.per_class]
    t.add_column("pCPU", justify="right")
    for c in classes:
        t.add_column(c, justify="right")
    for cpu, d in sorted(ti.per_cpu_class.items()):
        t.add_row(str(cpu), *(f"{d[c][1]:,}" if c in d else "" for c in classes))
    con.print(t)

    t = Table(title="Records per event", title_justify="left")
    for c in ("event", "name", "class", "records", "bytes"):
        t.add_column(c, justify="right" if c in ("records", "bytes") else "left")
    for e, (n, b) in sorted(ti.per_event.items(), key=lambda kv: -kv[1][0]):
        t.add_row(f"{e:#010x}", ev.event_name(e), ev.class_name(e), f"{n:,}", f"{b:,}")
    con.print(t)

    if r.anomalies:
        t = Table(title=f"Anomalies ({r.anomaly_count:,})", title_justify="left")
        t.add_column("offset", justify="right")
        t.add_column("message")
        for a in r.anomalies[:50]:
            t.add_row(f"{a.offset:,}", a.message)
        if r.anomaly_count > 50:
            t.add_row("…", f"{r.anomaly_count - 50:,} more (see --json)")
        con.print(t)
