"""Named shared-memory segments for the trace system, and the control block's layout.

Two segments per hypervisor model, named after it:

* ``NAME`` - the control block (fixed size, created with the model): Xen's trace globals
  (``tb_init_done``, ``tb_event_mask``, ``tb_cpu_mask``, ``opt_tbuf_size``, ``data_size``,
  ``t_buf_highwater``, ``t_info_pages``), Xen's per-CPU ``lost_records`` state, and the per-CPU
  counters the recorder's metadata needs.  Any process may attach and run control operations.
* ``NAME-tbuf`` - created by ``set_size`` (Xen's ``alloc_trace_bufs``): the ``t_info`` pages,
  then every CPU's ``t_buf`` header + data pages.

Segments are not registered with ``multiprocessing``'s resource tracker (Python < 3.13 would
unlink them when *any* attaching process exits); the creating model unlinks them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

PAGE_SIZE = 4096
#: x86 default ``NR_CPUS`` (size of ``t_info.mfn_offset[]``).
NR_CPUS = 256
#: First MFN-list word in ``t_info``: DIV_ROUND_UP(offsetof(t_info, mfn_offset[NR_CPUS]), 4).
T_INFO_FIRST = (2 + 2 * NR_CPUS + 3) // 4
#: Fake machine frame number of the first page of the ``-tbuf`` segment (non-zero, < 2**32).
MFN_BASE = 0x100000

MAGIC = 0x43425458  # "XTBC"
VERSION = 1

# ---- control block: u32 globals ------------------------------------------------------------
G_MAGIC = 0
G_VERSION = 1
G_NR_CPU_IDS = 2
G_TB_INIT_DONE = 3
G_TB_EVENT_MASK = 4
G_OPT_TBUF_SIZE = 5
G_DATA_SIZE = 6
G_HIGHWATER = 7
G_T_INFO_PAGES = 8
G_DISABLE_SEQ = 9
G_MAX_HEAP_PAGES = 10
G_WARNED_BAD_SIZE = 11
G_CPU_MASK = 16  # 8 words = NR_CPUS bits
G_ONLINE = 24  # 8 words: CPUs online (they get buffers at allocation)
G_WORDS = 32
VIRQ_PATH_OFF = 128  # NUL-padded UTF-8 path of the VIRQ_TBUF FIFO
VIRQ_PATH_LEN = 384
PERCPU_OFF = 512

# ---- control block: u64 per-CPU rows (row * NR_CPUS + cpu) ---------------------------------
#: Calls reaching trace() with tracing enabled and a valid payload size.
PC_OFFERED = 0
#: Dropped by the event mask, the CPU mask, or for lack of a buffer on that CPU.
PC_FILTERED = 1
#: Records entering the buffer (not counting WRAP and LOST records).
PC_WRITTEN = 2
#: Records dropped for lack of space (Xen's lost_records increments).
PC_LOST = 3
#: Calls rejected for a bad payload size (not counted as lost, not offered).
PC_REJECTED = 4
#: WRAP records inserted.
PC_WRAPS = 5
#: LOST_RECORDS records inserted.
PC_LOST_RECS = 6
#: Upward crossings of the high-water mark (VIRQ_TBUF notifications raised).
PC_VIRQS = 7
#: Xen's per-CPU ``lost_records`` (pending count) and ``lost_records_first_tsc``.
PC_LOST_RECORDS = 8
PC_LOST_FIRST_TSC = 9
#: Last ``disable`` sequence number this CPU's producer has applied (see ``disable``).
PC_LOST_SEQ = 10
PC_ROWS = 11
COUNTER_NAMES = ("offered", "filtered", "written", "lost", "rejected", "wraps", "lost_recs",
                 "virqs")

CONTROL_SIZE = PERCPU_OFF + PC_ROWS * NR_CPUS * 8


class _Segment(SharedMemory):
    """A SharedMemory whose finaliser tolerates live views at interpreter exit."""

    def __del__(self) -> None:
        with contextlib.suppress(OSError, BufferError):
            self.close()


@contextlib.contextmanager
def _untracked() -> Iterator[None]:
    reg, unreg = resource_tracker.register, resource_tracker.unregister
    resource_tracker.register = lambda *a, **k: None  # type: ignore[assignment]
    resource_tracker.unregister = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        resource_tracker.register, resource_tracker.unregister = reg, unreg


def create_segment(name: str, size: int) -> SharedMemory:
    """Create a zero-filled named segment; ``FileExistsError`` if the name is taken."""
    with _untracked():
        return _Segment(name, create=True, size=size)


def attach_segment(name: str) -> SharedMemory:
    """Map an existing named segment; ``FileNotFoundError`` if there is none."""
    with _untracked():
        return _Segment(name, create=False)


def unlink_segment(shm: SharedMemory) -> None:
    """Remove the segment's name (mappings stay valid until closed)."""
    with _untracked(), contextlib.suppress(FileNotFoundError):
        shm.unlink()


def tbuf_segment_name(name: str) -> str:
    """Name of the ``t_info`` + buffers segment of the model called ``name``."""
    return f"{name}-tbuf"
