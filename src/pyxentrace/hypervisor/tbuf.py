"""Per-CPU trace buffer arithmetic and views (Xen ``xen/common/trace.c``, spec §1.1-1.3).

``prod``/``cons`` are byte offsets into a CPU's data area kept modulo ``2*data_size``; the
physical offset is ``x mod data_size``.  The data area starts 8 bytes into the buffer, after
``struct t_buf {uint32_t cons, prod;}``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyxentrace.hypervisor.shm import MFN_BASE, NR_CPUS, PAGE_SIZE, T_INFO_FIRST

T_BUF_SIZE = 8
#: Size of a LOST_RECORDS record: header + TSC + 16 bytes of payload.
LOST_REC_SIZE = 4 + 8 + 16
U32 = 0xFFFFFFFF


def is_bogus(prod: int, cons: int, data_size: int) -> bool:
    """Xen's ``bogus()`` test (without its side effect of turning tracing off)."""
    return bool(prod & 3 or prod >= 2 * data_size or cons & 3 or cons >= 2 * data_size)


def unconsumed_bytes(prod: int, cons: int, data_size: int) -> int:
    """``calc_unconsumed_bytes`` for non-bogus values: ``(prod - cons) mod 2*data_size``."""
    x = prod - cons
    return x + 2 * data_size if x < 0 else x


def bytes_to_wrap(prod: int, data_size: int) -> int:
    """``calc_bytes_to_wrap`` for a non-bogus prod: bytes to the physical end, in [4, ds]."""
    x = data_size - prod
    return x + data_size if x <= 0 else x


def calculate_tbuf_size(pages: int, nr_cpu_ids: int,
                        first: int = T_INFO_FIRST) -> tuple[int, int]:
    """``calculate_tbuf_size``: ``(pages, t_info_pages)`` with Xen's silent caps applied."""
    max_pages = min(0xFFFF, U32 // PAGE_SIZE)
    max_mfn_offset = 0xFFFF - first
    if nr_cpu_ids - 1:
        max_mfn_offset //= nr_cpu_ids - 1
    max_pages = min(max_pages, max_mfn_offset)
    pages = min(pages, max_pages)
    t_info_words = nr_cpu_ids * pages + first
    return pages, -(-(t_info_words * 4) // PAGE_SIZE)


@dataclass(frozen=True)
class TInfo:
    """Parsed ``struct t_info``: pages per CPU and each buffered CPU's MFN list."""

    tbuf_size: int
    mfns: dict[int, tuple[int, ...]]


def write_t_info(buf: memoryview, pages: int, cpus: list[int], first_mfn: dict[int, int],
                 first: int = T_INFO_FIRST) -> None:
    """Fill a zeroed ``t_info`` area: ``tbuf_size``, ``mfn_offset[cpu]``, the MFN lists."""
    struct.pack_into("<H", buf, 0, pages)
    for cpu in cpus:
        offset = first + cpu * pages
        struct.pack_into("<H", buf, 2 + 2 * cpu, offset)
        struct.pack_into(f"<{pages}I", buf, 4 * offset,
                         *range(first_mfn[cpu], first_mfn[cpu] + pages))


def read_t_info(buf: memoryview | bytes, nr_cpus: int = NR_CPUS) -> TInfo:
    """Parse a ``t_info`` area as xentrace does (``mfn_offset[cpu] == 0``: no buffer)."""
    (pages,) = struct.unpack_from("<H", buf, 0)
    mfns: dict[int, tuple[int, ...]] = {}
    for cpu in range(min(nr_cpus, NR_CPUS)):
        (offset,) = struct.unpack_from("<H", buf, 2 + 2 * cpu)
        if offset:
            mfns[cpu] = struct.unpack_from(f"<{pages}I", buf, 4 * offset)
    return TInfo(pages, mfns)


def mfn_to_offset(mfn: int) -> int:
    """Byte offset in the ``-tbuf`` segment of the page with this (model) MFN."""
    return (mfn - MFN_BASE) * PAGE_SIZE


class TBuf:
    """One CPU's mapped buffer: ``prod``/``cons`` in the ``t_buf`` header, then the data area.

    A consumer reads ``prod`` and ``cons``, copies ``window()`` and publishes ``cons = prod``.
    """

    def __init__(self, cpu: int, seg: memoryview, offset: int, pages: int):
        self.cpu = cpu
        self.offset = offset
        self.pages = pages
        self.data_size = pages * PAGE_SIZE - T_BUF_SIZE
        self._meta = seg[offset:offset + T_BUF_SIZE].cast("I")
        self.data = seg[offset + T_BUF_SIZE:offset + pages * PAGE_SIZE]

    @property
    def cons(self) -> int:
        """``t_buf.cons`` (written by the consumer)."""
        return self._meta[0]

    @cons.setter
    def cons(self, value: int) -> None:
        self._meta[0] = value & U32

    @property
    def prod(self) -> int:
        """``t_buf.prod`` (written by the producer, after the record bytes)."""
        return self._meta[1]

    @prod.setter
    def prod(self, value: int) -> None:
        self._meta[1] = value & U32

    def unconsumed(self) -> int:
        """Bytes between cons and prod (``data_size`` when the pair is bogus, as Xen)."""
        prod, cons = self.prod, self.cons
        if is_bogus(prod, cons, self.data_size):
            return self.data_size
        return unconsumed_bytes(prod, cons, self.data_size)

    def window(self, cons: int, prod: int) -> bytes:
        """The bytes from ``cons`` to ``prod`` (xentrace's copy; two pieces when wrapped)."""
        ds = self.data_size
        if cons == prod:
            return b""
        s, e = cons % ds, prod % ds
        if e > s:
            return bytes(self.data[s:e])
        return bytes(self.data[s:ds]) + bytes(self.data[:e])

    def release(self) -> None:
        """Drop the views into shared memory (needed before the segment can be closed)."""
        self._meta.release()
        self.data.release()
