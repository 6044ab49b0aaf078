"""An independent protobuf wire-format reader and a Perfetto TrackEvent interpreter for tests.

Field numbers are copied from Perfetto's protos (protos/perfetto/trace/...):
Trace.packet 1; TracePacket timestamp 8, trusted_packet_sequence_id 10, track_event 11,
interned_data 12, sequence_flags 13, track_descriptor 60; TrackDescriptor uuid 1, name 2,
process 3, thread 4, parent_uuid 5; ProcessDescriptor pid 1, process_name 6; ThreadDescriptor
pid 1, tid 2, thread_name 5; TrackEvent category_iids 3, debug_annotations 4, type 9,
name_iid 10, track_uuid 11, name 23; DebugAnnotation name_iid 1, bool 2, uint 3, int 4,
string 6, pointer 7, name 10, string_value_iid 17; InternedData event_categories 1,
event_names 2, debug_annotation_names 3, debug_annotation_string_values 29 (each iid 1,
name/str 2).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def fields(buf: bytes) -> dict[int, list]:
    """field number -> values (ints for varint/fixed, bytes for length-delimited)."""
    out: dict[int, list] = defaultdict(list)
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = read_varint(buf, pos)
        elif wt == 1:
            v, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            v, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            v, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"wire type {wt} at {pos}")
        out[num].append(v)
    return out


def one(f: dict, num: int, default=None):
    v = f.get(num)
    return v[-1] if v else default


def signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass
class Event:
    ts: int
    type: int  # 1 begin, 2 end, 3 instant
    track: int
    name: str | None
    category: str | None
    args: dict = field(default_factory=dict)


@dataclass
class Decoded:
    tracks: dict[int, dict] = field(default_factory=dict)  # uuid -> descriptor info
    events: list[Event] = field(default_factory=list)
    packets: int = 0
    first_flags: int | None = None

    def track_named(self, name: str) -> int:
        hits = [u for u, t in self.tracks.items() if t["name"] == name]
        assert len(hits) == 1, (name, hits)
        return hits[0]

    def on(self, name: str) -> list[Event]:
        u = self.track_named(name)
        return [e for e in self.events if e.track == u]


def decode(data: bytes) -> Decoded:
    """Decode a whole ``.pftrace``: track descriptors and events with interned strings resolved."""
    out = Decoded()
    interned: dict[int, dict[int, str]] = defaultdict(dict)
    for raw in fields(data).get(1, []):
        out.packets += 1
        p = fields(raw)
        flags = one(p, 13)
        if out.first_flags is None and flags is not None:
            out.first_flags = flags
        for idata in p.get(12, []):
            d = fields(idata)
            for table in (1, 2, 3, 29):
                for entry in d.get(table, []):
                    e = fields(entry)
                    iid, s = one(e, 1), one(e, 2).decode()
                    assert interned[table].get(iid, s) == s, "iid reused for another string"
                    interned[table][iid] = s
        for td in p.get(60, []):
            t = fields(td)
            info = {"parent": one(t, 5), "name": None, "pid": None, "tid": None, "kind": "track"}
            if 3 in t:
                pr = fields(one(t, 3))
                info.update(kind="process", pid=one(pr, 1), name=one(pr, 6, b"").decode())
            if 4 in t:
                th = fields(one(t, 4))
                info.update(
                    kind="thread", pid=one(th, 1), tid=one(th, 2), name=one(th, 5, b"").decode()
                )
            if 2 in t:
                info["name"] = one(t, 2).decode()
            out.tracks[one(t, 1)] = info
        for te in p.get(11, []):
            e = fields(te)
            name = interned[2].get(one(e, 10)) if 10 in e else None
            if 23 in e:
                name = one(e, 23).decode()
            cats = [interned[1][c] for c in e.get(3, [])]
            args = {}
            for ann in e.get(4, []):
                a = fields(ann)
                an = interned[3][one(a, 1)] if 1 in a else one(a, 10).decode()
                if 17 in a:
                    val = interned[29][one(a, 17)]
                elif 6 in a:
                    val = one(a, 6).decode()
                elif 4 in a:
                    val = signed64(one(a, 4))
                elif 2 in a:
                    val = bool(one(a, 2))
                else:
                    val = one(a, 3, one(a, 7))
                args[an] = val
            out.events.append(
                Event(one(p, 8), one(e, 9), one(e, 11), name, cats[0] if cats else None, args)
            )
    return out


def slices(events: list[Event]) -> list[tuple[str, int, int, int]]:
    """Slices of one track as (name, begin, end, depth), checking on the way: one track, time
    order, every end names the slice it closes (the innermost open one: strict nesting), and
    nothing left open."""
    assert len({e.track for e in events}) <= 1, "events of several tracks"
    stack: list[tuple[str, int]] = []
    out = []
    last = -1
    for e in events:
        assert e.ts >= last, "events of a track out of time order"
        last = e.ts
        if e.type == 1:
            stack.append((e.name, e.ts))
        elif e.type == 2:
            assert stack, f"slice end at {e.ts} without an open slice"
            assert e.name is not None, f"slice end at {e.ts} does not name its slice"
            name, t0 = stack[-1]
            assert e.name == name, (
                f"end of {e.name!r} at {e.ts} would close {name!r} (begun at {t0}), "
                f"open: {[n for n, _t in stack]}"
            )
            stack.pop()
            out.append((name, t0, e.ts, len(stack)))
    assert not stack, f"slices left open: {stack}"
    return sorted(out, key=lambda s: (s[1], s[3]))


def all_slices(d: Decoded) -> dict[str, list[tuple[str, int, int, int]]]:
    """:func:`slices` of every track, by track name (every track checked)."""
    by_track: dict[int, list[Event]] = defaultdict(list)
    for e in d.events:
        assert e.track in d.tracks, f"event on an undeclared track {e.track}"
        by_track[e.track].append(e)
    return {d.tracks[u]["name"]: slices(evs) for u, evs in by_track.items()}


def decode_pb2(data: bytes, args_for: tuple[str, ...] = ("lost_records",)) -> Decoded:
    """The same as :func:`decode` through Perfetto's own generated descriptors (fast; needs the
    ``perfetto`` and ``protobuf`` packages). Arguments are resolved for ``args_for`` names only."""
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    t = pb.Trace()
    t.ParseFromString(data)
    out = Decoded(packets=len(t.packet))
    names: dict[int, str] = {}
    cats: dict[int, str] = {}
    anns: dict[int, str] = {}
    strs: dict[int, str] = {}
    events = out.events
    for p in t.packet:
        if p.WhichOneof("data") == "track_event" and not p.HasField("interned_data"):
            # the common case first (most packets): an event and nothing else
            if out.first_flags is None and p.HasField("sequence_flags"):
                out.first_flags = p.sequence_flags
            te = p.track_event
            name = names.get(te.name_iid) if te.name_iid else None
            cat = te.category_iids
            ev = Event(p.timestamp, te.type, te.track_uuid, name, cats.get(cat[0]) if cat else None)
            if name in args_for:
                for a in te.debug_annotations:
                    kind = a.WhichOneof("value")
                    val = getattr(a, kind)
                    ev.args[anns[a.name_iid]] = strs[val] if kind == "string_value_iid" else val
            events.append(ev)
            continue
        if out.first_flags is None and p.HasField("sequence_flags"):
            out.first_flags = p.sequence_flags
        if p.HasField("interned_data"):
            d = p.interned_data
            names.update((e.iid, e.name) for e in d.event_names)
            cats.update((e.iid, e.name) for e in d.event_categories)
            anns.update((e.iid, e.name) for e in d.debug_annotation_names)
            strs.update((e.iid, e.str.decode()) for e in d.debug_annotation_string_values)
        if p.HasField("track_descriptor"):
            td = p.track_descriptor
            info = {
                "parent": td.parent_uuid if td.HasField("parent_uuid") else None,
                "name": td.name or None,
                "pid": None,
                "tid": None,
                "kind": "track",
            }
            if td.HasField("process"):
                info.update(kind="process", pid=td.process.pid, name=td.process.process_name)
            if td.HasField("thread"):
                info.update(
                    kind="thread", pid=td.thread.pid, tid=td.thread.tid, name=td.thread.thread_name
                )
            out.tracks[td.uuid] = info
        if p.HasField("track_event"):
            te = p.track_event
            name = names.get(te.name_iid) if te.name_iid else None
            ev = Event(
                p.timestamp,
                te.type,
                te.track_uuid,
                name,
                cats.get(te.category_iids[0]) if te.category_iids else None,
            )
            if name in args_for:
                for a in te.debug_annotations:
                    kind = a.WhichOneof("value")
                    val = getattr(a, kind)
                    ev.args[anns[a.name_iid]] = strs[val] if kind == "string_value_iid" else val
            out.events.append(ev)
    return out
