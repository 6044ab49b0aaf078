"""Which vCPU each record belongs to: the current vCPU of its pCPU, per pCPU, in file order.

Two attributions are kept side by side for every pCPU:

* **xenalyze** (``compat``): exactly the records that change ``p->current`` in xenalyze -
  runstate ``X->running`` and continue-running make the vCPU current, ``running->X`` leaves the
  pCPU with none, a lost record makes its ``(did, vid)`` current; switch records are ignored
  (xenalyze quirk Q6).
* **ours** (``switch``): the same, plus ``sched_switch`` (both generations, ``0x0002800a`` and
  the seed's ``0x0002f00a``) makes its ``next`` vCPU current, so seed-generation traces without
  runstate records are attributed; ``running->X`` only clears the pCPU when that vCPU was the
  current one.

Both start with the pre-scheduling bucket ``d[DEFAULT]v<pcpu>``. The state machine is
sequential per pCPU only, so it runs on file order or time order alike. A record is attributed
to the vCPU current *before* it (a scheduling record belongs to the vCPU it switches away from,
as in xenalyze's dump header).

The xenalyze attribution is a per-pCPU shadow of the runstate engine's ``p->current``
(:mod:`.engine`, which needs every pCPU merged in time order and so cannot run inline with the
counting): it follows the engine's rules that depend on the record alone - vCPU numbers above
xenalyze's ``MAX_CPUS`` are ignored, a lost record makes its vCPU current only when it is a
4-word timed record whose ``first_tsc`` is before its own TSC, pCPUs above ``MAX_CPUS`` have no
default vCPU. Rules that depend on the tracked runstates of vCPUs (a record whose old state
disagrees with the tracked one, "possible TSC skew"; a vCPU's first record ``running->X`` while
another vCPU is current) are the engine's alone; they only arise in traces where xenalyze
reports skew or would stop. ``tests/analysis/test_attribution.py`` checks that the two agree
after every scheduling record of the real traces and of hand-built edge cases.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .keys import DEFAULT_DOMAIN, DOMAIN_SHIFT, NONE_KEY, XENALYZE_MAX_VID

EV_LOST = 0x0001F001
EV_SWITCH = 0x0002800A
EV_SWITCH_SEED = 0x0002F00A
EV_HYPERCALL_V2 = 0x0020100D
EV_SUBCALL = 0x0020200E
HC_MULTICALL = 13

# per-pCPU state columns
S_SEEN = 0
S_CUR = 1  # ours
S_CUR_X = 2  # xenalyze
S_FIRST_TSC = 3  # first timed TSC
S_LAST_TSC = 4  # last TSC (timed)
S_ROWS = 5
S_MC_PARENT = 6  # file offset of the last multicall hypercall record, -1 = none
S_MC_INDEX = 7  # sub-calls seen since it
S_SLOT = 8  # cached stats slot of S_CUR (-2 = not looked up yet), used by pvstats
S_SLOT_X = 9  # cached stats slot of S_CUR_X (-2 = not looked up, -1 = not counted)
S_NCOLS = 10

NPCPU = 4096


def new_state(npcpu: int = NPCPU) -> np.ndarray:
    """Fresh per-pCPU attribution state."""
    st = np.zeros((npcpu, S_NCOLS), dtype=np.int64)
    st[:, S_MC_PARENT] = -1
    st[:, S_SLOT] = -2
    st[:, S_SLOT_X] = -2
    return st


@njit(cache=True, inline="always")
def vkey(dom, vcpu):
    return (np.int64(dom) << DOMAIN_SHIFT) | (np.int64(vcpu) & 0xFFFF)


@njit(cache=True, inline="always")
def first_keys(pcpu):
    """``(ours, xenalyze's)`` current vCPU of a pCPU before its first scheduling record."""
    k = vkey(DEFAULT_DOMAIN, pcpu)
    return k, (k if pcpu <= XENALYZE_MAX_VID else NONE_KEY)


@njit(cache=True, inline="always")
def is_step_event(ev):
    """Whether a record can change a pCPU's current vCPU (see :func:`step`)."""
    return (ev >> 16) == 0x002 or ev == EV_LOST


@njit(cache=True, inline="always")
def step(cur, curx, ev, nw, w0, w1, w2, w3, tsc, untimed):
    """A record's effect on its pCPU's current vCPU (ours, xenalyze's).

    Scalars in, scalars out - hot loops call this per record: the id, payload word count and
    first four words, the TSC and whether the record has none. Returns ``(cur, curx, kind)``
    where kind is the runstate engine's record kind: -1 none, 0 runstate change,
    1 continue running, 2 lost records.
    """
    main = ev >> 16
    if main == 0x002:
        sub = (ev >> 12) & 0xF
        if sub == 1:
            if nw < 1:
                return cur, curx, -1
            key = vkey(w0 >> 16, w0 & 0xFFFF)
            # the engine ignores vCPU numbers above xenalyze's MAX_CPUS
            seen_x = (w0 & 0xFFFF) <= XENALYZE_MAX_VID
            lo = ev & 0xF
            if lo == 1:
                old = (ev >> 8) & 0xF
                new = (ev >> 4) & 0xF
                if new == 0:
                    return key, (key if seen_x else curx), 0
                if old == 0:
                    if cur == key or (cur >> DOMAIN_SHIFT) == DEFAULT_DOMAIN:
                        cur = NONE_KEY
                    return cur, (NONE_KEY if seen_x else curx), 0
                return cur, curx, 0
            if lo == 2:
                return key, (key if seen_x else curx), 1
            return cur, curx, -1
        if (ev == EV_SWITCH or ev == EV_SWITCH_SEED) and nw >= 4:
            return vkey(w2, w3), curx, -1
        return cur, curx, -1
    if ev == EV_LOST:
        if nw >= 2:
            cur = vkey(w1 & 0xFFFF, w1 >> 16)
        if nw != 4:
            return cur, curx, -1  # xenalyze: "unexpected extra words", the engine skips it
        # first pass: nothing current; second pass (at the record's own TSC, only if later
        # than first_tsc): the named vCPU, unless its number is past MAX_CPUS
        first = w2 | (w3 << 32)
        curx = NONE_KEY
        if not untimed and tsc > first and (w1 >> 16) <= XENALYZE_MAX_VID:
            curx = vkey(w1 & 0xFFFF, w1 >> 16)
        return cur, curx, 2
    return cur, curx, -1


@njit(cache=True, nogil=True)
def attribute_rows(
    cpu, tsc, flags, event, nwords, words, offset, st, out_cur, out_cur_x, out_parent, out_subidx
):
    """Per-row attribution (ours and xenalyze's) and multicall linking, state in ``st``.

    ``out_parent[i]`` is the file offset of the multicall hypercall record a sub-call belongs
    to (-1 if none), ``out_subidx[i]`` its position in it (-1 for others). A multicall's
    sub-calls follow it on its pCPU while the same vCPU is current: the link is dropped when
    our current vCPU changes, at a lost record, and at the next hypercall v2 record.
    """
    n = cpu.shape[0]
    for i in range(n):
        c = np.int64(cpu[i])
        if st[c, S_SEEN] == 0:
            st[c, S_SEEN] = 1
            k, kx = first_keys(c)
            st[c, S_CUR] = k
            st[c, S_CUR_X] = kx
        untimed = (flags[i] & 1) != 0
        t = np.int64(tsc[i])
        if not untimed:
            if st[c, S_FIRST_TSC] == 0:
                st[c, S_FIRST_TSC] = t
            st[c, S_LAST_TSC] = t
        st[c, S_ROWS] += 1
        out_cur[i] = st[c, S_CUR]
        out_cur_x[i] = st[c, S_CUR_X]
        ev = np.int64(event[i])
        out_parent[i] = -1
        out_subidx[i] = -1
        if ev == EV_HYPERCALL_V2:
            if nwords[i] >= 1 and (np.int64(words[i, 0]) & 0xFFFFF) == HC_MULTICALL:
                st[c, S_MC_PARENT] = offset[i]
                st[c, S_MC_INDEX] = 0
            else:
                st[c, S_MC_PARENT] = -1
        elif ev == EV_SUBCALL:
            out_parent[i] = st[c, S_MC_PARENT]
            if st[c, S_MC_PARENT] >= 0:
                out_subidx[i] = st[c, S_MC_INDEX]
                st[c, S_MC_INDEX] += 1
        elif is_step_event(ev):
            cur, curx, _kind = step(
                st[c, S_CUR],
                st[c, S_CUR_X],
                ev,
                np.int64(nwords[i]),
                np.int64(words[i, 0]),
                np.int64(words[i, 1]),
                np.int64(words[i, 2]),
                np.int64(words[i, 3]),
                t,
                untimed,
            )
            if cur != st[c, S_CUR] or ev == EV_LOST:
                st[c, S_MC_PARENT] = -1
            st[c, S_CUR] = cur
            st[c, S_CUR_X] = curx
