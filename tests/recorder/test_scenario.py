"""Scenario -> simulate (machine + recorder processes) -> file -> bytes built by hand."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxentrace.reader import read
from pyxentrace.recorder.commands import simulate_cmd

from .conftest import per_cpu, records, windows

CYC = 1 << 31
EIP = 0xFFFFFFFF8100_1A4D


def rec(event: int, words: list[int], tsc: int) -> bytes:
    return struct.pack("<IQ", event | len(words) << 28 | CYC, tsc) + struct.pack(
        f"<{len(words)}I", *words
    )


def recb(event: int, payload: bytes, tsc: int) -> bytes:
    return struct.pack("<IQ", event | len(payload) // 4 << 28 | CYC, tsc) + payload


SCRIPT = [
    {"op": "domain", "domid": 1, "width": 64, "vcpus": 2},
    {"op": "domain", "domid": 2, "width": 32, "vcpus": 1},
    {"op": "advance", "ns": 1000},
    {"op": "schedule", "pcpu": 0, "domid": 1, "vcpu": 0},
    {"op": "schedule", "pcpu": 1, "domid": 2, "vcpu": 0},
    {"op": "advance", "ns": 1000},
    {"op": "hypercall", "pcpu": 0, "nr": 26, "args": [0, 1, 0, 0, 0, 0], "eip": EIP},
    {"op": "multicall", "pcpu": 0, "calls": [{"nr": 24, "args": [0, 1, 0, 0, 0, 0]}]},
    {
        "op": "trap",
        "pcpu": 1,
        "vector": 13,
        "eip": 0xC0101000,
        "use_error_code": True,
        "error_code": 0x28,
    },
    {"op": "page_fault", "pcpu": 0, "eip": EIP, "addr": 0x7F0000002000, "error_code": 7},
    {"op": "advance", "ns": 1000},
    {"op": "ptwr_emulation", "pcpu": 1, "addr": 0xC0003008, "pte": 0x1234567, "eip": 0xC010},
    {"op": "schedule", "pcpu": 0, "domid": 1, "vcpu": 0},
]
T1, T2, T3 = 2400, 4800, 7200


def expected_xen4() -> dict[int, bytes]:
    q = struct.pack
    return {
        0: b"".join(
            [
                rec(0x0002800E, [32767, 0, 1000], T1),
                rec(0x0002800F, [1, 0, 1000, 10_000_000], T1),
                rec(0x0002800A, [32767, 0, 1, 0], T1),
                rec(0x00021011, [0x7FFF0000], T1),
                rec(0x00021101, [0x00010000], T1),
                rec(0x0020100D, [26 | 0x00400000, 1], T2),
                rec(0x0020100D, [13 | 0x00400000, 1], T2),
                rec(0x0020200E, [24 | 0x00500000, 0, 1], T2),
                recb(0x00201104, q("<QQI", EIP, 0x7F0000002000, 7), T2),
                rec(0x00028011, [1, 0, 2000, 10_000_000], T3),
                rec(0x00021002, [0x00010000], T3),
            ]
        ),
        1: b"".join(
            [
                rec(0x0002800E, [32767, 1, 1000], T1),
                rec(0x0002800F, [2, 0, 1000, 10_000_000], T1),
                rec(0x0002800A, [32767, 1, 2, 0], T1),
                rec(0x00021011, [0x7FFF0001], T1),
                rec(0x00021101, [0x00020000], T1),
                recb(0x00201003, q("<II", 0xC0101000, 13 | 1 << 15 | 0x28 << 16), T2),
                recb(0x0020100C, q("<QII", 0x1234567, 0xC0003008, 0xC010), T3),
            ]
        ),
    }


def simulate(tmp: Path, script: list[dict], *extra: str) -> tuple[int, str, Path]:
    path = tmp / "s.jsonl"
    path.write_text("\n".join(json.dumps(op) for op in script) + "\n")
    out = tmp / "t.bin"
    r = CliRunner().invoke(simulate_cmd, ["--script", str(path), "-o", str(out), "-q", *extra])
    return r.exit_code, r.output, out


def test_script_to_file_bytes_and_sidecar(tmp: Path) -> None:
    code, output, out = simulate(tmp, SCRIPT)
    assert code == 0, output
    assert per_cpu(out.read_bytes()) == expected_xen4()
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["tsc_hz"] == 2_400_000_000
    assert meta["nr_pcpus"] == 2
    assert (meta["abi"], meta["arch"]) == ("xen-4", "x86_64")
    assert meta["domains"] == [
        {"domid": 1, "name": "guest1", "vcpus": 2, "width": 64},
        {"domid": 2, "name": "guest2", "vcpus": 1, "width": 32},
    ]
    assert meta["start_time"].endswith("Z")
    for cpu, data in expected_xen4().items():
        n = len(records(data))
        assert meta["pcpus"][str(cpu)] == {"offered": n, "filtered": 0, "written": n, "lost": 0}
    batch, report = read(out)
    assert report.anomaly_count == 0 and len(batch) == 18


def test_seed_abi_script_to_file(tmp: Path) -> None:
    script = [
        {"op": "domain", "domid": 0, "width": 32, "vcpus": 1},
        {"op": "advance", "ns": 1000},
        {"op": "schedule", "pcpu": 0, "domid": 0, "vcpu": 0},
        {"op": "hypercall", "pcpu": 0, "nr": 23, "eip": 0xC0101234},
        {"op": "multicall", "pcpu": 0, "eip": 0xC0101238, "calls": [{"nr": 14}, {"nr": 1}]},
    ]
    code, output, out = simulate(tmp, script, "--abi", "xen-3.2", "--arch", "x86_32-pae")
    assert code == 0, output
    q = struct.pack
    assert per_cpu(out.read_bytes()) == {
        0: b"".join(
            [
                rec(0x0002F00E, [32767, 1000], T1),
                rec(0x0002F00F, [0, 1000, 30_000_000], T1),
                rec(0x0002F00A, [32767, 0, 0, 0], T1),
                recb(0x0020F001, q("<II", 0xC0101234, 23), T1),
                recb(0x0020F001, q("<II", 0xC0101238, 13), T1),
            ]
        )
    }


def _events(out: Path) -> dict[int, list[int]]:
    return {cpu: [e for e, _, _ in records(w)] for cpu, w in per_cpu(out.read_bytes()).items()}


def test_event_mask_end_to_end(tmp: Path) -> None:
    code, output, out = simulate(tmp, SCRIPT, "-e", "sched")
    assert code == 0, output
    evs = _events(out)
    assert all(e & 0x000F0000 == 0x00020000 for es in evs.values() for e in es)
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["pcpus"]["0"]["filtered"] == 4 and meta["pcpus"]["1"]["filtered"] == 2
    # PV entries only: the multicall's sub-call (subclass 2) is filtered, the rest kept.
    code, output, out = simulate(tmp, SCRIPT, "-e", "0x00201000")
    assert code == 0, output
    assert _events(out)[0] == [0x0020100D, 0x0020100D, 0x00201104]


def test_cpu_mask_end_to_end(tmp: Path) -> None:
    code, output, out = simulate(tmp, SCRIPT, "-c", "1")
    assert code == 0, output
    assert {cpu for cpu, _ in windows(out.read_bytes())} == {1}
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["pcpus"]["0"] == {"offered": 11, "filtered": 11, "written": 0, "lost": 0}


@pytest.mark.parametrize(
    ("line", "bad"),
    [
        (3, {"op": "advance", "ns": -1}),
        (3, {"op": "schedule", "pcpu": 0, "domid": 9, "vcpu": 0}),
        (3, {"op": "emulate_4gb", "pcpu": 0, "eip": 1}),
    ],
)
def test_bad_script_writes_nothing(tmp: Path, line: int, bad: dict) -> None:
    script = [SCRIPT[0], {"op": "schedule", "pcpu": 0, "domid": 1, "vcpu": 0}, bad, SCRIPT[3]]
    code, output, out = simulate(tmp, script)
    assert code == 1
    assert f"line {line}:" in output and output.count("\n") == 1
    assert not out.exists()
