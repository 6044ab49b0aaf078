"""``perfetto``: the written protobuf, decoded by an independent wire reader (and by Perfetto's
own generated descriptors when installed), has the expected tracks, slices and arguments."""

from __future__ import annotations

import pytest

from pyxentrace.export import write_perfetto
from pyxentrace.reader import TraceReader

from .handtrace import (
    HYPERCALL_V2,
    LAST,
    LOST,
    ORIGIN,
    PF_ADDR,
    PF_EIP,
    PRIV_EIP,
    PTE,
    PTWR_ADDR,
    RS_RUNNABLE_TO_RUNNING,
    RS_RUNNING_TO_RUNNABLE,
    TRAP_RIP,
    Rec,
    write_trace,
)
from .pbwire import all_slices, decode, decode_pb2, slices

END = LAST - ORIGIN  # ns: 1 GHz sidecar


def convert(path, tmp_path, **kw):
    out = tmp_path / "t.pftrace"
    res = write_perfetto(path, str(out), **kw)
    data = out.read_bytes()
    assert res.bytes == len(data)
    return decode(data), res, data


def test_tracks_group_vcpus_by_domain(pv_trace, tmp_path):
    d, res, _ = convert(pv_trace, tmp_path)
    assert d.first_flags == 1  # SEQ_INCREMENTAL_STATE_CLEARED before anything is interned
    procs = {t["name"]: (u, t["pid"]) for u, t in d.tracks.items() if t["kind"] == "process"}
    assert set(procs) == {"Xen", "d1", "d2", "d[IDLE]"}
    threads = {t["name"]: t for t in d.tracks.values() if t["kind"] == "thread"}
    assert set(threads) == {"pCPU 0", "pCPU 1", "d1v0", "d2v1", "d[IDLE]v0", "d[IDLE]v1"}
    for name, t in threads.items():
        owner = "Xen" if name.startswith("pCPU") else name.rsplit("v", 1)[0]
        assert t["parent"] == procs[owner][0] and t["pid"] == procs[owner][1]
    tids = [t["tid"] for t in threads.values()]
    pids = [p for _u, p in procs.values()]
    assert len(set(tids)) == len(tids) and not set(tids) & set(pids)
    assert all(0 < x < 2**31 for x in tids + pids)


def test_runstate_and_pcpu_slices(pv_trace, tmp_path):
    d, _, _ = convert(pv_trace, tmp_path)

    def sl(track):
        return [s for s in slices(d.on(track)) if s[3] == 0]

    assert sl("d1v0") == [("running", 0, 500, 0), ("blocked", 500, END, 0)]
    assert sl("d2v1") == [("running", 50, 460, 0), ("runnable", 460, END, 0)]
    assert sl("d[IDLE]v0") == [("running", 600, END, 0)]
    assert sl("d[IDLE]v1") == [("running", 470, END, 0)]
    assert sl("pCPU 0") == [("d1v0", 0, 500, 0), ("d[IDLE]v0", 600, END, 0)]
    assert sl("pCPU 1") == [("d2v1", 50, 460, 0), ("d[IDLE]v1", 470, END, 0)]
    for e in d.events:
        if e.type == 1:
            assert e.category in ("runstate", "sched")


def test_pv_instants_with_decoded_arguments(pv_trace, tmp_path):
    d, _, _ = convert(pv_trace, tmp_path)
    inst = {(e.name, e.ts): e for e in d.on("d1v0") if e.type == 3}
    assert sorted(inst) == [
        ("emulate_privop", 400),
        ("hypercall mmu_update", 100),
        ("page_fault64", 200),
        ("trap64", 300),
    ]
    h = inst[("hypercall mmu_update", 100)].args
    assert h == {"pcpu": 0, "hypercall": 1, "count": 5, "arg1": 5}
    pf = inst[("page_fault64", 200)].args
    assert pf == {"pcpu": 0, "error_code": 7, "pfec": "P|W|U", "eip": PF_EIP, "addr": PF_ADDR}
    tr = inst[("trap64", 300)].args
    assert tr == {"pcpu": 0, "vector": "#GP", "error_code": 0x18, "eip": TRAP_RIP}
    assert inst[("emulate_privop", 400)].args == {"pcpu": 0, "eip": PRIV_EIP}
    assert all(e.category == "pv" for e in inst.values())
    two = {(e.name, e.ts): e.args for e in d.on("d2v1") if e.type == 3}
    assert two[("hypercall iret", 150)] == {"pcpu": 1, "hypercall": 23}
    assert two[("subcall update_va_mapping", 250)] == {"pcpu": 1, "hypercall": 14}
    assert two[("ptwr_emulation64", 350)]["pte"] == PTE
    assert two[("ptwr_emulation64", 350)]["addr"] == PTWR_ADDR


def test_lost_records_and_other_records_on_pcpu_tracks(pv_trace, tmp_path):
    d, _, _ = convert(pv_trace, tmp_path)
    lost = [e for e in d.on("pCPU 0") if e.type == 3]
    assert [(e.name, e.ts, e.args["lost"], e.category) for e in lost] == [
        ("lost_records", END, 42, "gen")
    ]
    sw = [e for e in d.on("pCPU 1") if e.type == 3]
    assert [(e.name, e.ts) for e in sw] == [("sched_switch", 450)]
    assert (sw[0].args["w2"], sw[0].args["w3"], sw[0].args["vcpu"]) == (0x7FFF, 1, "d2v1")
    d2, _, _ = convert(pv_trace, tmp_path, other_records=False)
    assert [e.name for e in d2.on("pCPU 1") if e.type == 3] == []
    assert [e.name for e in d2.on("pCPU 0") if e.type == 3] == ["lost_records"]


def test_pv_slices_end_at_the_next_record_of_the_pcpu(pv_trace, tmp_path):
    d, _, _ = convert(pv_trace, tmp_path, pv_slices=True)
    assert slices(d.on("d1v0")) == [
        ("running", 0, 500, 0),
        ("hypercall mmu_update", 100, 200, 1),
        ("page_fault64", 200, 300, 1),
        ("trap64", 300, 400, 1),
        ("emulate_privop", 400, 500, 1),
        ("blocked", 500, END, 0),
    ]
    assert slices(d.on("d2v1")) == [
        ("running", 50, 460, 0),
        ("hypercall iret", 150, 250, 1),
        ("subcall update_va_mapping", 250, 350, 1),
        ("ptwr_emulation64", 350, 450, 1),
        ("runnable", 460, END, 0),
    ]


def test_pv_slices_across_batches(pv_trace, tmp_path):
    """Batches of 2 rows: a slice left open by one batch ends in the next."""
    a, _, _ = convert(pv_trace, tmp_path, pv_slices=True)
    b, _, _ = convert(pv_trace, tmp_path, pv_slices=True, batch_rows=2)
    for name in ("d1v0", "d2v1", "pCPU 0", "pCPU 1"):
        assert slices(a.on(name)) == slices(b.on(name))


# d1v0 makes a hypercall on pCPU 0, then pCPU 0 records nothing until 5000 (its buffer was
# full: a lost-records marker) while d1v0 is preempted and runs again on pCPU 1 - the
# hypercall's slice must end at d1v0's next runstate change (1200), not at pCPU 0's next
# record (5000), and the runstate end must close "running", not the hypercall.
MIGRATES = (
    Rec(0, 1000, RS_RUNNABLE_TO_RUNNING, (1 << 16 | 0,), None),
    Rec(0, 1100, HYPERCALL_V2, (23,), "d1v0"),
    Rec(0, 5000, LOST, (9, 1 << 16 | 0, 1150, 0), None),
    Rec(1, 1050, RS_RUNNABLE_TO_RUNNING, (2 << 16 | 0,), None),
    Rec(1, 1200, RS_RUNNING_TO_RUNNABLE, (1 << 16 | 0,), None),
    Rec(1, 1300, RS_RUNNABLE_TO_RUNNING, (1 << 16 | 0,), None),
    Rec(1, 1400, HYPERCALL_V2, (24,), "d1v0"),
    Rec(1, 1500, RS_RUNNING_TO_RUNNABLE, (1 << 16 | 0,), None),
)


@pytest.mark.parametrize("batch_rows", [None, 1, 2])
def test_pv_slices_end_on_their_vcpu_track(tmp_path, batch_rows):
    t = write_trace(tmp_path / "m.bin", MIGRATES)
    d, _, _ = convert(t, tmp_path, pv_slices=True, batch_rows=batch_rows)
    end = 5000 - ORIGIN
    assert slices(d.on("d1v0")) == [
        ("running", 0, 200, 0),
        ("hypercall iret", 100, 200, 1),  # ends at d1v0's own runstate change
        ("runnable", 200, 300, 0),
        ("running", 300, 500, 0),
        ("hypercall vcpu_op", 400, 500, 1),  # pCPU 1's next record is the runstate change
        ("runnable", 500, end, 0),
    ]
    # the runstate slices are the ones of the default (instant) output
    plain, _, _ = convert(t, tmp_path)
    assert [s for s in slices(plain.on("d1v0"))] == [
        ("running", 0, 200, 0),
        ("runnable", 200, 300, 0),
        ("running", 300, 500, 0),
        ("runnable", 500, end, 0),
    ]


def runstate_slices(d) -> dict[str, list]:
    """Every track's slices that are not PV events (runstates, pCPU occupancy)."""
    pv = {e.name for e in d.events if e.category == "pv"}
    return {t: [s for s in sl if s[0] not in pv] for t, sl in all_slices(d).items()}


@pytest.mark.parametrize(
    "name", ["real-xen417-pvdom0.bin", "real-xen417-lost.bin", "real-credit2-hvm.bin"]
)
def test_real_traces_nest_and_keep_every_record(data_dir, tmp_path, name):
    path = data_dir / name
    out = tmp_path / "t.pftrace"
    res = write_perfetto(path, str(out), pv_slices=True)
    data = out.read_bytes()
    try:  # Perfetto's own generated descriptors, when installed (fast)
        d = decode_pb2(data)
    except ImportError:
        d = decode(data)
    rd = TraceReader(path)
    for _ in rd.batches():
        pass
    rep = rd.report
    assert res.rows == rep.rows
    # strict nesting, time order, every end closing the slice it names, nothing left open;
    # and --pv-slices changes no runstate or pCPU slice: PV slices sit inside them
    with_pv = runstate_slices(d)
    plain_out = tmp_path / "plain.pftrace"
    write_perfetto(path, str(plain_out))
    try:
        plain = decode_pb2(plain_out.read_bytes())
    except ImportError:
        plain = decode(plain_out.read_bytes())
    assert with_pv == runstate_slices(plain)
    assert all(s[3] == 0 for sl in with_pv.values() for s in sl)
    pv_rows = sum(n for _c, e, n, _b in rep.volume() if e >> 16 == 0x020)
    pv_events = sum(1 for e in d.events if e.category == "pv" and e.type in (1, 3))
    assert pv_events == pv_rows
    lost = [e for e in d.events if e.name == "lost_records"]
    assert len(lost) == rep.lost_records
    assert sum(e.args["lost"] for e in lost) == rep.lost_count


def test_perfettos_own_schema_knows_every_field(data_dir, tmp_path):
    """Every field we write is one Perfetto's generated descriptors know (no unknown fields),
    and both decoders agree on the hand-built trace."""
    pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    unknown = pytest.importorskip("google.protobuf.unknown_fields")
    out = tmp_path / "t.pftrace"
    write_perfetto(data_dir / "real-xen417-pvdom0.bin", str(out), pv_slices=True)
    t = pb.Trace()
    t.ParseFromString(out.read_bytes())
    for p in t.packet[:5000]:
        assert len(unknown.UnknownFieldSet(p)) == 0
        for m in (p.track_event, p.track_descriptor, p.interned_data):
            assert len(unknown.UnknownFieldSet(m)) == 0
        for a in p.track_event.debug_annotations:
            assert len(unknown.UnknownFieldSet(a)) == 0


def test_both_decoders_agree(pv_trace, tmp_path):
    pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")
    _d, _res, data = convert(pv_trace, tmp_path)
    a, b = decode(data), decode_pb2(data, args_for=())
    assert a.tracks == b.tracks and a.packets == b.packets
    assert [(e.ts, e.type, e.track, e.name, e.category) for e in a.events] == [
        (e.ts, e.type, e.track, e.name, e.category) for e in b.events
    ]
