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
from pyxentrace.hypervisor.tbuf import TBuf, is_bogus
from pyxentrace.recorder.options import RecorderOptions, parse_cpu_mask
from pyxentrace.recorder.output import MemoryRing, TraceOutput
from pyxentrace.recorder.sidecar import COUNTERS, base_meta, utc_now, write_meta

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)


@dataclass
class RecorderStats:
    """What the recorder did."""

    windows: int = 0
    bytes: int = 0
    passes: int = 0
    wakeups: int = 0
    exit: str = "running"
    stop_signal: str | None = None


class Recorder:
    """Drains ``ctl``'s buffers into ``out`` (or a RAM ring, ``-M``) with xentrace's options."""

    def __init__(
        self,
        ctl: TraceControl,
        out: TraceOutput,
        opts: RecorderOptions,
        meta_path: str | None = None,
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
        self._unreported: dict[int, int] | None = None
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
        if opts.discard:
            for b in self.bufs.values():
                b.cons = b.prod
        if self.ring is not None:
            self.ring.check(ctl.data_size)

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
        if self._unreported is None:
            self._unreported = {c: self.ctl.pending_lost(c) for c in range(self.ctl.nr_cpu_ids)}
        if self.opts.disable_at_exit:
            self.ctl.disable()

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
                    if self.interrupted or (deadline is not None and time.monotonic() >= deadline):
                        if last_read:
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
                with contextlib.suppress(XentraceError):
                    self.write_meta()
                raise
            self.stats.exit = "ok"
            self.write_meta()
            return self.stats
        finally:
            restore()

    def _wait(self, timeout: float) -> None:
        """xentrace's ``wait_for_event_or_timeout``: VIRQ_TBUF, a signal or the poll period."""
        poller = select.poll()
        poller.register(self.virq.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        for fd, _ in poller.poll(int(timeout * 1000)):
            if fd == self._wake_r:
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
        counters = {c: ctl.counters(c) for c in range(ctl.nr_cpu_ids)}
        meta["pcpus"] = {str(c): {k: int(n[k]) for k in COUNTERS} for c, n in counters.items()}
        unreported = self._unreported or {c: ctl.pending_lost(c) for c in counters}
        meta["buffers"] = {
            "pages": ctl.opt_tbuf_size,
            "data_size": ctl.data_size,
            "cpus": sorted(self.bufs),
            "pcpus": {
                str(c): {
                    "wrap_records": int(n["wraps"]),
                    "lost_records": int(n["lost_recs"]),
                    "unreported_lost": int(unreported.get(c, 0)),
                }
                for c, n in counters.items()
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
            "output": self.out.path,
        }
        if self.ring is not None:
            rec["memory_buffer"] = {
                "size": self.ring.size,
                "dropped_windows": self.ring.dropped_windows,
                "dropped_bytes": self.ring.dropped_bytes,
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
