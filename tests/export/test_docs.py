"""The code snippets of docs/export.md and docs/fleet.md run as written, on the hand-built
trace copied to the file names the snippets use (Spark's need a Spark session; polars' run
when polars is installed)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from pyxentrace.export import export_table

DOCS = Path(__file__).parents[2] / "docs"


def blocks(doc: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / doc).read_text(), re.S)


@pytest.fixture
def workdir(pv_trace, tmp_path, monkeypatch):
    """A directory holding trace.bin, host1.bin, trace.jsonl and a fleet/ of two hosts."""
    for name in ("trace.bin", "host1.bin"):
        shutil.copy(pv_trace, tmp_path / name)
        shutil.copy(f"{pv_trace}.meta.json", tmp_path / f"{name}.meta.json")
    export_table(tmp_path / "trace.bin", str(tmp_path / "trace.jsonl"), "jsonl")
    for host in ("xen-a01", "xen-b07"):
        export_table(tmp_path / "trace.bin", str(tmp_path / "fleet"), partition=True, host=host)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(code: str) -> dict:
    ns: dict = {"__name__": "__doc_snippet__"}
    exec(compile(code, "<doc snippet>", "exec"), ns)
    return ns


def test_export_md_python_snippets_run(workdir, capsys):
    py = blocks("export.md", "python")
    assert len(py) >= 2
    first = run(py[0])
    assert first["res"].rows == 15
    assert capsys.readouterr().out.split() == ["15", "uint64"]
    for name in ("trace.parquet", "trace.arrow", "trace.pftrace", "report.html"):
        assert (workdir / name).stat().st_size > 0
    assert (workdir / "fleet" / "host=host1").is_dir()
    ns = run(py[1])
    assert list(ns["df"].columns) == ["time_ns", "vcpu_label", "hypercall_name"]
    assert ns["eips"].tolist() == [0xFFFFFFFF81000010]  # the hand trace's one page fault


def test_export_md_duckdb_queries_run(workdir):
    duckdb = pytest.importorskip("duckdb")
    export_table(workdir / "trace.bin", str(workdir / "trace.parquet"))
    con = duckdb.connect()
    ran = 0
    for block in blocks("export.md", "sql"):
        if "trace.parquet" not in block:  # Perfetto's trace processor SQL
            continue
        for stmt in filter(str.strip, block.split(";")):
            stmt = "\n".join(x for x in stmt.splitlines() if not x.strip().startswith("--"))
            if stmt.strip():
                assert con.execute(stmt).fetchall(), stmt
                ran += 1
    assert ran == 4


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dask on pandas 3 (not ours)
def test_fleet_md_python_snippets_run(workdir):
    ran = 0
    for code in blocks("fleet.md", "python"):
        if "spark" in code:
            continue
        if "import polars" in code and importlib.util.find_spec("polars") is None:
            continue
        ns = run(code)
        ran += 1
        if "per_host" in ns:
            assert {str(k): int(v) for k, v in ns["per_host"].items()} == {
                "xen-a01": 15,
                "xen-b07": 15,
            }
            assert int(ns["mix"].sum()) == 2 * 3  # hypercalls and sub-calls of both hosts
        if "t" in ns:
            assert ns["t"].num_rows == 15
    assert ran >= 2
