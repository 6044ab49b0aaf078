"""Domain/vCPU attribution on hand-built traces (expected values written by hand).

Seed-generation traces (xen-3.2, ``0x0020f0nn`` PV ids, ``0x0002f0nn`` scheduler ids) have no
runstate records: only switch records say which vCPU runs. xenalyze leaves everything in its
default domain there (quirk Q6); our attribution follows the switch records.
"""

from __future__ import annotations

import numpy as np
import pytest
from builders import LOST as LOST_EV
from builders import lost, runstate, switch, write_trace

import pyxentrace
from conftest import DATA, REAL_TRACES
from pyxentrace.analysis import attribution as A
from pyxentrace.analysis import engine as E
from pyxentrace.analysis.keys import key_label, make_key, parse_vcpu_label
from pyxentrace.format.record import encode_record
from pyxentrace.reader import TraceReader

SEED_TRAP = 0x0020F003
SEED_PRIVOP = 0x0020F006
XEN4_PRIVOP = 0x00201006
IDLE = 0x7FFF


def test_seed_generation_attributed_by_switch_records(tmp_path):
    path = write_trace(
        tmp_path / "seed.bin",
        [
            (
                0,
                [
                    encode_record(
                        SEED_TRAP, [0xC0100000, 0x0D | 1 << 15], 100
                    ),  # before any switch
                    switch(IDLE, 0, 1, 0, 200, seed=True),
                    encode_record(SEED_PRIVOP, [0xC0100010], 300),
                    encode_record(SEED_PRIVOP, [0xC0100020], 310),
                    switch(1, 0, 2, 1, 400, seed=True),
                    encode_record(SEED_PRIVOP, [0xC0100030], 500),
                ],
            ),
            (
                1,
                [
                    switch(IDLE, 1, 3, 0, 150, seed=True),
                    encode_record(SEED_TRAP, [0xC0200000, 0x03], 250),
                ],
            ),
        ],
    )
    t = pyxentrace.open(path)
    labels = [(r.cpu, r.tsc, r.vcpu) for r in t.records()]
    assert labels == [
        (0, 100, "d[DEFAULT]v0"),
        (1, 150, "d[DEFAULT]v1"),  # a switch record belongs to the vCPU it switches away from
        (0, 200, "d[DEFAULT]v0"),
        (1, 250, "d3v0"),
        (0, 300, "d1v0"),
        (0, 310, "d1v0"),
        (0, 400, "d1v0"),
        (0, 500, "d2v1"),
    ]
    s = t.summary_result()
    pv = t.summary()["vcpus"]
    assert pv["d1v0"]["pv"]["emulate_privop"] == 2
    assert pv["d2v1"]["pv"]["emulate_privop"] == 1
    assert pv["d3v0"]["pv"]["trap"] == 1 and pv["d3v0"]["pv"]["traps"] == {"3": 1}
    assert pv["d[DEFAULT]v0"]["pv"]["trap"] == 1
    # xenalyze's attribution ignores switch records: all in its default domain
    assert s.pv_counts(make_key(1, 0), mode=1) == {}
    assert s.pv_counts(parse_vcpu_label("d[DEFAULT]v0"), mode=1) == {3: 1, 6: 3}


def test_runstate_changes_and_descheduled_pcpu(tmp_path):
    path = write_trace(
        tmp_path / "rs.bin",
        [
            (
                0,
                [
                    runstate(1, 0, 1, 0, 100),  # d1v0 runnable -> running
                    encode_record(XEN4_PRIVOP, [0xC0000001], 200),
                    runstate(1, 0, 0, 2, 300),  # d1v0 running -> blocked: nothing current
                    encode_record(XEN4_PRIVOP, [0xC0000002], 350),
                    runstate(IDLE, 0, 1, 0, 400),  # idle vCPU runs
                    encode_record(XEN4_PRIVOP, [0xC0000003], 450),
                ],
            )
        ],
    )
    got = [(r.tsc, r.vcpu) for r in pyxentrace.open(path).records()]
    assert got == [
        (100, "d[DEFAULT]v0"),
        (200, "d1v0"),
        (300, "d1v0"),
        (350, "d?v?"),
        (400, "d?v?"),
        (450, "d[IDLE]v0"),
    ]


def test_lost_records_mark_vcpus_and_hand_over(tmp_path):
    path = write_trace(
        tmp_path / "lost.bin",
        [
            (
                0,
                [
                    runstate(1, 0, 1, 0, 100),
                    encode_record(XEN4_PRIVOP, [0xC0000001], 200),
                    lost(
                        5, 2, 0, 250, 300
                    ),  # 5 records lost from tsc 250; d2v0 current when written
                    encode_record(XEN4_PRIVOP, [0xC0000002], 400),
                ],
            )
        ],
    )
    t = pyxentrace.open(path)
    assert [(r.tsc, r.vcpu) for r in t.records()] == [
        (100, "d[DEFAULT]v0"),
        (200, "d1v0"),
        (300, "d1v0"),
        (400, "d2v0"),
    ]
    doc = t.summary()
    assert doc["lost"]["records"] == 1 and doc["lost"]["count"] == 5
    assert doc["vcpus"]["d1v0"]["lost"]["began_while_current"] == 1
    assert doc["vcpus"]["d2v0"]["lost"] == {"began_while_current": 0, "named": 1, "count_named": 5}
    assert doc["vcpus"]["d2v0"]["pv"]["emulate_privop"] == 1
    # xenalyze: d1v0 goes LOST at the lost record's first_tsc (its running interval ends there)
    rs = doc["vcpus"]["d1v0"]["runstates"]
    assert rs["running"] == {**rs["running"], "count": 1, "cycles": 150}


def test_vcpu_labels_round_trip():
    for label in ("d0v0", "d1v15", "d[IDLE]v3", "d[XEN]v0", "d[DEFAULT]v2", "d?v?"):
        assert key_label(parse_vcpu_label(label)) == label
    assert key_label(parse_vcpu_label("d32767v1")) == "d[IDLE]v1"
    assert key_label(parse_vcpu_label("d32768v1")) == "d[DEFAULT]v1"  # xenalyze's spelling


# ---- multicall sub-calls and their parent ------------------------------------------------------
MULTICALL = 0x0020100D
SUBCALL = 0x0020200E


def test_multicall_parent_does_not_outlive_its_vcpu(tmp_path):
    """A sub-call belongs to the multicall of the vCPU making it: the link ends when another
    vCPU (or none) becomes current on the pCPU, and at lost records."""
    sub = [0x1D | 1 << 20, 1]  # sched_op block
    path = write_trace(
        tmp_path / "mc.bin",
        [
            (
                1,
                [
                    runstate(3, 0, 1, 0, 100),
                    encode_record(MULTICALL, [13 | 1 << 22, 2], 200),  # d3v0 multicall
                    encode_record(SUBCALL, sub, 300),  # its sub-call 0
                    runstate(3, 0, 0, 2, 400),  # d3v0 blocks: nothing current
                    encode_record(SUBCALL, sub, 500),  # no parent
                    runstate(4, 0, 1, 0, 600),  # d4v0 runs
                    encode_record(SUBCALL, sub, 700),  # not d3v0's multicall
                    encode_record(MULTICALL, [13 | 1 << 22, 3], 800),  # d4v0 multicall
                    encode_record(SUBCALL, sub, 900),  # its sub-call 0
                    lost(5, 4, 0, 950, 1000),  # records lost (d4v0 still current after)
                    encode_record(SUBCALL, sub, 1100),  # its multicall may be lost: no parent
                ],
            )
        ],
    )
    recs = [r for r in pyxentrace.open(path).records() if r.event == SUBCALL]
    mc = [r.offset for r in pyxentrace.open(path).records() if r.event == MULTICALL]
    got = [(r.vcpu, r.fields.get("multicall_parent"), r.fields.get("subcall_index")) for r in recs]
    assert got == [
        ("d3v0", mc[0], 0),
        ("d?v?", None, None),
        ("d4v0", None, None),
        ("d4v0", mc[1], 0),
        ("d4v0", None, None),
    ]


# ---- our shadow of xenalyze's p->current agrees with the runstate engine -------------------------
def engine_kinds(event: np.ndarray, nwords: np.ndarray) -> np.ndarray:
    """The records xenalyze's runstate code reads (spec §1.4, §3): runstate changes (0x0002100x
    ... 0x000213x1 with a payload), continue-running (0x00021002), 4-word lost records."""
    e = event.astype(np.int64)
    sched = ((e >> 12) == 0x21) & (nwords >= 1)
    k = np.full(e.shape, -1, np.int8)
    k[sched & ((e & 0xF) == 1)] = 0
    k[sched & ((e & 0xF) == 2)] = 1
    k[(e == 0x0001F001) & (nwords == 4)] = 2
    return k


def current_after_each_record(path):
    """``(ours, engine's, engine results, pCPU)``: xenalyze's current vCPU of the pCPU after
    every record the engine reads; ours from the attribution pass, the engine's logged by the
    engine itself."""
    st = A.new_state()
    cols = {k: [] for k in ("cpu", "before", "tsc", "untimed", "event", "nwords", "words")}
    for b in TraceReader(str(path)).batches():
        n = len(b)
        cur, curx, par, sub = (np.empty(n, np.int64) for _ in range(4))
        A.attribute_rows(
            b.cpu, b.tsc, b.flags, b.event, b.nwords, b.words, b.offset, st, cur, curx, par, sub
        )
        for k, v in (
            ("cpu", b.cpu.astype(np.int64)),
            ("before", curx),
            ("tsc", b.tsc),
            ("untimed", (b.flags & 1).astype(np.uint8)),
            ("event", b.event.astype(np.int64)),
            ("nwords", b.nwords),
            ("words", b.words[:, :4].astype(np.int64)),
        ):
            cols[k].append(v)
    c = {k: np.concatenate(v) for k, v in cols.items()}
    cpu = c["cpu"]
    # ours after row i = ours before the next row of that pCPU (or the final state)
    after = st[cpu, A.S_CUR_X].copy()
    order = np.lexsort((np.arange(cpu.shape[0]), cpu))
    same = cpu[order][1:] == cpu[order][:-1]
    after[order[:-1][same]] = c["before"][order[1:][same]]
    kind = engine_kinds(c["event"], c["nwords"])
    sel = np.nonzero(kind >= 0)[0]
    eng = E.XenalyzeEngine(log_current=True)
    eng.feed(
        cpu[sel].astype(np.int32),
        kind[sel],
        c["tsc"][sel],
        c["untimed"][sel],
        c["event"][sel],
        c["words"][sel],
    )
    seen = st[:, A.S_SEEN]
    eng.set_pcpus(seen, st[:, A.S_FIRST_TSC], st[:, A.S_LAST_TSC])
    eng.finish({int(p): int(st[p, A.S_LAST_TSC]) for p in np.nonzero(seen)[0]})
    return after[sel], eng.current_log.copy(), eng.results(0), cpu[sel]


@pytest.mark.parametrize("name", ("pv_trace",) + REAL_TRACES)
def test_xenalyze_current_agrees_with_the_engine_on_real_traces(name):
    ours, engine, res, _ = current_after_each_record(DATA / f"{name}.bin")
    assert ours.shape[0] > 10 and (engine != -2).all()
    assert res.fatal == 0
    assert [key_label(k) for k in ours] == [key_label(k) for k in engine]


def test_xenalyze_current_agrees_with_the_engine_on_edge_cases(tmp_path):
    """Records the engine ignores or handles specially: vCPU numbers past xenalyze's MAX_CPUS
    (256), lost records that name such a vCPU, whose first_tsc is not before their TSC, that
    have no TSC or not 4 words; a pCPU above MAX_CPUS; continue-running as a first record."""
    untimed_lost = encode_record(LOST_EV, [3, 1, 0, 0])
    short_lost = encode_record(LOST_EV, [3, 1], 2150)
    path = write_trace(
        tmp_path / "edge.bin",
        [
            (
                0,
                [
                    runstate(1, 0, 1, 0, 100),
                    runstate(1, 300, 1, 0, 200),  # vCPU 300: ignored by the engine
                    runstate(1, 0, 0, 1, 300),
                    runstate(1, 300, 0, 2, 400),  # ignored
                    runstate(2, 0, 1, 0, 500),
                    lost(7, 1, 300, 550, 600),  # names d1v300: nothing current after it
                    runstate(2, 1, 1, 0, 700),
                    lost(7, 2, 1, 900, 800),  # first_tsc after its own TSC: nothing current
                    runstate(2, 0, 2, 1, 1000),
                    runstate(2, 0, 1, 0, 1100),
                    lost(2, 2, 0, 1150, 1200),  # an ordinary one: d2v0 current again
                ],
            ),
            (1, [encode_record(0x00021002, [0x00050001], 120), lost(1, 5, 1, 130, 140)]),
            (2, [runstate(6, 0, 1, 0, 2000), untimed_lost, short_lost, runstate(6, 1, 1, 0, 2200)]),
            (300, [runstate(7, 0, 1, 0, 3000), runstate(7, 0, 0, 2, 3100)]),
        ],
    )
    ours, engine, res, cpu = current_after_each_record(path)
    assert (engine != -2).all()
    assert [key_label(k) for k in ours] == [key_label(k) for k in engine]
    # xenalyze stops at three of these (vCPU 300 named by a lost record, a lost record's
    # first_tsc not before its TSC, an untimed lost record); the engine counts them and goes on
    assert res.fatal == 3
    # and what they agree on is what spec §1.4 / §3 say, written out for pCPU 0
    assert [key_label(k) for k in engine[cpu == 0]] == [
        "d1v0",
        "d1v0",  # d1v300 ignored
        "d?v?",
        "d?v?",
        "d2v0",
        "d?v?",  # lost record naming d1v300
        "d2v1",
        "d?v?",  # first_tsc 900 is not before 800
        "d?v?",
        "d2v0",
        "d2v0",
    ]
