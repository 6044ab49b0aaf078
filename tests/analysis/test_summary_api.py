"""The JSON summary, the Trace API and the click commands.

Expected numbers come from xenalyze's summary of pv_trace.bin (tests/data/pv_trace.summary.txt)
minus its double-counted sub-calls, or are written by hand for hand-built traces.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from builders import runstate, write_trace
from click.testing import CliRunner

import pyxentrace
from conftest import DATA
from pyxentrace.analysis.cli_commands import dump_cmd, summary_cmd
from pyxentrace.analysis.percentile import reservoir, xenalyze_triplet
from pyxentrace.errors import XentraceError
from pyxentrace.format.record import encode_record

PV_KEYS = (
    "hypercall",
    "trap",
    "page_fault",
    "forced_invalid_op",
    "emulate_privop",
    "emulate_4gb",
    "math_state_restore",
    "paging_fixup",
    "gdt_ldt_mapping_fault",
    "ptwr_emulation",
    "hypercall_subcall",
    "hypercalls",
    "traps",
)


def test_json_document_shape_and_values():
    doc = pyxentrace.open(DATA / "pv_trace.bin").summary()
    assert doc["cpu_hz"] == 2.4e9 and doc["cpu_hz_source"] == "assumed"
    # first record tsc 10000000000, last 10001922400 (spec §6.2 trace)
    assert doc["duration_s"] == pytest.approx(1922400 / 2.4e9)
    d1 = doc["vcpus"]["d1v0"]["pv"]
    assert all(k in d1 for k in PV_KEYS)
    # xenalyze: "hypercall 2" (v1) + "hypercall 13" (v2 + 2 sub-calls) -> 2 + 11 entries
    assert d1["hypercall"] == 13 and d1["hypercall_subcall"] == 2
    assert d1["trap"] == 2 and d1["traps"] == {"3": 1, "14": 1}
    assert (d1["page_fault"], d1["forced_invalid_op"], d1["emulate_privop"]) == (1, 1, 1)
    assert (d1["math_state_restore"], d1["paging_fixup"], d1["gdt_ldt_mapping_fault"]) == (1, 1, 1)
    assert d1["ptwr_emulation"] == 1 and d1["emulate_4gb"] == 0
    # "hypercalls" counts entry records (v1 and v2), not sub-calls: xenalyze's shared table
    # (ops 1:2, 12:1, 13:1, 14:1, 20:1, 23:1, 24:2, 26:1, 29:4, 32:1) minus the two sub-calls
    # (mmu_update, update_va_mapping), which are in "subcalls"
    assert d1["hypercalls"] == {
        "1": 1,
        "12": 1,
        "13": 1,
        "20": 1,
        "23": 1,
        "24": 2,
        "26": 1,
        "29": 4,
        "32": 1,
    }
    assert d1["subcalls"] == {"1": 1, "14": 1}
    d2 = doc["vcpus"]["d2v0"]["pv"]
    assert d2["emulate_4gb"] == 1 and d2["ptwr_emulation"] == 1 and d2["hypercall"] == 7
    assert doc["vcpus"]["d[DEFAULT]v0"]["pv"]["hypercalls"] == {"17": 1}
    rs = doc["vcpus"]["d1v0"]["runstates"]
    assert {k: (v["count"], v["cycles"]) for k, v in rs.items()} == {
        "running": (3, 1408800),
        "runnable": (2, 7200),
        "blocked": (1, 480000),
    }
    assert doc["domains"]["d1"]["runstates"]["full run"]["count"] == 3


def test_summary_filters():
    t = pyxentrace.open(DATA / "pv_trace.bin")
    from pyxentrace.analysis.filters import make_filters

    doc = t.summary(make_filters(vcpus=["d2v0"]))
    assert list(doc["vcpus"]) == ["d2v0"]
    doc = t.summary(make_filters(cpus=["0"]))
    assert doc["vcpus"]["d1v0"]["pv"]["total"] == 24 and doc["vcpus"]["d2v0"]["pv"]["total"] == 0
    # pCPU 0's PV records between 10 us and 50 us: tsc 24000..120000 -> 48000..120000 (7 records)
    doc = t.summary(make_filters(from_s=10e-6, to_s=50e-6, cpus=["0"]))
    assert doc["vcpus"]["d1v0"]["pv"]["total"] == 7
    assert doc["duration_s"] == pytest.approx(40e-6)


def test_trace_api_records_batches_arrow(tmp_path):
    path = write_trace(
        tmp_path / "a.bin",
        [
            (
                0,
                [
                    runstate(3, 1, 1, 0, 5000),
                    encode_record(0x00201104, [0x81000000, 0xFFFFFFFF, 0x1000, 0x7F00, 0x7], 6000),
                ],
            )
        ],
    )
    (tmp_path / "a.bin.meta.json").write_text(json.dumps({"tsc_hz": 1e9}))
    t = pyxentrace.open(path)
    assert t.cpu_hz == 1e9 and not t.cpu_hz_assumed
    recs = list(t.records())
    assert [r.name for r in recs] == ["runstate_change", "page_fault64"]
    assert recs[1].vcpu == "d3v1" and recs[1].time_s == pytest.approx(1e-6)
    assert recs[1].fields["addr"] == 0x7F0000001000 and recs[1].fields["pf_user"] is True
    assert sum(len(b) for b in t.batches()) == 2
    tab = t.to_arrow()
    assert tab.num_rows == 2
    row = tab.slice(1, 1).to_pylist()[0]
    assert (row["vcpu_label"], row["domain"], row["vcpu"]) == ("d3v1", 3, 1)
    assert (row["eip"], row["error_code"], row["pf_present"]) == (0xFFFFFFFF81000000, 7, True)
    assert row["event_name"] == "page_fault64" and row["class"] == "pv"
    first = tab.slice(0, 1).to_pylist()[0]
    assert (first["old_state"], first["new_state"], first["eip"]) == ("runnable", "running", None)
    assert t.report.records == 2


def test_to_pandas_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(XentraceError, match="needs pandas"):
        pyxentrace.open(DATA / "pv_trace.bin").to_pandas()


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(XentraceError, match="no such file"):
        pyxentrace.open(tmp_path / "nope.bin")


def test_self_weighted_percentile_spec_example():
    # spec xenalyze-reference.md §5.2: samples {456000, 475200, 477600} give p5 = 477600
    p5, p50, p95 = xenalyze_triplet(np.array([456000, 475200, 477600]), True)
    assert (p5, p50, p95) == (477600, 477600, 477600)


def test_reservoir_keeps_a_subset_past_the_maximum():
    # sample_max 4, values 1..10: slots refilled at k = 4 (slot 0), 6 (slot 2), 9 (slot 1)
    # by the rule (slot - lap/3) % lap == 0 with lap = k/4 + 1 (worked out by hand)
    assert reservoir(np.arange(1, 11), sample_max=4).tolist() == [5, 10, 7, 4]
    assert reservoir(np.arange(1, 4), sample_max=4).tolist() == [1, 2, 3]


def test_cli_summary_formats():
    r = CliRunner().invoke(summary_cmd, [str(DATA / "pv_trace.bin"), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["vcpus"]["d1v0"]["pv"]["hypercall"] == 13
    r = CliRunner().invoke(summary_cmd, [str(DATA / "pv_trace.bin"), "-f", "xenalyze", "-q"])
    assert r.exit_code == 0 and r.stdout.startswith("Total time: 0.00 seconds")
    r = CliRunner().invoke(summary_cmd, [str(DATA / "pv_trace.bin"), "-q"])
    assert r.exit_code == 0 and "d1v0" in r.stdout and "mmu_update" in r.stdout


def test_cli_dump_and_errors(tmp_path):
    out = tmp_path / "d.jsonl"
    r = CliRunner().invoke(
        dump_cmd,
        [
            str(DATA / "pv_trace.bin"),
            "--format",
            "jsonl",
            "--event",
            "trap,trap64",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["vector"] for x in out.read_text().splitlines()] == [13, 7, 14, 3]
    r = CliRunner().invoke(dump_cmd, [str(DATA / "pv_trace.bin"), "--vcpu", "x1"])
    assert r.exit_code == 2 and "'--vcpu'" in r.stderr and "not a vCPU label" in r.stderr
    r = CliRunner().invoke(summary_cmd, [str(tmp_path / "none.bin")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1


# ---- records the PV table does not decode ---------------------------------------------
def _short_records_trace(tmp_path):
    recs = [
        (0x00201103, [0x81001234]),  # trap64 with 1 of its 3 words
        (0x00201104, [0x81001234, 0xFFFFFFFF, 0x1000]),  # page_fault64 with 3 of 5
        (0x0020F001, [0xC0101234]),  # v1 hypercall with 1 of 2
        (0x0020100D, []),  # v2 without its op word
        (0x0020200E, []),  # sub-call without its op word
        (0x00201206, [0xC0003000]),  # unknown id (bits 9-11), minor 6
        (0x0020F10D, [0x11]),  # unknown id, minor 13
        (0x00201006, [0xC0001000]),  # a good one: emulate privop
    ]
    return write_trace(
        tmp_path / "short.bin",
        [
            (
                0,
                [runstate(5, 0, 1, 0, 1000)]
                + [encode_record(e, w, 2000 + 100 * i) for i, (e, w) in enumerate(recs)],
            )
        ],
    )


def test_summary_counts_short_records_under_their_event_only(tmp_path):
    """No vector, error code, hypercall number or EIP is made up from missing words."""
    t = pyxentrace.open(_short_records_trace(tmp_path))
    doc = t.summary()
    pv = doc["vcpus"]["d5v0"]["pv"]
    assert (pv["trap"], pv["traps"], pv["traps_with_error_code"]) == (1, {}, 0)
    assert (pv["page_fault"], pv["page_fault_error_codes"]) == (1, {})
    # v1 + v2 (one of them the unknown 0x0020f10d, counted under its minor 13), no op
    assert (pv["hypercall_v1"], pv["hypercall_v2"], pv["hypercall_subcall"]) == (1, 2, 1)
    assert pv["hypercalls"] == {} and pv["subcalls"] == {}
    assert pv["emulate_privop"] == 2  # the good record and the unknown id with minor 6
    assert pv["top_eips"] == {"emulate_privop": [{"eip": "0xc0001000", "count": 1}]}
    assert (pv["bad_size"], pv["unknown_id"], pv["ptwr_wrong_flag"]) == (5, 2, 0)
    assert doc["pv_conditions"] == {"bad_size": 5, "unknown_id": 2, "ptwr_wrong_flag": 0}
    notes = " | ".join(doc["notes"])
    assert "5 PV records have a payload size no layout of their id has" in notes
    assert "2 PV records have ids outside the PV layout table" in notes
    # xenalyze's format: the same counts, no made-up op table rows (op 0 set_trap_table)
    s = t.summary_result()
    from pyxentrace.analysis.keys import make_key

    key = make_key(5, 0)
    assert all(s.hypercalls(key, k, mode=1) == {} for k in range(3))
    assert s.traps(key, mode=1) == {}


def test_ptwr_with_the_wrong_flag_is_a_noted_condition(tmp_path):
    """Spec §2.5: minor 12 with the 64-bit flag or minor 11 without it makes xenalyze stop
    (ERR_RECORD); we decode them by size, count them and say so - not a runstate condition."""
    pte64 = [0x23456067, 0x80000001, 0x01234000, 0xFFFF8800, 0x81001234, 0xFFFFFFFF]
    path = write_trace(
        tmp_path / "ptwr.bin",
        [
            (
                0,
                [
                    runstate(5, 0, 1, 0, 1000),
                    encode_record(0x0020110C, [0x87654063, 0, 0xC1234000, 0xC0101234], 2000),
                    encode_record(0x0020100B, pte64, 2100),
                    encode_record(0x0020110B, pte64, 2200),  # right flag
                    encode_record(0x0020100C, [0x87654063, 0, 0xC1234000, 0xC0101234], 2300),
                ],
            )
        ],
    )
    doc = pyxentrace.open(path).summary()
    pv = doc["vcpus"]["d5v0"]["pv"]
    assert (pv["ptwr_wrong_flag"], pv["bad_size"], pv["unknown_id"]) == (2, 0, 0)
    assert (pv["ptwr_emulation"], pv["ptwr_emulation_pae"]) == (4, 2)
    # eips from the layouts (64-bit: +16 rip; PAE: +12 eip), not the address words
    assert pv["top_eips"]["ptwr_emulation"] == [
        {"eip": "0xc0101234", "count": 2},
        {"eip": "0xffffffff81001234", "count": 2},
    ]
    assert doc["xenalyze_engine"]["fatal_conditions"] == 0
    assert any("2 PTWR records carry the wrong 64-bit flag" in n for n in doc["notes"])


def test_cpu_filter_note_says_runstates_are_not_filtered():
    doc = pyxentrace.open(DATA / "pv_trace.bin").summary()
    full = doc["vcpus"]["d2v0"]["runstates"]
    from pyxentrace.analysis.filters import make_filters

    doc = pyxentrace.open(DATA / "pv_trace.bin").summary(make_filters(cpus=["0"]))
    assert doc["vcpus"]["d2v0"]["pv"]["total"] == 0  # d2v0 runs on pCPU 1
    assert doc["vcpus"]["d2v0"]["runstates"] == full
    assert any(
        n.startswith("--cpu 0: PV events are counted from these pCPUs only") for n in doc["notes"]
    )


# ---- filter values ---------------------------------------------------------------------
BAD_FILTERS = [
    (["--to", "nan"], "--to"),
    (["--from", "inf"], "--from"),
    (["--from", "-1"], "--from"),
    (["--from", "2", "--to", "1"], "--to"),
    (["--cpu", "-1"], "--cpu"),
    (["--cpu", "4096"], "--cpu"),
    (["--cpu", "99999"], "--cpu"),
    (["--cpu", "x"], "--cpu"),
    (["--domain", "65536"], "--domain"),
    (["--vcpu", "d1v65536"], "--vcpu"),
    (["--vcpu", "d70000v0"], "--vcpu"),
]
BAD_EVENTS = [(["--event", "-5"], "--event"), (["--event", "0x10020100d"], "--event")]


@pytest.mark.parametrize(("args", "option"), BAD_FILTERS + BAD_EVENTS)
def test_bad_filter_values_are_usage_errors_naming_the_option(args, option):
    cmds = [dump_cmd] if option == "--event" else [dump_cmd, summary_cmd]
    for cmd in cmds:
        r = CliRunner().invoke(cmd, [str(DATA / "pv_trace.bin"), "-q", *args])
        assert r.exit_code == 2, (args, r.output)
        assert f"Invalid value for '{option}'" in r.stderr and "Traceback" not in r.stderr


def test_bad_filter_values_in_the_library():
    from pyxentrace.analysis.filters import FilterError, make_filters

    cases = [
        ({"to_s": float("nan")}, "--to"),
        ({"from_s": float("inf")}, "--from"),
        ({"cpus": [-1]}, "--cpu"),
        ({"cpus": ["99999"]}, "--cpu"),
        ({"cpus": ["x"]}, "--cpu"),
        ({"domains": [70000]}, "--domain"),
        ({"vcpus": ["d1v65536"]}, "--vcpu"),
        ({"events": ["-5"]}, "--event"),
        ({"events": [0x10020100D]}, "--event"),
    ]
    for kw, option in cases:
        with pytest.raises(XentraceError, match=f"^{option}: ") as e:
            make_filters(**kw)
        assert isinstance(e.value, FilterError) and "\n" not in str(e.value)


def test_huge_but_finite_times_select_nothing_without_overflow(tmp_path):
    from pyxentrace.analysis.filters import make_filters

    f = make_filters(from_s=1e300)
    assert f.tsc_range(10**10, 2.4e9) == ((1 << 63) - 1, (1 << 63) - 1)
    doc = pyxentrace.open(DATA / "pv_trace.bin").summary(f)
    assert all(v["pv"]["total"] == 0 for v in doc["vcpus"].values())
    r = CliRunner().invoke(dump_cmd, [str(DATA / "pv_trace.bin"), "-q", "--to", "1e300"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 60


def test_counts_survive_slot_table_growth(tmp_path):
    """More vCPUs than the first slot table holds (256): every count is kept when it grows."""
    recs = []
    t = 1000
    for v in range(300):
        recs.append(runstate(1, v, 1, 0, t))
        recs.append(encode_record(0x00201003, [0xC0000000 + v, 3], t + 10))  # trap 3
        recs.append(encode_record(0x00201103, [0x81000000], t + 20))  # short trap64
        recs.append(runstate(1, v, 0, 2, t + 30))
        t += 100
    doc = pyxentrace.open(write_trace(tmp_path / "many.bin", [(0, recs)])).summary()
    pv = [doc["vcpus"][f"d1v{v}"]["pv"] for v in range(300)]
    assert all((p["trap"], p["traps"], p["bad_size"]) == (2, {"3": 1}, 1) for p in pv)
    assert doc["pv_conditions"]["bad_size"] == 300
