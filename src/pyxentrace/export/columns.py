"""The export table: analysis's Arrow columns (the same as ``pyxentrace.open(p).to_arrow()``)
plus ``time_ns``, with the payload words as plain columns ``w0``..``w6``, so that every format -
CSV and JSON Lines included - carries the same columns.

Columns (see docs/export.md): ``time_ns`` first, then :func:`pyxentrace.analysis.table.
arrow_batch`'s columns except ``words`` and ``time_s``, then ``w0``..``w6`` (null past
``nwords``). String columns stay dictionary-encoded (``dictionary<int32, string>``), each batch
with its own compact dictionary (Parquet stores one per row group; the Arrow IPC writer merges
them, :class:`DictionaryUnifier`, since an IPC file has one per column). Records attributed to
no real vCPU (``d[DEFAULT]vN``, before a pCPU's first scheduling record) have null ``domain``
and ``vcpu`` (their ``vcpu_label`` says which bucket they are in).

CSV and JSON Lines write the 64-bit address-like columns (:data:`HEX_COLUMNS`) as ``"0x…"``
strings (:func:`text_batch`): 64-bit values do not survive JSON number parsers or CSV readers
that go through float64 (pandas does for any column with a null).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa

from ..analysis.dump import Attributor, ns_since
from ..analysis.keys import DEFAULT_DOMAIN
from ..analysis.table import arrow_batch
from ..reader.batch import RecordBatch
from .source import Rows

#: Columns this module adds to analysis's table: (name, Arrow type, meaning).
ADDED = (
    ("time_ns", pa.int64(), "ns since the first timed record of the trace (TSC / --cpu-hz)"),
    *((f"w{i}", pa.uint32(), f"payload word {i} (null past nwords)") for i in range(7)),
)


#: analysis's columns left out: ``words`` (as ``w0``..``w6``), ``time_s`` (``time_ns`` is exact).
DROPPED = frozenset({"words", "time_s"})

#: 64-bit columns written as ``"0x…"`` strings in CSV and JSON Lines (guest addresses, PTEs,
#: hypercall arguments, a TSC that may be any 64-bit value).
HEX_COLUMNS = (
    "eip",
    "addr",
    "ldt_offset",
    "pte",
    *(f"arg{i}" for i in range(6)),
    "lost_first_tsc",
)

#: (domain, vCPU) column pairs nulled for the pseudo-domain ``d[DEFAULT]``.
_KEY_PAIRS = (("domain", "vcpu"), ("domain_xenalyze", "vcpu_xenalyze"))


def _masked(values: np.ndarray, valid: np.ndarray, typ: pa.DataType, np_type) -> pa.Array:
    """A typed Arrow array over ``values``, null where not ``valid`` (buffers built directly)."""
    n = values.shape[0]
    data = pa.py_buffer(np.ascontiguousarray(values, dtype=np_type))
    nulls = n - int(np.count_nonzero(valid))
    bitmap = None if nulls == 0 else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(typ, n, [bitmap, data], null_count=nulls)


def _not_default(dom: pa.Array, other: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``dom``/``other`` with null where ``dom`` is the pseudo-domain ``DEFAULT_DOMAIN``."""
    d = dom.fill_null(0).to_numpy() if dom.null_count else dom.to_numpy()
    default = d == DEFAULT_DOMAIN
    if not default.any():
        return dom, other
    valid = ~default
    if dom.null_count:
        valid &= ~np.asarray(dom.is_null())
    ov = other.fill_null(0).to_numpy() if other.null_count else other.to_numpy()
    return _masked(d, valid, pa.int32(), np.int32), _masked(ov, valid, pa.int32(), np.int32)


class DictionaryUnifier:
    """One growing dictionary per string column across the batches of one Arrow IPC output:
    each batch's dictionary indices are remapped to it (new values appended), so every batch
    carries a prefix-extension of the previous batch's dictionary (written as a delta)."""

    def __init__(self) -> None:
        self._index: dict[str, dict[str, int]] = {}
        self._values: dict[str, pa.Array] = {}

    def column(self, name: str, col: pa.Array) -> pa.Array:
        index = self._index.setdefault(name, {})
        local = col.dictionary.to_pylist()
        remap = np.empty(len(local), np.int32)
        new = []
        for i, v in enumerate(local):
            j = index.get(v)
            if j is None:
                j = index[v] = len(index)
                new.append(v)
            remap[i] = j
        values = self._values.get(name)
        if values is None or new:
            add = pa.array(new, pa.string())
            values = self._values[name] = add if values is None else pa.concat_arrays([values, add])
        idx = col.indices
        if len(local) and not (remap == np.arange(len(local))).all():
            raw = idx.fill_null(0).to_numpy() if idx.null_count else idx.to_numpy()
            valid = np.ones(len(idx), bool) if not idx.null_count else ~np.asarray(idx.is_null())
            idx = _masked(remap[raw], valid, pa.int32(), np.int32)
        return pa.DictionaryArray.from_arrays(idx, values)

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        cols = [
            self.column(f.name, c) if pa.types.is_dictionary(f.type) else c
            for f, c in zip(batch.schema, batch.columns, strict=True)
        ]
        return pa.RecordBatch.from_arrays(cols, schema=batch.schema)


def convert(
    b: RecordBatch, attribution: dict[str, np.ndarray], origin: int, hz: float
) -> pa.RecordBatch:
    """The export columns of one batch (``attribution`` from analysis's ``Attributor``)."""
    t = arrow_batch(b, attribution, origin, hz)
    cols: dict[str, pa.Array] = {"time_ns": pa.array(ns_since(b.tsc, origin, hz), pa.int64())}
    for name, col in zip(t.schema.names, t.columns, strict=True):
        if name not in DROPPED:
            cols[name] = col
    for dom, vcpu in _KEY_PAIRS:
        cols[dom], cols[vcpu] = _not_default(cols[dom], cols[vcpu])
    valid = np.arange(7)[None, :] < b.nwords[:, None]
    for i in range(7):
        cols[f"w{i}"] = _masked(b.words[:, i], valid[:, i], pa.uint32(), np.uint32)
    return pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))


def to_arrow(rows: Rows, origin: int, hz: float) -> pa.RecordBatch:
    """The export columns of one :class:`~pyxentrace.export.source.Rows` batch."""
    rb = convert(rows.b, rows.att, origin, hz)
    sch = schema()
    return rb if rb.schema.equals(sch) else rb.cast(sch)


@cache
def schema() -> pa.Schema:
    """The export schema of Parquet and Arrow files (string columns ``dictionary<int32,
    string>``); CSV and JSON Lines carry :func:`text_schema`."""
    empty = RecordBatch.empty(0)
    return convert(empty, Attributor()(empty), 0, 1e9).schema


def text_schema(sch: pa.Schema | None = None) -> pa.Schema:
    """The columns CSV and JSON Lines carry (of ``sch``, default :func:`schema`):
    :data:`HEX_COLUMNS` as strings."""
    sch = schema() if sch is None else sch
    return pa.schema(
        [pa.field(f.name, pa.string()) if f.name in HEX_COLUMNS else f for f in sch],
        metadata=sch.metadata,
    )


# ---- text formats
_HEXDIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
_SHIFTS = np.arange(60, -4, -4, dtype=np.uint64)  # 16 nibbles, most significant first


def hex_strings(col: pa.Array) -> pa.Array:
    """``"0x…"`` (lower case, no leading zeros) of each value of an unsigned integer array;
    null stays null."""
    n = len(col)
    valid = np.ones(n, bool) if col.null_count == 0 else ~np.asarray(col.is_null())
    vals = (col.fill_null(0) if col.null_count else col).to_numpy().astype(np.uint64)[valid]
    nib = ((vals[:, None] >> _SHIFTS) & np.uint64(0xF)).astype(np.uint8)
    nz = nib != 0
    first = np.where(nz.any(axis=1), nz.argmax(axis=1), 15)  # first significant nibble
    chars = np.empty((vals.shape[0], 18), np.uint8)
    chars[:, 0] = ord("0")
    chars[:, 1] = ord("x")
    chars[:, 2:] = _HEXDIGITS[nib]
    pos = np.arange(18)[None, :]
    data = chars[(pos < 2) | (pos - 2 >= first[:, None])]
    lens = np.zeros(n, np.int32)
    lens[valid] = 18 - first
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    nulls = n - int(valid.sum())
    bitmap = None if nulls == 0 else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def text_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` as CSV and JSON Lines write it: :data:`HEX_COLUMNS` as ``"0x…"`` strings
    (dictionary columns are left to the writers)."""
    names = batch.schema.names
    cols = list(batch.columns)
    for name in HEX_COLUMNS:
        if name in names:
            i = names.index(name)
            cols[i] = hex_strings(cols[i])
    return pa.RecordBatch.from_arrays(cols, names=names)
