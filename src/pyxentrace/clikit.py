"""What every ``pyxentrace`` command shares: error handling, common options, the clock.

Exit codes: 0 ok, 1 bad input (one line on stderr), 2 usage (click), 130 interrupted.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from functools import wraps

import click

from .errors import XentraceError
from .format.meta import Clock, resolve_clock

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(msg: str) -> None:
    """One error line on stderr, exit 1."""
    click.echo(f"pyxentrace: error: {msg}", err=True)
    sys.exit(1)


def warn(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(f"pyxentrace: warning: {msg}", err=True)


def guarded(fn: Callable) -> Callable:
    """Run a command body: XentraceError -> one line + exit 1; broken pipe -> quiet exit."""

    @wraps(fn)
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

    return run


def trace_argument(f: Callable) -> Callable:
    return click.argument("trace", metavar="TRACE", type=click.Path(allow_dash=True))(f)


def _positive_finite(ctx, param, value):
    if value is not None and not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"must be a positive finite number, got {value}")
    return value


def cpu_hz_option(f: Callable) -> Callable:
    return click.option(
        "--cpu-hz",
        type=float,
        default=None,
        callback=_positive_finite,
        help="TSC rate in Hz (default: the trace's metadata sidecar, else 2.4e9, assumed).",
    )(f)


def quiet_option(f: Callable) -> Callable:
    return click.option("-q", "--quiet", is_flag=True, help="No progress or warnings on stderr.")(f)


def trace_options(f: Callable) -> Callable:
    """TRACE, --cpu-hz and --quiet."""
    return trace_argument(cpu_hz_option(quiet_option(f)))


def clock_for(trace: str, cpu_hz: float | None, quiet: bool = False) -> Clock:
    """The TSC rate for ``trace`` (warning when assumed); a missing file is a one-line error."""
    if trace != "-" and not os.path.exists(trace):
        raise XentraceError("cannot open: No such file or directory", path=trace)
    clock = resolve_clock(trace, cpu_hz)
    w = clock.warning()
    if w:
        warn(w, quiet)
    return clock


def report_anomalies(path: str, report, quiet: bool = False) -> None:
    """One line for what the reader found in ``path``; exit 1 when the file is damaged."""
    from .reader.info import STRUCTURAL

    if not report.anomaly_count:
        return
    first = report.anomalies[0] if report.anomalies else None
    more = report.anomaly_count - 1
    tail = f" (and {more} more)" if more > 0 else ""
    line = f"{path}: offset {first.offset}: {first.message}{tail}" if first else path
    if any(a.code in STRUCTURAL for a in report.anomalies):
        fail(line)
    warn(line, quiet)
