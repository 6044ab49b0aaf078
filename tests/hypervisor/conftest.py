"""Fixtures for the hypervisor-model tests, and an independent record parser."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest

from pyxentrace.hypervisor import TraceBuffers


class Rec(NamedTuple):
    """One record as the spec defines ``struct t_rec`` (parsed here, not by the model)."""

    offset: int
    event: int
    nwords: int
    tsc: int | None
    payload: bytes
    raw: bytes


def parse_records(data: bytes, base: int = 0) -> list[Rec]:
    """Split a window of buffer bytes into records: header word, optional TSC, payload."""
    out = []
    off = 0
    while off < len(data):
        (hdr,) = struct.unpack_from("<I", data, off)
        nwords, cycles = (hdr >> 28) & 7, hdr >> 31
        size = 4 + 8 * cycles + 4 * nwords
        assert off + size <= len(data), f"record at {off} runs past the window"
        tsc = struct.unpack_from("<Q", data, off + 4)[0] if cycles else None
        payload = data[off + 4 + 8 * cycles : off + size]
        out.append(Rec(base + off, hdr & 0x0FFFFFFF, nwords, tsc, payload, data[off : off + size]))
        off += size
    return out


@pytest.fixture
def make_tb() -> Iterator[Callable[..., TraceBuffers]]:
    """Factory: ``make_tb(nr_cpus=1, pages=None, **create_kwargs)``; closed at teardown."""
    made: list[TraceBuffers] = []

    def make(nr_cpus: int = 1, pages: int | None = None, **kw: object) -> TraceBuffers:
        tb = TraceBuffers.create(nr_cpus=nr_cpus, **kw)
        made.append(tb)
        if pages:
            tb.set_size(pages)
        return tb

    yield make
    for tb in made:
        tb.close()


@pytest.fixture(scope="session")
def cc() -> str:
    """A C compiler, or skip."""
    path = shutil.which("gcc") or shutil.which("cc")
    if path is None:
        pytest.skip("no C compiler (gcc/cc) on PATH: golden C struct layouts cannot be built")
    return path
