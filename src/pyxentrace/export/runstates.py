"""Runstate transitions as a timeline: which state each vCPU is in, and which vCPU runs on each
pCPU, updated record by record in time order (for timelines, not for xenalyze's accounting).

Input is the stream of ``runstate_change`` (``0x00021001 | old << 8 | new << 4``, payload
``dom << 16 | vcpu``) and ``continue_running`` records. For every such record the tracker says
which state interval of its vCPU ends there (and since when), which state begins, and which
pCPU-occupancy slice ends or begins. A vCPU is on at most one pCPU and a pCPU runs at most one
vCPU at a time, whatever the records say (a new vCPU on a busy pCPU ends the previous one's
slice), so the slices always nest for a timeline viewer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from ..format.events import RUNSTATE_CHANGE_MASK, TRC_SCHED_CONTINUE_RUNNING
from ..format.events import TRC_SCHED_RUNSTATE_CHANGE as RS_CHANGE

RUNNING, RUNNABLE, BLOCKED, OFFLINE = 0, 1, 2, 3
STATE_NAMES = ("running", "runnable", "blocked", "offline")
NPCPU = 4096


def runstate_rows(event: np.ndarray, nwords: np.ndarray) -> np.ndarray:
    """Mask of rows that are runstate changes or continue-running records with their payload."""
    ev = event.astype(np.uint32)
    rs = (ev & np.uint32(RUNSTATE_CHANGE_MASK)) == RS_CHANGE
    return (rs | (ev == TRC_SCHED_CONTINUE_RUNNING)) & (nwords >= 1)


@dataclass
class Transitions:
    """Per runstate record (in input order): what ends and begins at its time ``t``."""

    t: np.ndarray  # int64 TSC
    key: np.ndarray  # int64 vCPU key (domain << 16 | vcpu)
    prev_state: np.ndarray  # int8, state whose interval ends here (-1: none known)
    prev_since: np.ndarray  # int64 TSC it began
    new_state: np.ndarray  # int8, state beginning here (-1: unchanged, nothing begins)
    pcpu_end: np.ndarray  # int16, pCPU whose slice of this vCPU ends here (-1: none)
    pcpu_begin: np.ndarray  # int16, pCPU whose slice of this vCPU begins here (-1: none)
    kicked: np.ndarray  # int64 key of another vCPU whose slice on pcpu_begin ends here (-1)

    def __len__(self) -> int:
        return int(self.t.shape[0])


@nb.njit(cache=True)
def _track(
    slots,
    old,
    new,
    tsc,
    cpu,
    st_state,
    st_since,
    st_pcpu,
    pcpu_open,
    prev_state,
    prev_since,
    new_state,
    pcpu_end,
    pcpu_begin,
    kicked_slot,
):
    n = slots.shape[0]
    for i in range(n):
        s = slots[i]
        t = tsc[i]
        c = cpu[i]
        nw = new[i]
        cur = st_state[s]
        prev_state[i] = -1
        prev_since[i] = 0
        new_state[i] = -1
        pcpu_end[i] = -1
        pcpu_begin[i] = -1
        kicked_slot[i] = -1
        if cur == nw and not (nw == RUNNING and st_pcpu[s] != c):
            continue  # no change (continue_running on a running vCPU)
        if cur != nw:
            if cur >= 0:
                prev_state[i] = cur
                prev_since[i] = st_since[s]
            new_state[i] = nw
            st_state[s] = nw
            st_since[s] = t
        # pCPU occupancy
        p = st_pcpu[s]
        if p >= 0 and (nw != RUNNING or p != c):
            if pcpu_open[p] == s:
                pcpu_open[p] = -1
                pcpu_end[i] = p
            st_pcpu[s] = -1
        if nw == RUNNING and st_pcpu[s] != c:
            other = pcpu_open[c]
            if other >= 0 and other != s:
                kicked_slot[i] = other
                st_pcpu[other] = -1
            pcpu_open[c] = s
            st_pcpu[s] = c
            pcpu_begin[i] = c


class RunstateTracker:
    """Feed runstate rows batch by batch (time order); read :class:`Transitions` back."""

    def __init__(self) -> None:
        self._slot: dict[int, int] = {}
        self.keys = np.zeros(0, dtype=np.int64)
        self._state = np.full(64, -1, dtype=np.int8)
        self._since = np.zeros(64, dtype=np.int64)
        self._pcpu = np.full(64, -1, dtype=np.int16)
        self._open = np.full(NPCPU, -1, dtype=np.int64)

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        uniq, inv = np.unique(keys, return_inverse=True)
        ids = np.empty(uniq.shape[0], dtype=np.int64)
        for j, k in enumerate(uniq.tolist()):
            s = self._slot.get(k)
            if s is None:
                s = self._slot[k] = len(self._slot)
            ids[j] = s
        n = len(self._slot)
        if n > self._state.shape[0]:
            grow = max(n, 2 * self._state.shape[0]) - self._state.shape[0]
            self._state = np.concatenate([self._state, np.full(grow, -1, dtype=np.int8)])
            self._since = np.concatenate([self._since, np.zeros(grow, dtype=np.int64)])
            self._pcpu = np.concatenate([self._pcpu, np.full(grow, -1, dtype=np.int16)])
        self.keys = np.fromiter(self._slot, dtype=np.int64, count=n)
        return ids[inv]

    def feed(
        self, event: np.ndarray, w0: np.ndarray, tsc: np.ndarray, cpu: np.ndarray
    ) -> Transitions:
        """Runstate rows only (see :func:`runstate_rows`), in time order."""
        ev = event.astype(np.int64)
        w = w0.astype(np.int64)
        key = ((w >> 16) << 16) | (w & 0xFFFF)
        cont = ev == TRC_SCHED_CONTINUE_RUNNING
        old = np.where(cont, RUNNING, (ev >> 8) & 3).astype(np.int8)
        new = np.where(cont, RUNNING, (ev >> 4) & 3).astype(np.int8)
        n = ev.shape[0]
        slots = self._slots(key)
        out = Transitions(
            tsc.astype(np.int64),
            key,
            np.empty(n, np.int8),
            np.empty(n, np.int64),
            np.empty(n, np.int8),
            np.empty(n, np.int16),
            np.empty(n, np.int16),
            np.empty(n, np.int64),
        )
        _track(
            slots,
            old,
            new,
            out.t,
            cpu.astype(np.int64),
            self._state,
            self._since,
            self._pcpu,
            self._open,
            out.prev_state,
            out.prev_since,
            out.new_state,
            out.pcpu_end,
            out.pcpu_begin,
            out.kicked,
        )
        kicked = out.kicked >= 0
        out.kicked[kicked] = self.keys[out.kicked[kicked]]
        return out

    def open_intervals(self) -> list[tuple[int, int, int]]:
        """``(key, state, since)`` of every vCPU whose current state has not ended."""
        return [
            (int(k), int(self._state[s]), int(self._since[s]))
            for k, s in self._slot.items()
            if self._state[s] >= 0
        ]

    def open_pcpus(self) -> list[tuple[int, int]]:
        """``(pcpu, key)`` of every pCPU slice still open."""
        busy = np.nonzero(self._open >= 0)[0]
        return [(int(p), int(self.keys[self._open[p]])) for p in busy]
