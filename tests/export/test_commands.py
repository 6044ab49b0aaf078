"""The three commands as a user runs them: exit codes, one-line errors, warnings gathered into
one closing summary, --quiet, and the progress bar."""

from __future__ import annotations

import io

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pyxentrace.export.commands import COMMANDS
from pyxentrace.export.progress import Progress, Warnings
from pyxentrace.format.record import encode_record, encode_window

from .handtrace import RECORDS, trace_bytes, write_trace


@click.group()
def cli() -> None:
    """The commands as the lead's CLI registers them."""


for _c in COMMANDS:
    cli.add_command(_c)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_export_ok_with_one_closing_summary(tmp_path):
    t = write_trace(tmp_path / "t.bin", hz=None)  # no sidecar: the clock is assumed
    out = tmp_path / "o.parquet"
    r = run("export", t, "-o", out)
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).num_rows == len(RECORDS)
    lines = r.stderr.splitlines()
    assert lines[0].startswith("pyxentrace: 2 warnings:")
    assert any("assumes a 2.40 GHz TSC" in x for x in lines)
    assert any("dropped 42 records" in x for x in lines)
    assert lines[-1].startswith(f"pyxentrace: wrote {len(RECORDS)} rows to {out} (")


def test_quiet_prints_nothing(pv_trace, tmp_path):
    for cmd, out in (("export", "o.csv"), ("perfetto", "o.pftrace"), ("report", "o.html")):
        extra = ("--to", "csv") if cmd == "export" else ()
        r = run(cmd, pv_trace, "-o", tmp_path / out, "-q", *extra)
        assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""
        assert (tmp_path / out).stat().st_size > 0


def test_default_output_names(pv_trace):
    assert run("perfetto", pv_trace, "-q").exit_code == 0
    assert pv_trace.with_suffix(".pftrace").exists()
    assert run("report", pv_trace, "-q").exit_code == 0
    assert pv_trace.with_suffix(".html").exists()


def test_damaged_trace_writes_what_is_valid_then_exits_1(tmp_path):
    data = trace_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:-6])  # the last record (lost_records of pCPU 1's window) cut short
    (tmp_path / "cut.bin.meta.json").write_text('{"tsc_hz": 1e9}')
    out = tmp_path / "o.parquet"
    r = run("export", cut, "-o", out)
    assert r.exit_code == 1
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith(f"pyxentrace: error: {cut}: offset ")
    assert "Traceback" not in r.output + r.stderr
    assert pq.read_table(out).num_rows == len(RECORDS) - 1


def test_bad_input_and_usage_errors(tmp_path, pv_trace):
    r = run("export", tmp_path / "missing.bin", "-o", tmp_path / "o.parquet")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "cannot open" in r.stderr
    assert not (tmp_path / "o.parquet").exists()
    assert run("export", pv_trace, "--to", "xml", "-o", tmp_path / "x").exit_code == 2
    assert run("export", pv_trace).exit_code == 2  # -o is required
    assert run("export", pv_trace, "-o", "-").exit_code == 2  # Parquet cannot stream
    assert run("perfetto", "-").exit_code == 2  # stdin needs -o
    assert run("export", pv_trace, "-o", tmp_path / "o", "--host", "h").exit_code == 2
    garbage = tmp_path / "g.bin"
    garbage.write_bytes(b"\x00\x01\x02")
    r = run("perfetto", garbage, "-o", tmp_path / "g.pftrace")
    assert r.exit_code == 1 and r.stderr.splitlines()[-1].startswith("pyxentrace: error:")


def test_stdin_is_read(tmp_path):
    data = encode_window(0, encode_record(0x0020100D, [23], 5) + encode_record(0x0020100D, [1], 9))
    r = CliRunner().invoke(cli, ["export", "-", "--to", "jsonl", "-o", "-", "-q"], input=data)
    assert r.exit_code == 0
    assert [line.count('"hypercall":') for line in r.stdout.splitlines()] == [1, 1]
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", "-", "-o", str(out), "-q"], input=data)
    assert r.exit_code == 0 and "iret" in out.read_text()


def test_progress_bar_appears_after_its_delay():
    buf = io.StringIO()
    with Progress("export parquet", 1000, delay=0.0, force=True, stream=buf) as p:
        p.update(500)
        assert p.shown
    assert "export parquet" in buf.getvalue()
    quiet = io.StringIO()
    with Progress("x", 1000, delay=0.0, enabled=False, force=True, stream=quiet) as p:
        p.update(500)
    assert quiet.getvalue() == "" and not p.shown
    slow = Progress("x", 10, delay=60.0, force=True, stream=io.StringIO())
    slow.update(5)
    assert not slow.shown  # short work never shows a bar
    slow.start()
    assert slow.shown  # unless known to be long
    slow.close()
    notty = Progress("x", 10, delay=0.0, stream=io.StringIO())
    notty.update(5)
    assert not notty.shown  # not a terminal, not forced


def test_warnings_are_counted_once():
    w = Warnings()
    w.add("a")
    w.add("a")
    w.add("b", 3)
    buf = io.StringIO()
    w.emit(buf)
    assert buf.getvalue().splitlines() == ["pyxentrace: 2 warnings:", "  - a (x2)", "  - b (x3)"]


@pytest.mark.parametrize(
    "fmt, codec, says",
    [
        ("arrow", "snappy", "arrow files compress with zstd, lz4 or none, not snappy"),
        ("arrow", "gzip", "arrow files compress with zstd, lz4 or none, not gzip"),
        ("csv", "zstd", "--compression does not apply to csv"),
        ("jsonl", "gzip", "--compression does not apply to jsonl"),
    ],
)
def test_compression_the_format_cannot_use_is_a_usage_error(pv_trace, tmp_path, fmt, codec, says):
    out = tmp_path / f"x.{fmt}"
    r = run("export", pv_trace, "--to", fmt, "--compression", codec, "-o", out)
    assert r.exit_code == 2 and says in r.stderr, r.output
    assert not out.exists()  # refused before the output was opened
    r = run("export", pv_trace, "--to", fmt, "--partition", "--compression", codec, "-o", out)
    assert r.exit_code == 2 and not out.exists()


def test_compression_the_format_can_use(pv_trace, tmp_path):
    for fmt, codec in (("arrow", "lz4"), ("arrow", "none"), ("parquet", "snappy"), ("csv", "none")):
        out = tmp_path / f"x-{codec}.{fmt}"
        r = run("export", pv_trace, "--to", fmt, "--compression", codec, "-o", out, "-q")
        assert r.exit_code == 0 and out.stat().st_size > 0, r.output


@pytest.mark.parametrize("cmd", ["export", "perfetto", "report"])
def test_help(cmd):
    r = run(cmd, "--help")
    assert r.exit_code == 0 and "--cpu-hz" in r.output and "--quiet" in r.output
