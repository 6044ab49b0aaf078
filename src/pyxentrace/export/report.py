"""``pyxentrace report``: one self-contained HTML page (inline CSS, JS and SVG; nothing fetched).

Two streaming passes over the trace: analysis's summary (PV events, hypercalls, traps,
page-fault error codes and top instruction pointers per vCPU; runstates per vCPU and domain),
then a time-binned pass (:mod:`.report_data`) for PV event rates and lost-record markers. The
runstate timeline places the summary's own runstate intervals in time, so chart and table
agree. Standard input is spooled to a temporary file first.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from .. import __version__
from ..analysis.summary import compute_summary
from ..errors import XentraceError
from ..format import events as ev
from ..format.meta import resolve_clock
from ..format.xen_names import PFEC_BITS
from ..reader.info import STRUCTURAL
from .progress import Progress, Warnings
from .report_assets import CSS, JS
from .report_data import STATE_NAMES, TimelineCollector, add_summary_runstates
from .source import TraceSource

#: Fill of each runstate in the timeline: a colour, or ``hatch:STRIPE:BACKGROUND``.
STATE_COLORS = {
    "running": "#2e7d32",
    "runnable": "#f9a825",
    "blocked": "#90a4ae",
    "offline": "#424242",
    "lost": "hatch:#6d4c41:#efebe9",
    "queued": "#7e57c2",
    "init": "#b39ddb",
    "unknown": "hatch:#b0b7bb:#ffffff",
}
assert set(STATE_COLORS) == set(STATE_NAMES)
#: Record classes the report analyses (the rest are counted in the overview only).
ANALYSED_CLASSES = ("pv", "sched", "gen")
TOP_HYPERCALLS = 12
TOP_PFEC = 16


@dataclass
class ReportResult:
    path: str
    bytes: int
    data: dict
    warnings: list[str]
    error: str | None


def pfec_label(code: int) -> str:
    bits = [n for bit, n in PFEC_BITS.items() if code & bit]
    return f"{code:#x} " + ("|".join(bits) if bits else "(none)")


# ---- data
def _hypercall_mix(vcpus: dict) -> dict:
    totals: dict[str, int] = {}
    per = []
    for label, v in vcpus.items():
        pv = v.get("pv", {})
        names = pv.get("hypercall_names", {})
        counts = {names.get(op, op): c for op, c in pv.get("hypercalls", {}).items()}
        if not counts:
            continue
        for n, c in counts.items():
            totals[n] = totals.get(n, 0) + c
        per.append((label, counts))
    top = [n for n, _c in sorted(totals.items(), key=lambda kv: -kv[1])[:TOP_HYPERCALLS]]
    out = []
    for label, counts in per:
        row = {n: counts[n] for n in top if counts.get(n)}
        other = sum(c for n, c in counts.items() if n not in row)
        if other:
            row["other"] = other
        out.append({"label": label, "counts": row, "total": sum(counts.values())})
    names = top + (["other"] if any("other" in r["counts"] for r in out) else [])
    return {"names": names, "vcpus": out}


def _pfec(vcpus: dict) -> list[dict]:
    agg: dict[int, int] = {}
    for v in vcpus.values():
        for code, n in v.get("pv", {}).get("page_fault_error_codes", {}).items():
            c = int(code, 16)
            agg[c] = agg.get(c, 0) + n
    rows = sorted(agg.items(), key=lambda kv: -kv[1])[:TOP_PFEC]
    return [{"label": pfec_label(c), "code": c, "count": n} for c, n in rows]


def _top_eips(vcpus: dict, top: int) -> list[dict]:
    rows = []
    for label, v in vcpus.items():
        for kind, lst in v.get("pv", {}).get("top_eips", {}).items():
            for e in lst:
                rows.append({"eip": e["eip"], "count": e["count"], "kind": kind, "vcpu": label})
    rows.sort(key=lambda r: -r["count"])
    return rows[:top]


def trace_facts(report, path: str) -> dict:
    """What the reader says about the file: rows, wrap markers, records per class, anomalies."""
    classes: dict[str, int] = {}
    for _cpu, event, n, _b in report.volume():
        if event == ev.TRC_TRACE_WRAP_BUFFER:
            continue
        c = ev.class_name(int(event))
        classes[c] = classes.get(c, 0) + int(n)
    anomalies = None
    if report.anomaly_count:
        first = report.anomalies[0] if report.anomalies else None
        anomalies = {
            "count": report.anomaly_count,
            "first": f"offset {first.offset:,}: {first.message}" if first else "",
            "damaged": any(a.code in STRUCTURAL for a in report.anomalies),
        }
    return {
        "path": path,
        "rows": report.rows,
        "wrap_records": report.wrap_records,
        "lost_records": report.lost_records,
        "lost_count": report.lost_count,
        "records_by_class": dict(sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "anomalies": anomalies,
    }


def build_data(summary: dict, tl: TimelineCollector, top: int, facts: dict | None = None) -> dict:
    vcpus = summary.get("vcpus", {})
    return {
        "trace": facts or {},
        "state_colors": STATE_COLORS,
        "timeline": tl.timeline(),
        "hypercalls": _hypercall_mix(vcpus),
        "rates": tl.rate_series(),
        "pfec": _pfec(vcpus),
        "top_eips": _top_eips(vcpus, top),
        "lost": tl.lost,
        "lost_bins": tl.lost_series(),
        "lost_total": tl.lost_total,
    }


# ---- HTML
def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x) -> str:
    if x is None:
        return "<td></td>"
    if isinstance(x, float):
        txt = f"{x:,.3f}" if abs(x) < 1e6 else f"{x:,.0f}"
    else:
        txt = f"{x:,}"
    return f'<td data-v="{x}">{txt}</td>'


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def _table(tid: str, head: list[str], rows: list[list], left: int = 1, mono=()) -> str:
    if not rows:
        return _empty("Nothing to show.")
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = []
    for r in rows:
        cells = []
        for i, v in enumerate(r):
            if i < left or isinstance(v, str):
                cls = "l" + (" mono" if i in mono else "")
                cells.append(f'<td class="{cls}">{_e(v)}</td>')
            else:
                cells.append(_num(v))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="tablewrap"><table class="sortable" id="{tid}"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


PV_COLUMNS = (
    "hypercall",
    "hypercall_subcall",
    "trap",
    "page_fault",
    "forced_invalid_op",
    "emulate_privop",
    "paging_fixup",
    "gdt_ldt_mapping_fault",
    "ptwr_emulation",
    "math_state_restore",
    "total",
)


def _pv_table(vcpus: dict) -> str:
    rows = []
    for label, v in vcpus.items():
        pv = v.get("pv", {})
        if not pv.get("total"):
            continue
        rate = pv.get("rate_per_s")
        rows.append([label, *(pv.get(c, 0) for c in PV_COLUMNS), rate])
    if not rows:
        return _empty("No PV records in this trace.")
    head = ["vCPU", *(c.replace("_", " ") for c in PV_COLUMNS), "per s"]
    return _table("tbl-pv", head, rows)


def _runstate_table(vcpus: dict) -> str:
    rows = []
    for label, v in vcpus.items():
        for state, s in v.get("runstates", {}).items():
            rows.append(
                [
                    label,
                    state,
                    s["count"],
                    s["seconds"],
                    s["avg_cycles"],
                    s["p5"],
                    s["p50"],
                    s["p95"],
                ]
            )
    if not rows:
        return _empty("No runstate records in this trace.")
    head = ["vCPU", "state", "intervals", "seconds", "avg cycles", "p5", "p50", "p95"]
    return _table("tbl-runstates", head, rows, left=2)


def domain_state_name(name: str) -> str:
    """xenalyze's domain runstate names, spelled one way (``full_contention`` -> ``full
    contention``, like ``partial contention``)."""
    return name.replace("_", " ")


def _domain_table(domains: dict) -> str:
    rows = []
    for label, d in domains.items():
        for state, s in d.get("runstates", {}).items():
            rows.append(
                [label, domain_state_name(state), s["count"], s["seconds"], s["avg_cycles"]]
            )
    if not rows:
        return _empty("No runstate records in this trace.")
    return _table(
        "tbl-domains", ["domain", "state", "intervals", "seconds", "avg cycles"], rows, left=2
    )


def _hypercall_table(vcpus: dict) -> str:
    rows = []
    for label, v in vcpus.items():
        pv = v.get("pv", {})
        names = pv.get("hypercall_names", {})
        subs = pv.get("subcalls", {})
        for op, c in pv.get("hypercalls", {}).items():
            rows.append(
                [label, names.get(op, op), int(op) if op.isdigit() else op, c, subs.get(op, 0)]
            )
    if not rows:
        return ""
    return _table(
        "tbl-hypercalls", ["vCPU", "hypercall", "op", "calls", "as sub-call"], rows, left=2
    )


def _overview(summary: dict, facts: dict) -> list[tuple[str, str]]:
    vcpus = summary.get("vcpus", {})
    dur = summary.get("duration_s") or 0.0
    rows = facts.get("rows", summary.get("records", 0))
    by_class = facts.get("records_by_class", {})
    classes = " · ".join(f"{c} {n:,}" for c, n in by_class.items())
    lost_n, lost_m = facts.get("lost_count", 0), facts.get("lost_records", 0)
    return [
        ("trace", summary.get("path", "")),
        ("duration", f"{dur:.6f} s"),
        ("TSC rate", f"{summary.get('cpu_hz', 0) / 1e9:.3f} GHz ({summary.get('cpu_hz_source')})"),
        ("records", f"{rows:,} (one row each in pyxentrace export)"),
        ("records by class", classes or "none"),
        ("pCPUs", ", ".join(map(str, summary.get("pcpus", []))) or "none"),
        ("vCPUs", f"{len(vcpus)}"),
        (
            "lost records",
            f"{lost_n:,} records dropped by the hypervisor ({lost_m:,} lost-records markers, "
            "counted above)"
            if lost_m
            else "none",
        ),
        (
            "wrap records",
            f"{facts.get('wrap_records', 0):,} buffer-wrap markers (not records: not counted "
            "above, not exported)",
        ),
    ]


def _notes(summary: dict, facts: dict, warnings: list[str]) -> list[str]:
    """The page's warnings: the caller's, then the summary's, with lost records said once."""
    out = list(warnings)
    lost_n, lost_m = facts.get("lost_count", 0), facts.get("lost_records", 0)
    if lost_m:
        out.append(
            f"The hypervisor dropped {lost_n:,} records ({lost_m:,} lost-records markers): the "
            "counts here miss them, and vCPUs are in the runstate \u201clost\u201d until they "
            "are seen running again."
        )
    out += [n for n in summary.get("notes", []) if "lost-records records" not in n]
    by_class = facts.get("records_by_class", {})
    skipped = {c: n for c, n in by_class.items() if c not in ANALYSED_CLASSES}
    if skipped:
        hvm = skipped.pop("hvm", 0)
        parts = [f"{hvm:,} HVM records"] if hvm else []
        if skipped:
            n = sum(skipped.values())
            parts.append(f"{n:,} {'/'.join(skipped)} records")
        out.append(
            f"{' and '.join(parts)} are not analysed here (this report covers PV guests and "
            "scheduling); pyxentrace export keeps every record."
        )
    return out


def _banner(facts: dict) -> str:
    a = facts.get("anomalies")
    if not a:
        return ""
    more = a["count"] - 1
    tail = f" (and {more:,} more anomal{'y' if more == 1 else 'ies'})" if more > 0 else ""
    if a["damaged"]:
        head = "This trace file is damaged"
        what = (
            "Everything below comes from the records that could be read; records in the "
            "damaged part are missing, so counts and timelines are incomplete."
        )
    else:
        head = "The reader found problems in this trace"
        what = "The records concerned may be counted or placed wrongly."
    return (
        f'<div class="banner" id="damage" role="alert"><strong>{_e(head)}:</strong> '
        f"{_e(a['first'])}{_e(tail)}. {_e(what)}</div>"
    )


def render_html(title: str, summary: dict, data: dict, warnings: list[str]) -> str:
    vcpus = summary.get("vcpus", {})
    facts = data.get("trace", {})
    dur = summary.get("duration_s") or 0.0
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _overview(summary, facts))
    warn = ""
    notes = _notes(summary, facts, warnings)
    if notes:
        warn = "<ul>" + "".join(f'<li class="warn">{_e(w)}</li>' for w in notes) + "</ul>"
    tl = data["timeline"]
    omitted = f" {tl['omitted']} more vCPUs are not drawn." if tl.get("omitted") else ""
    eips = [[r["vcpu"], r["kind"], r["eip"], r["count"]] for r in data["top_eips"]]
    lost_rows = [[f"{m['t']:.6f}", m["cpu"], m["count"]] for m in data["lost"]]
    pfec_rows = [[r["label"], r["count"]] for r in data["pfec"]]
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")

    def chart(cid: str, has: bool, empty: str, note: str = "", after: str = "") -> str:
        if not has:
            return _empty(empty)
        return f'{note}<div class="chart" id="{cid}"></div>{after}'

    lost_total = data["lost_total"]
    engine = summary.get("xenalyze_engine", {})
    odd = engine.get("strange_conditions", 0) + engine.get("fatal_conditions", 0)
    if odd:
        omitted += (
            f" {odd:,} scheduling inconsistencies (see the notes): the intervals of a vCPU "
            "before one may be drawn shifted in time (the totals stay those of the table)."
        )
    sections = [
        ("overview", "Overview", f'<dl class="kv">{dl}</dl>{warn}'),
        (
            "timeline",
            "Runstates per vCPU",
            chart(
                "chart-timeline",
                bool(tl["vcpus"]),
                "No runstate records in this trace.",
                '<p class="note">Share of each time bin a vCPU spent in each runstate - the '
                "intervals the summary table adds up (xenalyze's accounting): "
                "<em>lost</em> from lost records until the vCPU is seen running again, "
                "<em>unknown</em> where no interval is known (before a vCPU's first runstate "
                "record, and from its last one to the end of the trace)."
                + (" Black marks: lost records." if data["lost"] else "")
                + f"{omitted}</p>",
            ),
        ),
        (
            "hypercalls",
            "Hypercall mix per vCPU",
            chart(
                "chart-hypercalls",
                bool(data["hypercalls"]["vcpus"]),
                "No hypercall records in this trace.",
                after=_hypercall_table(vcpus),
            ),
        ),
        (
            "rates",
            "PV event rates over time",
            chart(
                "chart-rates",
                bool(data["rates"]["series"]),
                "No PV records in this trace.",
                '<p class="note">Records per second in each time bin; grey bands: bins with '
                "lost records.</p>",
            ),
        ),
        (
            "pagefaults",
            "Page-fault error codes",
            chart(
                "chart-pfec",
                bool(pfec_rows),
                "No page faults in this trace.",
                '<p class="note">P present, W write, U user, RSVD reserved bit, I instruction '
                "fetch, PK protection key, SS shadow stack.</p>",
                _table("tbl-pfec", ["error code", "page faults"], pfec_rows),
            ),
        ),
        (
            "eips",
            "Top guest instruction pointers",
            _table("tbl-eips", ["vCPU", "event", "eip", "count"], eips, left=3, mono=(2,))
            if eips
            else _empty("No guest instruction pointers in this trace."),
        ),
        (
            "lost",
            "Lost records",
            (
                f'<p class="note">{lost_total:,} records dropped by the hypervisor '
                f"({len(lost_rows):,} lost-records markers).</p>"
                + _table("tbl-lost", ["time (s)", "pCPU", "records lost"], lost_rows, left=1)
            )
            if lost_rows
            else _empty("No records were lost."),
        ),
        (
            "summary",
            "Summary tables",
            "<h3>PV events per vCPU</h3>"
            + _pv_table(vcpus)
            + "<h3>Runstates per vCPU</h3>"
            + _runstate_table(vcpus)
            + "<h3>Runstates per domain</h3>"
            + _domain_table(summary.get("domains", {})),
        ),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(t)}</h2>{c}</section>' for sid, t, c in sections)
    rows = facts.get("rows", summary.get("records", 0))
    sub = (
        f"{_e(summary.get('path', ''))} · {dur:.3f} s · {rows:,} "
        f"records · generated by pyxentrace {__version__}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><div class="sub">{sub}</div></header>'
        f"{_banner(facts)}<nav>{nav}</nav><main>{body}</main>"
        f'<script type="application/json" id="xt-data">{payload}</script>'
        f"<script>{JS}</script></body></html>\n"
    )


# ---- entry point
def _spool_stdin() -> str:
    fd, path = tempfile.mkstemp(prefix="pyxentrace-", suffix=".bin")
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 16 << 20)
    return path


def write_report(
    trace: str | os.PathLike,
    out: str,
    *,
    cpu_hz: float | None = None,
    bins: int = 600,
    top: int = 25,
    progress: bool | None = None,
) -> ReportResult:
    """Write the HTML report of ``trace`` to ``out`` (``-``: stdout)."""
    trace = os.fspath(trace)
    spooled = None
    if trace == "-":
        spooled = trace = _spool_stdin()
    try:
        return _write(trace, out, cpu_hz, bins, top, progress, spooled is not None)
    finally:
        if spooled:
            os.unlink(spooled)


def _write(trace, out, cpu_hz, bins, top, progress, from_stdin) -> ReportResult:
    clock = resolve_clock(trace, cpu_hz)
    size = os.path.getsize(trace)
    bar = Progress("report", 2 * size, enabled=progress is not False, force=bool(progress))
    with bar:
        if size > (64 << 20):
            bar.start()  # the summary pass reports no progress of its own
        summ = compute_summary(trace, clock=clock)
        sd = summ.to_dict(top=10)
        if from_stdin:
            sd["path"] = "-"
        bar.update(size)
        span_ns = int(round(max(0, summ.last_tsc - summ.first_tsc) * 1e9 / clock.hz))
        tl = TimelineCollector(span_ns, bins, clock.hz)
        add_summary_runstates(tl, summ, summ.first_tsc)
        src = TraceSource(trace, cpu_hz)
        for rows in src:
            tl.add(rows)
            bar.update(size + src.done)
    # lost records and anomalies have their own places on the page
    page_warns = [w for w in (src.clock.warning(),) if w]
    if src.report.late_records:
        page_warns.append(f"{src.report.late_records:,} records arrived too late for time order")
    warns = Warnings()
    src.warnings(warns)
    facts = trace_facts(src.report, sd["path"])
    data = build_data(sd, tl, top, facts)
    name = "stdin" if from_stdin else os.path.basename(trace)
    page = render_html(f"Xen trace report: {name}", sd, data, page_warns)
    try:
        if out == "-":
            sys.stdout.write(page)
            sys.stdout.flush()
        else:
            with open(out, "w", encoding="utf-8") as f:
                f.write(page)
    except OSError as e:
        raise XentraceError(f"cannot write: {e.strerror}", path=out) from None
    return ReportResult(out, len(page.encode()), data, warns.messages, src.damage())
