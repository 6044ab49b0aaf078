"""``summary --format xenalyze``: the text of ``xenalyze --summary`` (volume, runstates, PV).

Line formats are xenalyze's (spec ``xenalyze-reference.md`` §4.1, §4.2, §5.2) so that scripts
written for its output keep working. Its PV-table bugs are not reproduced (quirks Q1-Q3):
each ``hypercall`` line counts and lists only its own records (v1, v2, sub-calls each with a
table), ops 38+ get Xen's names and are all listed, every trap vector is listed, unknown minors
print as ``PV-<n>``. Every difference is listed in ``docs/xenalyze-compat.md``.
"""

from __future__ import annotations

from ..format import events as ev
from ..format import xen_names as xn
from . import pvstats as PS
from .keys import DEFAULT_DOMAIN, make_key
from .summary import RunstateStat, Summary

_VOLUME_CLASSES = ev.CLASSES
_HVM_VOL = ("vmentry", "vmexit", "handler", "emul")


def stringify_cpu_hz(hz: float) -> str:
    """xenalyze's ``stringify_cpu_hz`` (``2.40 GHz``)."""
    hz_i = int(hz)
    if hz_i > 1_000_000_000:
        return f"{_f32(hz_i / 1e9):1.2f} GHz"
    if hz_i > 1_000_000:
        return f"{_f32(hz_i / 1e6):1.2f} MHz"
    if hz_i > 1_000:
        return f"{_f32(hz_i / 1e3):1.2f} kHz"
    return f"{_f32(float(hz_i)):1.2f}  Hz"


def _f32(x: float) -> float:
    import numpy as np

    return float(np.float32(x))


def cycle_line(desc: str, s: RunstateStat, hz: float) -> str:
    """``print_cycle_summary``: ``desc: count seconds avg {p5|p50|p95}``."""
    sec = (s.cycles & 0xFFFFFFFFFFFFFFFF) / hz
    return f"{desc}: {s.count:7d} {sec:5.2f}s {s.avg:6d} {{{s.p5:6d}|{s.p50:6d}|{s.p95:6d}}}"


def affinity_line(desc: str, s: RunstateStat) -> str:
    """``print_cpu_affinity``: ``desc: count avg {p5|p50|p95}``."""
    return f"{desc}: {s.count:7d} {s.avg:6d} {{{s.p5:6d}|{s.p50:6d}|{s.p95:6d}}}"


def volume_lines(summary: Summary) -> list[str]:
    """``--- Log volume summary ---`` per pCPU: bytes per class, as xenalyze counts them."""
    per: dict[int, dict] = {}
    for cpu, event, _count, nbytes in summary.report.volume():
        main = event >> 16
        if main == 0 or main & (main - 1) or main.bit_length() > len(_VOLUME_CLASSES):
            continue  # xenalyze stops at records whose class has not exactly one bit set
        cls = main.bit_length() - 1
        d = per.setdefault(cpu, {"top": [0] * len(_VOLUME_CLASSES), "verbose": 0, "hvm": [0] * 4})
        if event == ev.TRC_LOST_RECORDS:
            nbytes *= 2  # processed twice
        d["top"][cls] += nbytes
        sub = (event >> 12) & 0xF
        if cls == 1 and sub not in (0xF, 1, 8, 2):
            d["verbose"] += nbytes
        if cls == 3:
            if sub == 1:
                d["hvm"][0 if (event & 0xFF) == 1 else 1] += nbytes
            elif sub == 2:
                d["hvm"][2] += nbytes
            elif sub == 4:
                d["hvm"][3] += nbytes
    out = []
    for cpu in sorted(per):
        d = per[cpu]
        out.append(f" - cpu {cpu} -")
        for i, name in enumerate(_VOLUME_CLASSES):
            if d["top"][i]:
                out.append(f" {name:<6s}: {d['top'][i]:10d}")
                if i == 1 and d["verbose"]:
                    out.append(f" +-verbose: {d['verbose']:10d}")
                if i == 3:
                    for k, vname in enumerate(_HVM_VOL):
                        if d["hvm"][k]:
                            out.append(f" +-{vname:<7s}: {d['hvm'][k]:10d}")
    return out


def _op_label(op: int) -> str:
    if op >= PS.HC_OPS:
        return "other"
    name = xn.xenalyze_hypercall_name(op)
    return name if name is not None else xn.hypercall_name(op)


def pv_lines(summary: Summary, key: int) -> list[str]:
    """The ``PV events:`` block of one vCPU (xenalyze attribution), or ``[]``."""
    counts = summary.pv_counts(key, mode=1)
    if not counts:
        return []
    out = ["PV events:"]
    merged = dict(counts)
    if 12 in merged:  # ptwr(pae) counts as ptwr (xenalyze quirk Q4 kept)
        merged[11] = merged.get(11, 0) + merged.pop(12)
    for minor in range(15):
        n = merged.get(minor, 0)
        if not n or minor in (0, 2):
            continue
        name = xn.XENALYZE_PV_NAMES[minor]
        out.append(f"  {name}  {n}")
        kind = {1: 0, 13: 1, 14: 2}.get(minor)
        if kind is not None:
            for op, c in sorted(summary.hypercalls(key, kind, mode=1).items()):
                opn = f"{op:2d}" if op < PS.HC_OPS else f"{PS.HC_OPS}+"
                out.append(f"    {_op_label(op):<29s}[{opn}]: {c:6d}")
        elif minor == 3:
            for vec, c in sorted(summary.traps(key, mode=1).items()):
                out.append(f"    [{vec if vec < PS.NVEC else '256+'}] {c}")
    for minor in sorted(m for m in merged if m in (0, 2) or m >= 15):
        out.append(f"  PV-{minor}  {merged[minor]}")
    return out


def vcpu_lines(summary: Summary, key: int, vid: int) -> list[str]:
    hz = summary.cpu_hz
    out = [f"-- v{vid} --", " Runstates:"]
    rs = summary.vcpu_runstates(key)
    if rs is not None:
        for s in rs.states:
            out.append(cycle_line(f"  {s.name:>8s}", s, hz))
            if s.name == "runnable":
                for r in rs.runnable:
                    out.append(cycle_line(f"    {r.name:>8s}", r, hz))
        if rs.affinity is not None:
            out.append(affinity_line(" cpu affinity", rs.affinity))
            for p, s in rs.affinity_pcpu:
                out.append(affinity_line(f"   [{p}]", s))
    out.extend(pv_lines(summary, key))
    return out


_MEM_LINES = (
    " Grant table ops:",
    "  Done by:",
    "  Done for:",
    " Populate-on-demand:",
    "  Populated:",
    "  Reclaim order:",
    "  Reclaim contexts:",
)


def render_xenalyze(summary: Summary, show_default: bool = False) -> str:
    """The whole ``--summary`` text (``show_default`` = xenalyze's ``-!``)."""
    hz = summary.cpu_hz
    total = max(0, summary.xen_last_tsc - summary.xen_first_tsc)
    lines = [
        f"Total time: {total / hz:.2f} seconds (using cpu speed {stringify_cpu_hz(hz)})",
        "--- Log volume summary ---",
    ]
    lines.extend(volume_lines(summary))
    f = summary.filters
    eng = summary.engine
    if show_default:
        lines.append("|-- Default domain --|")
        for _v, vid in eng.vcpus(0):
            k = make_key(DEFAULT_DOMAIN, vid)
            if f.key_selected(k):
                lines.extend(vcpu_lines(summary, k, vid))
    for d, did in eng.domains():
        if f.domains and did not in f.domains:
            continue
        lines.append(f"|-- Domain {did} --|")
        lines.append(" Runstates:")
        for s in summary.domain_runstates(did):
            lines.append(cycle_line(f"  {s.name:>8s}", s, hz))
        lines.extend(_MEM_LINES)
        for _v, vid in eng.vcpus(d):
            k = make_key(did, vid)
            if f.key_selected(k):
                lines.extend(vcpu_lines(summary, k, vid))
        lines.append("Emulate eip list")
    return "\n".join(lines) + "\n"
