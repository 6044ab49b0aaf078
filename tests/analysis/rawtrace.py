"""A tiny independent reader of xentrace files, for test oracles (no pyxentrace code).

File layout (spec xenalyze-reference.md §1.1-§1.2): windows of ``0x2001f003, cpu, size`` followed
by ``size`` bytes of that pCPU's records; a record is a header word (bits 0-27 event, 28-30
payload words, 31 TSC present), an optional 64-bit TSC, then the payload words.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

CPU_CHANGE = 0x2001F003
LOST = 0x0001F001


@dataclass(frozen=True)
class Rec:
    cpu: int
    tsc: int | None
    event: int
    words: tuple[int, ...]


def records(path: str | Path) -> list[Rec]:
    """Every record of every window, in file order (window headers left out)."""
    data = Path(path).read_bytes()
    out: list[Rec] = []
    pos = 0
    while pos + 12 <= len(data):
        hdr, cpu, size = struct.unpack_from("<IiI", data, pos)
        assert hdr == CPU_CHANGE, f"offset {pos}: not a window header"
        pos += 12
        end = min(pos + size, len(data))
        while pos + 4 <= end:
            (w,) = struct.unpack_from("<I", data, pos)
            n, timed = (w >> 28) & 7, w >> 31
            size_rec = 4 + 8 * timed + 4 * n
            if pos + size_rec > end:
                break
            tsc = struct.unpack_from("<Q", data, pos + 4)[0] if timed else None
            words = struct.unpack_from(f"<{n}I", data, pos + 4 + 8 * timed)
            out.append(Rec(cpu, tsc, w & 0x0FFFFFFF, words))
            pos += size_rec
        pos = end
    return out


def xenalyze_first_tsc(path: str | Path) -> int:
    """xenalyze's ``P.f.first_tsc``: the smallest ``order_tsc`` of a timed record - its TSC,
    or for a lost record its ``first_tsc``, where its first pass happens (spec §1.3-§1.4)."""
    keys = []
    for r in records(path):
        if r.tsc is None:
            continue
        keys.append(r.tsc)
        if r.event == LOST and len(r.words) == 4 and (r.words[2] | r.words[3] << 32):
            keys.append(r.words[2] | r.words[3] << 32)
    return min(keys)


def pv_minors_before_scheduling(path: str | Path, cpu: int) -> set[int]:
    """PV minors on ``cpu`` before its first scheduler-class record: what xenalyze charges to
    its default vCPU ``d32768v<cpu>`` (spec §3)."""
    out = set()
    for r in records(path):
        if r.cpu != cpu:
            continue
        if r.event >> 16 == 0x002:
            break
        if r.event >> 16 == 0x020:
            out.add(r.event & 0xFF)
    return out
