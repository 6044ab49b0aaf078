"""The recorder daemon: xentrace's startup and main loop over the model's shared buffers.

Startup (spec §4.2): event mask, CPU mask, bind VIRQ_TBUF, ``set_size`` (errors ignored, as
``xc_tbuf_enable``), ``enable``, ``-X`` disable, map every CPU's buffer through ``t_info``,
``-D`` discard.  Main loop (§4.3): for each CPU in ascending order read ``cons`` and ``prod``
once, write the window ``cons..prod`` (two chunks when it wraps) under one CPU_CHANGE record,
then publish ``cons = prod`` as read; sleep ``-s`` ms or until VIRQ_TBUF.  SIGINT, SIGTERM,
SIGHUP, SIGALRM and the ``-T`` limit stop it: tracing is disabled (unless ``-x``), one more
full pass drains what is left, and it exits 0.

Sane differences from xentrace: a failed write or the ``-r`` reserve leaves a file cut back to
its last complete window, tracing is disabled (unless ``-x``) and the sidecar is still written.
A recorder started by ``simulate`` also stops (draining, writing a valid file) when the pipe
from its parent closes, i.e. when ``simulate`` died without stopping it.

Accounting: the producer's counters are lifetime totals, so the recorder samples them at
startup (after enabling and mapping, before ``-D``) and again after its last pass, and the
sidecar reports the difference, plus what was carried into the recording (records already
buffered, losses still pending), what ``-D`` discarded and what was left behind; see
:mod:`.sidecar` for the fields and the conservation law they obey.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyxentrace.errors import XentraceError
from pyxentrace.hypervisor.control import TbufError, TraceControl
from pyxentrace.hypervisor.machine import host_info_path
from pyxentrace.hypervisor.shm import PAGE_SIZE
from pyxentrace.hypervisor.tbuf import T_BUF_SIZE, TBuf, calculate_tbuf_size, is_bogus
from pyxentrace.recorder.options import RecorderOptions, parse_cpu_mask
from pyxentrace.recorder.output import MemoryRing, TraceOutput
from pyxentrace.recorder.sidecar import COUNTERS, base_meta, utc_now, write_meta
from pyxentrace.recorder.walk import Tally, tally

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
#: How long the recorder looks for a moment when no producer writes, to sample the counters.
QUIET_WAIT_S = 0.2
QUIET_GAP_S = 0.0005
#: Per-CPU producer state sampled together: counters, pending losses, cons, prod.
_SAMPLED = ("offered", "filtered", "written", "lost", "wraps", "lost_recs", "pending_lost")


def check_memory_buffer(ctl: TraceControl, opts: RecorderOptions) -> None:
    """Refuse a ``-M`` ring smaller than one full window, before anything is opened: the
    buffers' data size if they exist (``-S`` is then ignored), else what ``-S`` will give."""
    if not opts.memory_buffer:
        return
    if ctl.opt_tbuf_size:
        data_size = ctl.data_size
    else:
        pages, _ = calculate_tbuf_size(max(opts.tbuf_pages, 1), ctl.nr_cpu_ids)
        data_size = pages * PAGE_SIZE - T_BUF_SIZE
    MemoryRing(opts.memory_buffer).check(data_size)


@dataclass
class RecorderStats:
    """What the recorder did."""

    windows: int = 0
    bytes: int = 0
    passes: int = 0
    wakeups: int = 0
    exit: str = "running"
    stop_signal: str | None = None
    #: Why it stopped: ``signal``, ``time limit``, ``request``, ``parent exited``, ``error``.
    stop_reason: str | None = None


@dataclass
class _Sample:
    """The producer's per-CPU state at one moment (see :meth:`Recorder._sample`)."""

    cpus: dict[int, tuple[int, ...]]
    #: No producer wrote between two reads ``QUIET_GAP_S`` apart.
    quiet: bool = True

    def get(self, cpu: int, name: str) -> int:
        return self.cpus[cpu][_SAMPLED.index(name)]

    def cons_prod(self, cpu: int) -> tuple[int, int]:
        t = self.cpus[cpu]
        return t[-2], t[-1]


class Recorder:
    """Drains ``ctl``'s buffers into ``out`` (or a RAM ring, ``-M``) with xentrace's options."""

    def __init__(
        self,
        ctl: TraceControl,
        out: TraceOutput,
        opts: RecorderOptions,
        meta_path: str | None = None,
        parent_fd: int | None = None,
    ):
        self.ctl = ctl
        self.out = out
        self.opts = opts
        self.meta_path = meta_path
        self.stats = RecorderStats()
        self.ring = MemoryRing(opts.memory_buffer) if opts.memory_buffer else None
        self.bufs: dict[int, TBuf] = {}
        self.interrupted = False
        self.start_time = utc_now()
        #: Read end of a pipe from the process that started us: EOF = it died.
        self.parent_fd = parent_fd
        self.parent_exited = False
        self._start: _Sample | None = None
        self._end: _Sample | None = None
        #: Per CPU: what was buffered at startup and went into the file (not with -D), what -D
        #: discarded, what was still buffered after the last pass.
        self.carried: dict[int, Tally] = {}
        self.discarded: dict[int, Tally] = {}
        self.left: dict[int, Tally] = {}
        #: Per CPU: pending losses the final disable forgot; pending count left in
        #: lost_records by an earlier disable when ours came (not ours to count).
        self._forgotten: dict[int, int] | None = None
        self._stale: dict[int, int] = {}
        self._host: dict | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # ---- startup ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Masks, allocation, enable, mapping, ``-D`` (spec §4.2)."""
        ctl, opts = self.ctl, self.opts
        if opts.evt_mask:
            ctl.set_evt_mask(opts.evt_mask)
        if opts.cpu_mask is not None:
            ctl.set_cpu_mask(parse_cpu_mask(opts.cpu_mask, ctl.nr_cpu_ids), ctl.nr_cpu_ids)
        self.virq = ctl.bind_virq()
        with contextlib.suppress(TbufError):
            ctl.set_size(opts.tbuf_pages)
        try:
            ctl.enable()
        except TbufError as e:
            raise XentraceError(f"couldn't enable trace buffers: {e}") from None
        if opts.start_disabled:
            ctl.disable()
        self.bufs = ctl.map_tbufs()
        if not self.bufs:
            raise XentraceError("no CPU has a trace buffer")
        self._start = self._sample_quiet()
        for cpu, b in self.bufs.items():
            cons, prod = self._start.cons_prod(cpu)
            if is_bogus(prod, cons, b.data_size):
                continue  # the first pass reports it
            backlog = self._tally(b, cons, prod)
            if opts.discard:
                self.discarded[cpu] = backlog
                b.cons = prod  # exactly what was sampled: later records are this recording's
            else:
                self.carried[cpu] = backlog
        if self.ring is not None:
            self.ring.check(ctl.data_size)

    @staticmethod
    def _tally(b: TBuf, cons: int, prod: int) -> Tally:
        """The records between ``cons`` and ``prod`` (no view outlives the count)."""
        if cons == prod:
            return Tally()
        ds = b.data_size
        s, e = cons % ds, prod % ds
        chunks = [b.data[s:e]] if e > s else [b.data[s:ds], b.data[:e]]
        try:
            return tally(chunks)
        finally:
            for c in chunks:
                c.release()

    # ---- counters --------------------------------------------------------------------------
    def _sample(self) -> _Sample:
        ctl = self.ctl
        cpus = {}
        for c in range(ctl.nr_cpu_ids):
            k = ctl.counters(c)
            b = self.bufs.get(c)
            cpus[c] = (*(int(k[n]) for n in _SAMPLED), *((b.cons, b.prod) if b else (0, 0)))
        return _Sample(cpus)

    def _sample_quiet(self) -> _Sample:
        """The counters and buffer pointers at a moment when no producer was writing (two
        identical reads ``QUIET_GAP_S`` apart), or the last read after ``QUIET_WAIT_S``
        (``quiet = False``: the deltas may be off by the records written meanwhile)."""
        deadline = time.monotonic() + QUIET_WAIT_S
        last = self._sample()
        while True:
            time.sleep(QUIET_GAP_S)
            now = self._sample()
            if now.cpus == last.cpus:
                return now
            if time.monotonic() >= deadline:
                now.quiet = False
                return now
            last = now

    # ---- stopping --------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop as a signal would (safe from another thread)."""
        self.interrupted = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _on_signal(self, signum: int, frame: object) -> None:
        self.interrupted = True
        self.stats.stop_signal = signal.Signals(signum).name

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        old_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

        def restore() -> None:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old.items():
                signal.signal(sig, handler)

        return restore

    def _disable(self) -> None:
        """Disable tracing once (unless ``-x``): tracing goes off before the pending losses it
        forgets are read, so no drop falls between the two (see ``TraceControl.disable``)."""
        if self._forgotten is not None or not self.opts.disable_at_exit:
            return
        ctl = self.ctl
        self._stale = {c: ctl.forgotten_lost(c) for c in range(ctl.nr_cpu_ids)}
        self._forgotten = ctl.disable()

    def _unreported(self, cpu: int, end: _Sample) -> int:
        """Drops no LOST_RECORDS record reports: forgotten by our disable (with any drop by a
        call in flight when tracing went off), or still pending at the end."""
        forgotten = 0
        if self._forgotten is not None:
            forgotten = self._forgotten.get(cpu, 0)
            if not self._stale.get(cpu):
                forgotten = max(forgotten, self.ctl.forgotten_lost(cpu))
        return forgotten + end.get(cpu, "pending_lost")

    def _finish_accounting(self) -> None:
        """After the last pass: sample the counters, and count what is still buffered."""
        self._end = end = self._sample_quiet()
        for cpu, b in self.bufs.items():
            cons, prod = b.cons, end.cons_prod(cpu)[1]
            if not is_bogus(prod, cons, b.data_size):
                self.left[cpu] = self._tally(b, cons, prod)

    # ---- main loop -------------------------------------------------------------------------
    def run(self, ready: Callable[[], None] | None = None) -> RecorderStats:
        """Record until a signal, :meth:`request_stop` or ``-T``; then drain and return."""
        restore = self._install_signals()
        try:
            self.write_meta()
            if ready is not None:
                ready()
            deadline = time.monotonic() + self.opts.time_limit_s if self.opts.time_limit_s else None
            last_read = True
            try:
                while True:
                    self._pass()
                    timed_out = deadline is not None and time.monotonic() >= deadline
                    if self.interrupted or timed_out:
                        if last_read:
                            if self.stats.stop_reason is None:
                                self.stats.stop_reason = (
                                    "signal"
                                    if self.stats.stop_signal
                                    else "request"
                                    if self.interrupted
                                    else "time limit"
                                )
                            self._disable()
                            last_read = False
                            continue
                        break
                    timeout = self.opts.poll_ms / 1000
                    if deadline is not None:
                        timeout = max(0.0, min(timeout, deadline - time.monotonic()))
                    self._wait(timeout)
                if self.ring is not None:
                    self.ring.dump(self.out)
                    self.stats.windows = self.out.windows
            except XentraceError as e:
                self._disable()
                self.stats.exit = str(e)
                self.stats.stop_reason = "error"
                self._finish_accounting()
                with contextlib.suppress(XentraceError):
                    self.write_meta()
                raise
            self._finish_accounting()
            self.stats.exit = "ok"
            self.write_meta()
            return self.stats
        finally:
            restore()

    def _wait(self, timeout: float) -> None:
        """xentrace's ``wait_for_event_or_timeout``: VIRQ_TBUF, a signal or the poll period
        (and the parent's pipe closing)."""
        poller = select.poll()
        poller.register(self.virq.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        if self.parent_fd is not None and not self.parent_exited:
            poller.register(self.parent_fd, select.POLLIN | select.POLLHUP)
        for fd, _ in poller.poll(int(timeout * 1000)):
            if fd == self.parent_fd:
                try:
                    gone = not os.read(self.parent_fd, 64)
                except OSError:
                    gone = True
                if gone:
                    self.parent_exited = True
                    self.interrupted = True
                    self.stats.stop_reason = "parent exited"
            elif fd == self._wake_r:
                with contextlib.suppress(OSError):
                    while os.read(self._wake_r, 256):
                        pass
            elif self.virq.drain():
                self.stats.wakeups += 1

    def _pass(self) -> None:
        """One pass over the CPUs in ascending order."""
        self.stats.passes += 1
        for cpu in sorted(self.bufs):
            b = self.bufs[cpu]
            cons, prod = b.cons, b.prod
            if cons == prod:
                continue
            ds = b.data_size
            if is_bogus(prod, cons, ds):
                raise XentraceError(
                    f"cpu {cpu}: bogus prod {prod:#x} and/or cons {cons:#x} (data size {ds})"
                )
            s, e = cons % ds, prod % ds
            chunks = [b.data[s:e]] if e > s else [b.data[s:ds], b.data[:e]]
            size = sum(len(c) for c in chunks)
            try:
                if self.ring is not None:
                    self.ring.add(cpu, chunks)
                    self.stats.windows += 1
                else:
                    self.out.write_window(cpu, chunks)
                    self.stats.windows = self.out.windows
            finally:  # no view into the shared buffers may outlive the pass
                for c in chunks:
                    c.release()
                chunks.clear()
            self.stats.bytes += size
            b.cons = prod

    # ---- metadata --------------------------------------------------------------------------
    def host_info(self) -> dict | None:
        """The model's published host description (the last one seen, if it has gone)."""
        try:
            with open(host_info_path(self.ctl.name), encoding="utf-8") as f:
                self._host = json.load(f)
        except (OSError, ValueError):
            pass
        return self._host

    def meta(self) -> dict:
        """The sidecar content now."""
        ctl = self.ctl
        meta = base_meta(self.host_info(), "pyxentrace-model")
        meta.setdefault("nr_pcpus", ctl.nr_cpu_ids)
        meta["start_time"] = self.start_time
        if self.stats.exit != "running":
            meta["end_time"] = utc_now()
        start = self._start
        end = self._end or self._sample()
        cpus = range(ctl.nr_cpu_ids)

        def delta(c: int, name: str) -> int:
            return end.get(c, name) - (start.get(c, name) if start else 0)

        meta["pcpus"] = {str(c): {k: delta(c, k) for k in COUNTERS} for c in cpus}
        none = Tally()
        meta["buffers"] = {
            "pages": ctl.opt_tbuf_size,
            "data_size": ctl.data_size,
            "cpus": sorted(self.bufs),
            "pcpus": {
                str(c): {
                    "wrap_records": delta(c, "wraps"),
                    "lost_records": delta(c, "lost_recs"),
                    "unreported_lost": self._unreported(c, end),
                    "pending_lost_at_start": start.get(c, "pending_lost") if start else 0,
                    "backlog_records": self.carried.get(c, none).records,
                    "backlog_lost": self.carried.get(c, none).lost,
                    "discarded_records": self.discarded.get(c, none).records,
                    "discarded_lost": self.discarded.get(c, none).lost,
                    "discarded_bytes": self.discarded.get(c, none).bytes,
                    "left_records": self.left.get(c, none).records,
                    "left_lost": self.left.get(c, none).lost,
                }
                for c in cpus
            },
        }
        rec = {
            "options": self.opts.to_dict(),
            "windows": self.stats.windows,
            "bytes": self.stats.bytes,
            "wakeups": self.stats.wakeups,
            "passes": self.stats.passes,
            "exit": self.stats.exit,
            "stop_signal": self.stats.stop_signal,
            "stop_reason": self.stats.stop_reason,
            "output": self.out.path,
            "counters_at_start": (
                {str(c): {k: start.get(c, k) for k in COUNTERS} for c in cpus} if start else None
            ),
            "counters_exact": bool(start and start.quiet and end.quiet),
        }
        if self.ring is not None:
            rec["memory_buffer"] = {
                "size": self.ring.size,
                "dropped_windows": self.ring.dropped_windows,
                "dropped_bytes": self.ring.dropped_bytes,
                "dropped_records": {str(c): t.records for c, t in self.ring.dropped.items()},
                "dropped_lost": {str(c): t.lost for c, t in self.ring.dropped.items()},
            }
        meta["recorder"] = rec
        return meta

    def write_meta(self) -> None:
        """Write the sidecar, if there is a path for it."""
        if self.meta_path:
            try:
                write_meta(self.meta_path, self.meta())
            except OSError as e:
                raise XentraceError(
                    f"cannot write the sidecar: {e.strerror or e}", path=self.meta_path
                ) from None

    def close(self) -> None:
        """Release the wake-up pipe and the mappings."""
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.bufs = {}
