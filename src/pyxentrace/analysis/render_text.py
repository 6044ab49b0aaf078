"""``summary --format text``: rich tables per domain and vCPU for a terminal."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..format import xen_names as xn
from . import pvstats as PS
from .keys import DEFAULT_DOMAIN, DOMAIN_SHIFT, key_label
from .summary import PFEC_NAMES, RunstateStat, Summary, _key_order

#: (minor, label) in the order the PV table lists them
PV_ROWS = (
    (1, "hypercall (v1)"),
    (13, "hypercall"),
    (14, "hypercall sub-call"),
    (3, "trap"),
    (4, "page fault"),
    (5, "forced invalid op"),
    (6, "emulate privop"),
    (7, "emulate 4GB"),
    (8, "math state restore"),
    (9, "paging fixup"),
    (10, "GDT/LDT mapping fault"),
    (11, "PTWR emulation"),
    (12, "PTWR emulation (PAE)"),
)


def _num(n: int) -> str:
    return f"{n:,}"


def _rate(n: int, dur: float) -> str:
    return f"{n / dur:,.1f}" if dur > 0 else "-"


def _rs_table(title: str, stats: list[RunstateStat], sub: list[RunstateStat], hz: float) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for col in ("state", "count", "time s", "avg cycles", "p5", "p50", "p95"):
        t.add_column(col, justify="left" if col == "state" else "right")
    for s in stats:
        t.add_row(
            s.name,
            _num(s.count),
            f"{s.cycles / hz:.4f}",
            _num(s.avg),
            _num(s.p5),
            _num(s.p50),
            _num(s.p95),
        )
        if s.name == "runnable":
            for r in sub:
                t.add_row(
                    f"  {r.name}",
                    _num(r.count),
                    f"{r.cycles / hz:.4f}",
                    _num(r.avg),
                    _num(r.p5),
                    _num(r.p50),
                    _num(r.p95),
                    style="dim",
                )
    return t


def _pv_table(summary: Summary, key: int, dur: float) -> Table | None:
    counts = summary.pv_counts(key)
    if not counts:
        return None
    t = Table(title="PV events", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    t.add_column("event")
    t.add_column("count", justify="right")
    t.add_column("per s", justify="right")
    for m, label in PV_ROWS:
        if counts.get(m):
            t.add_row(label, _num(counts[m]), _rate(counts[m], dur))
    for m in sorted(set(counts) - {m for m, _ in PV_ROWS}):
        t.add_row(f"PV minor {m}", _num(counts[m]), _rate(counts[m], dur))
    return t


def _hc_table(summary: Summary, key: int, dur: float) -> Table | None:
    v1, v2, sub = (summary.hypercalls(key, k) for k in range(3))
    ops = sorted(set(v1) | set(v2) | set(sub))
    if not ops:
        return None
    t = Table(title="Hypercalls", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for col in ("op", "name", "calls", "per s", "in multicalls"):
        t.add_column(col, justify="left" if col == "name" else "right")
    rows = sorted(ops, key=lambda o: -(v1.get(o, 0) + v2.get(o, 0) + sub.get(o, 0)))
    for op in rows:
        n = v1.get(op, 0) + v2.get(op, 0)
        name = "other (64+)" if op >= PS.HC_OPS else xn.hypercall_name(op)
        t.add_row(
            ">=64" if op >= PS.HC_OPS else str(op),
            name,
            _num(n),
            _rate(n, dur),
            _num(sub.get(op, 0)),
        )
    return t


def _trap_table(summary: Summary, key: int) -> Table | None:
    traps = summary.traps(key)
    if not traps:
        return None
    t = Table(title="Traps", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for col in ("vector", "name", "count"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for v, n in sorted(traps.items()):
        name = "other (256+)" if v >= PS.NVEC else xn.vector_name(v)
        if v in xn.EXCEPTION_VECTORS:
            name += f" {xn.EXCEPTION_VECTORS[v][1]}"
        t.add_row(str(v), name, _num(n))
    return t


def _pf_table(summary: Summary, key: int) -> Table | None:
    pf = summary.pfec(key)
    if not pf:
        return None
    t = Table(
        title="Page-fault error codes", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False
    )
    for col in ("code", "bits", "count"):
        t.add_column(col, justify="left" if col == "bits" else "right")
    for code, n in sorted(pf.items(), key=lambda kv: -kv[1]):
        bits = ",".join(PFEC_NAMES[b] for b in PFEC_NAMES if code >> b & 1) or "not-present read"
        t.add_row(f"{code:#x}", bits, _num(n))
    return t


def _eip_table(summary: Summary, key: int, top: int) -> Table | None:
    tops = summary.slots.top_eips(summary.slots.slot(key), top)
    if not tops:
        return None
    t = Table(title=f"Top {top} EIPs", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    for col in ("event", "eip", "count"):
        t.add_column(col, justify="right" if col == "count" else "left")
    for etype, lst in tops.items():
        for j, (eip, n) in enumerate(lst):
            t.add_row(etype if j == 0 else "", f"{eip:#x}", _num(n))
    return t


def render_text(summary: Summary, top: int = 5, width: int = 110) -> str:
    """The text summary (rich tables rendered to a string)."""
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=False, color_system=None, highlight=False)
    hz = summary.cpu_hz
    dur = summary.duration_s
    r = summary.report
    head = Text()
    head.append(f"{summary.path}\n", style="bold")
    head.append(
        f"duration {dur:.6f} s at {hz / 1e9:.3f} GHz ({summary.clock.source}); "
        f"{_num(r.records)} records on pCPUs {sorted(summary.pcpu_rows)}; "
        f"lost-records records {r.lost_records} ({_num(r.lost_count)} records dropped)"
    )
    con.print(head)
    for note in summary.notes:
        con.print(f"note: {note}")
    keys = sorted(set(summary.keys(0)) | set(summary.runstate_keys()), key=_key_order)
    for key in keys:
        parts = []
        rs = summary.vcpu_runstates(key)
        if rs is not None and rs.states:
            parts.append(_rs_table("Runstates", rs.states, rs.runnable, hz))
        for tab in (
            _pv_table(summary, key, dur),
            _hc_table(summary, key, dur),
            _trap_table(summary, key),
            _pf_table(summary, key),
            _eip_table(summary, key, top),
        ):
            if tab is not None:
                parts.append(tab)
        if not parts:
            continue
        total = sum(summary.pv_counts(key).values())
        title = key_label(key)
        if total:
            title += f"  -  {_num(total)} PV events ({_rate(total, dur)}/s)"
        if key >= 0 and key >> DOMAIN_SHIFT == DEFAULT_DOMAIN:
            title += "  [before the first scheduling record on this pCPU]"
        elif key < 0:
            title += "  [no vCPU current on the pCPU]"
        con.print(Panel(Group(*parts), title=title, title_align="left", box=box.ROUNDED))
    return buf.getvalue()
