"""Helpers for the recorder tests: an independent trace-file parser, command runners, and a
running simulated hypervisor for recorders to attach to."""

from __future__ import annotations

import os
import secrets
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxentrace.hypervisor.control import TraceControl

CPU_CHANGE = 0x2001F003
WRAP, LOST = 0x0001F002, 0x0001F001


def command(name: str, *args: str) -> list[str]:
    """argv running ``pyxentrace NAME ARGS`` in its own interpreter."""
    code = (
        f"from pyxentrace.recorder.commands import {name}_cmd as c; "
        f"c(prog_name='pyxentrace {name}')"
    )
    return [sys.executable, "-c", code, *args]


def windows(data: bytes) -> list[tuple[int, bytes]]:
    """Split a trace file into (cpu, window bytes); every window must be complete."""
    out, off = [], 0
    while off < len(data):
        hdr, cpu, size = struct.unpack_from("<IiI", data, off)
        assert hdr == CPU_CHANGE, f"no CPU_CHANGE record at offset {off}"
        assert off + 12 + size <= len(data), f"window at {off} runs past the end"
        out.append((cpu, data[off + 12 : off + 12 + size]))
        off += 12 + size
    return out


def per_cpu(data: bytes) -> dict[int, bytes]:
    """The concatenated window bytes of each pCPU, in file order."""
    out: dict[int, bytes] = {}
    for cpu, w in windows(data):
        out[cpu] = out.get(cpu, b"") + w
    return out


def records(data: bytes) -> list[tuple[int, int | None, bytes]]:
    """(event, tsc, payload) of every record in window bytes."""
    out, off = [], 0
    while off < len(data):
        (hdr,) = struct.unpack_from("<I", data, off)
        n, timed = (hdr >> 28) & 7, hdr >> 31
        tsc = struct.unpack_from("<Q", data, off + 4)[0] if timed else None
        start = off + 4 + 8 * timed
        assert start + 4 * n <= len(data), f"record at {off} runs past its window"
        out.append((hdr & 0x0FFFFFFF, tsc, data[start : start + 4 * n]))
        off = start + 4 * n
    return out


def shm_exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    """A dom0-profile machine (``simulate --no-record``) running in real time; its name."""
    name = f"pxt-test-{secrets.token_hex(4)}"
    proc = subprocess.Popen(
        command("simulate", "--no-record", "--model", name, "--duration", "120", "-q"),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not shm_exists(name):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the machine did not start"
        time.sleep(0.05)
    with TraceControl.attach(name) as ctl:  # as an earlier xentrace run would have
        ctl.set_size(32)
        while not ctl.counters()["offered"]:  # running (numba compiled, first records out)
            assert proc.poll() is None and time.monotonic() < deadline, "no records"
            time.sleep(0.05)
    yield name
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not shm_exists(name), "the machine left its shared memory behind"
    assert not shm_exists(f"{name}-tbuf")


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
