"""Shared record filters (LTTng style): time range, pCPUs, domains, vCPUs, events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import XentraceError
from ..format import events as ev
from .keys import DOMAIN_SHIFT, NONE_KEY, parse_domain, parse_vcpu_label

NPCPU = 4096


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

    @property
    def has_time(self) -> bool:
        return self.from_s is not None or self.to_s is not None

    @property
    def empty(self) -> bool:
        return not (self.has_time or self.cpus or self.domains or self.vcpus or self.events)

    def tsc_range(self, first_tsc: int, cpu_hz: float) -> tuple[int, int]:
        """``[lo, hi]`` in raw TSC for the time range (whole trace when unset)."""
        lo = 0
        hi = (1 << 63) - 1
        if self.from_s is not None:
            lo = first_tsc + int(round(self.from_s * cpu_hz))
        if self.to_s is not None:
            hi = first_tsc + int(round(self.to_s * cpu_hz))
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


def make_filters(
    from_s: float | None = None,
    to_s: float | None = None,
    cpus: Iterable[int | str] | None = None,
    domains: Iterable[int | str] | None = None,
    vcpus: Iterable[str | int] | None = None,
    events: Iterable[str | int] | None = None,
) -> Filters:
    """Build :class:`Filters` from user values (labels, names, comma lists); one-line errors."""
    if from_s is not None and to_s is not None and to_s < from_s:
        raise XentraceError(f"--to {to_s} is before --from {from_s}")
    try:
        cpu_set = frozenset(int(c) for c in _split(cpus))
        dom_set = frozenset(
            parse_domain(str(d)) if not isinstance(d, int) else d for d in _split(domains)
        )
        vcpu_set = frozenset(
            parse_vcpu_label(v) if not isinstance(v, int) else v for v in _split(vcpus)
        )
    except ValueError as e:
        raise XentraceError(str(e)) from None
    ev_set = frozenset(i for e in _split(events) for i in event_ids(e))
    return Filters(from_s, to_s, cpu_set, dom_set, vcpu_set, ev_set)


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
        return [spec & ev.EVENT_MASK]
    s = spec.strip()
    low = s.lower()
    if low in ev.CLASSES or low == "guest":
        return [e for e in ev.EVENTS if ev.class_name(e) == low] + _class_marker(low)
    ids = list(ev.events_named(low))
    if ids:
        return ids
    try:
        return [int(s, 0) & ev.EVENT_MASK]
    except ValueError:
        raise XentraceError(
            f"unknown event {spec!r}: give a class ({', '.join(ev.CLASSES)}), "
            f"an event name (e.g. hypercall_v2, page_fault64) or a number"
        ) from None


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
