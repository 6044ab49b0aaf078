"""The producer: Xen's ``trace()`` into per-CPU buffers, and the trace API around it.

:class:`TraceBuffers` is the hypervisor side of the trace system: the control operations it
inherits from :class:`~.control.TraceControl`, plus ``trace``/``trace_time``/``TRACE``/
``TRACE_TIME``/``trace_will_trace_event``/``trace_hypercall`` and a bulk writer.  The
algorithm follows ``xen/common/trace.c`` step by step (spec §1.4-1.7); the TSC is read from
the caller's clock at insertion time.  One process writes records (the model is
single-threaded per CPU, standing in for Xen's per-CPU ``t_lock``); any process may consume
and run control operations.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence

import numpy as np

from pyxentrace.format.events import TRC_LOST_RECORDS, TRC_TRACE_WRAP_BUFFER
from pyxentrace.format.pv_layouts import hypercall_v2_words
from pyxentrace.format.record import TRACE_EXTRA_MAX, TRC_HD_CYCLE_FLAG
from pyxentrace.hypervisor import shm as S
from pyxentrace.hypervisor.control import TraceControl
from pyxentrace.hypervisor.notify import VirqSender
from pyxentrace.hypervisor.tbuf import LOST_REC_SIZE, T_BUF_SIZE

log = logging.getLogger(__name__)

#: The idle domain's id (its vCPU number is the pCPU number).
DOMID_IDLE = 0x7FFF
U32 = 0xFFFFFFFF
_N = S.NR_CPUS
_LOST_HDR = TRC_LOST_RECORDS | 4 << 28 | TRC_HD_CYCLE_FLAG

#: A clock: called with the pCPU number, returns that CPU's TSC (``get_cycles()``).
Clock = Callable[[int], int]


class VirtualTSC:
    """A virtual TSC shared by all pCPUs; the machine model advances it."""

    def __init__(self, start: int = 0):
        self.now = start

    def __call__(self, cpu: int) -> int:
        return self.now

    def advance(self, cycles: int) -> int:
        """Move time forward by ``cycles``; returns the new TSC."""
        self.now += cycles
        return self.now


class TraceBuffers(TraceControl):
    """Xen's trace system: control block, per-CPU buffers and the ``trace()`` producer.

    Create with :meth:`create` (the hypervisor model) or :meth:`attach` (a consumer).
    ``clock(cpu)`` supplies the TSC; ``set_current`` says which vCPU each pCPU runs.
    """

    def __init__(self, ctl: S.SharedMemory, *, owner: bool = False, clock: Clock | None = None):
        super().__init__(ctl, owner=owner)
        self.clock: Clock = clock if clock is not None else VirtualTSC()
        self._virq_tx = VirqSender(self.virq_path)
        self._cur: list[tuple[int, int, int]] = [(DOMID_IDLE, c, 64)
                                                 for c in range(self.nr_cpu_ids)]
        self._bo: list[int] | None = None
        self._seg32: memoryview | None = None
        self._seg_np: np.ndarray | None = None

    # ---- current vCPU per pCPU -------------------------------------------------------------
    def set_current(self, cpu: int, domid: int, vcpu_id: int, guest_width: int = 64) -> None:
        """Record that pCPU ``cpu`` now runs ``d<domid>v<vcpu_id>`` (a 32- or 64-bit guest)."""
        if guest_width not in (32, 64):
            raise ValueError("guest_width must be 32 or 64")
        self._cur[cpu] = (domid & 0xFFFF, vcpu_id & 0xFFFF, guest_width)

    def current(self, cpu: int) -> tuple[int, int, int]:
        """``(domid, vcpu_id, guest_width)`` of the vCPU running on ``cpu``."""
        return self._cur[cpu]

    # ---- mapping ---------------------------------------------------------------------------
    def _map(self) -> bool:
        if self._bo is not None:
            return True
        if not super()._map():
            return False
        assert self._seg is not None
        bo = [-1] * _N
        for cpu, b in self._bufs.items():
            bo[cpu] = b.offset
        self._seg32 = self._seg.cast("I")
        self._seg_np = np.frombuffer(self._seg, dtype=np.uint32)
        self._bo = bo
        return True

    def _unmap(self) -> None:
        if self._seg32 is not None:
            self._seg32.release()
        self._seg32 = None
        self._seg_np = None
        self._bo = None
        super()._unmap()

    def close(self) -> None:
        """Close the VIRQ sender and unmap (see :meth:`TraceControl.close`)."""
        self._virq_tx.close()
        super().close()

    # ---- trace() ---------------------------------------------------------------------------
    def trace(self, cpu: int, event: int, extra: int = 0, data: bytes | None = None) -> None:
        """Xen's ``trace(event, extra, extra_data)`` on pCPU ``cpu``.

        ``event`` bit 31 asks for a TSC.  ``extra`` is the payload size in bytes; with
        ``data=None`` the payload bytes are left as they were in the buffer (Xen copies only
        when it has a pointer).
        """
        g = self._g
        if not g[S.G_TB_INIT_DONE]:
            return
        if not 0 <= cpu < self.nr_cpu_ids:
            raise ValueError(f"cpu {cpu} does not exist")
        pc = self._pc
        if extra & 3 or not 0 <= extra <= 4 * TRACE_EXTRA_MAX:
            pc[S.PC_REJECTED * _N + cpu] += 1
            if not g[S.G_WARNED_BAD_SIZE]:
                g[S.G_WARNED_BAD_SIZE] = 1
                log.warning("Trace event %#x bad size %u, discarding", event & U32, extra)
            return
        if data is not None and len(data) < extra:
            raise ValueError(f"payload of {len(data)} bytes, extra says {extra}")
        pc[S.PC_OFFERED * _N + cpu] += 1
        event &= U32
        mask = g[S.G_TB_EVENT_MASK]
        if (not mask & event or not (mask >> 16) & (event >> 16)
                or not (mask >> 12) & (event >> 12) & 0xF
                or not g[S.G_CPU_MASK + (cpu >> 5)] >> (cpu & 31) & 1):
            pc[S.PC_FILTERED * _N + cpu] += 1
            return
        bo = self._bo
        if bo is None:
            bo = self._bo if self._map() else None
        m = bo[cpu] if bo is not None else -1
        if m < 0:
            pc[S.PC_FILTERED * _N + cpu] += 1
            return
        self._insert(cpu, m, event, extra, data)

    def _bogus(self, cpu: int, prod: int, cons: int, ds: int) -> bool:
        if prod & 3 or prod >= 2 * ds or cons & 3 or cons >= 2 * ds:
            self._g[S.G_TB_INIT_DONE] = 0
            log.warning("trc#%u: bogus prod (%08x) and/or cons (%08x)", cpu, prod, cons)
            return True
        return False

    def _insert(self, cpu: int, m: int, event: int, extra: int, data: bytes | None) -> None:
        """Steps 6-11 of ``trace()`` under the (implicit) per-CPU lock; ``m``: t_buf offset."""
        g, pc, seg32 = self._g, self._pc, self._seg32
        assert seg32 is not None
        ds = g[S.G_DATA_SIZE]
        hw = g[S.G_HIGHWATER]
        seq = g[S.G_DISABLE_SEQ]
        if pc[S.PC_LOST_SEQ * _N + cpu] != seq:  # a disable happened: drop pending losses
            pc[S.PC_LOST_SEQ * _N + cpu] = seq
            pc[S.PC_LOST_RECORDS * _N + cpu] = 0
        w = m >> 2
        cons, prod = seg32[w], seg32[w + 1]
        if self._bogus(cpu, prod, cons, ds):
            unconsumed, btw = ds, 0
        else:
            unconsumed = prod - cons
            if unconsumed < 0:
                unconsumed += 2 * ds
            btw = ds - prod
            if btw <= 0:
                btw += ds
        started_below = unconsumed < hw
        cycles = event >> 31
        rec_size = 4 + 8 * cycles + extra
        avail = (ds - unconsumed) & U32
        lost = pc[S.PC_LOST_RECORDS * _N + cpu]
        # Dry run.
        total = 0
        if lost:
            if LOST_REC_SIZE > btw:
                total += btw
                btw = ds
            total += LOST_REC_SIZE
            btw -= LOST_REC_SIZE
            if btw == 0:
                btw = ds
        if rec_size > btw:
            total += btw
        total += rec_size
        if total > avail:
            lost += 1
            pc[S.PC_LOST_RECORDS * _N + cpu] = lost & 0xFFFFFFFFFFFFFFFF
            if lost == 1:
                pc[S.PC_LOST_FIRST_TSC * _N + cpu] = self.clock(cpu) & 0xFFFFFFFFFFFFFFFF
            pc[S.PC_LOST * _N + cpu] += 1
            return
        # Real write.
        btw = ds - prod
        if btw <= 0:
            btw += ds
        if lost:
            if LOST_REC_SIZE > btw:
                prod = self._insert_wrap(cpu, m, prod, btw, ds)
                btw = ds
            prod = self._insert_lost(cpu, m, prod, lost, ds)
            btw -= LOST_REC_SIZE
            if btw == 0:
                btw = ds
        if rec_size > btw:
            prod = self._insert_wrap(cpu, m, prod, btw, ds)
        seg = self._seg
        assert seg is not None
        at = m + T_BUF_SIZE + (prod - ds if prod >= ds else prod)
        hdr = (event & 0x0FFFFFFF) | (extra >> 2) << 28 | cycles << 31
        if cycles:
            struct.pack_into("<IQ", seg, at, hdr, self.clock(cpu) & 0xFFFFFFFFFFFFFFFF)
        else:
            seg32[at >> 2] = hdr
        if data is not None and extra:
            at += rec_size - extra
            seg[at:at + extra] = data[:extra]
        prod += rec_size
        if prod >= 2 * ds:
            prod -= 2 * ds
        seg32[w + 1] = prod
        pc[S.PC_WRITTEN * _N + cpu] += 1
        # Unlocked: notify on an upward crossing of the high-water mark.
        if started_below:
            cons = seg32[w]
            if self._bogus(cpu, prod, cons, ds):
                unconsumed = ds
            else:
                unconsumed = prod - cons
                if unconsumed < 0:
                    unconsumed += 2 * ds
            if unconsumed >= hw:
                pc[S.PC_VIRQS * _N + cpu] += 1
                self._virq_tx.send()

    def _insert_wrap(self, cpu: int, m: int, prod: int, space_left: int, ds: int) -> int:
        """Pad to the physical end: 4..32 bytes untimed, 36 bytes timed; payload untouched."""
        extra_space = space_left - 4
        cycles = extra_space // 4 > TRACE_EXTRA_MAX
        if cycles:
            extra_space -= 8
        at = m + T_BUF_SIZE + (prod - ds if prod >= ds else prod)
        hdr = TRC_TRACE_WRAP_BUFFER | (extra_space >> 2) << 28 | cycles << 31
        assert self._seg is not None
        if cycles:
            struct.pack_into("<IQ", self._seg, at, hdr, self.clock(cpu) & 0xFFFFFFFFFFFFFFFF)
        else:
            struct.pack_into("<I", self._seg, at, hdr)
        self._pc[S.PC_WRAPS * _N + cpu] += 1
        return self._advance(m, prod, space_left, ds)

    def _insert_lost(self, cpu: int, m: int, prod: int, lost: int, ds: int) -> int:
        """LOST_RECORDS: [count][did | vid << 16][first_tsc]; the count is then zeroed."""
        pc = self._pc
        did, vid, _ = self._cur[cpu]
        first_tsc = pc[S.PC_LOST_FIRST_TSC * _N + cpu]
        pc[S.PC_LOST_RECORDS * _N + cpu] = 0
        at = m + T_BUF_SIZE + (prod - ds if prod >= ds else prod)
        assert self._seg is not None
        struct.pack_into("<IQIHHQ", self._seg, at, _LOST_HDR,
                         self.clock(cpu) & 0xFFFFFFFFFFFFFFFF, lost & U32, did, vid, first_tsc)
        pc[S.PC_LOST_RECS * _N + cpu] += 1
        return self._advance(m, prod, LOST_REC_SIZE, ds)

    def _advance(self, m: int, prod: int, size: int, ds: int) -> int:
        prod += size
        if prod >= 2 * ds:
            prod -= 2 * ds
        assert self._seg32 is not None
        self._seg32[(m >> 2) + 1] = prod
        return prod

    # ---- the trace API ---------------------------------------------------------------------
    def trace_time(self, cpu: int, event: int, extra: int = 0,
                   data: bytes | None = None) -> None:
        """``trace_time``: ``trace`` with the TSC flag (bit 31) set."""
        self.trace(cpu, event | TRC_HD_CYCLE_FLAG, extra, data)

    def TRACE(self, cpu: int, event: int, *args: int) -> None:  # noqa: N802 (Xen's name)
        """``TRACE(e, ...)``: up to 7 values, each converted to a 32-bit word."""
        if len(args) > TRACE_EXTRA_MAX:
            raise ValueError(f"TRACE takes at most {TRACE_EXTRA_MAX} values")
        if not self._g[S.G_TB_INIT_DONE]:
            return
        n = len(args)
        data = struct.pack(f"<{n}I", *(a & U32 for a in args)) if n else None
        self.trace(cpu, event, 4 * n, data)

    def TRACE_TIME(self, cpu: int, event: int, *args: int) -> None:  # noqa: N802
        """``TRACE_TIME(e, ...)``: :meth:`TRACE` with a TSC."""
        self.TRACE(cpu, event | TRC_HD_CYCLE_FLAG, *args)

    def trace_will_trace_event(self, cpu: int, event: int) -> bool:
        """Whether ``event`` on ``cpu`` would pass tracing-on, event-mask and CPU-mask tests."""
        g = self._g
        if not g[S.G_TB_INIT_DONE]:
            return False
        mask = g[S.G_TB_EVENT_MASK]
        event &= U32
        return bool(mask & event and (mask >> 16) & (event >> 16)
                    and (mask >> 12) & (event >> 12) & 0xF
                    and g[S.G_CPU_MASK + (cpu >> 5)] >> (cpu & 31) & 1)

    def trace_hypercall(self, cpu: int, event: int, op: int, args: Sequence[int]) -> None:
        """``__trace_hypercall``: op word with presence bits + selected args, timed.

        Callers gate on ``tb_init_done`` (see :class:`~.pv.PVTracer`).
        """
        words = hypercall_v2_words(op, args)
        self.trace_time(cpu, event, 4 * len(words), struct.pack(f"<{len(words)}I", *words))

    # ---- bulk ------------------------------------------------------------------------------
    def trace_bulk(self, cpus: np.ndarray, events: np.ndarray, extra: np.ndarray,
                   words: np.ndarray, tsc: np.ndarray, cur: np.ndarray | None = None,
                   has_data: np.ndarray | None = None) -> None:
        """Many ``trace()`` calls in one go, with exactly the single-call algorithm.

        Arrays of length n: ``cpus``, ``events`` (bit 31 = timed), ``extra`` (payload bytes),
        ``words`` (u32[n, 7] payload), ``tsc`` (what every ``get_cycles()`` inside that call
        returns), ``cur`` (``did | vid << 16`` current at that call; default from
        :meth:`set_current`), ``has_data`` (False = payload pointer NULL; default all True).
        """
        from pyxentrace.hypervisor.bulk import trace_bulk

        trace_bulk(self, cpus, events, extra, words, tsc, cur, has_data)
