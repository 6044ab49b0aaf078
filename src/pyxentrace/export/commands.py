"""Click commands ``export``, ``perfetto`` and ``report``: thin shells over the library.

Each one handles its own errors: bad input prints one line (``pyxentrace: error: ...``) and exits
1 after everything valid was written; usage errors exit 2 (click). Warnings are gathered and
printed once at the end; ``--quiet`` silences them and the closing line.
"""

from __future__ import annotations

import os

import click

from ..clikit import CONTEXT, cpu_hz_option, fail, guarded, quiet_option, trace_argument
from .formats import COMPRESSIONS, FORMATS, compression_for
from .progress import Warnings


def _finish(res, what: str, quiet: bool) -> None:
    """Closing summary: warnings once, the result line; exit 1 if the trace was damaged (after
    everything valid was written)."""
    warns = res.warnings if isinstance(res.warnings, Warnings) else Warnings()
    if not isinstance(res.warnings, Warnings):
        for w in res.warnings:
            warns.add(w)
    if not quiet:
        warns.emit()
        if res.path != "-":
            click.echo(f"pyxentrace: {what}", err=True)
    if res.error:
        fail(res.error)


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n:,} bytes"


def _default_out(trace: str, suffix: str) -> str:
    if trace == "-":
        raise click.UsageError("reading stdin: give -o OUT")
    return os.path.splitext(trace)[0] + suffix


_progress = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: on a terminal, for work over a second).",
)


@click.command("export", context_settings=CONTEXT)
@trace_argument
@click.option(
    "--to",
    "fmt",
    type=click.Choice(FORMATS),
    default="parquet",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    help="Output file (- for stdout) or, with --partition, dataset directory.",
)
@click.option(
    "--partition",
    is_flag=True,
    help="Write a hive-partitioned dataset OUT/host=HOST/cpu=N/ (for fleets).",
)
@click.option(
    "--host",
    default=None,
    help="Host name of the partition (default: sidecar 'host', else the file name).",
)
@click.option(
    "--compression",
    type=click.Choice(COMPRESSIONS),
    default=None,
    help="Parquet: zstd (default), snappy, gzip, lz4, none. Arrow: zstd (default), lz4, none. "
    "CSV and JSON Lines are not compressed.",
)
@cpu_hz_option
@quiet_option
@_progress
@guarded
def export_cmd(trace, fmt, output, partition, host, compression, cpu_hz, quiet, progress):
    """One row per record: time (ns and TSC), pCPU, d$v$, class, event, decoded fields, words."""
    from .convert import export_table

    if host is not None and not partition:
        raise click.UsageError("--host names a partition: use it with --partition")
    if fmt == "parquet" and output == "-":
        raise click.UsageError("Parquet cannot stream to stdout; use --to arrow, csv or jsonl")
    try:
        compression = compression_for(fmt, compression)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    res = export_table(
        trace,
        output,
        fmt,
        partition=partition,
        host=host,
        cpu_hz=cpu_hz,
        compression=compression,
        progress=False if quiet else progress,
    )
    if partition:
        what = f"wrote {res.rows:,} rows to {output} ({len(res.partitions)} cpu partitions)"
    else:
        what = f"wrote {res.rows:,} rows to {output} ({_size(res.bytes)})"
    _finish(res, what, quiet)


@click.command("perfetto", context_settings=CONTEXT)
@trace_argument
@click.option("-o", "--output", default=None, help="Output .pftrace (default: TRACE.pftrace).")
@click.option(
    "--pv-slices",
    is_flag=True,
    help="PV events as slices (not instants), each ending at the next record of its pCPU or "
    "the next event of its vCPU, whichever comes first.",
)
@click.option(
    "--no-other",
    is_flag=True,
    help="Leave out records that belong to no vCPU track (scheduler internals...).",
)
@cpu_hz_option
@quiet_option
@_progress
@guarded
def perfetto_cmd(trace, output, pv_slices, no_other, cpu_hz, quiet, progress):
    """Perfetto timeline: a track per pCPU, a thread per d$v$ grouped by domain, runstate slices,
    PV events with decoded arguments, lost-record markers. Open in ui.perfetto.dev."""
    from .convert import write_perfetto

    output = output or _default_out(trace, ".pftrace")
    res = write_perfetto(
        trace,
        output,
        cpu_hz=cpu_hz,
        pv_slices=pv_slices,
        other_records=not no_other,
        progress=False if quiet else progress,
    )
    _finish(res, f"wrote {res.rows:,} records to {output} ({_size(res.bytes)})", quiet)


@click.command("report", context_settings=CONTEXT)
@trace_argument
@click.option("-o", "--output", default=None, help="Output .html (default: TRACE.html).")
@click.option(
    "--bins",
    type=click.IntRange(10, 5000),
    default=600,
    show_default=True,
    help="Time bins of the timeline and rate charts.",
)
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=25,
    show_default=True,
    help="Rows of the top-EIP table.",
)
@cpu_hz_option
@quiet_option
@_progress
@guarded
def report_cmd(trace, output, bins, top, cpu_hz, quiet, progress):
    """One self-contained HTML page: runstate timeline, hypercall mix, PV rates, page-fault error
    codes, top EIPs, lost records and the summary tables (no network needed to view it)."""
    from .report import write_report

    output = output or _default_out(trace, ".html")
    res = write_report(
        trace, output, cpu_hz=cpu_hz, bins=bins, top=top, progress=False if quiet else progress
    )
    _finish(res, f"wrote {output} ({_size(res.bytes)})", quiet)


COMMANDS = (export_cmd, perfetto_cmd, report_cmd)
