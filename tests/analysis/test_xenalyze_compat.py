"""``summary --format xenalyze`` against xenalyze's own ``--summary`` outputs (tests/data).

The truth is xenalyze's text: runstate blocks (domain and vCPU lines, runnable sub-states, cpu
affinity, percentiles) must be identical; PV blocks must hold the same numbers once xenalyze's
documented PV-table bugs are taken out (quirks Q1-Q3, see ``xenalyze_text.expected_pv``).
"""

from __future__ import annotations

from functools import cache

import pytest
from rawtrace import pv_minors_before_scheduling, records
from xenalyze_text import expected_pv, parse

from conftest import DATA, PV_DOM0_TRACES, REAL_TRACES, oracle_text, summary_of
from pyxentrace.analysis.keys import DEFAULT_DOMAIN, make_key
from pyxentrace.analysis.render_xenalyze import render_xenalyze

ALL = ("pv_trace",) + REAL_TRACES


def ours(name: str, show_default: bool = False):
    return parse(render_xenalyze(summary_of(name), show_default=show_default))


def truth(name: str, suffix: str = ".summary.txt"):
    return parse(oracle_text(name + suffix))


@pytest.mark.parametrize("name", ALL)
def test_total_time_and_log_volume(name):
    o, t = ours(name), truth(name)
    assert o.total_line == t.total_line
    assert o.volume_lines == t.volume_lines


@pytest.mark.parametrize("name", ALL)
def test_domains_and_vcpus_are_the_same(name):
    o, t = ours(name), truth(name)
    assert list(o.domains) == list(t.domains)
    for did, dom in t.domains.items():
        assert list(o.domains[did].vcpus) == list(dom.vcpus), did


@pytest.mark.parametrize("name", ALL)
def test_domain_runstate_blocks_identical(name):
    o, t = ours(name), truth(name)
    for did, dom in t.domains.items():
        assert o.domains[did].runstate_lines == dom.runstate_lines, f"domain {did}"


@pytest.mark.parametrize("name", ALL)
def test_vcpu_runstate_blocks_identical(name):
    """Runstates, runnable sub-states, percentiles and cpu affinity, line for line."""
    o, t = ours(name), truth(name)
    for did, dom in t.domains.items():
        for vid, v in dom.vcpus.items():
            assert o.domains[did].vcpus[vid].runstate_lines == v.runstate_lines, f"d{did}v{vid}"


@cache
def hypercall_generation(name: str) -> str | None:
    """``"v1"`` / ``"v2"`` when the trace's PV records hold only that hypercall record."""
    minors = {r.event & 0xFF for r in records(DATA / f"{name}.bin") if r.event >> 16 == 0x020}
    has_v1, has_v2 = 1 in minors, bool(minors & {13, 14})
    return "v1" if has_v1 and not has_v2 else "v2" if has_v2 and not has_v1 else None


def only_of(minors: set[int]) -> str | None:
    return "v1" if 1 in minors and 13 not in minors else "v2" if 13 in minors else None


def _check_pv(summary, did: int, vid: int, oracle_entries, only: str | None) -> None:
    exp = expected_pv(oracle_entries, only)
    key = make_key(did, vid)
    counts = summary.pv_counts(key, mode=1)
    names = {
        3: "trap",
        4: "page_fault",
        5: "forced_invalid_op",
        6: "emulate privop",
        7: "emulate 4g",
        8: "math state restore",
        9: "paging fixup",
        10: "gdt/ldt mapping fault",
        14: "hypercall (subcall)",
    }
    for minor, name in names.items():
        assert counts.get(minor, 0) == exp["counts"].get(name, 0), (did, vid, name)
    assert counts.get(11, 0) + counts.get(12, 0) == exp["counts"].get("ptwr", 0)
    assert counts.get(1, 0) == exp["v1"]
    assert counts.get(13, 0) == exp["v2"]
    assert counts.get(14, 0) == exp["subcall"]
    # xenalyze's one shared table = our v1 + v2 + sub-call tables (ops below 56)
    merged: dict[int, int] = {}
    for kind in range(3):
        for op, n in summary.hypercalls(key, kind, mode=1).items():
            if op < 56:
                merged[op] = merged.get(op, 0) + n
    assert merged == exp["ops_lt56"], (did, vid)
    traps = {v: n for v, n in summary.traps(key, mode=1).items() if v < 20}
    assert traps == exp["traps_lt20"], (did, vid)


@pytest.mark.parametrize("name", ("pv_trace",) + PV_DOM0_TRACES)
def test_pv_blocks_match_without_xenalyze_bugs(name):
    s = summary_of(name)
    t = truth(name)
    n_checked = 0
    for did, dom in t.domains.items():
        for vid, v in dom.vcpus.items():
            if v.pv:
                _check_pv(s, did, vid, v.pv, hypercall_generation(name))
                n_checked += 1
            else:
                assert not s.pv_counts(make_key(did, vid), mode=1), (did, vid)
    assert n_checked >= 2


def test_pv_trace_default_domain_block():
    """``-!``: PV records seen before any scheduling record, in the default-domain bucket."""
    s = summary_of("pv_trace")
    o = ours("pv_trace", show_default=True)
    t = truth("pv_trace", ".summary_default.txt")
    assert t.default is not None and o.default is not None
    assert list(o.default.vcpus) == list(t.default.vcpus)
    for vid, v in t.default.vcpus.items():
        assert o.default.vcpus[vid].runstate_lines == v.runstate_lines
        if v.pv:
            # the default vCPU of pCPU <vid> holds the PV records seen before its first
            # scheduling record: they say which hypercall record its lone line counts
            only = only_of(pv_minors_before_scheduling(DATA / "pv_trace.bin", vid))
            _check_pv_default(s, vid, v.pv, only)
    # the rest of the -! output is the plain summary
    for did, dom in t.domains.items():
        assert o.domains[did].runstate_lines == dom.runstate_lines


def _check_pv_default(s, vid, entries, only):
    exp = expected_pv(entries, only)
    key = make_key(DEFAULT_DOMAIN, vid)
    assert s.pv_counts(key, mode=1).get(13, 0) == exp["v2"]
    assert s.hypercalls(key, 1, mode=1) == exp["ops_lt56"]


def test_pv_text_lines_follow_xenalyze_format():
    """Lines we print keep xenalyze's layout (two spaces, counts, the op table columns)."""
    text = render_xenalyze(summary_of("pv_trace"))
    assert "  page_fault  1\n" in text
    assert "    mmu_update                   [ 1]:      1\n" in text
    assert "  ptwr  1\n" in text  # ptwr(pae) merged as xenalyze does (kept, Q4)
    assert "    [14] 1\n" in text


def test_small_batches_give_the_same_result():
    """The runstate engine merges per-pCPU streams incrementally: batch size must not matter."""
    big = render_xenalyze(summary_of("real-xen417-lost"))
    small = render_xenalyze(summary_of("real-xen417-lost", batch_rows=777))
    assert small == big


def test_a_lone_hypercall_line_is_placed_by_its_neighbours_or_the_trace():
    """A v1-only vCPU (seed-generation guest) has one ``hypercall`` line, and it is v1's."""
    from xenalyze_text import hypercall_lines

    block = """PV events:
  hypercall  3
    xen_version                  [17]:      3
  trap  1
    [3] 1
"""
    text = f"|-- Domain 1 --|\n-- v0 --\n{block}"
    entries = parse(text).domains[1].vcpus[0].pv
    v1, v2 = hypercall_lines(entries)
    assert (v1.count, v2) == (3, None)
    exp = expected_pv(entries)
    assert (exp["v1"], exp["v2"], exp["ops_lt56"]) == (3, 0, {17: 3})
    after = parse(text.replace("  trap  1\n    [3] 1\n", "  hypercall (subcall)  1\n"))
    v1, v2 = hypercall_lines(after.domains[1].vcpus[0].pv)
    assert (v1, v2.count) == (None, 3)
    alone = parse(text.replace("  trap  1\n    [3] 1\n", "")).domains[1].vcpus[0].pv
    with pytest.raises(ValueError):
        hypercall_lines(alone)
    assert expected_pv(alone, "v1")["v1"] == 3 and expected_pv(alone, "v2")["v2"] == 3
