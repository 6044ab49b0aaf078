"""The CLI as a user runs it: output, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PY = [sys.executable, "-m", "pyxentrace.cli"]


def run(*args, stdin=None):
    return subprocess.run(
        [*PY, *map(str, args)],
        capture_output=True,
        input=stdin,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )


@pytest.fixture(scope="module")
def credit2_json(data_dir):
    p = run("info", "--json", data_dir / "real-credit2-hvm.bin")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_info_json_shape(credit2_json):
    j = credit2_json
    assert j["records"] == 180_680 - 187
    assert j["pcpus"] == list(range(8))
    assert sum(j["events"].values()) == j["records"]
    assert j["wrap_records"] == 27 and j["events"]["0x0001f002"] == 27
    assert j["lost_records"] == 0 and j["anomalies"] == []
    assert j["cpu_hz_source"] == "assumed"
    assert 0.10 < j["max_disorder_s"] < 0.13  # README: ~117 ms out of order


def test_info_text_and_warning(data_dir):
    p = run("info", data_dir / "real-xen417-pvdom0.bin")
    assert p.returncode == 0
    out = p.stdout.decode()
    assert "hypercall_v2" in out and "611,894" in out
    assert b"time scale assumes a 2.40 GHz TSC" in p.stderr


def test_cpu_hz_option_and_sidecar(tmp_path, data_dir):
    src = (data_dir / "real-credit2-hvm.bin").read_bytes()
    t = tmp_path / "x.bin"
    t.write_bytes(src)
    a = json.loads(run("info", "--json", "--cpu-hz", 1.2e9, t).stdout)
    assert a["cpu_hz"] == 1.2e9 and a["cpu_hz_source"] == "option"
    (tmp_path / "x.bin.meta.json").write_text(json.dumps({"tsc_hz": 3.0e9}))
    b = run("info", "--json", t)
    assert b.returncode == 0 and b.stderr == b""
    j = json.loads(b.stdout)
    assert j["cpu_hz"] == 3.0e9 and j["cpu_hz_source"] == "sidecar"
    assert abs(j["duration_s"] * 3.0e9 - a["duration_s"] * 1.2e9) < 1


def test_stdin(data_dir):
    data = (data_dir / "real-credit2-hvm.bin").read_bytes()
    p = run("info", "--json", "-", stdin=data)
    assert p.returncode == 0
    assert json.loads(p.stdout)["records"] == 180_680 - 187


def test_corrupted_copy_exit_1(tmp_path, data_dir):
    data = bytearray((data_dir / "real-credit2-hvm.bin").read_bytes()[:100_000])
    t = tmp_path / "cut.bin"
    t.write_bytes(bytes(data))
    p = run("info", t)
    assert p.returncode == 1
    err = p.stderr.decode().strip().splitlines()
    assert len(err) == 2  # the assumed-clock warning and one error line
    assert err[-1].startswith(f"pyxentrace: error: {t}: offset ")
    assert "Traceback" not in p.stderr.decode()
    data[5000:5004] = b"\xff\xff\xff\xff"
    t.write_bytes(bytes(data))
    p = run("info", "--json", t)
    assert p.returncode == 1 and "Traceback" not in p.stderr.decode()
    assert json.loads(p.stdout)["anomalies"]


def test_usage_errors_exit_2(data_dir):
    assert run("info").returncode == 2
    assert run("nosuchcommand").returncode == 2
    assert run("info", "--cpu-hz", "fast", data_dir / "pv_trace.bin").returncode == 2


def test_missing_file_exit_1(tmp_path):
    p = run("info", tmp_path / "nope.bin")
    assert p.returncode == 1 and b"cannot open" in p.stderr and b"Traceback" not in p.stderr


def test_dump_lines(data_dir):
    p = run("dump", "--cpu-hz", 2.4e9, data_dir / "real-xen417-pvdom0.bin")
    assert p.returncode == 0
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 611_884  # every record but the 93 window headers and 10 wrap records
    times = [float(x.split()[0]) for x in lines[:5000]]
    assert times == sorted(times)
    assert {x.split()[1] for x in lines[:5000]} == {"p0", "p1"}
