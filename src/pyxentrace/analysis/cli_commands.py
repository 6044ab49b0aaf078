"""``pyxentrace summary`` and ``pyxentrace dump``: click commands, thin shells over the library.

Register with ``main.add_command(summary_cmd, "summary")`` and ``main.add_command(dump_cmd,
"dump")``. Errors in the input give one line on stderr and exit status 1; bad option values
(filters included) are usage errors, exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from ..clikit import CONTEXT, clock_for, guarded, report_anomalies, trace_options, warn
from ..errors import XentraceError
from .filters import FilterError, Filters, make_filters


def _filter_options(f: Callable) -> Callable:
    """The shared filters: --from/--to seconds, --cpu, --domain, --vcpu."""
    f = click.option(
        "--vcpu",
        "vcpus",
        multiple=True,
        metavar="dXvY",
        help="Only these vCPUs (d1v0, d[IDLE]v3; repeat or comma-separate).",
    )(f)
    f = click.option(
        "--domain",
        "domains",
        multiple=True,
        metavar="DOM",
        help="Only these domains (1, d1, d[IDLE]; repeat or comma-separate).",
    )(f)
    f = click.option(
        "--cpu",
        "cpus",
        multiple=True,
        metavar="N",
        help="Only records from these pCPUs (repeat or comma-separate).",
    )(f)
    f = click.option(
        "--to",
        "to_s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Stop at this time (seconds from the first record).",
    )(f)
    f = click.option(
        "--from",
        "from_s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Start at this time (seconds from the first record).",
    )(f)
    return f


def filters_from(from_s, to_s, cpus, domains, vcpus, events=()) -> Filters:
    """:class:`Filters` from the command-line values; a bad value is a usage error (exit 2)."""
    try:
        return make_filters(from_s, to_s, cpus, domains, vcpus, events)
    except FilterError as e:
        raise click.BadParameter(e.detail, param_hint=f"'{e.option}'") from None


@click.command("summary", context_settings=CONTEXT)
@trace_options
@_filter_options
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "xenalyze"]),
    default="text",
    show_default=True,
    help="text: tables per vCPU; json: one document; xenalyze: xenalyze --summary text.",
)
@click.option(
    "--top",
    type=int,
    default=5,
    show_default=True,
    help="How many top EIPs per event type (0: do not count EIPs).",
)
@click.option(
    "--show-default-domain",
    is_flag=True,
    help="xenalyze format: also print the default domain (xenalyze's -!).",
)
@guarded
def summary_cmd(
    trace, cpu_hz, quiet, from_s, to_s, cpus, domains, vcpus, fmt, top, show_default_domain
):
    """PV events and runstates per domain and vCPU (hypercalls, traps, faults, EIPs)."""
    from .summary import compute_summary

    clock = clock_for(trace, cpu_hz, quiet or fmt == "json")
    f = filters_from(from_s, to_s, cpus, domains, vcpus)
    s = compute_summary(trace, filters=f, clock=clock, eip_capacity=(1 << 14) if top else 0)
    if fmt == "json":
        click.echo(json.dumps(s.to_dict(top=top), indent=1))
    elif fmt == "xenalyze":
        from .render_xenalyze import render_xenalyze

        click.echo(render_xenalyze(s, show_default=show_default_domain), nl=False)
    else:
        from .render_text import render_text

        click.echo(render_text(s, top=top), nl=False)
    if fmt != "json":
        for note in s.notes:
            warn(note, quiet)
    report_anomalies(trace, s.report, quiet)


@click.command("dump", context_settings=CONTEXT)
@trace_options
@_filter_options
@click.option(
    "--event",
    "events",
    multiple=True,
    metavar="EVENT",
    help="Only these events: a class (pv, sched, hvm...), a name (hypercall_v2, "
    "page_fault64...) or a number (repeat or comma-separate).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text lines or JSON lines.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default="-",
    help="Write to this file instead of stdout.",
)
@guarded
def dump_cmd(trace, cpu_hz, quiet, from_s, to_s, cpus, domains, vcpus, events, fmt, output):
    """One line per record in time order: time, pCPU, vCPU, event, decoded fields."""
    from .dump import write_dump

    clock = clock_for(trace, cpu_hz, quiet)
    f = filters_from(from_s, to_s, cpus, domains, vcpus, events)
    if output == "-":
        out = sys.stdout.buffer
        r = write_dump(trace, out, clock=clock, filters=f, fmt=fmt)
        out.flush()
    else:
        try:
            fh = open(output, "wb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise XentraceError(f"cannot write: {e.strerror}", path=output) from None
        with fh:
            r = write_dump(trace, fh, clock=clock, filters=f, fmt=fmt)
    report_anomalies(trace, r.report, quiet)
