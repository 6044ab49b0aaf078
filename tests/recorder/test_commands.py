"""Command-line behaviour: usage errors (2), bad input (1), one line each; the demo."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxentrace.recorder.commands import record_cmd, simulate_cmd

from .conftest import command


@pytest.mark.parametrize(
    ("cmd", "args", "code", "text"),
    [
        (record_cmd, ["out.bin"], 2, "--model"),
        (record_cmd, ["--model", "pxt-none", "-c", "1,,2", "out.bin"], 2, "empty element"),
        (record_cmd, ["--model", "pxt-none", "-e", "bogus", "out.bin"], 2, "event mask"),
        (record_cmd, ["--model", "pxt-none", "-M", "3Q", "out.bin"], 2, "memory buffer"),
        (record_cmd, ["--model", "pxt-none", "-S", "0", "out.bin"], 2, "at least 1"),
        (record_cmd, ["--model", "pxt-none", "out.bin"], 1, "no simulated hypervisor"),
        (simulate_cmd, ["--profile", "dom0", "--script", "x.jsonl", "-o", "t"], 2, "exclusive"),
        (simulate_cmd, ["--duration", "1"], 2, "--output"),
        (simulate_cmd, ["--abi", "xen-4", "--arch", "x86_32", "-o", "t"], 2, "no xen-4"),
        (simulate_cmd, ["--domains", "0:x", "-o", "t"], 1, "bad domain"),
        (simulate_cmd, ["--profile", "idle", "-c", "9", "-o", "t"], 2, "cpu 9 does not exist"),
    ],
)
def test_errors(tmp: Path, monkeypatch: pytest.MonkeyPatch, cmd, args, code, text) -> None:
    monkeypatch.chdir(tmp)
    if "x.jsonl" in args:
        (tmp / "x.jsonl").write_text("")
    r = CliRunner().invoke(cmd, args)
    assert r.exit_code == code, r.output
    assert text in r.output
    if code == 1:
        assert r.output.startswith("pyxentrace: error: ") and r.output.count("\n") == 1


def test_obsolete_log_thresh_is_accepted(tmp: Path) -> None:
    r = CliRunner().invoke(record_cmd, ["-t", "5", "--model", "pxt-none", str(tmp / "o")])
    assert r.exit_code == 1 and "obsolete" in r.output


def test_demo(tmp: Path) -> None:
    cp = subprocess.run(
        command("demo", "--duration", "0.3", "-q"),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cp.returncode == 0, cp.stderr
    assert (tmp / "demo-trace.bin").stat().st_size > 0
    assert (tmp / "demo-trace.bin.meta.json").exists()
    assert "records" in cp.stdout
