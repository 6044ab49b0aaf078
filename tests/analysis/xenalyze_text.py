"""A parser for xenalyze's ``--summary`` text (the oracle outputs in tests/data).

It splits the text into the blocks the analysis tests compare: total time, log volume, and per
domain / vCPU the runstate lines (with cpu affinity) and the ``PV events:`` block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RUNSTATE_RE = re.compile(
    r"^\s+(?P<name>[a-z_ ]+?):\s+(?P<count>\d+)\s+(?P<sec>[\d.]+)s\s+(?P<avg>-?\d+)"
    r" \{\s*(?P<p5>-?\d+)\|\s*(?P<p50>-?\d+)\|\s*(?P<p95>-?\d+)\}$"
)
PV_LINE_RE = re.compile(r"^  (?P<name>\S.*?)  (?P<count>\d+)$")
HC_LINE_RE = re.compile(r"^    (?P<name>.{29})\[(?P<op>[ \d]{2,})\]: +(?P<count>\d+)$")
TRAP_LINE_RE = re.compile(r"^    \[(?P<vec>\d+)\] (?P<count>\d+)$")


@dataclass
class PvEntry:
    name: str
    count: int
    table: dict[int, int] = field(default_factory=dict)  # hypercall op or trap vector -> count


@dataclass
class Vcpu:
    runstate_lines: list[str] = field(default_factory=list)  # " Runstates:" block incl. affinity
    pv: list[PvEntry] = field(default_factory=list)


@dataclass
class Domain:
    runstate_lines: list[str] = field(default_factory=list)
    vcpus: dict[int, Vcpu] = field(default_factory=dict)


@dataclass
class XenalyzeSummary:
    total_line: str = ""
    volume_lines: list[str] = field(default_factory=list)
    default: Domain | None = None
    domains: dict[int, Domain] = field(default_factory=dict)


def parse(text: str) -> XenalyzeSummary:
    """Parse ``--summary`` output (only the blocks pyxentrace reproduces)."""
    out = XenalyzeSummary()
    lines = text.splitlines()
    dom: Domain | None = None
    vcpu: Vcpu | None = None
    section = None  # "volume", "domrs", "mem", "vcpurs", "pv", "other"
    pv_entry: PvEntry | None = None
    for line in lines:
        if line.startswith("Total time:"):
            out.total_line = line
            continue
        if line == "--- Log volume summary ---":
            section = "volume"
            continue
        m = re.match(r"^\|-- Domain (\d+) --\|$", line)
        if m or line == "|-- Default domain --|":
            dom = Domain()
            if m:
                out.domains[int(m.group(1))] = dom
            else:
                out.default = dom
            vcpu = None
            section = "domhead"
            continue
        m = re.match(r"^-- v(\d+) --$", line)
        if m and dom is not None:
            vcpu = Vcpu()
            dom.vcpus[int(m.group(1))] = vcpu
            section = "vcpuhead"
            continue
        if section == "volume":
            out.volume_lines.append(line)
            continue
        if line == " Runstates:":
            section = "domrs" if vcpu is None else "vcpurs"
            continue
        if line in (" Grant table ops:", "Emulate eip list") or line.startswith("Exit reasons"):
            section = "other"
            continue
        if line == "PV events:" and vcpu is not None:
            section = "pv"
            pv_entry = None
            continue
        if section == "domrs" and dom is not None:
            dom.runstate_lines.append(line)
        elif section == "vcpurs" and vcpu is not None:
            if line.startswith((" cpu affinity", "   [")) or RUNSTATE_RE.match(line):
                vcpu.runstate_lines.append(line)
            else:
                section = "other"
        elif section == "pv" and vcpu is not None:
            m = HC_LINE_RE.match(line)
            if m and pv_entry is not None:
                pv_entry.table[int(m.group("op"))] = int(m.group("count"))
                continue
            m = TRAP_LINE_RE.match(line)
            if m and pv_entry is not None:
                pv_entry.table[int(m.group("vec"))] = int(m.group("count"))
                continue
            m = PV_LINE_RE.match(line)
            if m:
                pv_entry = PvEntry(m.group("name"), int(m.group("count")))
                vcpu.pv.append(pv_entry)
                continue
            section = "other"
    return out


# the PV lines xenalyze prints between the v1 "hypercall" (minor 1) and the v2 one (minor 13):
# pv_summary walks the minors in numeric order (spec xenalyze-reference.md §4.2)
_BETWEEN_V1_AND_V2 = frozenset(
    {
        "trap",
        "page_fault",
        "forced_invalid_op",
        "emulate privop",
        "emulate 4g",
        "math state restore",
        "paging fixup",
        "gdt/ldt mapping fault",
        "ptwr",
    }
)


def hypercall_lines(entries: list[PvEntry], only: str | None = None):
    """``(v1 entry, v2 entry)`` of a PV block (either may be None).

    Two ``hypercall`` lines are v1 then v2. A single one is placed by the lines around it: it
    is v2 when a minor-3..12 line comes before it or ``hypercall (subcall)`` follows it, v1 when
    a minor-3..12 line follows it. When nothing around it decides (it is the block's only
    entry), ``only`` ("v1" or "v2", from the trace's ids) must.
    """
    idx = [i for i, e in enumerate(entries) if e.name == "hypercall"]
    if not idx:
        return None, None
    if len(idx) == 2:
        return entries[idx[0]], entries[idx[1]]
    i = idx[0]
    names_before = {e.name for e in entries[:i]}
    names_after = {e.name for e in entries[i + 1 :]}
    if names_before & _BETWEEN_V1_AND_V2 or "hypercall (subcall)" in names_after:
        kind = "v2"
    elif names_after & _BETWEEN_V1_AND_V2:
        kind = "v1"
    elif only in ("v1", "v2"):
        kind = only
    else:
        raise ValueError("a lone 'hypercall' line: say whether the trace's records are v1 or v2")
    return (entries[i], None) if kind == "v1" else (None, entries[i])


def expected_pv(entries: list[PvEntry], only: str | None = None) -> dict:
    """What pyxentrace reports for a vCPU, derived from xenalyze's PV block minus its bugs.

    xenalyze (quirks Q1-Q3): the v2 ``hypercall`` line adds the sub-calls; v1, v2 and sub-calls
    share one op table (ops < 56 only); traps are listed below vector 20 only; ``ptwr`` merges
    the PAE records. ``only`` places a lone ``hypercall`` line (see :func:`hypercall_lines`).
    Returns ``{"counts": {name: n}, "v1": n, "v2": n, "subcall": n, "ops_lt56": {op: n},
    "traps_lt20": {vec: n}}``.
    """
    v1, v2line = hypercall_lines(entries, only)
    sub = next((e.count for e in entries if e.name == "hypercall (subcall)"), 0)
    table = (v2line or v1).table if (v2line or v1) else {}
    trap = next((e for e in entries if e.name == "trap"), None)
    return {
        "counts": {e.name: e.count for e in entries if e.name != "hypercall"},
        "v1": v1.count if v1 else 0,
        "v2": (v2line.count - sub) if v2line else 0,
        "subcall": sub,
        "ops_lt56": dict(table),
        "traps_lt20": dict(trap.table) if trap else {},
    }
