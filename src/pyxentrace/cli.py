"""The ``pyxentrace`` command line: a thin shell over the library.

Exit codes: 0 ok, 1 bad input (damaged trace, unreadable file), 2 usage.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from . import __version__
from .errors import XentraceError
from .format.meta import Clock, resolve_clock

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(msg: str) -> None:
    click.echo(f"pyxentrace: error: {msg}", err=True)
    sys.exit(1)


def warn(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(f"pyxentrace: warning: {msg}", err=True)


def guarded(fn: Callable) -> Callable:
    """Run a command body: XentraceError -> one line + exit 1; broken pipe -> quiet exit."""

    def run(*a, **kw):
        try:
            return fn(*a, **kw)
        except XentraceError as e:
            fail(str(e))
        except BrokenPipeError:
            try:
                sys.stdout = None  # type: ignore[assignment]
            finally:
                sys.exit(0)
        except KeyboardInterrupt:
            sys.exit(130)

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def trace_argument(f: Callable) -> Callable:
    return click.argument("trace", metavar="TRACE", type=click.Path(allow_dash=True))(f)


def cpu_hz_option(f: Callable) -> Callable:
    return click.option(
        "--cpu-hz",
        type=float,
        default=None,
        help="TSC rate in Hz (default: the trace's metadata sidecar, else 2.4e9, assumed).",
    )(f)


def clock_for(trace: str, cpu_hz: float | None, quiet: bool = False) -> Clock:
    clock = resolve_clock(trace, cpu_hz)
    w = clock.warning()
    if w:
        warn(w, quiet)
    return clock


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="pyxentrace")
def main() -> None:
    """Xen trace toolkit for PV guests: record, simulate, read and analyse xentrace files."""


@main.command()
@trace_argument
@cpu_hz_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@click.option("-q", "--quiet", is_flag=True, help="No warnings on stderr.")
@guarded
def info(trace: str, cpu_hz: float | None, as_json: bool, quiet: bool) -> None:
    """Size, records, pCPUs, time span, volume per class and event, lost/wrap, anomalies."""
    from .reader.info import trace_info
    from .render.info import render_info

    clock = clock_for(trace, cpu_hz, quiet or as_json)
    ti = trace_info(trace, clock)
    if as_json:
        click.echo(json.dumps(ti.to_dict(), indent=1))
    else:
        render_info(ti)
    report_anomalies(ti.path, ti.report, ti.damaged, quiet)


def report_anomalies(path: str, report, damaged: bool, quiet: bool = False) -> None:
    """One line per file for what the reader found; exit 1 when the file is damaged."""
    if not report.anomalies and not report.anomaly_count:
        return
    first = report.anomalies[0] if report.anomalies else None
    more = report.anomaly_count - 1
    tail = f" (and {more} more)" if more > 0 else ""
    line = f"{path}: offset {first.offset}: {first.message}{tail}" if first else path
    if damaged:
        fail(line)
    warn(line, quiet)


def _register() -> None:
    from .analysis.cli_commands import dump_cmd, summary_cmd

    main.add_command(summary_cmd, "summary")
    main.add_command(dump_cmd, "dump")


_register()


if __name__ == "__main__":
    main()
