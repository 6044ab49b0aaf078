"""Hand-built traces for the analysis tests (records packed with the record helpers)."""

from __future__ import annotations

from pathlib import Path

from pyxentrace.format.record import encode_record, encode_window

RUNSTATE = 0x00021001
CONTINUE = 0x00021002
SWITCH = 0x0002800A
SWITCH_SEED = 0x0002F00A
LOST = 0x0001F001


def runstate(dom: int, vcpu: int, old: int, new: int, tsc: int) -> bytes:
    """RUNSTATE_CHANGE: id 0x00021001 | old<<8 | new<<4, one word vcpu | dom<<16."""
    return encode_record(RUNSTATE | old << 8 | new << 4, [vcpu | dom << 16], tsc)


def switch(pd: int, pv: int, nd: int, nv: int, tsc: int, seed: bool = False) -> bytes:
    return encode_record(SWITCH_SEED if seed else SWITCH, [pd, pv, nd, nv], tsc)


def lost(count: int, did: int, vid: int, first_tsc: int, tsc: int) -> bytes:
    return encode_record(
        LOST, [count, did | vid << 16, first_tsc & 0xFFFFFFFF, first_tsc >> 32], tsc
    )


def write_trace(path: Path, windows: list[tuple[int, list[bytes]]]) -> Path:
    """A file of CPU_CHANGE windows, each ``(pcpu, [record bytes...])``."""
    path.write_bytes(b"".join(encode_window(cpu, b"".join(recs)) for cpu, recs in windows))
    return path
