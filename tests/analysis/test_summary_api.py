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
    # entry records only: sched_op 4 = 2 v1... no: v1 vcpu_op+sched_op, v2 the rest
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
    assert r.exit_code == 1 and "not a vCPU label" in r.stderr
    r = CliRunner().invoke(summary_cmd, [str(tmp_path / "none.bin")])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
