"""Fixtures for the machine tests, and hand-built expected records (spec layouts, struct)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from pyxentrace.hypervisor import TraceBuffers
from pyxentrace.hypervisor.machine import Machine

CYCLES = 1 << 31


def rec(event: int, words: tuple[int, ...] | list[int] = (), tsc: int = 0) -> bytes:
    """One timed record as spec §1.1 lays it out: header, TSC, payload words."""
    hdr = event | len(words) << 28 | CYCLES
    return struct.pack("<IQ", hdr, tsc) + struct.pack(f"<{len(words)}I", *words)


def rec_bytes(event: int, payload: bytes, tsc: int = 0) -> bytes:
    """A timed record with a packed payload."""
    assert len(payload) % 4 == 0
    return struct.pack("<IQ", event | len(payload) // 4 << 28 | CYCLES, tsc) + payload


def buffer_bytes(tb: TraceBuffers, cpu: int) -> bytes:
    """Everything between cons and prod of ``cpu``'s buffer (not consumed)."""
    b = tb.map_tbufs()[cpu]
    return b.window(b.cons, b.prod)


def split(data: bytes) -> list[tuple[int, int | None, bytes]]:
    """(event, tsc, payload) of each record in buffer bytes."""
    out, off = [], 0
    while off < len(data):
        (hdr,) = struct.unpack_from("<I", data, off)
        n, timed = (hdr >> 28) & 7, hdr >> 31
        tsc = struct.unpack_from("<Q", data, off + 4)[0] if timed else None
        start = off + 4 + 8 * timed
        out.append((hdr & 0x0FFFFFFF, tsc, data[start : start + 4 * n]))
        off = start + 4 * n
    return out


@pytest.fixture
def make_machine() -> Iterator[Callable[..., Machine]]:
    """``make_machine(nr_cpus=2, pages=16, **Machine kwargs)``: buffers allocated, tracing on."""
    made: list[TraceBuffers] = []

    def make(nr_cpus: int = 2, pages: int = 16, **kw: object) -> Machine:
        tb = TraceBuffers.create(nr_cpus=nr_cpus)
        made.append(tb)
        tb.set_size(pages)
        return Machine(tb, **kw)  # type: ignore[arg-type]

    yield make
    for tb in made:
        tb.close()
