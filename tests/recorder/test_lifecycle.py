"""``simulate``'s processes: however it ends (SIGTERM, SIGHUP, SIGKILL) no recorder is left
running and no shared memory or file is left behind; stale leftovers of dead runs are
removed; model names are checked."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxentrace.hypervisor import TraceBuffers
from pyxentrace.hypervisor.machine import host_info_path
from pyxentrace.reader import read
from pyxentrace.recorder.commands import record_cmd, simulate_cmd
from pyxentrace.recorder.simulate import remove_stale

from .conftest import command, shm_exists, windows


def leftovers(name: str) -> list[str]:
    """What a model called ``name`` may leave: its segments, FIFO and host description."""
    paths = [f"/dev/shm/{name}", f"/dev/shm/{name}-tbuf"]
    paths += [host_info_path(name), host_info_path(name).replace(".host.json", ".virq")]
    return [p for p in paths if os.path.exists(p)]


def recorders(name: str) -> list[int]:
    """Live (non-zombie) recorder processes attached to the model ``name``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if b"pyxentrace.recorder" in argv and name.encode() in argv and state != b"Z":
            pids.append(int(entry))
    return pids


def start(tmp: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A real-time dom0 simulation recording into tmp/k.bin, once its file has windows."""
    out = tmp / "k.bin"
    proc = subprocess.Popen(
        command("simulate", "--duration", "60", "--model", name, "-o", str(out), "-q"),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size > 0):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the simulation did not start recording"
        time.sleep(0.05)
    assert len(recorders(name)) == 1
    return proc, out


def check_trace(out: Path) -> dict:
    assert windows(out.read_bytes())  # whole windows only
    _, report = read(out)
    assert report.anomaly_count == 0, report.anomalies[:3]
    return json.loads(Path(str(out) + ".meta.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_terminated_simulate_stops_its_recorder_and_cleans_up(tmp: Path, sig: int) -> None:
    name = f"pxt-kill-{secrets.token_hex(4)}"
    proc, out = start(tmp, name)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0], lines
    assert recorders(name) == []
    assert leftovers(name) == []
    meta = check_trace(out)
    assert meta["recorder"]["exit"] == "ok" and meta["recorder"]["stop_signal"] == "SIGTERM"


def test_killed_simulate_recorder_stops_by_itself(tmp: Path) -> None:
    """SIGKILL leaves no chance to clean up: the recorder sees its parent's pipe close, drains,
    writes a valid file and removes what the model left."""
    name = f"pxt-kill-{secrets.token_hex(4)}"
    proc, out = start(tmp, name)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while recorders(name) or leftovers(name):
        assert time.monotonic() < deadline, (recorders(name), leftovers(name))
        time.sleep(0.05)
    meta = check_trace(out)
    assert meta["recorder"]["exit"] == "ok"
    assert meta["recorder"]["stop_reason"] == "parent exited"


def test_stale_models_of_dead_processes_are_removed() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    stale_name = f"pyxentrace-{dead.pid}-{secrets.token_hex(4)}"
    live_name = f"pyxentrace-{live.pid}-{secrets.token_hex(4)}"
    made = []
    try:
        for name in (stale_name, live_name):
            tb = TraceBuffers.create(name, nr_cpus=1)
            made.append(tb)
            tb.set_size(1)
            Path(host_info_path(name)).write_text("{}")
            assert len(leftovers(name)) == 4
        removed = remove_stale()
        assert stale_name in removed and live_name not in removed
        assert leftovers(stale_name) == []
        assert len(leftovers(live_name)) == 4
    finally:
        for tb in made:
            tb.close()
        for name in (stale_name, live_name):
            for p in leftovers(name):
                os.unlink(p)
        live.kill()
        live.wait()


def test_simulate_with_the_name_of_a_running_model(tmp: Path) -> None:
    name = f"pxt-dup-{secrets.token_hex(4)}"
    with TraceBuffers.create(name, nr_cpus=1):
        r = CliRunner().invoke(
            simulate_cmd, ["--model", name, "--duration", "0.1", "-o", str(tmp / "d.bin"), "-q"]
        )
        assert r.exit_code == 1, r.output
        assert r.output.startswith("pyxentrace: error: ") and r.output.count("\n") == 1
        assert "already running" in r.output
        assert shm_exists(name)  # the running one is untouched
    assert not (tmp / "d.bin").exists()


@pytest.mark.parametrize("name", ["bad/name", "x" * 300, ".hidden", "-dash", ""])
@pytest.mark.parametrize("cmd", ["simulate", "record"])
def test_bad_model_names_are_usage_errors(tmp: Path, cmd: str, name: str) -> None:
    out = str(tmp / "n.bin")
    if cmd == "simulate":
        r = CliRunner().invoke(simulate_cmd, ["--model", name, "-o", out, "-q"])
    else:
        r = CliRunner().invoke(record_cmd, ["--model", name, out])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    if name:
        assert "invalid model name" in r.output
    assert not Path(out).exists()
