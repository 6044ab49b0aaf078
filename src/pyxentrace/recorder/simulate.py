"""``pyxentrace simulate``: the PV machine and the recorder as two processes.

This process boots the hypervisor model (control block in shared memory, no buffers yet) and
runs the machine; a recorder process (``python -m pyxentrace.recorder --model NAME ...``)
attaches by name, allocates and maps the buffers, and drains them into the trace file as
xentrace would.  At the end of a profile run every domain is paused (once the recorder has
drained any backlog that still owes a LOST_RECORDS record), the recorder is sent SIGTERM, and
it disables tracing, drains once more and writes the sidecar.

Stopping: SIGINT, SIGTERM and SIGHUP unwind the run (:class:`Terminated` for the last two), so
the recorder is stopped (it drains and writes a valid file) and the model's shared memory and
files are removed.  The recorder also holds the read end of a pipe from this process: if this
process dies without cleaning up (SIGKILL), the pipe closes, and the recorder drains, writes
its file and removes what the model left.  Each ``simulate`` first removes what dead earlier
runs left behind (names ``pyxentrace-<pid>-...`` and ``pyxentrace-sim-<pid>`` whose process no
longer exists).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyxentrace.errors import XentraceError
from pyxentrace.format.pv_layouts import ABI_XEN4
from pyxentrace.hypervisor import shm as S
from pyxentrace.hypervisor.machine import (
    DEFAULT_TSC_HZ,
    DomainSpec,
    Machine,
    host_info_path,
    parse_domains,
)
from pyxentrace.hypervisor.script import check_script, load_script, run_script
from pyxentrace.hypervisor.trace import TraceBuffers
from pyxentrace.hypervisor.workloads import RunStats, WorkloadRunner, get_profile
from pyxentrace.recorder.options import RecorderOptions, check_model_name, parse_cpu_mask

READY_TIMEOUT_S = 60.0
#: Signals that end a simulation early (SIGINT raises KeyboardInterrupt by itself).
TERM_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
SHM_DIR = "/dev/shm"
#: Names this package generates for models: ``pyxentrace-<pid>-<hex>``, ``pyxentrace-sim-<pid>``.
_OWNED_NAME = re.compile(r"pyxentrace-(?:sim-)?(\d+)(?:-[0-9a-f]+)?")


class Terminated(BaseException):  # noqa: N818 (like KeyboardInterrupt)
    """``simulate`` received SIGTERM or SIGHUP: raised where it runs, so that everything is
    stopped and cleaned up on the way out."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def model_files(name: str, tmp_dir: str | None = None) -> list[str]:
    """The files a model named ``name`` creates outside shared memory."""
    tmp = tmp_dir or tempfile.gettempdir()
    return [os.path.join(tmp, f"{name}.virq"), os.path.join(tmp, f"{name}.host.json")]


def remove_model(name: str, tmp_dir: str | None = None) -> None:
    """Remove a model's shared-memory segments and files (its owner is gone)."""
    for seg_name in (S.tbuf_segment_name(name), name):
        with contextlib.suppress(OSError, ValueError):
            seg = S.attach_segment(seg_name)
            S.unlink_segment(seg)
            seg.close()
    for path in model_files(name, tmp_dir):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_stale(shm_dir: str = SHM_DIR, tmp_dir: str | None = None) -> list[str]:
    """Remove the models earlier runs left behind: generated names whose process is dead.
    Returns the model names removed."""
    tmp = tmp_dir or tempfile.gettempdir()
    found: set[str] = set()
    for d, suffixes in ((shm_dir, ("-tbuf", "")), (tmp, (".virq", ".host.json"))):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for entry in names:
            for suffix in suffixes:
                if suffix and not entry.endswith(suffix):
                    continue
                base = entry[: len(entry) - len(suffix)]
                m = _OWNED_NAME.fullmatch(base)
                if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                    found.add(base)
                break
    removed = []
    for name in sorted(found):
        paths = [os.path.join(shm_dir, n) for n in (S.tbuf_segment_name(name), name)]
        ok = True
        for path in paths + model_files(name, tmp):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError:  # another user's leftovers: not ours to remove
                ok = False
        if ok:
            removed.append(name)
    return removed


def recorder_options(args: list[str]) -> RecorderOptions:
    """The recorder's options from its command-line arguments, parsed by ``record`` itself."""
    from pyxentrace.recorder.commands import parse_record_args

    return parse_record_args(args)


#: (done, total, unit) - called as the run progresses.
Progress = Callable[[float, float, str], None]


@dataclass
class SimulateConfig:
    """Everything ``simulate`` needs."""

    output: str | None
    profile: str = "dom0"
    script: str | None = None
    duration_s: float = 5.0
    pcpus: int | None = None
    domains: str | None = None
    abi: str = ABI_XEN4
    arch: str = "x86_64"
    buffer_pages: int = 32
    seed: int = 0
    tsc_hz: int = DEFAULT_TSC_HZ
    #: Simulated seconds per wall-clock second (0 = as fast as possible).
    speed: float = 1.0
    #: Extra xentrace options for the recorder (``-e``, ``-c``, ``-s``, ``-M``, ``-r``...).
    recorder_args: list[str] = field(default_factory=list)
    #: Name of the model's shared memory (default: generated).
    model: str | None = None
    #: Do not start a recorder: wait for one (``pyxentrace record --model NAME``).
    external_recorder: bool = False
    wait_s: float = READY_TIMEOUT_S


@dataclass
class SimulateResult:
    """What a simulation did."""

    output: str | None
    model: str
    offered: int
    counters: dict[str, int]
    sim_s: float
    wall_s: float
    run: RunStats | None = None
    ops: int = 0
    #: The recorder stopped (cleanly) before the end of the run.
    stopped_early: bool = False


class Simulation:
    """One run of :class:`SimulateConfig`; :meth:`run` does it all and cleans up."""

    def __init__(self, cfg: SimulateConfig, progress: Progress | None = None):
        self.cfg = cfg
        self.progress = progress
        self.proc: subprocess.Popen | None = None
        self._stderr = None
        self.tb: TraceBuffers | None = None
        self._parent_w: int | None = None
        self.recorder_opts = recorder_options(cfg.recorder_args)
        #: A termination signal is being handled / arrived while cleaning up.
        self._terminating = False
        self._cleaning = False
        self._late_signal: int | None = None

    # ---- setup -----------------------------------------------------------------------------
    def _host(self) -> tuple[int, list[DomainSpec]]:
        cfg = self.cfg
        if cfg.script is not None:
            self.ops = load_script(cfg.script)
            doms = parse_domains(cfg.domains) if cfg.domains else []
            used = [op.fields["pcpu"] for op in self.ops if "pcpu" in op.fields]
            pcpus = cfg.pcpus or (max(used) + 1 if used else 1)
            check_script(
                self.ops,
                abi=cfg.abi,
                arch=cfg.arch,
                pcpus=pcpus,
                tsc_hz=cfg.tsc_hz,
                domains=doms,
                path=cfg.script,
            )
            return pcpus, doms
        self.profile = get_profile(cfg.profile)
        if cfg.duration_s <= 0:
            raise XentraceError("--duration must be positive")
        return cfg.pcpus or self.profile.pcpus, self.profile.domain_specs(cfg.arch, cfg.domains)

    def _start_recorder(self, name: str) -> None:
        cfg = self.cfg
        r, w = os.pipe()
        # The recorder keeps the read end; this process holds the write end until the
        # recorder has exited.  If this process dies first, the recorder sees end-of-file.
        parent_r, self._parent_w = os.pipe()
        argv = [
            sys.executable,
            "-m",
            "pyxentrace.recorder",
            "--model",
            name,
            "-S",
            str(cfg.buffer_pages),
            "--ready-fd",
            str(w),
            "--parent-fd",
            str(parent_r),
            *cfg.recorder_args,
            "--",
            cfg.output or "-",
        ]
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                argv, pass_fds=(w, parent_r), stdin=subprocess.DEVNULL, stderr=self._stderr
            )
        finally:
            os.close(w)
            os.close(parent_r)
        try:
            deadline = time.monotonic() + cfg.wait_s
            while time.monotonic() < deadline:
                ready, _, _ = select.select([r], [], [], 0.1)
                if ready and os.read(r, 16):
                    return
                if self.proc.poll() is not None:
                    raise XentraceError(self._recorder_error("the recorder failed to start"))
            raise XentraceError(f"the recorder did not start within {cfg.wait_s:.0f} s")
        finally:
            os.close(r)

    def _recorder_error(self, default: str) -> str:
        if self._stderr is None:
            return default
        self._stderr.seek(0)
        lines = [
            ln.strip()
            for ln in self._stderr.read().decode(errors="replace").splitlines()
            if ln.strip()
        ]
        if not lines:
            return default
        line = lines[-1]
        for prefix in ("pyxentrace: error: ", "Error: "):
            if line.startswith(prefix):
                line = line[len(prefix) :]
        return line

    def _wait_external(self, tb: TraceBuffers) -> None:
        deadline = time.monotonic() + self.cfg.wait_s
        while not (tb.opt_tbuf_size and tb.tb_init_done):
            if time.monotonic() > deadline:
                raise XentraceError(
                    f"no recorder enabled tracing within {self.cfg.wait_s:.0f} "
                    f"s (run: pyxentrace record --model {tb.name} FILE)"
                )
            time.sleep(0.01)

    # ---- run -------------------------------------------------------------------------------
    def run(self) -> SimulateResult:
        """Boot, record, simulate, stop the recorder, clean up."""
        restore = self._trap_signals()
        try:
            return self._run()
        finally:
            restore()
            if self._late_signal is not None:
                raise Terminated(self._late_signal)

    def _trap_signals(self) -> Callable[[], None]:
        """SIGTERM/SIGHUP -> :class:`Terminated` (once; while cleaning up, noted for later)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: object) -> None:
            if self._cleaning or self._terminating:
                if self._late_signal is None and not self._terminating:
                    self._late_signal = signum
                return
            self._terminating = True
            raise Terminated(signum)

        old = {sig: signal.signal(sig, handler) for sig in TERM_SIGNALS}

        def restore() -> None:
            for sig, h in old.items():
                signal.signal(sig, h)

        return restore

    def _run(self) -> SimulateResult:
        cfg = self.cfg
        if cfg.model is not None:
            check_model_name(cfg.model)
        pcpus, doms = self._host()
        if self.recorder_opts.cpu_mask is not None:
            parse_cpu_mask(self.recorder_opts.cpu_mask, pcpus)
        remove_stale()
        try:
            tb = self.tb = TraceBuffers.create(cfg.model, nr_cpus=pcpus)
        except FileExistsError:
            raise XentraceError(
                f"a simulated hypervisor named {cfg.model!r} is already running (its shared "
                f"memory {SHM_DIR}/{cfg.model} exists); choose another --model name"
            ) from None
        except (OSError, ValueError) as e:
            raise XentraceError(f"cannot create the model {cfg.model!r}: {e}") from None
        try:
            m = Machine(tb, abi=cfg.abi, arch=cfg.arch, tsc_hz=cfg.tsc_hz)
            for d in doms:
                m.add_domain(d.domid, d.vcpus, d.width, d.name)
            runner = WorkloadRunner(m, self.profile, cfg.seed) if cfg.script is None else None
            m.publish()
            if cfg.external_recorder:
                self._wait_external(tb)
            else:
                self._start_recorder(tb.name)
            t0 = time.monotonic()
            result = self._simulate(m, runner)
            result.wall_s = time.monotonic() - t0
            self._stop_recorder()
            result.counters = tb.counters()
            return result
        except BaseException:
            self._cleaning = True
            self._kill_recorder()
            raise
        finally:
            self._cleaning = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host_info_path(tb.name))
            tb.close()
            if self._parent_w is not None:
                os.close(self._parent_w)
                self._parent_w = None
            if self._stderr is not None:
                self._stderr.close()

    def _alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    def _simulate(self, m: Machine, runner: WorkloadRunner | None) -> SimulateResult:
        cfg, tb = self.cfg, m.tb
        res = SimulateResult(cfg.output, tb.name, 0, {}, 0.0, 0.0)
        if runner is None:
            total = len(self.ops)

            def step(done: int) -> bool:
                if self.progress and (done % 256 == 0 or done == total):
                    self.progress(done, total, "ops")
                return self._alive()

            res.ops = run_script(m, self.ops, step)
            res.sim_s = m.now_ns / 1e9
            self._check_recorder(res)
            return res

        def chunk(sim_s: float) -> bool:
            if self.progress:
                self.progress(sim_s, cfg.duration_s, "s")
            return self._alive()

        res.run = runner.run(cfg.duration_s, speed=cfg.speed, on_chunk=chunk)
        res.sim_s = runner.stats.sim_ns / 1e9
        if self._check_recorder(res):
            if any(tb.pending_lost(c) for c in range(tb.nr_cpu_ids)):
                self._wait_drained(tb)
            runner.pause_all()
        res.offered = runner.stats.offered
        return res

    def _check_recorder(self, res: SimulateResult) -> bool:
        """Whether the recorder still runs; one that stopped cleanly (a signal, -T) ends the
        run early, one that failed is an error."""
        if self._alive():
            return True
        assert self.proc is not None
        if self.proc.returncode != 0:
            raise XentraceError(self._recorder_error("the recorder stopped unexpectedly"))
        res.stopped_early = True
        return False

    def _wait_drained(self, tb: TraceBuffers) -> None:
        """Give the recorder time to empty the buffers so pending losses can be reported."""
        bufs = tb.map_tbufs()
        deadline = time.monotonic() + max(5.0, 0.003 * self._poll_ms())
        while time.monotonic() < deadline and self._alive():
            if all(b.cons == b.prod for b in bufs.values()):
                return
            time.sleep(0.002)

    def _poll_ms(self) -> int:
        return self.recorder_opts.poll_ms

    def _stop_recorder(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=max(60.0, self.cfg.wait_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise XentraceError("the recorder did not stop within 60 s") from None
        if rc != 0:
            raise XentraceError(self._recorder_error(f"the recorder exited with status {rc}"))

    def _kill_recorder(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def simulate(cfg: SimulateConfig, progress: Progress | None = None) -> SimulateResult:
    """Run one simulation (see :class:`Simulation`)."""
    return Simulation(cfg, progress).run()
