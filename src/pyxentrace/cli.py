"""The ``pyxentrace`` command line: a thin shell over the library.

Exit codes: 0 ok, 1 bad input (damaged trace, unreadable file), 2 usage.
"""

from __future__ import annotations

import json

import click

from . import __version__
from .clikit import CONTEXT, clock_for, guarded, report_anomalies, trace_options


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="pyxentrace")
def main() -> None:
    """Xen trace toolkit for PV guests: record, simulate, read and analyse xentrace files."""


@main.command(context_settings=CONTEXT)
@trace_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
@guarded
def info(trace: str, cpu_hz: float | None, quiet: bool, as_json: bool) -> None:
    """Size, records, pCPUs, time span, volume per class and event, lost/wrap, anomalies."""
    from .reader.info import trace_info
    from .render.info import render_info

    clock = clock_for(trace, cpu_hz, quiet or as_json)
    ti = trace_info(trace, clock)
    if as_json:
        click.echo(json.dumps(ti.to_dict(), indent=1))
    else:
        render_info(ti)
    report_anomalies(ti.path, ti.report, quiet)


def _register() -> None:
    from .analysis.cli_commands import dump_cmd, summary_cmd
    from .export.commands import export_cmd, perfetto_cmd, report_cmd
    from .recorder.commands import demo_cmd, record_cmd, simulate_cmd

    for cmd in (
        demo_cmd,
        simulate_cmd,
        record_cmd,
        summary_cmd,
        dump_cmd,
        export_cmd,
        perfetto_cmd,
        report_cmd,
    ):
        main.add_command(cmd)


_register()


if __name__ == "__main__":
    main()
