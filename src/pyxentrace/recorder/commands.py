"""Click commands ``record``, ``simulate`` and ``demo``: thin shells over the recorder library.

Exit status: 0 ok, 1 bad input or a failed run (one line on stderr), 2 usage, 130 Ctrl-C,
143/129 when ``simulate`` or ``demo`` is stopped by SIGTERM/SIGHUP (the file is still valid).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from pyxentrace.clikit import CONTEXT, warn
from pyxentrace.clikit import guarded as clikit_guarded
from pyxentrace.errors import XentraceError
from pyxentrace.format.pv_layouts import ABI_SEED, ABI_XEN4, ARCHES, check_combo
from pyxentrace.hypervisor.machine import DEFAULT_TSC_HZ
from pyxentrace.hypervisor.workloads import PROFILES
from pyxentrace.recorder.options import (
    DEFAULT_TBUF_SIZE,
    POLL_SLEEP_MILLIS,
    OptionError,
    RecorderOptions,
    check_model_name,
    parse_count,
    parse_cpu_mask,
    parse_evt_mask,
    parse_size,
)

DEMO_TRACE = "demo-trace.bin"


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """As :func:`pyxentrace.clikit.guarded`, and bad option values -> usage error (2)."""

    @functools.wraps(fn)
    def usage(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except OptionError as e:
            raise click.UsageError(str(e)) from None

    return clikit_guarded(usage)


# ---- shared xentrace options ------------------------------------------------------------------


def _xentrace_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "-e",
            "--evt-mask",
            "evt_mask",
            multiple=True,
            metavar="MASK",
            help="Event mask: gen, sched, dom0op, hvm, mem, pv, all (OR-ed) or a "
            "number (replaces). Default: leave Xen's mask.",
        ),
        click.option(
            "-c",
            "--cpu-mask",
            "cpu_mask",
            metavar="CPUS",
            help="CPUs to trace: a list like 0-3,7 (n- = n to last), all, or 0xHEX.",
        ),
        click.option(
            "-s",
            "--poll-sleep",
            "poll_sleep",
            metavar="MS",
            help=f"Poll period in ms (default {POLL_SLEEP_MILLIS}).",
        ),
        click.option(
            "-M",
            "--memory-buffer",
            "memory_buffer",
            metavar="SIZE",
            help="Keep the newest windows in a RAM ring of SIZE bytes (K/M/G "
            "suffix), written at exit.",
        ),
        click.option(
            "-r",
            "--reserve-disk-space",
            "reserve",
            metavar="MB",
            help="Stop (exit 1) rather than leave MB or less free on the disk.",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _build_options(
    evt_mask: tuple[str, ...],
    cpu_mask: str | None,
    poll_sleep: str | None,
    memory_buffer: str | None,
    reserve: str | None,
    **kw: Any,
) -> tuple[RecorderOptions, set[str]]:
    explicit: set[str] = set()
    o = RecorderOptions()
    o.evt_mask = parse_evt_mask(evt_mask)
    if cpu_mask is not None:
        parse_cpu_mask(cpu_mask, 256)  # syntax now; the CPU count when the host is known
        o.cpu_mask = cpu_mask
    if poll_sleep is not None:
        o.poll_ms = parse_count(poll_sleep, "poll sleep (ms)")
        explicit.add("poll_ms")
    if memory_buffer is not None:
        o.memory_buffer = parse_size(memory_buffer)
    if reserve is not None:
        o.reserve_mb = parse_count(reserve, "disk reserve (MB)")
    if kw.get("trace_buf_size") is not None:
        o.tbuf_pages = parse_count(kw["trace_buf_size"], "trace buffer size (pages)", 1)
        explicit.add("tbuf_pages")
    if kw.get("time_interval") is not None:
        o.time_limit_s = parse_count(kw["time_interval"], "time interval (s)")
    o.discard = bool(kw.get("discard"))
    o.disable_at_exit = not kw.get("dont_disable")
    o.start_disabled = bool(kw.get("start_disabled"))
    return o, explicit


# ---- record -----------------------------------------------------------------------------------


@click.command("record", context_settings=CONTEXT)
@click.argument("output", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@_xentrace_options
@click.option(
    "-S",
    "--trace-buf-size",
    "trace_buf_size",
    metavar="PAGES",
    help=f"Trace buffer pages per CPU (default {DEFAULT_TBUF_SIZE}; ignored when "
    "already allocated).",
)
@click.option(
    "-T", "--time-interval", "time_interval", metavar="SECONDS", help="Stop after SECONDS."
)
@click.option(
    "-D",
    "--discard-buffers",
    "discard",
    is_flag=True,
    help="Discard what the buffers hold at start.",
)
@click.option(
    "-x",
    "--dont-disable-tracing",
    "dont_disable",
    is_flag=True,
    help="Leave tracing enabled at exit.",
)
@click.option(
    "-X",
    "--start-disabled",
    "start_disabled",
    is_flag=True,
    help="Set up the buffers but leave tracing disabled.",
)
@click.option(
    "-t",
    "--log-thresh",
    "log_thresh",
    metavar="N",
    hidden=True,
    help="Obsolete xentrace option: accepted and ignored.",
)
@click.option(
    "--model",
    metavar="NAME",
    envvar="PYXENTRACE_MODEL",
    help="The simulated hypervisor to record (its shared-memory name; env PYXENTRACE_MODEL).",
)
@click.option("--xen", is_flag=True, help="Record this host's Xen with its own xentrace.")
@click.option(
    "--meta",
    "meta",
    type=click.Path(dir_okay=False),
    help="Metadata sidecar path (default OUTPUT.meta.json; none for stdout).",
)
@click.option("--ready-fd", "ready_fd", type=int, hidden=True)
@click.option("--parent-fd", "parent_fd", type=int, hidden=True)
@click.option("-q", "--quiet", is_flag=True, help="No summary line on stderr.")
@guarded
def record_cmd(
    output: str | None,
    model: str | None,
    xen: bool,
    meta: str | None,
    ready_fd: int | None,
    parent_fd: int | None,
    quiet: bool,
    log_thresh: str | None,
    **kw: Any,
) -> None:
    """Record trace buffers into OUTPUT (or stdout) like xentrace: windows of raw records.

    Stops on SIGINT/SIGTERM/SIGHUP/SIGALRM or after -T: disables tracing (unless -x),
    drains once more and exits 0.
    """
    from pyxentrace.recorder.sidecar import meta_path_for

    opts, explicit = _build_options(**kw)
    if log_thresh is not None and not quiet:
        warn("-t/--log-thresh is obsolete (xentrace dropped it in 2008); ignored")
    meta_path = meta_path_for(output, meta)
    if xen:
        from pyxentrace.recorder.xenhost import record_xen

        sys.exit(record_xen(opts, output, meta_path, explicit, warn))
    if not model:
        raise click.UsageError(
            "nothing to record: give --model NAME (a simulated hypervisor, "
            "see `pyxentrace simulate --no-record`) or --xen"
        )
    check_model_name(model)
    stats, path = _record_model(model, output, opts, meta_path, ready_fd, parent_fd)
    if not quiet:
        click.echo(
            f"pyxentrace: recorded {stats.windows:,} windows, {stats.bytes:,} bytes of "
            f"records to {path}",
            err=True,
        )


def _record_model(
    model: str,
    output: str | None,
    opts: RecorderOptions,
    meta_path: str | None,
    ready_fd: int | None,
    parent_fd: int | None = None,
) -> tuple[Any, str]:
    from pyxentrace.hypervisor.control import TraceControl
    from pyxentrace.recorder.daemon import Recorder, check_memory_buffer
    from pyxentrace.recorder.output import TraceOutput

    try:
        ctl = TraceControl.attach(model)
    except FileNotFoundError:
        raise XentraceError(f"no simulated hypervisor named {model!r} is running") from None
    except OSError as e:
        raise XentraceError(f"cannot attach to the model {model!r}: {e.strerror or e}") from None
    rec = None
    try:
        check_memory_buffer(ctl, opts)  # before the output file is created or truncated
        out = TraceOutput(output, opts.reserve_mb)
        try:
            rec = Recorder(ctl, out, opts, meta_path, parent_fd=parent_fd)
            try:
                rec.setup()

                def ready() -> None:
                    if ready_fd is not None:
                        os.write(ready_fd, b"ready")
                        os.close(ready_fd)

                return rec.run(ready), out.path
            finally:
                rec.close()
        finally:
            out.close()
    finally:
        ctl.close()
        if rec is not None and rec.parent_exited:
            # simulate died without stopping us: nobody else will remove what it left.
            from pyxentrace.recorder.simulate import remove_model

            remove_model(model)


def parse_record_args(args: list[str]) -> RecorderOptions:
    """Recorder options from ``record`` command-line arguments, parsed by ``record`` itself
    (:class:`OptionError` for anything it would refuse)."""
    try:
        ctx = record_cmd.make_context("pyxentrace record", list(args))
    except click.ClickException as e:
        raise OptionError(f"recorder arguments {' '.join(args)!r}: {e.format_message()}") from None
    return _build_options(**ctx.params)[0]


# ---- simulate ---------------------------------------------------------------------------------


def _simulate_options(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option(
            "--duration",
            type=float,
            default=5.0,
            show_default=True,
            help="Simulated seconds (profiles).",
        ),
        click.option(
            "--pcpus",
            type=click.IntRange(1, 256),
            help="pCPUs (default: the profile's; for a script, the highest pcpu used + 1).",
        ),
        click.option(
            "--domains",
            metavar="SPEC",
            help="Domains ID:VCPUS[xWIDTH][:NAME],... e.g. 0:4x64,1:2x32 (default: the profile's).",
        ),
        click.option(
            "--abi",
            type=click.Choice([ABI_XEN4, ABI_SEED]),
            default=ABI_XEN4,
            show_default=True,
            help="Trace ABI of the simulated Xen.",
        ),
        click.option(
            "--arch",
            type=click.Choice(list(ARCHES)),
            default="x86_64",
            show_default=True,
            help="Hypervisor architecture.",
        ),
        click.option(
            "--buffer-pages",
            type=click.IntRange(1, 65535),
            default=32,
            show_default=True,
            help="Trace buffer pages per pCPU (xentrace -S).",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Random seed (same seed, same records).",
        ),
        click.option(
            "--tsc-hz",
            type=float,
            default=float(DEFAULT_TSC_HZ),
            show_default=True,
            help="Virtual TSC rate.",
        ),
        click.option(
            "--speed",
            type=float,
            default=1.0,
            show_default=True,
            help="Simulated seconds per wall second (0 = as fast as possible).",
        ),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


class _Bar:
    """A rich progress bar on stderr, shown from the first update and removed at the end."""

    def __init__(self, label: str, quiet: bool):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=quiet,
            transient=True,
        )
        self.task = self.progress.add_task(label, total=1.0, where="")
        self.started = False

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()

    def __call__(self, done: float, total: float, unit: str) -> None:
        if not self.started:
            self.started = True
            self.progress.start()
        where = f"{done:.2f}/{total:.2f} s" if unit == "s" else f"{int(done)}/{int(total)} ops"
        self.progress.update(self.task, completed=done / total if total else 1.0, where=where)


def _check_domains(spec: str, abi: str, arch: str) -> None:
    """``--domains``: syntax and values, as a usage error."""
    from pyxentrace.hypervisor.machine import check_domain_spec, parse_domains

    try:
        for d in parse_domains(spec):
            check_domain_spec(d, abi, arch)
    except XentraceError as e:
        raise click.UsageError(f"--domains: {e}") from None


def _run_simulation(cfg: Any, label: str, quiet: bool) -> Any:
    from pyxentrace.recorder.simulate import Terminated, simulate

    try:
        with _Bar(label, quiet) as bar:
            return simulate(cfg, bar)
    except Terminated as e:
        where = f"; {cfg.output} is valid up to where the recorder stopped" if cfg.output else ""
        warn(f"stopped by {e}{where}")
        sys.exit(128 + e.signum)


def _report(res: Any, label: str) -> None:
    if res.stopped_early:
        warn(f"the recorder stopped before the end of the run (after {res.sim_s:.2f} s)")
    c = res.counters
    size = os.path.getsize(res.output) if res.output and os.path.exists(res.output) else 0
    click.echo(
        f"pyxentrace: {label}: {res.sim_s:.2f} s simulated in {res.wall_s:.2f} s; "
        f"{c['offered']:,} records offered, {c['written']:,} written, "
        f"{c['filtered']:,} filtered, {c['lost']:,} lost -> {res.output} "
        f"({size:,} bytes)",
        err=True,
    )


@click.command("simulate", context_settings=CONTEXT)
@click.option("--profile", type=click.Choice(list(PROFILES)), help="Workload (default dom0).")
@click.option(
    "--script",
    type=click.Path(exists=True, dir_okay=False),
    help="Scripted scenario (JSON lines) instead of a profile.",
)
@_simulate_options
@_xentrace_options
@click.option("--model", metavar="NAME", help="Name of the model's shared memory.")
@click.option(
    "--no-record",
    "no_record",
    is_flag=True,
    help="Start no recorder: wait for `pyxentrace record --model NAME`.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Trace file to write (required unless --no-record).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
@guarded
def simulate_cmd(
    profile: str | None,
    script: str | None,
    duration: float,
    pcpus: int | None,
    domains: str | None,
    abi: str,
    arch: str,
    buffer_pages: int,
    seed: int,
    tsc_hz: float,
    speed: float,
    model: str | None,
    no_record: bool,
    output: str | None,
    quiet: bool,
    **kw: Any,
) -> None:
    """Run the PV machine (a profile or a script) and record it into the -o TRACE file.

    The machine and the recorder are separate processes sharing the trace buffers; the
    metadata sidecar TRACE.meta.json is written next to the trace.
    """
    from pyxentrace.recorder.simulate import SimulateConfig

    if profile and script:
        raise click.UsageError("--profile and --script are mutually exclusive")
    if not no_record and not output:
        raise click.UsageError("missing -o/--output TRACE")
    if no_record and output:
        raise click.UsageError("--no-record writes no file: the external recorder names it")
    if speed < 0 or tsc_hz <= 0:
        raise click.UsageError("--speed must be >= 0 and --tsc-hz positive")
    if not math.isfinite(duration) or duration <= 0:
        raise click.UsageError(f"--duration must be a positive number of seconds, got {duration}")
    try:
        check_combo(abi, arch)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if domains is not None:
        _check_domains(domains, abi, arch)
    if model is not None:
        check_model_name(model)
    _build_options(**kw)  # validate before starting anything
    rec_args: list[str] = ["-q"]
    for flag, key in (
        ("-e", "evt_mask"),
        ("-c", "cpu_mask"),
        ("-s", "poll_sleep"),
        ("-M", "memory_buffer"),
        ("-r", "reserve"),
    ):
        values = kw[key] if isinstance(kw[key], tuple) else [kw[key]]
        for v in values:
            if v is not None:
                rec_args += [flag, v]
    cfg = SimulateConfig(
        output=output,
        profile=profile or "dom0",
        script=script,
        duration_s=duration,
        pcpus=pcpus,
        domains=domains,
        abi=abi,
        arch=arch,
        buffer_pages=buffer_pages,
        seed=seed,
        tsc_hz=int(tsc_hz),
        speed=speed,
        recorder_args=rec_args,
        model=model,
        external_recorder=no_record,
    )
    label = f"script {os.path.basename(script)}" if script else (profile or "dom0")
    if no_record:
        cfg.model = cfg.model or f"pyxentrace-sim-{os.getpid()}"
        if not quiet:
            click.echo(
                f"pyxentrace: waiting for a recorder: pyxentrace record --model {cfg.model} TRACE",
                err=True,
            )
    res = _run_simulation(cfg, label, quiet)
    if not quiet:
        _report(res, label)


# ---- demo -------------------------------------------------------------------------------------


@click.command("demo", context_settings=CONTEXT)
@click.option("--duration", type=float, default=3.0, show_default=True, help="Simulated seconds.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=DEMO_TRACE,
    show_default=True,
    help="Trace file to write.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@guarded
def demo_cmd(duration: float, output: str, seed: int, quiet: bool) -> None:
    """Simulate the default PV host (dom0 profile) for a few seconds and summarise the trace."""
    from pyxentrace.recorder.simulate import SimulateConfig

    cfg = SimulateConfig(
        output=output, profile="dom0", duration_s=duration, seed=seed, recorder_args=["-q"]
    )
    res = _run_simulation(cfg, "dom0 host", quiet)
    if not quiet:
        _report(res, "demo")
    print_summary(output)


def print_summary(path: str) -> None:
    """Print the trace's PV summary (``pyxentrace.api.Trace(path)`` rendered as text); while
    the analysis is not available, ``pyxentrace info``'s tables."""
    try:
        from pyxentrace.analysis.render_text import render_text
        from pyxentrace.api import Trace
    except ImportError:
        from pyxentrace.format.meta import resolve_clock
        from pyxentrace.reader.info import trace_info
        from pyxentrace.render.info import render_info

        render_info(trace_info(path, resolve_clock(path)))
        return
    click.echo(render_text(Trace(path).summary_result()))
