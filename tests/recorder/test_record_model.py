"""``pyxentrace record`` against a running simulated host: signals, -T, -x, disk limits, -M."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pyxentrace.hypervisor.control import TraceControl
from pyxentrace.reader import read

from .conftest import command, per_cpu, records, windows


def start(model: str, out: Path, *opts: str, **kw) -> subprocess.Popen:
    proc = subprocess.Popen(
        command("record", "--model", model, *opts, str(out)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kw,
    )
    sidecar = Path(str(out) + ".meta.json")
    deadline = time.monotonic() + 30
    while not sidecar.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the recorder did not start"
        time.sleep(0.02)
    return proc


def finish(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode()


def check_file(out: Path) -> dict:
    data = out.read_bytes()
    assert windows(data), "no windows recorded"
    for cpu_data in per_cpu(data).values():
        tscs = [t for _, t, _ in records(cpu_data) if t is not None]
        assert tscs == sorted(tscs)
    _, report = read(out)
    assert report.anomaly_count == 0, report.anomalies[:3]
    return json.loads(Path(str(out) + ".meta.json").read_text())


def tracing_on(model: str) -> bool:
    with TraceControl.attach(model) as ctl:
        return ctl.tb_init_done


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM])
def test_signal_mid_run_leaves_a_complete_file(model: str, tmp: Path, sig: int) -> None:
    out = tmp / "sig.bin"
    proc = start(model, out, "-q")
    time.sleep(0.4)
    proc.send_signal(sig)
    code, err = finish(proc)
    assert code == 0, err
    meta = check_file(out)
    rec = meta["recorder"]
    assert rec["exit"] == "ok" and rec["stop_signal"] == signal.Signals(sig).name
    assert meta["end_time"] >= meta["start_time"]
    assert meta["tsc_hz"] == 2_400_000_000 and meta["domains"][0]["width"] == 64
    assert not tracing_on(model)  # disabled at exit


def test_time_limit_and_dont_disable(model: str, tmp: Path) -> None:
    out = tmp / "t.bin"
    t0 = time.monotonic()
    code, err = finish(start(model, out, "-T", "1", "-x", "-q"))
    assert code == 0, err
    assert 0.9 < time.monotonic() - t0 < 20
    check_file(out)
    assert tracing_on(model)  # -x: left on
    code, err = finish(start(model, out, "-T", "1", "-D", "-q"))  # discards the backlog
    assert code == 0, err
    check_file(out)
    assert not tracing_on(model)


def test_file_size_limit_keeps_a_valid_file(model: str, tmp: Path) -> None:
    out = tmp / "full.bin"
    limit = 300_000

    def fsize() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = start(model, out, "-s", "20", preexec_fn=fsize)
    code, err = finish(proc)
    assert code == 1, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "write failed" in lines[0] and "full.bin" in lines[0]
    assert 0 < out.stat().st_size <= limit
    meta = check_file(out)  # complete windows only, readable without anomalies
    assert "write failed" in meta["recorder"]["exit"]
    assert not tracing_on(model)


def test_memory_buffer_keeps_newest_windows(model: str, tmp: Path) -> None:
    out = tmp / "ring.bin"
    proc = start(model, out, "-M", "256K", "-q")
    time.sleep(1.0)
    assert out.stat().st_size == 0  # nothing is written until exit
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 0, err
    assert 0 < out.stat().st_size <= 256 * 1024
    meta = check_file(out)
    assert meta["recorder"]["memory_buffer"]["dropped_windows"] > 0


def test_second_recording_accounts_for_itself(model: str, tmp: Path) -> None:
    """The counters are the model's lifetime totals; a later recording (here with -D, while
    the host keeps running) reports its own share, which its file accounts for exactly."""
    first = tmp / "a.bin"
    code, err = finish(start(model, first, "-T", "1", "-x", "-q"))
    assert code == 0, err
    second = tmp / "b.bin"
    code, err = finish(start(model, second, "-T", "1", "-D", "-q"))
    assert code == 0, err
    meta = check_file(second)
    assert meta["recorder"]["counters_exact"]
    data = per_cpu(second.read_bytes())
    for cpu, c in meta["pcpus"].items():
        recs = records(data.get(int(cpu), b""))
        kept = sum(1 for e, _, _ in recs if e not in (0x0001F002, 0x0001F001))
        lost = sum(int.from_bytes(p[:4], "little") for e, _, p in recs if e == 0x0001F001)
        b = meta["buffers"]["pcpus"][cpu]
        assert b["backlog_records"] == 0  # -D
        assert kept == c["written"] - b["left_records"]
        assert kept + lost + b["unreported_lost"] + b["left_records"] + b["left_lost"] == (
            c["offered"] - c["filtered"] + b["pending_lost_at_start"]
        )
        start_totals = meta["recorder"]["counters_at_start"][cpu]
        assert start_totals["written"] > 0  # the first recording's records are not ours
