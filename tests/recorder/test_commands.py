"""Command-line behaviour: usage errors (2), bad input (1), one line each; the demo."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxentrace.hypervisor import TraceBuffers
from pyxentrace.recorder.commands import record_cmd, simulate_cmd
from pyxentrace.recorder.options import OptionError
from pyxentrace.recorder.sidecar import meta_path_for
from pyxentrace.recorder.simulate import SimulateConfig, Simulation

from .conftest import command, windows


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
        (simulate_cmd, ["--domains", "0:x", "-o", "t"], 2, "bad domain"),
        (simulate_cmd, ["--domains", "0:1x48", "-o", "t"], 2, "width"),
        (simulate_cmd, ["--domains", "32767:1", "-o", "t"], 2, "out of range"),
        (simulate_cmd, ["--duration", "0", "-o", "t"], 2, "--duration"),
        (simulate_cmd, ["--duration", "-1", "-o", "t"], 2, "--duration"),
        (simulate_cmd, ["--duration", "nan", "-o", "t"], 2, "--duration"),
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


@pytest.fixture
def host() -> TraceBuffers:
    """A simulated hypervisor in this process (no workload): its buffers, 1 page per pCPU."""
    tb = TraceBuffers.create(f"pxt-cmd-{secrets.token_hex(4)}", nr_cpus=2)
    tb.set_size(1)
    yield tb
    tb.close()


def test_obsolete_log_thresh_is_accepted_and_ignored(tmp: Path, host: TraceBuffers) -> None:
    host.TRACE_TIME(1, 0x0002800A, 7)
    out = tmp / "o.bin"
    r = CliRunner().invoke(record_cmd, ["-t", "5", "--model", host.name, "-T", "1", str(out)])
    assert r.exit_code == 0, r.output
    assert "-t/--log-thresh is obsolete" in r.output and "recorded 1 windows" in r.output
    assert [cpu for cpu, _ in windows(out.read_bytes())] == [1]
    assert Path(str(out) + ".meta.json").exists()
    # The warning does not hide a real error.
    r = CliRunner().invoke(record_cmd, ["-t", "5", "--model", "pxt-none", str(out)])
    assert r.exit_code == 1 and "obsolete" in r.output and "no simulated hypervisor" in r.output


def test_too_small_memory_buffer_is_refused_before_the_output_is_touched(
    tmp: Path, host: TraceBuffers
) -> None:
    out = tmp / "keep.bin"
    out.write_bytes(b"an earlier trace")
    r = CliRunner().invoke(record_cmd, ["--model", host.name, "-M", "4K", str(out)])
    assert r.exit_code == 1, r.output
    assert "smaller than one full window (4100 bytes" in r.output  # 12 + 4096 - 8
    assert out.read_bytes() == b"an earlier trace"
    assert not Path(str(out) + ".meta.json").exists()


def test_sidecar_only_next_to_regular_files(tmp: Path) -> None:
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    assert meta_path_for("/dev/full") is None
    assert meta_path_for("/dev/stdout") is None
    assert meta_path_for(str(fifo)) is None
    assert meta_path_for("-") is None and meta_path_for(None) is None
    assert meta_path_for(str(tmp / "new.bin")) == str(tmp / "new.bin.meta.json")
    assert meta_path_for("/dev/full", str(tmp / "m.json")) == str(tmp / "m.json")  # --meta


def test_recorder_arguments_are_parsed_by_the_recorder() -> None:
    def sim(*args: str) -> Simulation:
        return Simulation(SimulateConfig(output="t.bin", recorder_args=list(args)))

    assert sim("-s", "010")._poll_ms() == 8  # strtol: a leading 0 is octal
    assert sim("--poll-sleep", "0x20")._poll_ms() == 32
    assert sim("-q")._poll_ms() == 100
    opts = sim("-e", "sched", "-e", "pv", "-c", "1-", "-M", "1M").recorder_opts
    assert (opts.evt_mask, opts.cpu_mask, opts.memory_buffer) == (0x0022F000, "1-", 1 << 20)
    for bad in (["-s", "abc"], ["-s"], ["--bogus"], ["-c", "1,,2"]):
        with pytest.raises(OptionError):
            sim(*bad)


#: DESIGN.md's host: 321,134 hypercalls by one dom0 vCPU over 8.7 s.
HYPERCALLS_PER_S = 321_134 / 8.7


def test_demo(tmp: Path) -> None:
    cp = subprocess.run(
        command("demo", "--duration", "0.5", "-q"),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cp.returncode == 0, cp.stderr
    assert (tmp / "demo-trace.bin").stat().st_size > 0
    assert (tmp / "demo-trace.bin.meta.json").exists()
    m = re.search(r"duration ([\d.]+) s", cp.stdout)
    assert m, cp.stdout[:500]
    seconds = float(m.group(1))
    assert 0.45 < seconds < 0.55
    # One panel per dom0 vCPU, each with its hypercall count.
    counts: dict[str, int] = {}
    vcpu = None
    for line in cp.stdout.splitlines():
        head = re.search(r"\b(d\d+v\d+)\b.*PV events", line)
        if head:
            vcpu = head.group(1)
        row = re.match(r"[│|]?\s*hypercall\s+([\d,]+)\s", line)
        if row and vcpu and vcpu not in counts:
            counts[vcpu] = int(row.group(1).replace(",", ""))
    assert set(counts) == {"d0v0", "d0v1", "d0v2", "d0v3"}, cp.stdout[:2000]
    for vcpu, n in counts.items():
        # The records are the same for every run (seed 0); over 0.5 s a vCPU's running time
        # varies by ~6 % from run length to run length, so 20 % is a wide margin.
        assert n / seconds == pytest.approx(HYPERCALLS_PER_S, rel=0.2), (vcpu, n)
