"""The metadata sidecar ``TRACE.meta.json`` written by our recorder next to a trace.

It tells analyses the TSC rate so that none has to guess the clock. Keys (all optional except
``tsc_hz``): ``tsc_hz``, ``pcpus``, ``domains``, ``abi``, ``arch``, ``start_time``,
``pcpus_counters``; see the recorder for the full schema.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..errors import XentraceError

DEFAULT_CPU_HZ = 2.4e9


def sidecar_path(trace: str | os.PathLike) -> str:
    return os.fspath(trace) + ".meta.json"


def read_meta(trace: str | os.PathLike) -> dict | None:
    """The sidecar's content, or None when there is none (or the trace is stdin)."""
    if os.fspath(trace) == "-":
        return None
    p = sidecar_path(trace)
    try:
        with open(p, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise XentraceError(f"unreadable metadata sidecar: {e}", path=p) from None
    if not isinstance(meta, dict):
        raise XentraceError("metadata sidecar is not a JSON object", path=p)
    return meta


@dataclass(frozen=True, slots=True)
class Clock:
    """The TSC rate used to turn cycles into seconds, and where it came from."""

    hz: float
    source: str  # "option", "sidecar" or "assumed"

    @property
    def assumed(self) -> bool:
        return self.source == "assumed"

    def warning(self) -> str | None:
        if not self.assumed:
            return None
        return (
            f"no --cpu-hz and no metadata sidecar: time scale assumes a {self.hz / 1e9:.2f} GHz TSC"
        )


def resolve_clock(trace: str | os.PathLike, cpu_hz: float | None = None) -> Clock:
    """``--cpu-hz`` if given, else the sidecar's ``tsc_hz``, else 2.4 GHz (assumed)."""
    if cpu_hz is not None:
        if not cpu_hz > 0:
            raise XentraceError(f"--cpu-hz must be positive, got {cpu_hz}")
        return Clock(float(cpu_hz), "option")
    meta = read_meta(trace)
    if meta is not None and "tsc_hz" in meta:
        hz = meta["tsc_hz"]
        if not isinstance(hz, int | float) or not hz > 0:
            raise XentraceError(f"bad tsc_hz {hz!r} in metadata sidecar", path=sidecar_path(trace))
        return Clock(float(hz), "sidecar")
    return Clock(DEFAULT_CPU_HZ, "assumed")
