"""Nothing is lost silently: under overload every offered record is in the file or counted by
a LOST_RECORDS record, per pCPU, and the sidecar's counters agree."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from pyxentrace.reader import read
from pyxentrace.recorder.commands import simulate_cmd

from .conftest import LOST, WRAP, per_cpu, records


@pytest.mark.parametrize("profile", ["hypercall-storm", "dom0"])
def test_overload_conservation_per_pcpu(tmp: Path, profile: str) -> None:
    out = tmp / "overload.bin"
    args = [
        "--profile",
        profile,
        "--buffer-pages",
        "1",
        "--speed",
        "0",
        "--duration",
        "0.25",
        "-s",
        "200",
        "-o",
        str(out),
        "-q",
    ]
    r = CliRunner().invoke(simulate_cmd, args)
    assert r.exit_code == 0, r.output
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    total_lost = 0
    for cpu, data in per_cpu(out.read_bytes()).items():
        recs = records(data)
        kept = sum(1 for e, _, _ in recs if e not in (WRAP, LOST))
        lost = sum(struct.unpack_from("<I", p)[0] for e, _, p in recs if e == LOST)
        c = meta["pcpus"][str(cpu)]
        assert kept + lost == c["offered"] - c["filtered"]
        assert (kept, lost) == (c["written"], c["lost"])
        assert meta["buffers"]["pcpus"][str(cpu)]["unreported_lost"] == 0
        total_lost += lost
    assert total_lost > 0  # it really was overloaded
    _, report = read(out)
    assert report.lost_count == total_lost
    assert report.anomaly_count == 0
