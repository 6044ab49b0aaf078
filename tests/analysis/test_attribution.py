"""Domain/vCPU attribution on hand-built traces (expected values written by hand).

Seed-generation traces (xen-3.2, ``0x0020f0nn`` PV ids, ``0x0002f0nn`` scheduler ids) have no
runstate records: only switch records say which vCPU runs. xenalyze leaves everything in its
default domain there (quirk Q6); our attribution follows the switch records.
"""

from __future__ import annotations

from builders import lost, runstate, switch, write_trace

import pyxentrace
from pyxentrace.analysis.keys import key_label, make_key, parse_vcpu_label
from pyxentrace.format.record import encode_record

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
