"""``report``: the page's data equals what the hand-built trace holds, the page is
self-contained, and a real headless Chromium renders every chart without a console error."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest

from pyxentrace.export import write_report

from .handtrace import PF_EIP, PRIV_EIP, PTWR_RIP, TRAP_RIP

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # any attempt to reach the network fails (and would show as a console error)
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--enable-logging=stderr",
    "--v=0",
)


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="xt-data">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_report_data_is_the_hand_built_trace(pv_trace, tmp_path):
    out = tmp_path / "r.html"
    res = write_report(pv_trace, str(out), bins=1000)  # 1 ns bins over the 1000 ns trace
    html = out.read_text()
    data = page_data(html)
    assert data == res.data
    tl = data["timeline"]
    assert tl["t1"] == pytest.approx(1e-6) and tl["states"][0] == "running"
    segs = {v["label"]: v["segs"] for v in tl["vcpus"]}
    run, runnable, blocked = 0, 1, 2
    assert segs["d1v0"] == [[0, 500, run, 0, 1], [500, 1000, blocked, 0, 1]]
    assert segs["d2v1"] == [[50, 460, run, 0, 1], [460, 1000, runnable, 0, 1]]
    assert segs["d[IDLE]v0"] == [[600, 1000, run, 0, 1]]
    assert segs["d[IDLE]v1"] == [[470, 1000, run, 0, 1]]
    hc = {v["label"]: v["counts"] for v in data["hypercalls"]["vcpus"]}
    assert hc == {"d1v0": {"mmu_update": 1}, "d2v1": {"iret": 1}}
    assert [(p["code"], p["count"]) for p in data["pfec"]] == [(7, 1)]
    eips = {(r["vcpu"], r["kind"], int(r["eip"], 16)) for r in data["top_eips"]}
    assert eips == {
        ("d1v0", "page_fault", PF_EIP),
        ("d1v0", "trap", TRAP_RIP),
        ("d1v0", "emulate_privop", PRIV_EIP),
        ("d2v1", "ptwr_emulation", PTWR_RIP),
    }
    assert data["lost"] == [{"t": 1e-6, "cpu": 0, "count": 42}] and data["lost_total"] == 42
    rates = {s["name"]: s["total"] for s in data["rates"]["series"]}
    assert rates == {
        "hypercall": 2,
        "multicall sub-call": 1,
        "page_fault": 1,
        "emulate_privop": 1,
        "ptwr_emulation": 1,
        "trap": 1,
    }


def test_report_is_self_contained(pv_trace, tmp_path):
    out = tmp_path / "r.html"
    write_report(pv_trace, str(out))
    html = out.read_text()
    assert not re.search(r"<(link|img|iframe)\b", html, re.I)
    assert not re.search(r"<script[^>]*\bsrc=", html, re.I)
    assert not re.search(r"(url\(|@import|href=\"(https?:)?//)", html, re.I)
    assert html.count("<script") == 2 and html.startswith("<!DOCTYPE html>")


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def browser():
    for b in BROWSERS:
        exe = shutil.which(b)
        if exe:
            return exe
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium); browser test skipped")


def chrome(exe, tmp_path, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    shutil.rmtree(profile, ignore_errors=True)
    return subprocess.run(
        [exe, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line or "Uncaught" in line or "ERR_NAME_NOT_RESOLVED" in line
    ]


@pytest.mark.parametrize("which", ["real-xen417-lost.bin", "hand"])
def test_chromium_renders_every_chart(browser, data_dir, pv_trace, tmp_path, which):
    trace = pv_trace if which == "hand" else data_dir / which
    out = tmp_path / "report.html"
    res = write_report(trace, str(out))
    data = res.data
    url = out.resolve().as_uri()
    p = chrome(browser, tmp_path, "--virtual-time-budget=5000", "--dump-dom", url)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    assert console_errors(p.stderr) == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-rendered="1"' in body and "data-js-errors" not in body
    # one timeline row per vCPU with its state rectangles, one stacked bar per vCPU with
    # hypercalls, one line per PV kind, one marker per lost-records record, pfec bars
    assert dom.count('class="vcpu-row"') == len(data["timeline"]["vcpus"])
    assert dom.count('class="rs rs-running"') >= len(data["timeline"]["vcpus"])
    assert dom.count('class="hc-row"') == len(data["hypercalls"]["vcpus"])
    assert dom.count('class="hc-seg"') >= len(data["hypercalls"]["vcpus"])
    assert dom.count('class="rate-line"') == len(data["rates"]["series"])
    assert dom.count('class="lost-marker"') == len(data["lost"])
    assert dom.count('class="bar-chart-pfec"') == len(data["pfec"])
    assert dom.count("<svg") == 4
    shot = tmp_path / "shot.png"
    p = chrome(browser, tmp_path, "--window-size=1280,2000", f"--screenshot={shot}", url)
    assert p.returncode == 0 and console_errors(p.stderr) == []
    assert png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 40_000  # a blank page compresses to a few kB
