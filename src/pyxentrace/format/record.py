"""The xentrace record header (``struct t_rec``) and file-level constants.

word0: bits 0-27 event id, bits 28-30 number of payload words (0..7), bit 31 TSC present.
A timed record carries ``cycles_lo, cycles_hi`` after the header, then the payload words.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

TRACE_EXTRA_MAX = 7
TRACE_EXTRA_SHIFT = 28
TRC_HD_CYCLE_FLAG = 1 << 31
EVENT_MASK = 0x0FFFFFFF

#: Header word of the 12-byte window header xentrace writes (CPU_CHANGE, 2 words, no TSC).
CPU_CHANGE_HEADER = 0x2001F003
CPU_CHANGE_SIZE = 12
#: Header word of a lost-records record (timed, 4 words).
LOST_RECORDS_HEADER = 0xC001F001
LOST_REC_SIZE = 28
MAX_REC_SIZE = 40
MIN_REC_SIZE = 4


class Header(NamedTuple):
    """A decoded record header word."""

    event: int
    extra_words: int
    cycles: bool

    @property
    def size(self) -> int:
        """Record size in bytes, as Xen's ``calc_rec_size``."""
        return rec_size(self.cycles, self.extra_words)


def rec_size(cycles: bool, extra_words: int) -> int:
    """Bytes of a record with ``extra_words`` payload words, timed or not (4..40)."""
    return 4 + (8 if cycles else 0) + 4 * extra_words


def pack_header(event: int, extra_words: int, cycles: bool) -> int:
    """Build a header word; raises ``ValueError`` for out-of-range fields."""
    if not 0 <= event <= EVENT_MASK:
        raise ValueError(f"event {event:#x} does not fit 28 bits")
    if not 0 <= extra_words <= TRACE_EXTRA_MAX:
        raise ValueError(f"extra_words {extra_words} not in 0..7")
    return event | (extra_words << TRACE_EXTRA_SHIFT) | (TRC_HD_CYCLE_FLAG if cycles else 0)


def unpack_header(word: int) -> Header:
    """Split a header word into (event, extra_words, cycles)."""
    return Header(
        word & EVENT_MASK, (word >> TRACE_EXTRA_SHIFT) & TRACE_EXTRA_MAX, bool(word >> 31)
    )


def encode_record(
    event: int, words: tuple[int, ...] | list[int] = (), tsc: int | None = None
) -> bytes:
    """Bytes of one record: header, optional 64-bit TSC, payload words (each taken mod 2**32)."""
    hdr = pack_header(event, len(words), tsc is not None)
    out = struct.pack("<I", hdr)
    if tsc is not None:
        out += struct.pack("<Q", tsc & 0xFFFFFFFFFFFFFFFF)
    return out + struct.pack(f"<{len(words)}I", *(w & 0xFFFFFFFF for w in words))


def encode_window(cpu: int, data: bytes) -> bytes:
    """A CPU_CHANGE window header followed by ``data`` (as xentrace writes one window)."""
    return struct.pack("<IiI", CPU_CHANGE_HEADER, cpu, len(data)) + data
