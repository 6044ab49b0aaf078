"""Workload profiles: calibration of ``dom0``, determinism, every profile on every ABI."""

from __future__ import annotations

import collections
import struct

import pytest

from pyxentrace.hypervisor.workloads import PROFILES, WorkloadRunner, get_profile

from .conftest import buffer_bytes, split

# DESIGN.md, "A realistic PV host": one dom0 vCPU over 8.7 s.
HYPERCALLS = {
    23: 159_268,
    24: 32_036,
    3: 28_746,
    25: 28_746,
    26: 27_473,
    32: 16_531,
    1: 13_644,
    29: 11_669,
    17: 3_021,
}
TOTAL = sum(HYPERCALLS.values())  # 321,134
RUNSTATE_AVG = {0: 776_000, 2: 1_100_000, 1: 26_000}  # running, blocked, runnable (cycles)


def run_profile(
    make_machine,
    name: str,
    seconds: float,
    seed: int = 0,
    pages: int = 1024,
    abi: str = "xen-4",
    arch: str = "x86_64",
    pause: bool = True,
):
    prof = get_profile(name)
    m = make_machine(nr_cpus=prof.pcpus, pages=pages, abi=abi, arch=arch)
    for d in prof.domain_specs(arch):
        m.add_domain(d.domid, d.vcpus, d.width, d.name)
    runner = WorkloadRunner(m, prof, seed)
    runner.run(seconds, speed=0)
    if pause:
        runner.pause_all()
    return m, runner


def records(m) -> dict[int, list[tuple[int, int | None, bytes]]]:
    return {cpu: split(buffer_bytes(m.tb, cpu)) for cpu in range(m.nr_pcpus)}


def test_dom0_profile_matches_the_real_host(make_machine) -> None:
    m, _ = run_profile(make_machine, "dom0", 1.0)
    c = m.tb.counters()
    assert c["lost"] == 0 and c["filtered"] == 0
    hyper: collections.Counter[int] = collections.Counter()
    privop = ptwr = 0
    start: dict[int, tuple[int, int]] = {}
    spans: dict[int, list[int]] = collections.defaultdict(list)
    # A vCPU's runstate changes may be written on several pCPUs: follow them in TSC order.
    merged = sorted((r for recs in records(m).values() for r in recs), key=lambda r: r[1])
    for event, tsc, payload in merged:
        if event == 0x0020100D:
            hyper[int.from_bytes(payload[:4], "little") & 0xFFFFF] += 1
        elif event == 0x00201106:
            privop += 1
        elif event == 0x0020110B:
            ptwr += 1
        elif event & 0xFFFFF00F == 0x00021001:
            word = int.from_bytes(payload, "little")
            if word >> 16 == 0x7FFF:
                continue
            old, new = (event >> 8) & 3, (event >> 4) & 3
            if word in start and start[word][0] == old:
                spans[old].append(tsc - start[word][1])
            start[word] = (new, tsc)
    total = sum(hyper.values())
    assert set(hyper) == set(HYPERCALLS)
    for nr, n in HYPERCALLS.items():
        assert hyper[nr] / total == pytest.approx(n / TOTAL, rel=0.05), nr
    assert privop / total == pytest.approx(317_206 / TOTAL, rel=0.05)
    assert ptwr / total == pytest.approx(13_811 / TOTAL, rel=0.1)
    for state, avg in RUNSTATE_AVG.items():
        mean = sum(spans[state]) / len(spans[state])
        assert avg / 2 < mean < avg * 2, (state, mean)


def test_same_seed_same_records(make_machine) -> None:
    a, _ = run_profile(make_machine, "pagetable", 0.1, seed=7)
    b, _ = run_profile(make_machine, "pagetable", 0.1, seed=7)
    c, _ = run_profile(make_machine, "pagetable", 0.1, seed=8)
    for cpu in range(a.nr_pcpus):
        assert buffer_bytes(a.tb, cpu) == buffer_bytes(b.tb, cpu)
    assert any(buffer_bytes(a.tb, cpu) != buffer_bytes(c.tb, cpu) for cpu in range(a.nr_pcpus))


@pytest.mark.parametrize("name", list(PROFILES))
@pytest.mark.parametrize(
    ("abi", "arch"), [("xen-4", "x86_64"), ("xen-3.2", "x86_64"), ("xen-3.2", "x86_32-pae")]
)
def test_every_profile_on_every_abi(make_machine, name: str, abi: str, arch: str) -> None:
    m, runner = run_profile(make_machine, name, 0.03, abi=abi, arch=arch)
    c = m.tb.counters()
    assert c["offered"] == runner.stats.offered > 0
    assert c["offered"] == c["written"] + c["lost"]
    classes = collections.Counter()
    for recs in records(m).values():
        tscs = [t for _, t, _ in recs if t is not None]
        assert tscs == sorted(tscs)
        for event, _, _ in recs:
            classes[event & 0x0FFFF000] += 1
    if abi == "xen-4":
        assert classes[0x00021000] > 0  # runstate changes
        assert classes[0x00201000] > 0 and classes[0x0020F000] == 0
    else:
        assert classes[0x00021000] == 0 and classes[0x00028000] == 0
        assert classes[0x0020F000] > 0 and classes[0x0002F000] > 0


def test_pause_all_reports_pending_losses(make_machine) -> None:
    """After a drain, pausing the domains writes the LOST_RECORDS record still owed."""
    m, runner = run_profile(make_machine, "hypercall-storm", 0.01, pages=1, pause=False)
    for b in m.tb.map_tbufs().values():  # the storm overflowed a 1-page buffer
        b.cons = b.prod
    assert m.tb.counters()["pending_lost"] > 0
    runner.pause_all()
    c = m.tb.counters()
    assert c["pending_lost"] == 0 and c["lost_recs"] == m.nr_pcpus


@pytest.mark.parametrize(("name", "seed"), [("dom0", 1), ("pagetable", 3)])
def test_switches_are_consistent_across_pcpus(make_machine, name: str, seed: int) -> None:
    """In TSC order over all pCPUs, a vCPU is switched in only where nothing else runs and
    only once it has left its previous pCPU; CONTINUE_RUNNING names the running vCPU."""
    m, _ = run_profile(make_machine, name, 0.5, seed=seed, pages=4096)
    assert m.tb.counters()["lost"] == 0
    merged = sorted(
        ((t, cpu, e, p) for cpu, recs in records(m).items() for e, t, p in recs),
        key=lambda r: r[0],
    )
    running: dict[int, tuple[int, int]] = {c: (0x7FFF, c) for c in range(m.nr_pcpus)}
    switches = 0
    for _, cpu, event, payload in merged:
        if event == 0x0002800A:
            pd, pv, nd, nv = struct.unpack("<4I", payload)
            assert running[cpu] == (pd, pv)
            if nd != 0x7FFF:
                assert (nd, nv) not in running.values()
            running[cpu] = (nd, nv)
            switches += 1
        elif event == 0x00021002:
            word = int.from_bytes(payload, "little")
            assert running[cpu] == (word >> 16, word & 0xFFFF)
    assert switches > 100
