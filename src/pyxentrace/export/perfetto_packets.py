"""Perfetto packets in bulk: interning tables, one batch's events sorted and encoded, and the
debug annotations of many events at once (see :mod:`.perfetto_kernel` for the encoding)."""

from __future__ import annotations

import numpy as np

from . import perfetto_kernel as K
from . import protobuf as P

SEQ_ID = 0x58454E  # "XEN": our one packet sequence
NARGS = 8

# TracePacket / TrackDescriptor / descriptors / InternedData field numbers
PKT_TRACK_DESCRIPTOR = 60
PKT_SEQ_ID = 10
PKT_INTERNED = 12
PKT_SEQ_FLAGS = 13
PKT_FIRST_ON_SEQ = 87
SEQ_INCREMENTAL_STATE_CLEARED = 1
ID_CATEGORIES = 1
ID_EVENT_NAMES = 2
ID_ANNOTATION_NAMES = 3
ID_STRING_VALUES = 29

# packet order at equal timestamps: inner slice ends, outer ends, outer begins, inner begins,
# instants
PRIO_PV_END, PRIO_END, PRIO_PCPU_END, PRIO_BEGIN, PRIO_PV_BEGIN, PRIO_INSTANT = 0, 1, 2, 3, 4, 5


class Interner:
    """Interning tables of one sequence; new entries wait in :meth:`packet`."""

    def __init__(self) -> None:
        self.tables: dict[int, dict[str, int]] = {
            f: {} for f in (ID_CATEGORIES, ID_EVENT_NAMES, ID_ANNOTATION_NAMES, ID_STRING_VALUES)
        }
        self.new: dict[int, list[tuple[int, str]]] = {f: [] for f in self.tables}

    def iid(self, table: int, s: str) -> int:
        t = self.tables[table]
        i = t.get(s)
        if i is None:
            i = t[s] = len(t) + 1
            self.new[table].append((i, s))
        return i

    def iids(self, table: int, strings: list[str]) -> np.ndarray:
        return np.fromiter((self.iid(table, s) for s in strings), np.uint64, len(strings))

    def packet(self, first: bool = False) -> bytes:
        """An InternedData packet with every entry added since the last one (or b"")."""
        entries = []
        for table, items in self.new.items():
            for i, s in items:
                entries.append(P.message(table, P.uint(1, i), P.string(2, s)))
            items.clear()
        if not entries and not first:
            return b""
        body = [P.uint(PKT_SEQ_ID, SEQ_ID), P.message(PKT_INTERNED, entries)]
        if first:
            body.append(P.uint(PKT_SEQ_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED))
            body.append(P.uint(PKT_FIRST_ON_SEQ, 1))
        else:
            body.append(P.uint(PKT_SEQ_FLAGS, K.SEQ_NEEDS_INCREMENTAL_STATE))
        return P.message(1, body)


class Events:
    """Columns of the events of one batch, gathered then sorted by time and priority."""

    def __init__(self) -> None:
        self.parts: list[tuple] = []

    def add(self, ts, prio, typ, uuid, name, cat, args=None) -> None:
        n = np.shape(ts)[0]
        if n == 0:
            return
        if args is None:
            args = (
                np.zeros(n, np.uint8),
                np.zeros((n, NARGS), np.uint8),
                np.zeros((n, NARGS), np.uint64),
                np.zeros((n, NARGS), np.uint64),
            )

        def full(x, dt):
            a = np.asarray(x, dtype=dt)
            return np.full(n, a, dt) if a.ndim == 0 else a

        self.parts.append(
            (
                full(ts, np.int64),
                full(prio, np.uint8),
                full(typ, np.uint8),
                full(uuid, np.uint64),
                full(name, np.uint64),
                full(cat, np.uint64),
                *args,
            )
        )

    def encode(self) -> bytes:
        if not self.parts:
            return b""
        cols = [np.concatenate(c) for c in zip(*self.parts, strict=True)]
        ts, prio = cols[0], cols[1]
        order = np.lexsort((prio, ts))
        cols = [c[order] for c in cols]
        ts = np.maximum(cols[0], 0).astype(np.uint64)
        return K.encode(
            ts, cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], SEQ_ID
        )


class Args:
    """Debug annotations of n events, filled column by column into NARGS slots."""

    def __init__(self, n: int):
        self.n = n
        self.count = np.zeros(n, np.uint8)
        self.kind = np.zeros((n, NARGS), np.uint8)
        self.name = np.zeros((n, NARGS), np.uint64)
        self.val = np.zeros((n, NARGS), np.uint64)

    def add(self, name_iid: int, kind: int, values: np.ndarray, valid: np.ndarray) -> None:
        rows = np.nonzero(valid & (self.count < NARGS))[0]
        slot = self.count[rows]
        self.kind[rows, slot] = kind
        self.name[rows, slot] = name_iid
        self.val[rows, slot] = np.asarray(values).astype(np.uint64)[rows]
        self.count[rows] += 1

    def take(self, idx: np.ndarray) -> tuple:
        return self.count[idx], self.kind[idx], self.name[idx], self.val[idx]
