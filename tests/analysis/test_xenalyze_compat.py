"""``summary --format xenalyze`` against xenalyze's own ``--summary`` outputs (tests/data).

The truth is xenalyze's text: runstate blocks (domain and vCPU lines, runnable sub-states, cpu
affinity, percentiles) must be identical; PV blocks must hold the same numbers once xenalyze's
documented PV-table bugs are taken out (quirks Q1-Q3, see ``xenalyze_text.expected_pv``).
"""

from __future__ import annotations

import pytest
from xenalyze_text import expected_pv, parse

from conftest import PV_DOM0_TRACES, REAL_TRACES, oracle_text, summary_of
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


def _check_pv(summary, did: int, vid: int, oracle_entries) -> None:
    exp = expected_pv(oracle_entries)
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
                _check_pv(s, did, vid, v.pv)
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
            _check_pv_default(s, vid, v.pv)
    # the rest of the -! output is the plain summary
    for did, dom in t.domains.items():
        assert o.domains[did].runstate_lines == dom.runstate_lines


def _check_pv_default(s, vid, entries):
    exp = expected_pv(entries)
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
