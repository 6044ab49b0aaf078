"""``dump``: one line per record in time order with decoded fields (text or JSON lines).

Each line carries the time since the first record, the pCPU, the vCPU the record belongs to
(our attribution, see :mod:`.attribution`), the event name and its decoded fields - in the
spirit of ``xenalyze --dump-all``. Batches are attributed, filtered, decoded (vectorised) and
formatted by a compiled kernel into a byte buffer, then written in one call.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..errors import XentraceError
from ..format.meta import Clock, resolve_clock
from ..reader import TraceReader
from ..reader.batch import RecordBatch
from . import attribution as A
from . import decode as D
from . import dumpfmt as F
from .filters import Filters, events_mask
from .keys import DOMAIN_SHIFT, VCPU_MASK

FORMATS = ("text", "jsonl")


@dataclass
class DumpResult:
    """What a dump wrote."""

    lines: int
    records: int
    report: object  # the reader's ReadReport


class Attributor:
    """Per-row attribution over consecutive batches (state carried between calls)."""

    def __init__(self) -> None:
        self.state = A.new_state()

    def __call__(self, b: RecordBatch) -> dict[str, np.ndarray]:
        n = len(b)
        cur = np.empty(n, dtype=np.int64)
        curx = np.empty(n, dtype=np.int64)
        parent = np.empty(n, dtype=np.int64)
        subidx = np.empty(n, dtype=np.int64)
        A.attribute_rows(
            b.cpu,
            b.tsc,
            b.flags,
            b.event,
            b.nwords,
            b.words,
            b.offset,
            self.state,
            cur,
            curx,
            parent,
            subidx,
        )
        return {"key": cur, "key_xenalyze": curx, "parent": parent, "subcall_index": subidx}


INT64_MAX = (1 << 63) - 1
_NS = 1_000_000_000


def tsc_rate(hz: float) -> tuple[int, int]:
    """The TSC rate as an exact fraction ``(num, den)`` of Hz (``XentraceError`` unless > 0)."""
    hz = float(hz)
    if not (math.isfinite(hz) and hz > 0):
        raise XentraceError(f"the TSC rate must be a positive finite number of Hz, got {hz}")
    return hz.as_integer_ratio()


def time_split(tsc: np.ndarray, first: int, hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(seconds, nanoseconds)`` since ``first``: ``floor((tsc - first) * 1e9 / hz)``.

    Integer arithmetic for any positive finite rate: an integral rate below ~1.8e18 Hz takes a
    vectorised uint64 long division (no product can overflow), any other rate (fractional,
    below 1 Hz, huge) exact Python integers. TSCs before ``first`` give 0; seconds saturate at
    2**63 - 1 (reachable only with a rate below 1 Hz).
    """
    num, den = tsc_rate(hz)
    t = np.asarray(tsc).astype(np.uint64, copy=False)
    f = np.uint64(min(max(int(first), 0), (1 << 64) - 1))
    d = np.where(t > f, t - f, np.uint64(0))
    # digits of the fraction per step: num * 10**k must fit in 64 bits
    k = 0
    while k < 9 and num * 10 ** (k + 1) < 1 << 64:
        k += 1
    if den == 1 and k > 0:
        n = np.uint64(num)
        sec = d // n
        r = d % n
        nsec = np.zeros(d.shape, dtype=np.uint64)
        left = 9
        while left:
            s = min(k, left)
            m = np.uint64(10**s)
            r = r * m
            nsec = nsec * m + r // n
            r = r % n
            left -= s
        sec = np.minimum(sec, np.uint64(INT64_MAX))
        return sec.astype(np.int64), nsec.astype(np.int64)
    total = d.astype(object) * (_NS * den) // num
    sec = np.minimum(total // _NS, INT64_MAX)
    return sec.astype(np.int64), (total % _NS).astype(np.int64)


def ns_since(tsc: np.ndarray, first: int, hz: float) -> np.ndarray:
    """Exact nanoseconds since ``first`` (int64, saturating; earlier TSCs give 0)."""
    sec, nsec = time_split(tsc, first, hz)
    top = INT64_MAX // _NS  # seconds of the largest int64 nanosecond count
    fits = (sec < top) | ((sec == top) & (nsec <= INT64_MAX - top * _NS))
    return np.where(fits, np.minimum(sec, top) * _NS + nsec, INT64_MAX)


def row_mask(b: RecordBatch, keys: np.ndarray, f: Filters, lo: int, hi: int) -> np.ndarray | None:
    """Rows of ``b`` passing the filters (``None`` = all)."""
    if f.empty:
        return None
    m = np.ones(len(b), dtype=bool)
    if f.has_time:
        t = b.tsc.astype(np.int64)
        m &= (t >= lo) & (t <= hi)
    if f.cpus:
        m &= np.isin(b.cpu, np.fromiter(f.cpus, dtype=np.int64))
    if f.vcpus or f.domains:
        m &= f.keys_mask(keys)
    if f.events:
        m &= events_mask(f, b.event)
    return m


class Formatter:
    """Formats batches into one reused output buffer."""

    def __init__(self, first_tsc: int, hz: float, json: bool):
        self.first = first_tsc
        self.hz = hz
        self.json = json
        self.buf = np.empty(0, dtype=np.uint8)

    def __call__(
        self, b: RecordBatch, keys: np.ndarray, parent: np.ndarray, subidx: np.ndarray
    ) -> memoryview:
        """The dump lines of ``b`` (already filtered), valid until the next call."""
        n = len(b)
        if n == 0:
            return memoryview(b"")
        t = F.tables()
        vals, valid, i8, i32 = D.decode_raw(b.event, b.nwords, b.words)
        sec, nsec = time_split(b.tsc, self.first, self.hz)
        dom = np.where(keys < 0, -1, keys >> DOMAIN_SHIFT)
        vcpu = np.where(keys < 0, -1, keys & VCPU_MASK)
        ev_sid = F.name_ids(b.event)
        need = n * F.MAX_LINE
        if self.buf.shape[0] < need:
            self.buf = np.empty(need, dtype=np.uint8)
        used = F.format_lines(
            self.buf,
            self.json,
            sec,
            nsec,
            b.tsc,
            b.cpu,
            dom,
            vcpu,
            b.flags,
            b.event,
            b.nwords,
            b.words,
            ev_sid,
            parent,
            subidx,
            vals,
            valid,
            i8,
            i32,
            t["blob"],
            t["starts"],
            t["lits"],
            t["ktext"],
            t["kjson"],
            t["op_pool"],
            t["sub_tab"],
            t["vec_pool"],
            t["rs_pool"],
            t["res_pool"],
            t["default_pool"],
            t["pf_pool"],
            t["pte_pool"],
            t["pte_bits"],
        )
        return memoryview(self.buf)[:used]


def write_dump(
    path: str | os.PathLike,
    out: BinaryIO,
    *,
    cpu_hz: float | None = None,
    clock: Clock | None = None,
    filters: Filters | None = None,
    fmt: str = "text",
    batch_rows: int | None = None,
) -> DumpResult:
    """Write the dump of a trace (``-`` = stdin) to the binary stream ``out``."""
    if fmt not in FORMATS:
        raise XentraceError(f"unknown dump format {fmt!r} (use {' or '.join(FORMATS)})")
    path = os.fspath(path)
    filters = filters or Filters()
    clock = clock or resolve_clock(path, cpu_hz)
    kw = {"cpu_hz": clock.hz}
    if batch_rows:
        kw["batch_rows"] = batch_rows
    reader = TraceReader(path, **kw)
    attrib = Attributor()
    json = fmt == "jsonl"
    fmt_batch: Formatter | None = None
    first: int | None = None
    lo, hi = 0, (1 << 63) - 1
    lines = records = 0
    for b in reader.batches():
        n = len(b)
        if n == 0:
            continue
        records += n
        if first is None:
            timed = (b.flags & 1) == 0
            first = int(b.tsc[timed].min()) if timed.any() else 0
            lo, hi = filters.tsc_range(first, clock.hz)
            fmt_batch = Formatter(first, clock.hz, json)
        a = attrib(b)
        keys, parent, subidx = a["key"], a["parent"], a["subcall_index"]
        m = row_mask(b, keys, filters, lo, hi)
        if m is not None:
            if not m.any():
                continue
            b = b.take(m)
            keys, parent, subidx = keys[m], parent[m], subidx[m]
        out.write(fmt_batch(b, keys, parent, subidx))
        lines += len(b)
    return DumpResult(lines, records, reader.report)
