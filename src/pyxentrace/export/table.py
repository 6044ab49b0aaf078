"""Streaming writers of Arrow record batches: Parquet, Arrow IPC, CSV, JSON Lines, and a
hive-partitioned dataset (``host=…/cpu=…``) of any of them.

Every writer consumes an iterator of ``pyarrow.RecordBatch`` and keeps at most a bounded number
of rows in memory, so the size of the input does not matter.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterable
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import XentraceError
from .columns import HEX_COLUMNS, DictionaryUnifier, text_batch, text_schema
from .formats import FORMATS, SUFFIX, compression_for

#: Rows per Parquet row group (and per flush of a partition buffer).
ROW_GROUP_ROWS = 1 << 18
#: Rows of one partition written at a time (one row group), and rows buffered across all
#: partitions before the largest buffer is written anyway.
PARTITION_FLUSH_ROWS = 1 << 17
PARTITION_BUFFER_ROWS = 1 << 18


class BatchWriter:
    """Write record batches of one schema to one file (or binary stream) in ``fmt``.

    CSV and JSON Lines write :func:`~pyxentrace.export.columns.text_batch` of each batch (64-bit
    addresses as hex strings); Parquet keeps each batch's dictionaries, Arrow IPC merges them
    into one per column (:class:`~pyxentrace.export.columns.DictionaryUnifier`).
    """

    def __init__(
        self, sink: str | BinaryIO, schema: pa.Schema, fmt: str, compression: str | None = None
    ):
        if fmt not in FORMATS:
            raise XentraceError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        try:  # before the output is created
            compression = compression_for(fmt, compression)
        except ValueError as e:
            raise XentraceError(str(e)) from None
        self.fmt = fmt
        self.text = fmt in ("csv", "jsonl")
        self.schema = text_schema(schema) if self.text else schema
        self.rows = 0
        self._own = isinstance(sink, str)
        try:
            self._f = open(sink, "wb") if isinstance(sink, str) else sink
        except OSError as e:
            raise XentraceError(f"cannot write: {e.strerror}", path=str(sink)) from None
        self._w = None
        comp = None if compression == "none" else compression
        if fmt == "parquet":
            import pyarrow.parquet as pq

            # dictionary pages for the string columns only: faster and smaller for the rest
            strings = [f.name for f in schema if pa.types.is_dictionary(f.type)]
            strings += [f.name for f in schema if pa.types.is_string(f.type)]
            self._w = pq.ParquetWriter(self._f, schema, compression=comp, use_dictionary=strings)
        elif fmt == "arrow":
            # one dictionary per column, grown from batch to batch: new entries go as deltas
            self._unify = DictionaryUnifier()
            opts = pa.ipc.IpcWriteOptions(compression=comp, emit_dictionary_deltas=True)
            # a file on disk: IPC file format (random access); a stream (stdout): IPC stream
            new = pa.ipc.new_file if self._own else pa.ipc.new_stream
            self._w = new(self._f, schema, options=opts)
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            self._w = pcsv.CSVWriter(self._f, self.schema)
        else:
            self._json = JsonLinesEncoder(self.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.rows += batch.num_rows
        if self.text:
            batch = text_batch(batch)
        if self.fmt == "parquet":
            self._w.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
        elif self.fmt == "jsonl":
            self._f.write(self._json.encode(batch))
        elif self.fmt == "arrow":
            self._w.write_batch(self._unify(batch))
        else:
            self._w.write_batch(batch)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None
        if self._own:
            self._f.close()
        else:
            self._f.flush()


class JsonLinesEncoder:
    """Vectorised JSON Lines: one object per row; null fields are left out of the object."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self._keys = [pa.scalar(_json_str(f.name) + ":") for f in schema]

    def encode(self, batch: pa.RecordBatch) -> bytes:
        parts = []
        n = batch.num_rows
        for key, field, col in zip(self._keys, self.schema, batch.columns, strict=True):
            if col.null_count == n:
                continue  # left out of every object
            t = field.type
            if pa.types.is_dictionary(t):
                # escape, quote and prefix the (few) dictionary values once, then one take
                parts.append(pc.take(_json_strings(col.dictionary, key), col.indices))
                continue
            if field.name in HEX_COLUMNS:  # "0x…": nothing to escape
                parts.append(pc.binary_join_element_wise(key, '"', col, '"', ""))
                continue
            if pa.types.is_string(t) or pa.types.is_large_string(t):
                parts.append(_json_strings(col, key))
                continue
            if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
                s = pc.cast(col, pa.string())
            else:
                raise XentraceError(f"JSON Lines export cannot write column type {t}")
            parts.append(pc.binary_join_element_wise(key, s, ""))  # null stays null
        line = pc.binary_join_element_wise(*parts, ",", null_handling="skip")
        line = pc.binary_join_element_wise("{", line, "}\n", "")
        return _string_bytes(line)


def _json_strings(col: pa.Array, key: pa.Scalar) -> pa.Array:
    """``"name":"value"`` of each string (JSON-escaped); null stays null."""
    s = pc.replace_substring(col, "\\", "\\\\")
    s = pc.replace_substring(s, '"', '\\"')
    return pc.binary_join_element_wise(key, '"', s, '"', "")


def _string_bytes(arr: pa.Array) -> bytes:
    """The concatenated characters of a string array without nulls."""
    if isinstance(arr, pa.ChunkedArray):
        return b"".join(_string_bytes(c) for c in arr.chunks)
    if len(arr) == 0:
        return b""
    _validity, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    return data.to_pybytes()[off[0] : off[-1]]


def _json_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- one file
def write_file(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    fmt: str,
    out: str | BinaryIO,
    compression: str | None = None,
) -> int:
    """Write every batch to ``out`` (a path, or a binary stream such as stdout); return rows."""
    w = BatchWriter(out, schema, fmt, compression)
    try:
        in_background(w.write, batches)
    finally:
        w.close()
    return w.rows


def in_background(
    consume: Callable[[pa.RecordBatch], None], batches: Iterable, depth: int = 2
) -> None:
    """``consume`` every batch in a worker thread while the caller's thread produces the next
    ones (Arrow's encoders release the GIL), with at most ``depth`` batches in flight."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    errors: list[BaseException] = []

    def work() -> None:
        while (b := q.get()) is not None:
            if not errors:
                try:
                    consume(b)
                except BaseException as e:  # re-raised in the caller's thread
                    errors.append(e)

    t = threading.Thread(target=work, name="pyxentrace-writer", daemon=True)
    t.start()
    try:
        for b in batches:
            if errors:
                break
            q.put(b)
    finally:
        q.put(None)
        t.join()
    if errors:
        raise errors[0]


# ---- hive-partitioned dataset
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def safe_host(host: str) -> str:
    """A host name usable as a hive partition value (path-safe)."""
    h = _SAFE.sub("_", host.strip()) or "host"
    return h.lstrip(".") or "host"


def write_partitioned(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    fmt: str,
    root: str,
    host: str,
    key: str = "cpu",
    compression: str | None = None,
) -> dict[int, int]:
    """Write ``root/host=HOST/cpu=N/part-K.<fmt>`` files; return rows per partition value.

    The partition columns are not stored inside the files (hive convention): readers take them
    from the paths. An existing ``host=HOST`` directory is replaced, other hosts are kept, so
    exporting many hosts' traces into one root builds a fleet dataset.
    """
    try:  # before anything is removed or created
        compression = compression_for(fmt, compression)
    except ValueError as e:
        raise XentraceError(str(e)) from None
    host = safe_host(host)
    hdir = os.path.join(root, f"host={host}")
    try:
        if os.path.isdir(hdir):
            shutil.rmtree(hdir)
        os.makedirs(hdir, exist_ok=True)
    except OSError as e:
        raise XentraceError(f"cannot write dataset: {e.strerror}", path=hdir) from None
    idx = schema.get_field_index(key)
    if idx < 0:
        raise XentraceError(f"cannot partition by {key!r}: no such column")
    file_schema = schema.remove(idx)
    writers: dict[int, BatchWriter] = {}

    def write(job: tuple[int, pa.Table]) -> None:  # in the writer thread
        value, table = job
        w = writers.get(value)
        if w is None:
            d = os.path.join(hdir, f"{key}={value}")
            os.makedirs(d, exist_ok=True)
            w = writers[value] = BatchWriter(
                os.path.join(d, "part-0" + SUFFIX[fmt]), file_schema, fmt, compression
            )
        for b in table.combine_chunks().to_batches(max_chunksize=ROW_GROUP_ROWS):
            w.write(b)

    try:
        in_background(write, _partition_jobs(batches, idx, key, file_schema))
    finally:
        for w in writers.values():
            w.close()
    return {v: w.rows for v, w in sorted(writers.items())}


def _partition_jobs(
    batches: Iterable[pa.RecordBatch], idx: int, key: str, file_schema: pa.Schema
) -> Iterable[tuple[int, pa.Table]]:
    """Rows grouped by partition value, buffered until a row group's worth (or the buffer is
    full), as ``(value, table)`` jobs for the writer."""
    pending: dict[int, list[pa.RecordBatch]] = {}
    pending_rows: dict[int, int] = {}
    total = 0

    def take(value: int) -> tuple[int, pa.Table]:
        nonlocal total
        total -= pending_rows.pop(value)
        return value, pa.Table.from_batches(pending.pop(value), schema=file_schema)

    for b in batches:
        if b.num_rows == 0:
            continue
        col = b.column(idx)
        rest = _drop(b, idx)
        values = pc.unique(col).to_pylist()
        for v in values:
            part = rest.filter(pc.equal(col, v)) if len(values) > 1 else rest
            pending.setdefault(v, []).append(part)
            pending_rows[v] = pending_rows.get(v, 0) + part.num_rows
            total += part.num_rows
            if pending_rows[v] >= PARTITION_FLUSH_ROWS:
                yield take(v)
        while total > PARTITION_BUFFER_ROWS:
            yield take(max(pending_rows, key=pending_rows.__getitem__))
    for v in list(pending):
        yield take(v)


def _drop(b: pa.RecordBatch, idx: int) -> pa.RecordBatch:
    cols = [c for i, c in enumerate(b.columns) if i != idx]
    return pa.RecordBatch.from_arrays(cols, schema=b.schema.remove(idx))
