"""The export table: analysis's Arrow columns (the same as ``pyxentrace.open(p).to_arrow()``)
plus ``time_ns``, with the payload words as plain columns ``w0``..``w6`` and plain strings, so
that every format - CSV and JSON Lines included - carries the same schema.

Columns (see docs/export.md): ``time_ns`` first, then :func:`pyxentrace.analysis.table.
arrow_batch`'s columns except ``words`` and ``time_s``, then ``w0``..``w6`` (null past
``nwords``).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa

from ..analysis.dump import Attributor, ns_since
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


def _masked(values: np.ndarray, valid: np.ndarray, typ: pa.DataType, np_type) -> pa.Array:
    """A typed Arrow array over ``values``, null where not ``valid`` (buffers built directly)."""
    n = values.shape[0]
    data = pa.py_buffer(np.ascontiguousarray(values, dtype=np_type))
    nulls = n - int(np.count_nonzero(valid))
    bitmap = None if nulls == 0 else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(typ, n, [bitmap, data], null_count=nulls)


def _plain(col: pa.Array) -> pa.Array:
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def convert(
    b: RecordBatch, attribution: dict[str, np.ndarray], origin: int, hz: float
) -> pa.RecordBatch:
    """The export columns of one batch (``attribution`` from analysis's ``Attributor``)."""
    t = arrow_batch(b, attribution, origin, hz)
    names = ["time_ns"]
    cols = [pa.array(ns_since(b.tsc, origin, hz), pa.int64())]
    for name, col in zip(t.schema.names, t.columns, strict=True):
        if name not in DROPPED:
            names.append(name)
            cols.append(_plain(col))
    valid = np.arange(7)[None, :] < b.nwords[:, None]
    for i in range(7):
        names.append(f"w{i}")
        cols.append(_masked(b.words[:, i], valid[:, i], pa.uint32(), np.uint32))
    return pa.RecordBatch.from_arrays(cols, names=names)


def to_arrow(rows: Rows, origin: int, hz: float) -> pa.RecordBatch:
    """The export columns of one :class:`~pyxentrace.export.source.Rows` batch."""
    return convert(rows.b, rows.att, origin, hz).cast(schema())


@cache
def schema() -> pa.Schema:
    """The export schema (every batch is cast to it)."""
    empty = RecordBatch.empty(0)
    return convert(empty, Attributor()(empty), 0, 1e9).schema
