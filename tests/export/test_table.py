"""``export``: every format carries the values written into the hand-built trace; real traces
keep every row the reader reports; the partitioned dataset reads back in DuckDB and Dask."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest

from pyxentrace.errors import XentraceError
from pyxentrace.export import export_table, schema
from pyxentrace.export.columns import HEX_COLUMNS
from pyxentrace.format.events import CLASSES
from pyxentrace.reader import TraceReader

from .handtrace import (
    HYPERCALL_V2,
    HZ,
    ORIGIN,
    PF_ADDR,
    PF_EC,
    PF_EIP,
    PRIV_EIP,
    PTE,
    PTWR_ADDR,
    PTWR_RIP,
    RECORDS,
    TRAP_RIP,
    Rec,
    write_trace,
)


def by_tsc(rows: list[dict]) -> dict[int, dict]:
    return {int(r["tsc"]): r for r in rows}


def plain(t: pa.Table) -> pa.Table:
    """``t`` with its dictionary columns decoded (to compare values, not dictionaries)."""
    return pa.table(
        [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in t.columns],
        names=t.column_names,
    )


def hex_value(v) -> int | None:
    """A CSV / JSON Lines 64-bit column: a "0x…" string (never a number)."""
    if v is None:
        return None
    assert isinstance(v, str) and re.fullmatch(r"0x[0-9a-f]+", v) and (v == "0x0" or v[2] != "0")
    return int(v, 16)


def test_parquet_values_match_the_hand_built_records(pv_trace, tmp_path):
    out = tmp_path / "t.parquet"
    res = export_table(pv_trace, str(out))
    t = pq.read_table(out)
    assert t.schema.equals(schema())
    assert res.rows == t.num_rows == len(RECORDS)
    rows = by_tsc(t.to_pylist())
    for r in RECORDS:
        row = rows[r.tsc]
        assert row["time_ns"] == round((r.tsc - ORIGIN) * 1e9 / HZ)
        assert row["cpu"] == r.cpu and row["event"] == r.event
        assert row["nwords"] == len(r.words)
        assert [row[f"w{i}"] for i in range(7)] == [*r.words, *[None] * (7 - len(r.words))]
        assert row["class"] in CLASSES
        if r.vcpu:
            assert row["vcpu_label"] == r.vcpu
            assert (row["domain"], row["vcpu"]) == (int(r.vcpu[1]), int(r.vcpu[3]))
    # hypercall v2 mmu_update with its recorded count (argument 1)
    h = rows[1100]
    assert (h["hypercall"], h["hypercall_name"], h["arg1"], h["count"]) == (1, "mmu_update", 5, 5)
    assert h["arg0"] is None and h["eip"] is None and h["event_name"] == "hypercall_v2"
    # 64-bit page fault: rip, address, error code
    pf = rows[1200]
    assert (pf["eip"], pf["addr"], pf["error_code"], pf["pv_64bit"]) == (
        PF_EIP,
        PF_ADDR,
        PF_EC,
        True,
    )
    assert (pf["pf_present"], pf["pf_write"], pf["pf_user"], pf["pf_ifetch"]) == (True,) * 3 + (
        False,
    )
    assert pf["hypercall"] is None and pf["vector"] is None
    # trap: #GP with error code 0x18
    tr = rows[1300]
    assert (tr["vector"], tr["vector_name"], tr["use_error_code"]) == (13, "#GP", True)
    assert (tr["error_code"], tr["eip"]) == (0x18, TRAP_RIP)
    assert rows[1400]["eip"] == PRIV_EIP and rows[1400]["pv_64bit"] is False
    pw = rows[1350]
    assert (pw["pte"], pw["addr"], pw["eip"]) == (PTE, PTWR_ADDR, PTWR_RIP)
    assert pw["pte_nx"] is True and pw["pte_mfn"] == (PTE & ((1 << 52) - 1)) >> 12
    assert rows[1250]["hypercall_name"] == "update_va_mapping"
    assert rows[1150]["hypercall_name"] == "iret" and rows[1150]["arg1"] is None
    # scheduler and lost records
    rs = rows[1500]
    assert (rs["sched_domain"], rs["sched_vcpu"], rs["old_state"], rs["new_state"]) == (
        1,
        0,
        "running",
        "blocked",
    )
    sw = rows[1450]
    assert (sw["next_domain"], sw["next_vcpu"]) == (0x7FFF, 1)
    lost = rows[2000]
    assert (lost["lost_count"], lost["lost_first_tsc"], lost["event_name"]) == (
        42,
        1900,
        "lost_records",
    )


@pytest.mark.parametrize("fmt", ["arrow", "csv", "jsonl"])
def test_other_formats_carry_the_same_values(pv_trace, tmp_path, fmt):
    out = tmp_path / f"t.{fmt}"
    export_table(pv_trace, str(out), fmt)
    if fmt == "arrow":
        rows = ipc.open_file(out).read_all().to_pylist()
    elif fmt == "csv":
        with open(out, newline="") as f:
            rows = [{k: (None if v == "" else v) for k, v in r.items()} for r in csv.DictReader(f)]
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(RECORDS)
    got = by_tsc(rows)
    num = int if fmt == "arrow" else hex_value  # text formats: 64-bit columns in hex
    pf = got[1200]
    assert num(pf["eip"]) == PF_EIP and num(pf["addr"]) == PF_ADDR
    assert int(pf["error_code"]) == PF_EC and pf["vcpu_label"] == "d1v0"
    assert pf.get("hypercall") is None
    assert got[1100]["hypercall_name"] == "mmu_update" and num(got[1100]["arg1"]) == 5
    assert num(got[1350]["pte"]) == PTE and num(got[1350]["eip"]) == PTWR_RIP
    assert int(got[2000]["lost_count"]) == 42 and num(got[2000]["lost_first_tsc"]) == 1900
    if fmt != "arrow":  # every 64-bit address-like value is a "0x…" string
        assert all(
            hex_value(r.get(c)) is not None or r.get(c) is None for r in rows for c in HEX_COLUMNS
        )


def test_jsonl_in_pandas_keeps_64_bit_values(pv_trace, tmp_path):
    """pandas reads JSON numbers past 2**53 as float64; the hex strings survive, and tsc (an
    int64 in pandas) stays exact."""
    pd = pytest.importorskip("pandas")
    out = tmp_path / "t.jsonl"
    export_table(pv_trace, str(out), "jsonl")
    df = pd.read_json(out, lines=True)
    pf = df[df["tsc"] == 1200].iloc[0]
    assert int(pf["eip"], 16) == PF_EIP and int(pf["addr"], 16) == PF_ADDR
    assert str(df["tsc"].dtype) == "int64"
    assert sorted(df["tsc"]) == sorted(r.tsc for r in RECORDS)


def test_unattributed_rows_have_no_domain_or_vcpu(pv_trace, tmp_path):
    """Records before a pCPU's first scheduling record are in the pseudo-domain DEFAULT: their
    label says so, domain and vcpu are null (not 65536 and the pCPU)."""
    first = [  # a PV record on pCPU 0 before anything is scheduled there
        Rec(0, 900, HYPERCALL_V2, (23,), None),
        *RECORDS,
    ]
    t = write_trace(tmp_path / "d.bin", first)
    out = tmp_path / "d.parquet"
    export_table(t, str(out))
    rows = by_tsc(pq.read_table(out).to_pylist())
    r = rows[900]
    assert r["vcpu_label"] == "d[DEFAULT]v0"
    assert (r["domain"], r["vcpu"], r["domain_xenalyze"], r["vcpu_xenalyze"]) == (None,) * 4
    assert (rows[1100]["domain"], rows[1100]["vcpu"]) == (1, 0)  # attributed rows keep theirs


def test_stdout_stream(pv_trace, tmp_path, capfdbinary):
    export_table(pv_trace, "-", "arrow")
    data = capfdbinary.readouterr().out
    t = ipc.open_stream(pa.BufferReader(data)).read_all()
    assert t.num_rows == len(RECORDS)


def reader_truth(path):
    rd = TraceReader(path)
    for _ in rd.batches():
        pass
    return rd.report


@pytest.mark.parametrize(
    "name", ["real-xen417-pvdom0.bin", "real-xen417-lost.bin", "real-credit2-hvm.bin"]
)
def test_real_traces_keep_every_row(data_dir, tmp_path, name):
    path = data_dir / name
    out = tmp_path / "r.parquet"
    res = export_table(path, str(out))
    rep = reader_truth(path)
    t = pq.read_table(out, columns=["event", "cpu", "time_ns", "vcpu_label"])
    assert res.rows == t.num_rows == rep.rows
    # per (pCPU, event) volume equals the reader's own count (wrap records are not rows)
    got = t.group_by(["cpu", "event"]).aggregate([("time_ns", "count")]).to_pylist()
    got = {(r["cpu"], r["event"]): r["time_ns_count"] for r in got}
    want = {(c, e): n for c, e, n, _b in rep.volume() if e != 0x0001F002}
    assert got == want


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_text_formats_keep_every_row_of_a_real_trace(data_dir, tmp_path, fmt):
    """CSV and JSON Lines of a real trace, read back by pyarrow's own CSV / JSON readers: the
    reader's rows per (pCPU, event), its TSCs in order, and 64-bit addresses equal to the raw
    payload words they are decoded from."""
    path = data_dir / "real-xen417-lost.bin"
    out = tmp_path / f"r.{fmt}"
    res = export_table(path, str(out), fmt)
    cols = {
        "cpu": pa.int64(),
        "tsc": pa.uint64(),
        "event": pa.int64(),
        "event_name": pa.string(),
        "eip": pa.string(),
        "addr": pa.string(),
        "w0": pa.int64(),
        "w1": pa.int64(),
        "w2": pa.int64(),
        "w3": pa.int64(),
    }
    if fmt == "csv":
        t = pacsv.read_csv(
            out,
            convert_options=pacsv.ConvertOptions(column_types=cols, include_columns=list(cols)),
        )
    else:
        t = pajson.read_json(
            out,
            parse_options=pajson.ParseOptions(
                explicit_schema=pa.schema(cols), unexpected_field_behavior="ignore"
            ),
        )
    rd = TraceReader(path)
    tscs = [b.tsc for b in rd.batches()]
    rep = rd.report
    assert res.rows == t.num_rows == rep.rows
    got = t.group_by(["cpu", "event"]).aggregate([("tsc", "count")]).to_pylist()
    got = {(r["cpu"], r["event"]): r["tsc_count"] for r in got}
    assert got == {(c, e): n for c, e, n, _b in rep.volume() if e != 0x0001F002}
    assert t.column("tsc").to_pylist() == [int(x) for b in tscs for x in b]
    pf = t.filter(pa.compute.equal(t.column("event_name"), "page_fault64")).to_pylist()
    assert len(pf) > 10_000
    for r in pf:
        assert hex_value(r["eip"]) == r["w0"] | r["w1"] << 32
        assert hex_value(r["addr"]) == r["w2"] | r["w3"] << 32
    assert sum(hex_value(r["eip"]) > 2**53 for r in pf) > 0  # beyond a float64's integers


def test_real_pv_counts_match_the_readme(data_dir, tmp_path):
    """tests/data/README.md: 363,372 hypercall v2; 70,030 64-bit page faults; 60,961 PTWR."""
    out = tmp_path / "r.parquet"
    export_table(data_dir / "real-xen417-pvdom0.bin", str(out))
    t = pq.read_table(out, columns=["event_name", "hypercall", "eip", "error_code"])
    names = t.column("event_name").to_pylist()
    assert names.count("hypercall_v2") == 363_372
    assert names.count("page_fault64") == 70_030
    assert names.count("ptwr_emulation64") == 60_961
    assert t.column("hypercall").null_count == t.num_rows - 363_372 - 11_193  # v2 + sub-calls
    assert t.column("error_code").null_count < t.num_rows


def make_fleet(data_dir, tmp_path):
    """Two hosts' traces exported into one hive-partitioned dataset."""
    root = tmp_path / "fleet"
    truth = {}
    for host, name in (("hostA", "real-xen417-pvdom0.bin"), ("hostB", "real-xen417-lost.bin")):
        src = tmp_path / f"{host}.bin"
        shutil.copy(data_dir / name, src)
        res = export_table(src, str(root), "parquet", partition=True)
        rep = reader_truth(src)
        truth[host] = rep
        assert res.rows == rep.rows
        assert sorted(res.partitions) == rep.pcpus
    return root, truth


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dask on pandas 3 (not ours)
def test_partitioned_dataset_in_duckdb_and_dask(data_dir, tmp_path):
    root, truth = make_fleet(data_dir, tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["host=hostA", "host=hostB"]
    total = sum(r.rows for r in truth.values())

    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    q = f"read_parquet('{root}/*/*/*.parquet', hive_partitioning = true)"
    assert con.execute(f"select count(*) from {q}").fetchall()[0][0] == total
    per = con.execute(f"select host, cpu, count(*) from {q} group by all order by all").fetchall()
    want = sorted(
        (h, c, sum(n for cc, e, n, _b in r.volume() if cc == c and e != 0x0001F002))
        for h, r in truth.items()
        for c in r.pcpus
    )
    assert [(h, int(c), n) for h, c, n in per] == want
    hc = con.execute(
        f"select host, count(*) from {q} where event_name = 'hypercall_v2' group by host "
        "order by host"
    ).fetchall()
    assert hc[0] == ("hostA", 363_372)

    # every DuckDB query of docs/fleet.md runs on this dataset
    doc = (Path(__file__).parents[2] / "docs" / "fleet.md").read_text()
    for block in re.findall(r"```sql\n(.*?)```", doc, re.S):
        for stmt in filter(str.strip, block.split(";")):
            rows = con.execute(stmt.replace("'fleet/", f"'{root}/")).fetchall()
            assert rows or "create view" in stmt

    dd = pytest.importorskip("dask.dataframe")
    df = dd.read_parquet(str(root))
    assert len(df) == total
    counts = df.groupby("host", observed=True).size().compute()
    assert {str(k): int(v) for k, v in counts.items()} == {h: r.rows for h, r in truth.items()}


def test_reexport_replaces_only_that_host(pv_trace, tmp_path):
    root = tmp_path / "ds"
    other = write_trace(tmp_path / "other.bin")
    export_table(other, str(root), partition=True, host="keep")
    export_table(pv_trace, str(root), partition=True, host="h1")
    export_table(pv_trace, str(root), partition=True, host="h1")
    t = pq.read_table(root / "host=h1")
    assert t.num_rows == len(RECORDS)
    assert pq.read_table(root / "host=keep").num_rows == len(RECORDS)


def test_partitioned_csv_and_default_host(pv_trace, tmp_path):
    root = tmp_path / "ds"
    res = export_table(pv_trace, str(root), "csv", partition=True)
    assert res.partitions == {0: 8, 1: 7}
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.csv"))
    assert files == ["host=hand/cpu=0/part-0.csv", "host=hand/cpu=1/part-0.csv"]
    with open(root / "host=hand/cpu=1/part-0.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert "cpu" not in rows[0] and len(rows) == 7


def test_compression_that_does_not_apply_is_refused_before_any_output(pv_trace, tmp_path):
    out = tmp_path / "x.arrow"
    with pytest.raises(XentraceError, match="arrow files compress with zstd, lz4 or none"):
        export_table(pv_trace, str(out), "arrow", compression="snappy")
    assert not out.exists()
    with pytest.raises(XentraceError, match="does not apply to csv"):
        export_table(pv_trace, str(tmp_path / "x.csv"), "csv", compression="gzip")
    assert not (tmp_path / "x.csv").exists()
    root = tmp_path / "ds"
    export_table(pv_trace, str(root), "arrow", partition=True, host="h")
    with pytest.raises(XentraceError):
        export_table(pv_trace, str(root), "arrow", partition=True, host="h", compression="gzip")
    assert sorted(p.name for p in (root / "host=h").iterdir()) == ["cpu=0", "cpu=1"]  # kept
    for fmt, comp in (("parquet", "snappy"), ("parquet", "gzip"), ("arrow", "lz4")):
        o = tmp_path / f"ok-{comp}.{fmt}"
        assert export_table(pv_trace, str(o), fmt, compression=comp).rows == len(RECORDS)
    assert ipc.open_file(tmp_path / "ok-lz4.arrow").read_all().num_rows == len(RECORDS)
    assert pq.read_table(tmp_path / "ok-gzip.parquet").num_rows == len(RECORDS)


def test_arrow_file_of_many_batches_shares_dictionaries(data_dir, tmp_path):
    """Small batches: the Arrow IPC file (one dictionary per column, grown by deltas) reads back
    the same values as the Parquet file, batch by batch."""
    path = data_dir / "real-xen417-lost.bin"
    a, p = tmp_path / "a.arrow", tmp_path / "p.parquet"
    export_table(path, str(a), "arrow", batch_rows=65536)
    export_table(path, str(p), "parquet")
    ta = ipc.open_file(a).read_all()
    assert ta.schema.equals(schema())
    assert plain(ta).equals(plain(pq.read_table(p)))


def test_small_batches_stream_the_same_rows(data_dir, tmp_path):
    path = data_dir / "real-xen417-lost.bin"
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    export_table(path, str(a))
    export_table(path, str(b), batch_rows=4096)
    ta, tb = pq.read_table(a), pq.read_table(b)
    assert ta.schema.equals(schema()) and tb.schema.equals(schema())
    assert ta.num_rows == tb.num_rows and plain(ta).equals(plain(tb))
    assert pq.ParquetFile(b).metadata.num_rows == tb.num_rows
