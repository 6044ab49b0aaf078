"""Shared record filters (LTTng style): time range, pCPUs, domains, vCPUs, events.

Every value is checked when a :class:`Filters` is made: times finite and >= 0, pCPUs
0..4095, domains 0..65535 (or the default-domain bucket), vCPU numbers 0..65535, event ids
below 2**28. A bad value raises :class:`FilterError` (a :class:`XentraceError` naming the
option); the CLI turns it into a usage error (exit 2).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import XentraceError
from ..format import events as ev
from .decode import extra_event_names
from .keys import DEFAULT_DOMAIN, DOMAIN_SHIFT, NONE_KEY, parse_domain, parse_vcpu_label

NPCPU = 4096
TSC_MAX = (1 << 63) - 1


class FilterError(XentraceError):
    """A bad filter value; ``option`` is the command-line option it belongs to."""

    def __init__(self, option: str, message: str):
        self.option = option
        self.detail = message
        super().__init__(f"{option}: {message}")


@dataclass(frozen=True)
class Filters:
    """Which records an analysis looks at.

    ``from_s`` / ``to_s`` are seconds from the first record of the trace; ``cpus`` pCPU numbers;
    ``domains`` domain numbers; ``vcpus`` vCPU keys (see :mod:`.keys`); ``events`` event ids.
    Empty selections mean "all".
    """

    from_s: float | None = None
    to_s: float | None = None
    cpus: frozenset[int] = field(default_factory=frozenset)
    domains: frozenset[int] = field(default_factory=frozenset)
    vcpus: frozenset[int] = field(default_factory=frozenset)
    events: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for opt, v in (("--from", self.from_s), ("--to", self.to_s)):
            if v is not None and not (_is_real(v) and math.isfinite(v) and v >= 0):
                raise FilterError(opt, f"{v!r} is not a finite number of seconds >= 0")
        if self.from_s is not None and self.to_s is not None and self.to_s < self.from_s:
            raise FilterError("--to", f"{self.to_s} is before --from {self.from_s}")
        for c in self.cpus:
            if not 0 <= c < NPCPU:
                raise FilterError("--cpu", f"{c} is not a pCPU number (0..{NPCPU - 1})")
        for d in self.domains:
            if not (0 <= d <= 0xFFFF or d == DEFAULT_DOMAIN):
                raise FilterError("--domain", f"{d} is not a domain id (0..65535)")
        for k in self.vcpus:
            if not (k == NONE_KEY or 0 <= k >> DOMAIN_SHIFT <= DEFAULT_DOMAIN):
                raise FilterError("--vcpu", f"{k} is not a vCPU key")
        for e in self.events:
            if not (e < 0 and -e - 1 <= ev.GUEST_CLASS_INDEX or 0 <= e <= ev.EVENT_MASK):
                raise FilterError("--event", f"{e:#x} is not an event id (below 2**28)")

    @property
    def has_time(self) -> bool:
        return self.from_s is not None or self.to_s is not None

    @property
    def empty(self) -> bool:
        return not (self.has_time or self.cpus or self.domains or self.vcpus or self.events)

    def tsc_range(self, first_tsc: int, cpu_hz: float) -> tuple[int, int]:
        """``[lo, hi]`` in raw TSC for the time range (whole trace when unset), within int64."""
        lo = 0
        hi = TSC_MAX
        if self.from_s is not None:
            lo = _tsc_at(first_tsc, self.from_s, cpu_hz)
        if self.to_s is not None:
            hi = _tsc_at(first_tsc, self.to_s, cpu_hz)
        return lo, hi

    def cpu_mask(self, n: int = NPCPU) -> np.ndarray:
        """uint8 mask over pCPU numbers."""
        if not self.cpus:
            return np.ones(n, dtype=np.uint8)
        m = np.zeros(n, dtype=np.uint8)
        for c in self.cpus:
            if 0 <= c < n:
                m[c] = 1
        return m

    def key_selected(self, key: int) -> bool:
        """Whether a vCPU key passes the domain / vCPU selections."""
        if self.vcpus and key not in self.vcpus:
            return False
        if self.domains:
            dom = -1 if key == NONE_KEY else key >> DOMAIN_SHIFT
            return dom in self.domains
        return True

    def keys_mask(self, keys: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`key_selected`."""
        keys = np.asarray(keys, dtype=np.int64)
        m = np.ones(keys.shape, dtype=bool)
        if self.vcpus:
            m &= np.isin(keys, np.fromiter(self.vcpus, dtype=np.int64))
        if self.domains:
            dom = np.where(keys < 0, -1, keys >> DOMAIN_SHIFT)
            m &= np.isin(dom, np.fromiter(self.domains, dtype=np.int64))
        return m


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _tsc_at(first_tsc: int, seconds: float, cpu_hz: float) -> int:
    x = seconds * cpu_hz
    if not math.isfinite(x) or first_tsc + x >= TSC_MAX:
        return TSC_MAX
    return max(0, first_tsc + int(round(x)))


def make_filters(
    from_s: float | None = None,
    to_s: float | None = None,
    cpus: Iterable[int | str] | None = None,
    domains: Iterable[int | str] | None = None,
    vcpus: Iterable[str | int] | None = None,
    events: Iterable[str | int] | None = None,
) -> Filters:
    """Build :class:`Filters` from user values (labels, names, comma lists).

    Raises :class:`FilterError` (one line, naming the option) for a value that is not one.
    """
    cpu_set = frozenset(_cpu(c) for c in _split(cpus))
    dom_set = frozenset(_parse("--domain", parse_domain, d) for d in _split(domains))
    vcpu_set = frozenset(_parse("--vcpu", parse_vcpu_label, v) for v in _split(vcpus))
    ev_set = frozenset(i for e in _split(events) for i in event_ids(e))
    return Filters(from_s, to_s, cpu_set, dom_set, vcpu_set, ev_set)


def _cpu(value: int | str) -> int:
    if isinstance(value, int):
        return value
    try:
        return int(value)
    except ValueError:
        raise FilterError("--cpu", f"{value!r} is not a pCPU number") from None


def _parse(option: str, parse, value: int | str) -> int:
    if isinstance(value, int):
        return value
    try:
        return parse(str(value))
    except ValueError as e:
        raise FilterError(option, str(e)) from None


def _split(values: Iterable | None) -> list:
    out: list = []
    for v in values or ():
        if isinstance(v, str):
            out.extend(x for x in (p.strip() for p in v.split(",")) if x)
        else:
            out.append(v)
    return out


def event_ids(spec: str | int) -> list[int]:
    """Event ids for a class name (``pv``, ``sched``...), an event name, or a number."""
    if isinstance(spec, int):
        return [_event_number(spec, spec)]
    s = spec.strip()
    low = s.lower()
    if low in ev.CLASSES or low == "guest":
        return [e for e in ev.EVENTS if ev.class_name(e) == low] + _class_marker(low)
    # every name the dump prints: the catalog's and the PV decoding table's own
    ids = list(ev.events_named(low)) + sorted(e for e, n in extra_event_names().items() if n == low)
    if ids:
        return ids
    try:
        n = int(s, 0)
    except ValueError:
        raise FilterError(
            "--event",
            f"unknown event {spec!r}: give a class ({', '.join(ev.CLASSES)}), "
            f"an event name (e.g. hypercall_v2, page_fault64) or a number",
        ) from None
    return [_event_number(n, spec)]


def _event_number(n: int, spec: str | int) -> int:
    if not 0 <= n <= ev.EVENT_MASK:
        raise FilterError("--event", f"{spec!r} is not an event id (0..0x0fffffff)")
    return n


# Every id of a class, not only catalogued ones, is selected through a marker: -(class bit)-1.
def _class_marker(cls: str) -> list[int]:
    idx = ev.CLASSES.index(cls) if cls in ev.CLASSES else ev.GUEST_CLASS_INDEX
    return [-(idx + 1)]


def events_mask(f: Filters, events: np.ndarray) -> np.ndarray:
    """Rows whose event passes the event selection (class markers match the whole class)."""
    if not f.events:
        return np.ones(np.shape(events), dtype=bool)
    e = np.asarray(events).astype(np.int64) & ev.EVENT_MASK
    ids = np.fromiter((x for x in f.events if x >= 0), dtype=np.int64)
    m = np.isin(e, ids)
    main = e >> 16
    for x in f.events:
        if x < 0:
            m |= main == (1 << (-x - 1))
    return m
