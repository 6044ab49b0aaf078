"""``record --xen``: the host's xentrace with the same options, a sidecar from ``xl``.

Fake ``xentrace`` and ``xl`` executables on PATH stand in for a real Xen host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyxentrace.recorder.xenhost import abi_for_version, parse_xl_info, parse_xl_list

from .conftest import command

XL_INFO = """host                   : xenbox
release                : 6.1.0-18-amd64
machine                : x86_64
nr_cpus                : 2
cpu_mhz                : 2394.454
xen_major              : 4
xen_minor              : 17
xen_extra              : .7
xen_version            : 4.17.7
"""
XL_LIST = """Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  1024     4     r-----      30.1
web                                          3   512     2     -b----       1.5
"""
FAKE_XENTRACE = """#!{python}
import json, os, signal, struct, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "w") as f:
    json.dump(args, f)
stop = []
signal.signal(signal.SIGINT, lambda s, fr: stop.append(s))
if "-T" not in args:
    while not stop:
        time.sleep(0.01)
rec = struct.pack("<IQI", 0x9002800A | 0, 1000, 0)[:8]
data = struct.pack("<IQ", 0x80028003 | 1 << 28, 1000) + struct.pack("<I", 0)
with open(args[-1], "wb") as f:
    f.write(struct.pack("<IiI", 0x2001F003, 0, len(data)) + data)
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""
FAKE_XL = """#!{python}
import sys
sys.stdout.write({info!r} if sys.argv[1] == "info" else {lst!r})
"""


@pytest.fixture
def fakebin(tmp: Path) -> Path:
    d = tmp / "bin"
    d.mkdir()
    for name, text in (("xentrace", FAKE_XENTRACE), ("xl", FAKE_XL)):
        p = d / name
        p.write_text(text.format(python=sys.executable, info=XL_INFO, lst=XL_LIST))
        p.chmod(0o755)
    return d


def env(fakebin: Path, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{fakebin}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(tmp / "argv.json"),
        **extra,
    }


def test_runs_xentrace_with_the_same_options(fakebin: Path, tmp: Path) -> None:
    out = tmp / "host.bin"
    argv = command(
        "record",
        "--xen",
        "-e",
        "pv",
        "-e",
        "sched",
        "-c",
        "0-1",
        "-S",
        "64",
        "-s",
        "50",
        "-T",
        "1",
        "-D",
        "-x",
        "-M",
        "1M",
        str(out),
    )
    cp = subprocess.run(argv, env=env(fakebin, tmp), capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    assert json.loads((tmp / "argv.json").read_text()) == [
        "-e",
        "0x22f000",
        "-c",
        "0-1",
        "-S",
        "64",
        "-s",
        "50",
        "-T",
        "1",
        "-M",
        "1048576",
        "-D",
        "-x",
        str(out),
    ]
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["source"] == "xen"
    assert meta["tsc_hz"] == 2_394_454_000
    assert (meta["nr_pcpus"], meta["xen_version"], meta["abi"], meta["arch"]) == (
        2,
        "4.17.7",
        "xen-4",
        "x86_64",
    )
    assert meta["domains"] == [
        {"domid": 0, "name": "Domain-0", "vcpus": 4, "width": None},
        {"domid": 3, "name": "web", "vcpus": 2, "width": None},
    ]
    assert meta["recorder"]["exit_status"] == 0 and "end_time" in meta
    assert out.stat().st_size == 12 + 16


def test_signals_are_passed_to_xentrace(fakebin: Path, tmp: Path) -> None:
    out = tmp / "sig.bin"
    proc = subprocess.Popen(
        command("record", "--xen", str(out)), env=env(fakebin, tmp), stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while not (tmp / "argv.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    assert out.stat().st_size == 28


def test_exit_status_and_missing_tools(fakebin: Path, tmp: Path) -> None:
    out = tmp / "x.bin"
    cp = subprocess.run(
        command("record", "--xen", "-T", "1", str(out)),
        env=env(fakebin, tmp, FAKE_RC="3"),
        capture_output=True,
        timeout=60,
    )
    assert cp.returncode == 3
    (fakebin / "xl").unlink()
    cp = subprocess.run(
        command("record", "--xen", "-T", "1", str(out)),
        env=env(fakebin, tmp),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 0 and "warning" in cp.stderr and "xl" in cp.stderr
    assert "tsc_hz" not in json.loads(Path(str(out) + ".meta.json").read_text())
    (fakebin / "xentrace").unlink()
    cp = subprocess.run(
        command("record", "--xen", str(out)),
        env={**env(fakebin, tmp), "PATH": str(fakebin)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cp.returncode == 1 and "xentrace: not found" in cp.stderr


def test_parsers() -> None:
    info = parse_xl_info(XL_INFO)
    assert info["cpu_mhz"] == "2394.454" and info["xen_extra"] == ".7"
    assert [d["name"] for d in parse_xl_list(XL_LIST)] == ["Domain-0", "web"]
    assert abi_for_version(None) is None


@pytest.mark.parametrize(
    ("version", "abi"),
    [
        # The seed's records (Oct 2007) until runstate tracing (2008-09-08): Xen 3.3.0 was
        # released in August 2008, so 3.4 is the first release with runstate records.
        ("3.2.1", "xen-3.2"),
        ("3.3.2", "xen-3.2"),
        ("3.4.0", "xen-3.4"),
        ("4.1.6", "xen-3.4"),
        ("4.2.5", "xen-3.4"),  # still 0x0020f0nn PV ids: renumbered 2012-10-03, after 4.2
        ("4.3.0", "xen-4"),
        ("4.17.7", "xen-4"),
        ("4.20-unstable", "xen-4"),
        ("unknown", None),
    ],
)
def test_record_generations_by_release(version: str, abi: str | None) -> None:
    assert abi_for_version(version) == abi
