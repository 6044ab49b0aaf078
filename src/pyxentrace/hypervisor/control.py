"""Trace-buffer control: Xen's ``tb_control`` (``XEN_SYSCTL_tbuf_op``) and boot parameters.

:class:`TraceControl` owns (or attaches to) the shared control block and, once allocated, the
``t_info`` + buffer segment.  Every process holding one can run the control operations; only
the hypervisor model's process writes records (see :class:`~.trace.TraceBuffers`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import struct
import tempfile
import weakref
from typing import NamedTuple, Self

import numpy as np

from pyxentrace.errors import XentraceError
from pyxentrace.format.events import TRC_ALL
from pyxentrace.hypervisor import shm as S
from pyxentrace.hypervisor.notify import VirqReceiver
from pyxentrace.hypervisor.tbuf import (
    T_BUF_SIZE,
    TBuf,
    TInfo,
    calculate_tbuf_size,
    mfn_to_offset,
    read_t_info,
    write_t_info,
)

log = logging.getLogger(__name__)

XEN_SYSCTL_TBUFOP_get_info = 0
XEN_SYSCTL_TBUFOP_set_cpu_mask = 1
XEN_SYSCTL_TBUFOP_set_evt_mask = 2
XEN_SYSCTL_TBUFOP_set_size = 3
XEN_SYSCTL_TBUFOP_enable = 4
XEN_SYSCTL_TBUFOP_disable = 5
U32 = 0xFFFFFFFF


class TbufError(XentraceError):
    """A failed control operation, carrying Xen's errno name (``EINVAL``, ``EBUSY``, ...)."""

    def __init__(self, errno_name: str, message: str = ""):
        self.errno_name = errno_name
        self.errno = getattr(errno, errno_name)
        super().__init__(f"{errno_name}: {message}" if message else errno_name)


class TbufInfo(NamedTuple):
    """``XEN_SYSCTL_TBUFOP_get_info`` result."""

    evt_mask: int
    buffer_mfn: int  # MFN of t_info, 0 if not allocated
    size: int  # bytes of the t_info area (t_info_pages * 4096)


def _remove_names(name: str, virq_path: str, pid: int) -> None:
    """Unlink a model's segments and FIFO (only in the process that created them)."""
    if os.getpid() != pid:
        return
    for seg_name in (S.tbuf_segment_name(name), name):
        with contextlib.suppress(FileNotFoundError):
            seg = S.attach_segment(seg_name)
            S.unlink_segment(seg)
            seg.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(virq_path)


def _mask_bits(words: memoryview, start: int, nbits: int) -> int:
    value = 0
    for i in range((nbits + 31) // 32):
        value |= words[start + i] << (32 * i)
    return value & ((1 << nbits) - 1)


class TraceControl:
    """The trace globals in shared memory, Xen's control operations, and buffer mapping."""

    def __init__(self, ctl: S.SharedMemory, *, owner: bool = False):
        self._ctl = ctl
        self.name = ctl.name.lstrip("/")
        self.owner = owner
        self._pid = os.getpid()
        if (ctl.size < S.CONTROL_SIZE
                or struct.unpack_from("<II", ctl.buf, 0) != (S.MAGIC, S.VERSION)):
            ctl.close()
            raise XentraceError(f"shared memory {self.name!r} is not a pyxentrace control block")
        self._g = ctl.buf[: S.G_WORDS * 4].cast("I")
        self._pc = ctl.buf[S.PERCPU_OFF : S.CONTROL_SIZE].cast("Q")
        self._g_np = np.frombuffer(ctl.buf, dtype=np.uint32, count=S.G_WORDS)
        self._pc_np = np.frombuffer(ctl.buf, dtype=np.uint64, offset=S.PERCPU_OFF,
                                    count=S.PC_ROWS * S.NR_CPUS).reshape(S.PC_ROWS, S.NR_CPUS)
        self.nr_cpu_ids = self._g[S.G_NR_CPU_IDS]
        raw = bytes(ctl.buf[S.VIRQ_PATH_OFF : S.VIRQ_PATH_OFF + S.VIRQ_PATH_LEN])
        self.virq_path = raw.rstrip(b"\0").decode()
        self._cleanup = (weakref.finalize(self, _remove_names, self.name, self.virq_path,
                                          self._pid) if owner else None)
        self._tbuf_shm: S.SharedMemory | None = None
        self._seg: memoryview | None = None
        self._bufs: dict[int, TBuf] = {}
        self._virq_rx: VirqReceiver | None = None

    # ---- life cycle ----------------------------------------------------------------------
    @classmethod
    def create(cls, name: str | None = None, nr_cpus: int = 1, *,
               online: list[int] | None = None, tbuf_size: int = 0, tevt_mask: int = 0,
               max_heap_pages: int = 0, **kw: object) -> Self:
        """Boot a hypervisor model with ``nr_cpus`` pCPUs (``nr_cpu_ids``).

        ``online``: CPUs online at allocation time (default all; the others get no buffer).
        ``tbuf_size``/``tevt_mask``: Xen's boot parameters.  ``max_heap_pages`` (0 = no limit)
        makes allocations larger than that many pages fail with ``ENOMEM``.
        """
        if not 1 <= nr_cpus <= S.NR_CPUS:
            raise ValueError(f"nr_cpus must be 1..{S.NR_CPUS}")
        cpus = list(range(nr_cpus)) if online is None else list(online)
        if any(not 0 <= cpu < nr_cpus for cpu in cpus):
            raise ValueError(f"online cpus must be in 0..{nr_cpus - 1}")
        name = name or f"pyxentrace-{os.getpid()}-{secrets.token_hex(4)}"
        virq_path = os.path.join(tempfile.gettempdir(), f"{name}.virq")
        if len(virq_path.encode()) >= S.VIRQ_PATH_LEN:
            raise ValueError("name too long")
        ctl = S.create_segment(name, S.CONTROL_SIZE)
        g = ctl.buf[: S.G_WORDS * 4].cast("I")
        g[S.G_MAGIC], g[S.G_VERSION], g[S.G_NR_CPU_IDS] = S.MAGIC, S.VERSION, nr_cpus
        g[S.G_TB_EVENT_MASK] = TRC_ALL
        g[S.G_MAX_HEAP_PAGES] = max_heap_pages
        for cpu in cpus:
            g[S.G_ONLINE + cpu // 32] |= 1 << (cpu % 32)
        g.release()
        ctl.buf[S.VIRQ_PATH_OFF : S.VIRQ_PATH_OFF + len(virq_path.encode())] = virq_path.encode()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(virq_path)
        os.mkfifo(virq_path, 0o600)
        self = cls(ctl, owner=True, **kw)
        self._init_trace_bufs(tbuf_size, tevt_mask)
        return self

    @classmethod
    def attach(cls, name: str, **kw: object) -> Self:
        """Attach to the model called ``name`` from any process."""
        return cls(S.attach_segment(name), owner=False, **kw)

    def close(self) -> None:
        """Unmap; the creating process also removes the segments and the VIRQ FIFO.

        (A creator that never calls ``close`` removes them at interpreter exit.)
        """
        if self._virq_rx is not None:
            self._virq_rx.close()
            self._virq_rx = None
        self._unmap()
        if self._ctl is not None:
            self._release_ctl()
        if self._cleanup is not None:
            self._cleanup()

    def _release_ctl(self) -> None:
        self._g.release()
        self._pc.release()
        del self._g_np, self._pc_np
        self._ctl.close()
        self._ctl = None  # type: ignore[assignment]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- globals ---------------------------------------------------------------------------
    @property
    def tb_init_done(self) -> bool:
        """Whether tracing is on."""
        return bool(self._g[S.G_TB_INIT_DONE])

    @property
    def tb_event_mask(self) -> int:
        """The event mask (default ``TRC_ALL``)."""
        return self._g[S.G_TB_EVENT_MASK]

    @property
    def tb_cpu_mask(self) -> int:
        """The CPU mask as an integer bitmap over ``nr_cpu_ids`` bits."""
        return _mask_bits(self._g, S.G_CPU_MASK, self.nr_cpu_ids)

    @property
    def online_cpus(self) -> list[int]:
        """CPUs online at boot (they get buffers at allocation)."""
        bits = _mask_bits(self._g, S.G_ONLINE, self.nr_cpu_ids)
        return [c for c in range(self.nr_cpu_ids) if bits >> c & 1]

    @property
    def opt_tbuf_size(self) -> int:
        """Pages per CPU once allocated, else 0."""
        return self._g[S.G_OPT_TBUF_SIZE]

    @property
    def data_size(self) -> int:
        """Bytes of each CPU's data area: ``pages*4096 - 8``."""
        return self._g[S.G_DATA_SIZE]

    @property
    def t_buf_highwater(self) -> int:
        """``data_size >> 1``: the VIRQ_TBUF threshold."""
        return self._g[S.G_HIGHWATER]

    @property
    def t_info_pages(self) -> int:
        """Pages of the ``t_info`` area (0 until allocated)."""
        return self._g[S.G_T_INFO_PAGES]

    # ---- tb_control ------------------------------------------------------------------------
    def tb_control(self, cmd: int, *, cpu_mask: bytes | int = b"", nr_bits: int | None = None,
                   evt_mask: int = 0, size: int = 0) -> TbufInfo | None:
        """``XEN_SYSCTL_tbuf_op`` by command number; unknown commands raise ``EINVAL``."""
        if cmd == XEN_SYSCTL_TBUFOP_get_info:
            return self.get_info()
        if cmd == XEN_SYSCTL_TBUFOP_set_cpu_mask:
            self.set_cpu_mask(cpu_mask, nr_bits)
        elif cmd == XEN_SYSCTL_TBUFOP_set_evt_mask:
            self.set_evt_mask(evt_mask)
        elif cmd == XEN_SYSCTL_TBUFOP_set_size:
            self.set_size(size)
        elif cmd == XEN_SYSCTL_TBUFOP_enable:
            self.enable()
        elif cmd == XEN_SYSCTL_TBUFOP_disable:
            self.disable()
        else:
            raise TbufError("EINVAL", f"unknown tbuf_op command {cmd}")
        return None

    def get_info(self) -> TbufInfo:
        """Event mask, MFN of ``t_info`` (0 if unallocated) and the ``t_info`` area's size."""
        pages = self.t_info_pages
        return TbufInfo(self.tb_event_mask, S.MFN_BASE if pages else 0, pages * S.PAGE_SIZE)

    def set_evt_mask(self, evt_mask: int) -> None:
        """Any value, any time (even before allocation)."""
        self._g[S.G_TB_EVENT_MASK] = evt_mask & U32

    def set_cpu_mask(self, cpu_mask: bytes | int, nr_bits: int | None = None) -> None:
        """Copy a ``xenctl_bitmap`` (bytes, LSB first, ``nr_bits`` long) into ``tb_cpu_mask``.

        Bits at or beyond ``nr_bits`` are cleared, bits beyond ``nr_cpu_ids`` ignored, an empty
        mask is allowed.  An int is taken as a bitmap of ``max(bit_length, 1)`` bits unless
        ``nr_bits`` says otherwise.  A bitmap shorter than ``nr_bits`` needs is ``EFAULT``.
        """
        if isinstance(cpu_mask, int):
            if cpu_mask < 0:
                raise ValueError("cpu mask must be non-negative")
            nbits = nr_bits if nr_bits is not None else max(cpu_mask.bit_length(), 1)
            cpu_mask = cpu_mask.to_bytes(max((nbits + 7) // 8, (cpu_mask.bit_length() + 7) // 8),
                                         "little")
        nr_bits = 8 * len(cpu_mask) if nr_bits is None else nr_bits
        guest_bytes = (nr_bits + 7) // 8
        copy_bytes = min(guest_bytes, (self.nr_cpu_ids + 7) // 8)
        bytemap = bytearray(copy_bytes)
        if copy_bytes:
            if len(cpu_mask) < copy_bytes:
                raise TbufError("EFAULT", "cpu bitmap shorter than nr_bits")
            bytemap[:] = cpu_mask[:copy_bytes]
            if nr_bits & 7 and guest_bytes == copy_bytes:
                bytemap[-1] &= ~(0xFF << (nr_bits & 7)) & 0xFF
        value = int.from_bytes(bytemap, "little") & ((1 << self.nr_cpu_ids) - 1)
        for i in range(S.NR_CPUS // 32):
            self._g[S.G_CPU_MASK + i] = (value >> (32 * i)) & U32

    def set_size(self, pages: int) -> None:
        """``tb_set_size``: one-shot allocation of ``pages`` per CPU; success enables tracing."""
        pages &= U32
        opt = self.opt_tbuf_size
        if opt and pages != opt:
            raise TbufError("EINVAL", f"tb_set_size from {opt} to {pages} not implemented")
        self._alloc_trace_bufs(pages)

    def enable(self) -> None:
        """Turn tracing on; ``EINVAL`` if no buffers are allocated."""
        if self.opt_tbuf_size == 0:
            raise TbufError("EINVAL", "trace buffers not allocated")
        self._g[S.G_TB_INIT_DONE] = 1

    def disable(self) -> dict[int, int]:
        """Turn tracing off and forget every CPU's pending lost-record count; returns the
        counts forgotten, per CPU.

        prod/cons and data are untouched.  Tracing goes off first, then the pending counts
        are read, then the disable sequence number moves on: the producer applies the
        zeroing itself, under its own per-CPU serialisation, when it next compares that
        number (only the producer writes ``lost_records``, so no drop can slip between the
        count returned and the zeroing).  A drop by a ``trace()`` call already past the
        ``tb_init_done`` test stays in ``lost_records`` until applied: see
        :meth:`forgotten_lost`.
        """
        self._g[S.G_TB_INIT_DONE] = 0
        forgotten = {cpu: self.pending_lost(cpu) for cpu in range(self.nr_cpu_ids)}
        self._g[S.G_DISABLE_SEQ] = (self._g[S.G_DISABLE_SEQ] + 1) & U32
        return forgotten

    def forgotten_lost(self, cpu: int) -> int:
        """Drops on ``cpu`` that a disable has forgotten but its producer has not yet cleared
        (it clears them at its next record): at least what :meth:`disable` returned, plus any
        drop by a call that was in flight when tracing went off."""
        if self._pc[S.PC_LOST_SEQ * S.NR_CPUS + cpu] == self._g[S.G_DISABLE_SEQ]:
            return 0
        return self._pc[S.PC_LOST_RECORDS * S.NR_CPUS + cpu]

    def _init_trace_bufs(self, tbuf_size: int, tevt_mask: int) -> None:
        """Boot: all CPUs in the mask; ``tbuf_size`` allocates (and so starts tracing)."""
        self.set_cpu_mask((1 << self.nr_cpu_ids) - 1, self.nr_cpu_ids)
        if not tbuf_size:
            return
        try:
            self._alloc_trace_bufs(tbuf_size)
        except TbufError:
            log.warning("xentrace: allocation size %d failed, disabling", tbuf_size)
            self._g[S.G_OPT_TBUF_SIZE] = 0
            return
        if tevt_mask:
            self._g[S.G_TB_EVENT_MASK] = tevt_mask & U32
            self._g[S.G_TB_INIT_DONE] = 1

    def _alloc_trace_bufs(self, pages: int) -> None:
        if self.t_info_pages:
            raise TbufError("EBUSY", "trace buffers already allocated")
        if pages == 0:
            raise TbufError("EINVAL", "zero pages")
        nr = self.nr_cpu_ids
        want = pages
        pages, t_info_pages = calculate_tbuf_size(pages, nr)
        if pages != want:
            log.info("xentrace: requested number of %u pages reduced to %u", want, pages)
        cpus = self.online_cpus
        total = t_info_pages + len(cpus) * pages
        limit = self._g[S.G_MAX_HEAP_PAGES]
        if limit and total > limit:
            raise TbufError("ENOMEM", f"{total} pages requested, heap has {limit}")
        try:
            seg = S.create_segment(S.tbuf_segment_name(self.name), total * S.PAGE_SIZE)
        except FileExistsError:
            raise TbufError("EBUSY", "trace buffers already allocated") from None
        except OSError as e:
            raise TbufError("ENOMEM", str(e)) from None
        first_mfn = {cpu: S.MFN_BASE + t_info_pages + i * pages for i, cpu in enumerate(cpus)}
        write_t_info(seg.buf, pages, cpus, first_mfn)
        seg.close()
        data_size = pages * S.PAGE_SIZE - T_BUF_SIZE
        g = self._g
        g[S.G_DATA_SIZE] = data_size
        g[S.G_HIGHWATER] = data_size >> 1
        g[S.G_OPT_TBUF_SIZE] = pages
        g[S.G_T_INFO_PAGES] = t_info_pages
        g[S.G_TB_INIT_DONE] = 1

    # ---- mapping (consumer view; also used by the producer) -------------------------------
    def _map(self) -> bool:
        """Map the buffer segment if it is allocated; ``False`` if not (yet)."""
        if self._seg is not None:
            return True
        if not self.t_info_pages:
            return False
        self._tbuf_shm = S.attach_segment(S.tbuf_segment_name(self.name))
        self._seg = self._tbuf_shm.buf
        info = read_t_info(self._seg, self.nr_cpu_ids)
        for cpu, mfns in info.mfns.items():
            if list(mfns) != list(range(mfns[0], mfns[0] + len(mfns))):
                raise XentraceError(f"cpu {cpu}: buffer pages are not contiguous")
            self._bufs[cpu] = TBuf(cpu, self._seg, mfn_to_offset(mfns[0]), info.tbuf_size)
        return True

    def _unmap(self) -> None:
        for b in self._bufs.values():
            b.release()
        self._bufs = {}
        self._seg = None
        if self._tbuf_shm is not None:
            self._tbuf_shm.close()
            self._tbuf_shm = None

    def read_t_info(self) -> TInfo:
        """The ``t_info`` area as a consumer reads it (``EINVAL`` if not allocated)."""
        if not self._map():
            raise TbufError("EINVAL", "trace buffers not allocated")
        assert self._seg is not None
        return read_t_info(self._seg[: self.t_info_pages * S.PAGE_SIZE], self.nr_cpu_ids)

    def map_tbufs(self) -> dict[int, TBuf]:
        """Every buffered CPU's :class:`TBuf` (prod/cons/data), found through ``t_info``."""
        self.read_t_info()
        return dict(self._bufs)

    # ---- counters and notification ---------------------------------------------------------
    def counters(self, cpu: int | None = None) -> dict[str, int]:
        """Producer counters for one CPU, or summed over all CPUs.

        ``offered = written + lost + filtered`` always holds; ``rejected`` (bad payload size)
        is counted apart.  ``pending_lost`` is Xen's ``lost_records`` not yet reported.
        """
        cpus = range(self.nr_cpu_ids) if cpu is None else [cpu]
        pc = self._pc
        out = {name: sum(pc[row * S.NR_CPUS + c] for c in cpus)
               for row, name in enumerate(S.COUNTER_NAMES)}
        out["pending_lost"] = sum(self.pending_lost(c) for c in cpus)
        return out

    def pending_lost(self, cpu: int) -> int:
        """Xen's per-CPU ``lost_records``: drops not yet reported by a LOST_RECORDS record."""
        if self._pc[S.PC_LOST_SEQ * S.NR_CPUS + cpu] != self._g[S.G_DISABLE_SEQ]:
            return 0
        return self._pc[S.PC_LOST_RECORDS * S.NR_CPUS + cpu]

    def bind_virq(self) -> VirqReceiver:
        """Bind VIRQ_TBUF in this process (the receiver's ``fileno()`` can be polled)."""
        if self._virq_rx is None:
            self._virq_rx = VirqReceiver(self.virq_path)
        return self._virq_rx

    def wait_virq(self, timeout: float | None) -> bool:
        """Wait for VIRQ_TBUF up to ``timeout`` seconds (binds on first use)."""
        return self.bind_virq().wait(timeout)
