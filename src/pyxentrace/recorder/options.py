"""The recorder's options, parsed as ``xentrace`` parses them (spec §4.1), with sane edges.

* ``-e``: keywords ``gen sched dom0op hvm mem pv all`` are OR-ed into the mask; anything else is
  a number (C ``strtol`` base 0: ``0x`` hex, leading ``0`` octal) that replaces it; 0 = leave
  Xen's mask as it is.
* ``-c``: ``0x...`` (low 32 bits), ``all``, or a list ``a-b,c,-n,n-`` (``n-`` and ``n-0`` mean
  n to the last CPU).  Unlike xentrace an empty element (``1,,2``) is an error, not CPU 0.
* ``-M``: bytes with an optional suffix ``K``/``k`` (KiB), ``M``/``m`` (MiB), ``G``/``g`` (GiB).
* ``--model NAME``: 1 to 200 characters ``A-Z a-z 0-9 _ . -``, not starting with ``.`` or
  ``-`` (it names ``/dev/shm/NAME``, ``NAME-tbuf`` and files in the temporary directory).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pyxentrace.errors import XentraceError
from pyxentrace.format import events as E

#: ``-e`` keywords: xentrace's ``gen sched dom0op hvm all`` plus ``mem`` and ``pv``.
EVT_KEYWORDS: dict[str, int] = {
    "gen": E.TRC_GEN,
    "sched": E.TRC_SCHED,
    "dom0op": E.TRC_DOM0OP,
    "hvm": E.TRC_HVM,
    "mem": E.TRC_MEM,
    "pv": E.TRC_PV,
    "all": E.TRC_ALL,
}
POLL_SLEEP_MILLIS = 100
DEFAULT_TBUF_SIZE = 32
_SUFFIX = {
    "": 1,
    "k": 1 << 10,
    "K": 1 << 10,
    "m": 1 << 20,
    "M": 1 << 20,
    "g": 1 << 30,
    "G": 1 << 30,
}
MODEL_NAME_MAX = 200
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_STRTOL = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")


class OptionError(XentraceError):
    """A bad option value (a usage error: exit status 2)."""


def strtol(text: str, what: str) -> int:
    """C ``strtol(text, &end, 0)`` that must consume the whole string."""
    m = _STRTOL.fullmatch(text)
    if not m:
        raise OptionError(f"invalid {what} {text!r}: expected a number")
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if sign == "-" else value


def check_model_name(name: str) -> str:
    """A simulated hypervisor's name, usable for its shared memory and files."""
    if not _MODEL_NAME.fullmatch(name) or len(name) > MODEL_NAME_MAX:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise OptionError(
            f"invalid model name {shown!r}: 1 to {MODEL_NAME_MAX} characters from "
            "A-Z a-z 0-9 _ . - (not starting with . or -)"
        )
    return name


def parse_count(text: str, what: str, minimum: int = 0) -> int:
    """A non-negative integer option (``strtol`` syntax)."""
    value = strtol(text, what)
    if value < minimum:
        raise OptionError(f"{what} must be at least {minimum}, got {value}")
    return value


def parse_evt_mask(values: Iterable[str]) -> int:
    """Combine ``-e`` values left to right: keywords OR in, numbers replace (mod 2**32)."""
    mask = 0
    for v in values:
        key = v.strip()
        if key in EVT_KEYWORDS:
            mask |= EVT_KEYWORDS[key]
        else:
            try:
                mask = strtol(key, "event mask") & 0xFFFFFFFF
            except OptionError:
                raise OptionError(
                    f"invalid event mask {v!r}: a number or one of {', '.join(EVT_KEYWORDS)}"
                ) from None
    return mask


def parse_cpu_mask(text: str, nr_cpus: int) -> int:
    """``-c`` as a bitmap over ``nr_cpus`` CPUs."""
    s = text.strip()
    if not s:
        raise OptionError("empty cpu mask")
    if s.startswith("0x"):
        return strtol(s, "cpu mask") & 0xFFFFFFFF
    if s == "all":
        return (1 << nr_cpus) - 1
    bits = 0
    for item in s.split(","):
        if not item:
            raise OptionError(f"invalid cpu mask {text!r}: empty element")
        if not re.fullmatch(r"[0-9]*-?[0-9]*", item) or item == "-":
            raise OptionError(f"invalid cpu mask {text!r}: bad element {item!r}")
        lo_s, dash, hi_s = item.partition("-")
        lo = int(lo_s) if lo_s else 0
        hi = int(hi_s) if hi_s else 0
        if not dash:
            hi = lo
        elif hi == 0:  # "n-" and "n-0": up to the last CPU
            hi = nr_cpus - 1
        if lo > hi:
            raise OptionError(f"invalid cpu mask {text!r}: wrong order of {lo} and {hi}")
        if hi >= nr_cpus:
            raise OptionError(
                f"invalid cpu mask {text!r}: cpu {hi} does not exist (cpus 0..{nr_cpus - 1})"
            )
        for c in range(lo, hi + 1):
            bits |= 1 << c
    return bits


def parse_size(text: str) -> int:
    """``-M`` size in bytes, with an optional K/M/G suffix."""
    m = re.fullmatch(r"\s*([0-9]+)\s*([A-Za-z]?)\s*", text)
    if not m or m.group(2) not in _SUFFIX:
        raise OptionError(f"invalid memory buffer size {text!r}: expected N, NK, NM or NG")
    return int(m.group(1)) * _SUFFIX[m.group(2)]


@dataclass
class RecorderOptions:
    """What to record and how (xentrace's options)."""

    #: Event mask to set before allocation; 0 leaves Xen's mask alone.
    evt_mask: int = 0
    #: CPU mask text (``-c``), parsed against the host's CPU count; None leaves Xen's mask.
    cpu_mask: str | None = None
    tbuf_pages: int = DEFAULT_TBUF_SIZE
    poll_ms: int = POLL_SLEEP_MILLIS
    #: Stop after this many seconds (``-T``); 0 = until a signal.
    time_limit_s: int = 0
    discard: bool = False
    #: Disable tracing at exit (cleared by ``-x``).
    disable_at_exit: bool = True
    start_disabled: bool = False
    #: ``-M``: keep windows in a RAM ring of this many bytes, written at exit (0 = off).
    memory_buffer: int = 0
    #: ``-r``: MB of disk to keep free.
    reserve_mb: int = 0

    def to_dict(self) -> dict:
        """The options as the sidecar records them."""
        return {
            "evt_mask": f"{self.evt_mask:#010x}" if self.evt_mask else None,
            "cpu_mask": self.cpu_mask,
            "tbuf_pages": self.tbuf_pages,
            "poll_ms": self.poll_ms,
            "time_limit_s": self.time_limit_s,
            "discard": self.discard,
            "disable_at_exit": self.disable_at_exit,
            "start_disabled": self.start_disabled,
            "memory_buffer": self.memory_buffer,
            "reserve_mb": self.reserve_mb,
        }
