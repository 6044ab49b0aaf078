"""The library entry points behind ``pyxentrace export`` and ``pyxentrace perfetto``."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from ..errors import XentraceError
from .columns import schema, to_arrow
from .formats import compression_for
from .perfetto import PerfettoWriter
from .progress import Progress, Warnings
from .source import TraceSource
from .table import FORMATS, safe_host, write_file, write_partitioned


@dataclass
class Result:
    """What an export wrote."""

    path: str
    rows: int
    bytes: int = 0
    partitions: dict[int, int] = field(default_factory=dict)
    warnings: Warnings = field(default_factory=Warnings)
    error: str | None = None  # the file is damaged: one line naming file and offset


def _progress(src: TraceSource, what: str, show: bool | None) -> Progress:
    return Progress(what, src.size, enabled=show is not False, force=bool(show))


def default_host(trace: str) -> str:
    """Host partition value: the sidecar's ``host``, else the trace file's name without suffix."""
    from ..format.meta import read_meta

    meta = read_meta(trace) or {}
    h = meta.get("host")
    if isinstance(h, str) and h.strip():
        return safe_host(h)
    base = os.path.basename(trace if trace != "-" else "stdin")
    return safe_host(base.split(".")[0] or base)


def export_table(
    trace: str | os.PathLike,
    out: str,
    fmt: str = "parquet",
    *,
    partition: bool = False,
    host: str | None = None,
    cpu_hz: float | None = None,
    compression: str | None = None,
    batch_rows: int | None = None,
    progress: bool | None = None,
) -> Result:
    """One row per record (schema :func:`pyxentrace.export.columns.schema`) to ``out``.

    ``fmt``: parquet, arrow (IPC file; a stream when ``out`` is ``-``), csv or jsonl. With
    ``partition``, ``out`` is a dataset root receiving ``host=HOST/cpu=N/part-0.<fmt>``.
    ``compression``: Parquet zstd (default), snappy, gzip, lz4 or none; Arrow zstd (default),
    lz4 or none; CSV and JSON Lines none. Anything else raises before any output is written.
    """
    trace = os.fspath(trace)
    if fmt not in FORMATS:
        raise XentraceError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    try:
        compression = compression_for(fmt, compression)
    except ValueError as e:
        raise XentraceError(str(e)) from None
    src = TraceSource(trace, cpu_hz, batch_rows)
    res = Result(out, 0)
    bar = _progress(src, f"export {fmt}", progress)

    def batches():
        for rows in src:
            yield to_arrow(rows, src.origin, src.clock.hz)
            bar.update(src.done)

    with bar:
        if partition:
            if out == "-":
                raise XentraceError("--partition writes a directory; give -o DIR, not -")
            res.partitions = write_partitioned(
                batches(), schema(), fmt, out, host or default_host(trace), "cpu", compression
            )
            res.rows = sum(res.partitions.values())
        elif out == "-":
            res.rows = write_file(batches(), schema(), fmt, sys.stdout.buffer, compression)
        else:
            res.rows = write_file(batches(), schema(), fmt, out, compression)
    if not partition and out != "-":
        res.bytes = os.path.getsize(out)
    src.warnings(res.warnings)
    res.error = src.damage()
    return res


def write_perfetto(
    trace: str | os.PathLike,
    out: str,
    *,
    cpu_hz: float | None = None,
    pv_slices: bool = False,
    other_records: bool = True,
    batch_rows: int | None = None,
    progress: bool | None = None,
) -> Result:
    """Convert a trace to a Perfetto ``.pftrace`` (see :mod:`pyxentrace.export.perfetto`)."""
    trace = os.fspath(trace)
    src = TraceSource(trace, cpu_hz, batch_rows)
    res = Result(out, 0)
    try:
        f = sys.stdout.buffer if out == "-" else open(out, "wb")
    except OSError as e:
        raise XentraceError(f"cannot write: {e.strerror}", path=out) from None
    try:
        with _progress(src, "perfetto", progress) as bar:
            w = PerfettoWriter(f, pv_slices=pv_slices, other_records=other_records)
            for rows in src:
                w.add(rows)
                res.rows += len(rows)
                bar.update(src.done)
            w.finish()
    finally:
        if f is not sys.stdout.buffer:
            f.close()
    res.bytes = w.bytes
    src.warnings(res.warnings)
    res.error = src.damage()
    return res
