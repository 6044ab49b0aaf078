"""xenalyze's scheduler state machine: runstates, domain runstates, cpu affinity, lost records.

The engine sees only the records that change runstate accounting - runstate changes,
continue-running, lost records - plus one end-of-stream marker per pCPU. It merges them per
pCPU exactly as xenalyze does (``order_tsc``: lost records first at their ``first_tsc``, then
again at their own TSC; inferred TSC-skew offsets applied to records read later; ties go to
the pCPU processed last) and applies xenalyze's rules (spec ``xenalyze-reference.md`` §1.3-§1.5,
§3, §5; HEAD's ``vcpu_start``: a vCPU's first record ``X->running`` makes it current without
starting cpu-affinity accounting).

Input arrives in batches in any order that keeps each pCPU's records in file order; the merge
only advances while every pCPU that may still produce records has one queued (or cannot
produce an earlier one), so memory stays bounded by the reorder distance, not the file size.
Where xenalyze would abort (``FATAL`` asserts) the engine counts the event and goes on.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .keys import DEFAULT_DOMAIN, DOMAIN_SHIFT, XENALYZE_MAX_VID
from .percentile import SAMPLE_MAX

# ---- record kinds in the queue (0: runstate change) --------------------------------------------
K_CONTINUE = 1
K_LOST = 2
K_DEACT = 3

# ---- runstates (xenalyze numbering) ------------------------------------------------------------
RS_RUNNING = 0
RS_RUNNABLE = 1
RS_BLOCKED = 2
RS_OFFLINE = 3
RS_LOST = 4
RS_QUEUED = 5
RS_INIT = 6
RS_MAX = 7
RUNSTATE_NAMES = ("running", "runnable", "blocked", "offline", "lost", "queued", "init")
RUNNABLE_NAMES = ("invalid", "wake", "preempt", "other")
DOMAIN_RUNSTATE_NAMES = (
    "blocked",
    "partial run",
    "full run",
    "partial contention",
    "concurrency_hazard",
    "full_contention",
    "lost",
)
DRS_BLOCKED, DRS_PARTIAL_RUN, DRS_FULL_RUN = 0, 1, 2
DRS_PARTIAL_CONT, DRS_HAZARD, DRS_FULL_CONT, DRS_LOST = 3, 4, 5, 6

IDLE_DOMAIN = 0x7FFF
MAX_VID = XENALYZE_MAX_VID  # xenalyze's MAX_CPUS: records with a larger vCPU number are ignored
MAX_AFF_PCPUS = 256

# ---- per-pCPU state columns ------------------------------------------------------------------
P_ACTIVE = 0
P_CURRENT = 1  # vcpu index, -1 = NULL
P_FIRST_TSC = 2  # first timed TSC of the pCPU (any record), 0 = none yet
P_LAST_TSC = 3  # last TSC read from the pCPU (xenalyze p->last_tsc, skew included)
P_ORDER = 4  # order_tsc of the head record
P_SKEW = 5
P_DOWNSTREAM = 6
P_LOST_ACTIVE = 7
P_LOST_TSC = 8
P_LOST_DVALID = 9
P_LOST_DID = 10
P_LOST_VID = 11
P_SEEN_VALID = 12
P_HEAD = 13  # queue index of the head record, -1 = empty
P_TAIL = 14
P_PLACED = 15  # tie-break: larger = placed more recently
P_HEAD_READ = 16  # 1 once the head was "read" (order key computed)
P_LOST_END = 17  # 1 while the head is a lost record's second pass
P_HEAD_TSC = 18  # ri->tsc of the head (skew included)
P_NCOLS = 20

# ---- per-vCPU state columns --------------------------------------------------------------------
V_DOM = 0  # domain index
V_VID = 1
V_STATE = 2
V_RSTATE = 3  # runnable sub-state
V_RS_TSC = 4
V_LO_WRONG = 5
V_LO_ACTUAL = 6
V_LO_PID = 7
V_LO_TSC = 8
V_P = 9  # pcpu, -1 = none
V_PCPU_TSC = 10
V_ACTIVATED = 11
V_NCOLS = 12

# ---- per-domain state columns ------------------------------------------------------------------
D_DID = 0
D_RUNSTATE = 1
D_RS_TSC = 2
D_MAX_VID = 3
D_NCOLS = 4

# ---- summary ids -------------------------------------------------------------------------------
VS_STRIDE = 12  # per vCPU: 7 runstates, 4 runnable sub-states, cpu affinity (all)
VS_AFF = 11
DS_STRIDE = 7
CS_EVENTS = 0
CS_COUNT = 1
CS_CYCLES = 2

# ---- meta counters -----------------------------------------------------------------------------
M_NSAMP = 0
M_NVCPU = 1
M_NDOM = 2
M_NAFF = 3
M_LOST_CPUS = 4
M_PLACED = 5
M_FATAL = 6  # events where xenalyze would have exited
M_SKEW_EVENTS = 7
M_SKEW_LOOPS = 8
M_STRANGE = 9
M_LAST_PROC = 10  # pcpu processed last (-1)
M_PROCESSED = 11
M_NMETA = 16

# status codes of run()
ST_OK = 0
ST_GROW_SAMPLES = 1
ST_GROW_VCPUS = 2
ST_GROW_DOMAINS = 3
ST_GROW_AFF = 4

DEFAULT_DOMAIN_INDEX = 0
#: "No limit" for TSC bounds and clipping (every TSC is handled as int64).
TMAX = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True, _nrt=False)
def _sample(cs, samp_sid, samp_val, meta, sid, t0, t1, clip_lo, clip_hi):
    """xenalyze ``update_cycles(s, t1 - t0)``, with the interval clipped to the time filter."""
    cs[sid, CS_EVENTS] += 1
    if clip_lo > 0 or clip_hi < TMAX:
        if t0 < clip_lo:
            t0 = clip_lo
        if t1 > clip_hi:
            t1 = clip_hi
        if t1 <= t0:
            return True
    c = t1 - t0
    if c == 0:
        return True
    n = meta[M_NSAMP]
    if n >= samp_sid.shape[0]:
        return False
    samp_sid[n] = sid
    samp_val[n] = c
    meta[M_NSAMP] = n + 1
    cs[sid, CS_COUNT] += 1
    cs[sid, CS_CYCLES] += c
    return True


@njit(cache=True, _nrt=False)
def _domain_runstate(dm, dvid, vc, d, meta):
    if d == DEFAULT_DOMAIN_INDEX:
        return 0
    nv = 0
    running = 0
    runnable = 0
    blocked = 0  # blocked or offline
    lost = 0
    for i in range(dm[d, D_MAX_VID] + 1):
        v = dvid[d, i]
        if v >= 0:
            st = vc[v, V_STATE]
            if st != RS_INIT:
                nv += 1
                running += st == RS_RUNNING
                runnable += st == RS_RUNNABLE
                blocked += st == RS_BLOCKED or st == RS_OFFLINE
                lost += st == RS_LOST
    if lost == nv:
        return DRS_LOST
    if running:
        if runnable:
            return DRS_HAZARD
        if blocked:
            return DRS_PARTIAL_RUN
        return DRS_FULL_RUN
    if runnable:
        if blocked:
            return DRS_PARTIAL_CONT
        return DRS_FULL_CONT
    if blocked:
        return DRS_BLOCKED
    meta[M_FATAL] += 1  # "Strange, no meaningful runstates": xenalyze asserts
    return DRS_LOST


@njit(cache=True, _nrt=False)
def _runstate_update(vc, dm, dvid, cs, samp_sid, samp_val, meta, v, new, tsc, dbase, clo, chi):
    """xenalyze ``runstate_update``. Returns False when the sample log is full."""
    ok = True
    rt = vc[v, V_RS_TSC]
    st = vc[v, V_STATE]
    if rt > 0 and rt < tsc:
        ok &= _sample(cs, samp_sid, samp_val, meta, v * VS_STRIDE + st, rt, tsc, clo, chi)
        if st == RS_RUNNABLE:
            ok &= _sample(
                cs,
                samp_sid,
                samp_val,
                meta,
                v * VS_STRIDE + RS_MAX + vc[v, V_RSTATE],
                rt,
                tsc,
                clo,
                chi,
            )
    if new == RS_RUNNABLE:
        if st == RS_RUNNING:
            vc[v, V_RSTATE] = 2  # preempt
        elif st == RS_BLOCKED or st == RS_OFFLINE:
            vc[v, V_RSTATE] = 1  # wake
        else:
            vc[v, V_RSTATE] = 3  # other
    else:
        vc[v, V_RSTATE] = 0
    vc[v, V_STATE] = new
    vc[v, V_RS_TSC] = tsc
    d = vc[v, V_DOM]
    drt = dm[d, D_RS_TSC]
    if drt > 0 and drt < tsc:
        ok &= _sample(
            cs,
            samp_sid,
            samp_val,
            meta,
            dbase + d * DS_STRIDE + dm[d, D_RUNSTATE],
            drt,
            tsc,
            clo,
            chi,
        )
    dm[d, D_RUNSTATE] = _domain_runstate(dm, dvid, vc, d, meta)
    dm[d, D_RS_TSC] = tsc
    return ok


@njit(cache=True, _nrt=False)
def _vcpu_find(did_map, dm, dvid, vc, meta, did, vid):
    """Index of vCPU (did, vid), creating the domain and vCPU if needed; -2/-3 = need room."""
    d = did_map[did]
    if d < 0:
        d = meta[M_NDOM]
        if d >= dm.shape[0]:
            return -3
        did_map[did] = d
        dm[d, D_DID] = did
        dm[d, D_RUNSTATE] = 0
        dm[d, D_RS_TSC] = 0
        dm[d, D_MAX_VID] = -1
        meta[M_NDOM] = d + 1
    v = dvid[d, vid]
    if v < 0:
        v = meta[M_NVCPU]
        if v >= vc.shape[0]:
            return -2
        for c in range(V_NCOLS):
            vc[v, c] = 0
        vc[v, V_DOM] = d
        vc[v, V_VID] = vid
        vc[v, V_STATE] = RS_INIT
        vc[v, V_LO_WRONG] = RS_INIT
        vc[v, V_P] = -1
        dvid[d, vid] = v
        if vid > dm[d, D_MAX_VID]:
            dm[d, D_MAX_VID] = vid
        meta[M_NVCPU] = v + 1
    return v


@njit(cache=True, _nrt=False)
def _aff_sid(aff, meta, v, p, abase, ns):
    if p >= MAX_AFF_PCPUS:
        return -1
    s = aff[v, p]
    if s < 0:
        n = meta[M_NAFF]
        if abase + n >= ns:
            return -2
        s = abase + n
        aff[v, p] = s
        meta[M_NAFF] = n + 1
    return s


@njit(cache=True, _nrt=False)
def _prev_update(pc, vc, dm, dvid, cs, ss, sv, meta, p, v, tsc, new, dbase, clo, chi):
    if p < 0:
        meta[M_FATAL] += 1  # prev->p NULL: xenalyze dereferences it
        vc[v, V_RS_TSC] = 0
    elif vc[v, V_P] != p:
        meta[M_STRANGE] += 1
        vc[v, V_RS_TSC] = 0
    elif pc[p, P_CURRENT] < 0:
        meta[M_FATAL] += 1  # "vcpu_prev_update: FATAL: p->current NULL!"
    elif pc[p, P_CURRENT] != v:
        meta[M_STRANGE] += 1
        vc[v, V_RS_TSC] = 0
    elif vc[v, V_STATE] != RS_RUNNING:
        meta[M_STRANGE] += 1
        vc[v, V_RS_TSC] = 0
    if p >= 0:
        pc[p, P_CURRENT] = -1
    return _runstate_update(vc, dm, dvid, cs, ss, sv, meta, v, new, tsc, dbase, clo, chi)


@njit(cache=True, _nrt=False)
def _next_update(pc, vc, dm, dvid, cs, ss, sv, meta, aff, p, v, tsc, dbase, abase, clo, chi):
    """Returns 0 ok, 1 sample log full, 4 affinity table full."""
    ok = True
    cur = pc[p, P_CURRENT]
    if cur >= 0:
        if pc[p, P_SEEN_VALID] == 0:
            ok &= _runstate_update(
                vc, dm, dvid, cs, ss, sv, meta, cur, RS_LOST, tsc, dbase, clo, chi
            )
            pc[p, P_CURRENT] = -1
        else:
            meta[M_FATAL] += 1  # "vcpu_next_update: FATAL: p->current not NULL!"
            ok &= _runstate_update(
                vc, dm, dvid, cs, ss, sv, meta, cur, RS_LOST, tsc, dbase, clo, chi
            )
            pc[p, P_CURRENT] = -1
    if vc[v, V_ACTIVATED]:
        if vc[v, V_STATE] == RS_RUNNING and vc[v, V_DOM] != DEFAULT_DOMAIN_INDEX:
            meta[M_STRANGE] += 1
            vc[v, V_RS_TSC] = 0
        if vc[v, V_P] != p:
            pt = vc[v, V_PCPU_TSC]
            if pt != 0:
                s1 = v * VS_STRIDE + VS_AFF
                s2 = _aff_sid(aff, meta, v, p, abase, cs.shape[0])
                if s2 == -2:
                    return 4
                ok &= _sample(cs, ss, sv, meta, s1, pt, tsc, clo, chi)
                if s2 >= 0:
                    ok &= _sample(cs, ss, sv, meta, s2, pt, tsc, clo, chi)
            vc[v, V_PCPU_TSC] = tsc
    else:
        vc[v, V_ACTIVATED] = 1
        vc[v, V_PCPU_TSC] = tsc
    ok &= _runstate_update(vc, dm, dvid, cs, ss, sv, meta, v, RS_RUNNING, tsc, dbase, clo, chi)
    vc[v, V_P] = p
    pc[p, P_CURRENT] = v
    pc[p, P_SEEN_VALID] = 1
    return 0 if ok else 1


@njit(cache=True, _nrt=False)
def _lose_vcpu(vc, dm, dvid, cs, ss, sv, meta, v, tsc, dbase, clo, chi):
    return _runstate_update(vc, dm, dvid, cs, ss, sv, meta, v, RS_LOST, tsc, dbase, clo, chi)


@njit(cache=True, _nrt=False)
def _read_head(pc, q_tsc, q_kind, q_untimed, q_w, p):
    """xenalyze ``__fill_in_record_info`` for the head of ``p``'s queue."""
    h = pc[p, P_HEAD]
    if q_untimed[h]:
        pc[p, P_HEAD_TSC] = pc[p, P_LAST_TSC]
    else:
        tsc = np.int64(q_tsc[h]) + pc[p, P_SKEW]
        pc[p, P_HEAD_TSC] = tsc
        if pc[p, P_FIRST_TSC] == 0:
            pc[p, P_FIRST_TSC] = tsc
        if q_kind[h] == K_LOST:
            pc[p, P_ORDER] = np.int64(q_w[h, 2] | (q_w[h, 3] << 32)) + pc[p, P_SKEW]
        else:
            pc[p, P_ORDER] = tsc
        pc[p, P_LAST_TSC] = tsc
    pc[p, P_HEAD_READ] = 1
    pc[p, P_LOST_END] = 0


@njit(cache=True, _nrt=False, nogil=True)
def run_engine(
    pc,
    vc,
    dm,
    dvid,
    did_map,
    cs,
    ss,
    sv,
    meta,
    aff,
    q_cpu,
    q_kind,
    q_tsc,
    q_untimed,
    q_w,
    q_next,
    q_ev,
    q_seq,
    cur_log,
    bound,
    final,
    dbase,
    abase,
    clo,
    chi,
    force_upto,
    npc,
):
    """Process queued records in xenalyze's merge order as far as safely possible.

    ``bound[p]`` is a lower bound on the TSC of any record pCPU ``p`` may still deliver
    (``TMAX`` when it is finished). Records are processed while the smallest head is no later
    than every bound of a pCPU with an empty queue (``force_upto`` lifts this for memory).
    Only pCPUs below ``npc`` are considered. Returns a status (``ST_*``). When ``cur_log`` is
    not empty, ``cur_log[q_seq[h]]`` receives the key of the pCPU's current vCPU (``p->current``)
    after queue entry ``h`` is consumed (entries with ``q_seq`` -1 are not logged).
    """
    while True:
        # choose the active pCPU with the smallest order key; ties -> placed most recently
        best = -1
        for p in range(npc):
            if pc[p, P_HEAD] < 0:
                continue
            if pc[p, P_HEAD_READ] == 0:
                _read_head(pc, q_tsc, q_kind, q_untimed, q_w, p)
            if best < 0:
                best = p
                continue
            a = pc[p, P_ORDER]
            b = pc[best, P_ORDER]
            if a < b or (a == b and pc[p, P_PLACED] > pc[best, P_PLACED]):
                best = p
        if best < 0:
            return ST_OK
        key = pc[best, P_ORDER]
        if not final and key > force_upto:
            for p in range(npc):
                if pc[p, P_HEAD] < 0 and key > bound[p]:
                    return ST_OK
        p = best
        h = pc[p, P_HEAD]
        kind = q_kind[h]
        tsc = pc[p, P_HEAD_TSC]
        status = ST_OK
        ok = True
        consumed = True
        if kind == K_DEACT:
            cur = pc[p, P_CURRENT]
            if cur >= 0:
                ok &= _lose_vcpu(
                    vc, dm, dvid, cs, ss, sv, meta, cur, pc[p, P_LAST_TSC], dbase, clo, chi
                )
            pc[p, P_ACTIVE] = 0
        elif kind == K_LOST:
            if pc[p, P_LOST_END] == 0:
                status = _lost_start(pc, vc, dm, dvid, cs, ss, sv, meta, p, h, q_w, dbase, clo, chi)
                if status == ST_OK:
                    consumed = False
                    pc[p, P_LOST_END] = 1
                    if tsc > pc[p, P_ORDER]:
                        pc[p, P_ORDER] = tsc
                    else:
                        meta[M_FATAL] += 1  # "Strange, lost_record ri->tsc !> order_tsc"
            else:
                status = _lost_end(
                    pc, vc, dm, dvid, did_map, cs, ss, sv, meta, aff, p, tsc, dbase, abase, clo, chi
                )
        else:
            status = _sched_record(
                pc,
                vc,
                dm,
                dvid,
                did_map,
                cs,
                ss,
                sv,
                meta,
                aff,
                p,
                h,
                kind,
                q_ev[h],
                q_w[h, 0],
                tsc,
                dbase,
                abase,
                clo,
                chi,
            )
        if not ok:
            status = ST_GROW_SAMPLES
        if status != ST_OK:
            return status
        meta[M_PROCESSED] += 1
        meta[M_LAST_PROC] = p
        meta[M_PLACED] += 1
        pc[p, P_PLACED] = meta[M_PLACED]
        if consumed:
            if cur_log.shape[0] > 0 and q_seq[h] >= 0:
                cur_log[q_seq[h]] = _current_key(pc, vc, dm, p)
            nxt = q_next[h]
            pc[p, P_HEAD] = nxt
            if nxt < 0:
                pc[p, P_TAIL] = -1
            pc[p, P_HEAD_READ] = 0


@njit(cache=True, _nrt=False)
def _current_key(pc, vc, dm, p):
    """``p->current`` as an attribution key (see :mod:`.keys`; -1 = NULL)."""
    v = pc[p, P_CURRENT]
    if v < 0:
        return np.int64(-1)
    d = vc[v, V_DOM]
    did = DEFAULT_DOMAIN if d == DEFAULT_DOMAIN_INDEX else dm[d, D_DID]
    return (np.int64(did) << DOMAIN_SHIFT) | vc[v, V_VID]


@njit(cache=True, _nrt=False)
def _lost_start(pc, vc, dm, dvid, cs, ss, sv, meta, p, h, q_w, dbase, clo, chi):
    ok = True
    first = pc[p, P_ORDER]  # first_tsc + skew
    cur = pc[p, P_CURRENT]
    if cur >= 0:
        ok &= _prev_update(
            pc, vc, dm, dvid, cs, ss, sv, meta, p, cur, first, RS_LOST, dbase, clo, chi
        )
    if pc[p, P_LOST_ACTIVE] == 0:
        meta[M_LOST_CPUS] += 1
    else:
        meta[M_STRANGE] += 1
    pc[p, P_LOST_ACTIVE] = 1
    pc[p, P_LOST_TSC] = first
    nd = meta[M_NDOM]
    for d in range(1, nd):  # every domain but the default one
        for i in range(dm[d, D_MAX_VID] + 1):
            v = dvid[d, i]
            if v >= 0 and vc[v, V_STATE] != RS_RUNNING:
                ok &= _lose_vcpu(vc, dm, dvid, cs, ss, sv, meta, v, first, dbase, clo, chi)
    pc[p, P_LOST_DVALID] = 1
    pc[p, P_LOST_DID] = q_w[h, 1] & 0xFFFF
    pc[p, P_LOST_VID] = (q_w[h, 1] >> 16) & 0xFFFF
    return ST_OK if ok else ST_GROW_SAMPLES


@njit(cache=True, _nrt=False)
def _lost_end(pc, vc, dm, dvid, did_map, cs, ss, sv, meta, aff, p, tsc, dbase, abase, clo, chi):
    if pc[p, P_LOST_ACTIVE] == 0:
        meta[M_FATAL] += 1  # "lost_records_end but pid not lost"
        return ST_OK
    if tsc > pc[p, P_LOST_TSC]:
        if pc[p, P_LOST_DVALID]:
            did = pc[p, P_LOST_DID]
            vid = pc[p, P_LOST_VID]
            if pc[p, P_CURRENT] >= 0:
                meta[M_FATAL] += 1  # "lost_record valid, but current"
                return ST_OK
            if vid > MAX_VID:
                meta[M_FATAL] += 1
                return ST_OK
            v = _vcpu_find(did_map, dm, dvid, vc, meta, did, vid)
            if v == -2:
                return ST_GROW_VCPUS
            if v == -3:
                return ST_GROW_DOMAINS
            r = _next_update(
                pc, vc, dm, dvid, cs, ss, sv, meta, aff, p, v, tsc, dbase, abase, clo, chi
            )
            if r == 1:
                return ST_GROW_SAMPLES
            if r == 4:
                return ST_GROW_AFF
            pc[p, P_LOST_DVALID] = 0
            pc[p, P_SEEN_VALID] = 0
        pc[p, P_LOST_ACTIVE] = 0
        meta[M_LOST_CPUS] -= 1
    return ST_OK


@njit(cache=True, _nrt=False)
def _vcpu_start(
    pc, vc, dm, dvid, cs, ss, sv, meta, p, v, tsc, to_running, is_continue, dbase, clo, chi
):
    """HEAD's ``vcpu_start``: a vCPU's first scheduling record."""
    ok = True
    if to_running and not is_continue:
        # X->running: current at the record's TSC, replacing whatever was current
        ok &= _runstate_update(vc, dm, dvid, cs, ss, sv, meta, v, RS_RUNNING, tsc, dbase, clo, chi)
        pc[p, P_CURRENT] = v
        vc[v, V_P] = p
        return ok
    cur = pc[p, P_CURRENT]
    if cur < 0 or vc[cur, V_DOM] != DEFAULT_DOMAIN_INDEX:
        meta[M_FATAL] += 1  # "Strange, p->current not default domain!" (ERR_FILE)
        return ok
    first = pc[p, P_FIRST_TSC]
    ok &= _runstate_update(vc, dm, dvid, cs, ss, sv, meta, cur, RS_QUEUED, first, dbase, clo, chi)
    pc[p, P_CURRENT] = -1
    if is_continue:
        # running->running: it has been running since the pCPU's first record
        ok &= _runstate_update(
            vc, dm, dvid, cs, ss, sv, meta, v, RS_RUNNING, first, dbase, clo, chi
        )
        pc[p, P_CURRENT] = v
        vc[v, V_P] = p
    # running->X: the vCPU stays in INIT until it is seen to start running
    return ok


@njit(cache=True, _nrt=False)
def _sched_record(
    pc,
    vc,
    dm,
    dvid,
    did_map,
    cs,
    ss,
    sv,
    meta,
    aff,
    p,
    h,
    kind,
    ev,
    w0,
    tsc,
    dbase,
    abase,
    clo,
    chi,
):
    """xenalyze ``sched_runstate_process`` for one runstate change / continue record."""
    if kind == K_CONTINUE:
        new = RS_RUNNING
        old = RS_RUNNING
    else:
        new = (ev >> 4) & 0xF
        old = (ev >> 8) & 0xF
    vid = w0 & 0xFFFF
    did = (w0 >> 16) & 0xFFFF
    if vid > MAX_VID:
        return ST_OK
    v = _vcpu_find(did_map, dm, dvid, vc, meta, did, vid)
    if v == -2:
        return ST_GROW_VCPUS
    if v == -3:
        return ST_GROW_DOMAINS
    lo_wrong = vc[v, V_LO_WRONG]
    lo_actual = vc[v, V_LO_ACTUAL]
    lo_tsc = vc[v, V_LO_TSC]
    lo_pid = vc[v, V_LO_PID]
    vc[v, V_LO_WRONG] = RS_INIT
    state = vc[v, V_STATE]
    ok = True
    if state != old and state != RS_INIT:
        if state == RS_LOST:
            if new != RS_RUNNING:
                return ST_OK
        elif lo_wrong == new and lo_actual == old:
            if tsc < lo_tsc:
                return ST_OK
            p2 = lo_pid
            lag = tsc - lo_tsc
            pc[p2, P_DOWNSTREAM] |= pc[p, P_DOWNSTREAM]
            if p < 32:
                pc[p2, P_DOWNSTREAM] |= np.int64(1) << p
            if p2 < 32 and (pc[p2, P_DOWNSTREAM] >> p2) & 1:
                meta[M_SKEW_LOOPS] += 1
                for i in range(pc.shape[0]):
                    pc[i, P_SKEW] = 0
                    pc[i, P_DOWNSTREAM] = 0
                return ST_OK
            pc[p2, P_SKEW] += lag * 2
            meta[M_SKEW_EVENTS] += 1
            return ST_OK
        else:
            vc[v, V_LO_WRONG] = old
            vc[v, V_LO_ACTUAL] = state
            vc[v, V_LO_TSC] = tsc
            vc[v, V_LO_PID] = p
            if state == RS_RUNNING:
                return ST_OK
    # update
    if state == RS_INIT:
        if kind == K_CONTINUE or old == RS_RUNNING or new == RS_RUNNING:
            ok &= _vcpu_start(
                pc,
                vc,
                dm,
                dvid,
                cs,
                ss,
                sv,
                meta,
                p,
                v,
                tsc,
                new == RS_RUNNING,
                kind == K_CONTINUE,
                dbase,
                clo,
                chi,
            )
        return ST_OK if ok else ST_GROW_SAMPLES
    if kind == K_CONTINUE:
        if state == RS_LOST:
            cur = pc[p, P_CURRENT]
            if cur >= 0:
                ok &= _prev_update(
                    pc, vc, dm, dvid, cs, ss, sv, meta, p, cur, tsc, RS_LOST, dbase, clo, chi
                )
            r = _next_update(
                pc, vc, dm, dvid, cs, ss, sv, meta, aff, p, v, tsc, dbase, abase, clo, chi
            )
            if r == 4:
                return ST_GROW_AFF
            ok &= r == 0
        elif state != RS_RUNNING:
            meta[M_FATAL] += 1
        elif vc[v, V_P] != p:
            meta[M_FATAL] += 1
        ok &= _runstate_update(vc, dm, dvid, cs, ss, sv, meta, v, RS_RUNNING, tsc, dbase, clo, chi)
    elif old == RS_RUNNING or state == RS_RUNNING:
        if old == RS_RUNNING:
            if state != RS_RUNNING and state != RS_LOST:
                meta[M_FATAL] += 1
            ok &= _prev_update(pc, vc, dm, dvid, cs, ss, sv, meta, p, v, tsc, new, dbase, clo, chi)
        else:
            q = vc[v, V_P]
            ok &= _prev_update(pc, vc, dm, dvid, cs, ss, sv, meta, q, v, tsc, new, dbase, clo, chi)
        if meta[M_LOST_CPUS] and dm[vc[v, V_DOM], D_DID] != IDLE_DOMAIN:
            ok &= _lose_vcpu(vc, dm, dvid, cs, ss, sv, meta, v, tsc, dbase, clo, chi)
    elif new == RS_RUNNING:
        r = _next_update(pc, vc, dm, dvid, cs, ss, sv, meta, aff, p, v, tsc, dbase, abase, clo, chi)
        if r == 4:
            return ST_GROW_AFF
        ok &= r == 0
    else:
        ok &= _runstate_update(vc, dm, dvid, cs, ss, sv, meta, v, new, tsc, dbase, clo, chi)
    return ST_OK if ok else ST_GROW_SAMPLES


@njit(cache=True, _nrt=False)
def link_queue(pc, q_cpu, q_next, start, end):
    """Append queue entries ``[start, end)`` to their pCPUs' FIFOs."""
    for i in range(start, end):
        p = q_cpu[i]
        q_next[i] = -1
        t = pc[p, P_TAIL]
        if t < 0:
            pc[p, P_HEAD] = i
            pc[p, P_HEAD_READ] = 0
        else:
            q_next[t] = i
        pc[p, P_TAIL] = i


@njit(cache=True)
def group_samples(ss, sv, n, ns):
    """Samples grouped by summary id, in arrival order: (starts[ns+1], values)."""
    counts = np.zeros(ns + 1, dtype=np.int64)
    for i in range(n):
        counts[ss[i] + 1] += 1
    for s in range(ns):
        counts[s + 1] += counts[s]
    pos = counts[:-1].copy()
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        s = ss[i]
        out[pos[s]] = sv[i]
        pos[s] += 1
    return counts, out


class XenalyzeEngine:
    """Streaming driver of the compiled engine: feed scheduling rows, then :meth:`finish`."""

    def __init__(
        self, clip: tuple[int, int] | None = None, npcpu: int = 4096, log_current: bool = False
    ):
        """``log_current``: keep ``p->current`` after every fed record (:attr:`current_log`)."""
        self.npc = npcpu
        self.pc = np.zeros((npcpu, P_NCOLS), dtype=np.int64)
        self.pc[:, P_CURRENT] = -1
        self.pc[:, P_HEAD] = -1
        self.pc[:, P_TAIL] = -1
        self.pc[:, P_SEEN_VALID] = 1
        # pCPUs not seen yet do not hold the merge back
        self.bound = np.full(npcpu, TMAX, dtype=np.int64)
        self.seen = np.zeros(npcpu, dtype=bool)
        self.npc_used = 0
        self._alloc(maxv=1024, maxd=256, naff=4096, nsamp=1 << 16)
        self.did_map = np.full(0x10000 + 1, -1, dtype=np.int32)
        # domain index 0 is xenalyze's default domain (did 32768), outside did_map
        self.meta = np.zeros(M_NMETA, dtype=np.int64)
        self.meta[M_NDOM] = 1
        self.meta[M_LAST_PROC] = -1
        self.dm[0, D_DID] = 32768
        self.dm[0, D_MAX_VID] = -1
        self.qcap = 1 << 16
        self.q_cpu = np.zeros(self.qcap, dtype=np.int32)
        self.q_kind = np.zeros(self.qcap, dtype=np.int8)
        self.q_tsc = np.zeros(self.qcap, dtype=np.uint64)
        self.q_untimed = np.zeros(self.qcap, dtype=np.uint8)
        self.q_w = np.zeros((self.qcap, 4), dtype=np.int64)
        self.q_next = np.full(self.qcap, -1, dtype=np.int32)
        self.q_ev = np.zeros(self.qcap, dtype=np.int64)
        self.q_seq = np.full(self.qcap, -1, dtype=np.int64)
        self.qn = 0
        self.log_current = log_current
        self.fed = 0
        self.cur_log = np.zeros(0, dtype=np.int64)
        lo, hi = clip if clip is not None else (0, None)
        self.clo = np.int64(lo)
        self.chi = TMAX if hi is None else np.int64(hi)
        self.force_rows = 4 << 20

    # ---- storage ---------------------------------------------------------------------------
    def _alloc(self, maxv: int, maxd: int, naff: int, nsamp: int) -> None:
        self.maxv, self.maxd, self.naff = maxv, maxd, naff
        self.vc = np.zeros((maxv, V_NCOLS), dtype=np.int64)
        self.dm = np.zeros((maxd, D_NCOLS), dtype=np.int64)
        self.dvid = np.full((maxd, MAX_VID + 1), -1, dtype=np.int32)
        self.aff = np.full((maxv, MAX_AFF_PCPUS), -1, dtype=np.int32)
        self.dbase = maxv * VS_STRIDE
        self.abase = self.dbase + maxd * DS_STRIDE
        self.cs = np.zeros((self.abase + naff, 3), dtype=np.int64)
        self.ss = np.zeros(nsamp, dtype=np.int32)
        self.sv = np.zeros(nsamp, dtype=np.int64)

    def _grow(self, status: int) -> None:
        old = (self.vc, self.dm, self.dvid, self.aff, self.cs, self.ss, self.sv)
        o_dbase, o_abase = self.dbase, self.abase
        maxv, maxd, naff, nsamp = self.maxv, self.maxd, self.naff, self.ss.shape[0]
        if status == ST_GROW_SAMPLES:
            nsamp *= 2
        elif status == ST_GROW_VCPUS:
            maxv *= 2
        elif status == ST_GROW_DOMAINS:
            maxd *= 2
        elif status == ST_GROW_AFF:
            naff *= 2
        ovc, odm, odvid, oaff, ocs, oss, osv = old
        if status == ST_GROW_SAMPLES:
            self.ss = np.zeros(nsamp, dtype=np.int32)
            self.sv = np.zeros(nsamp, dtype=np.int64)
            self.ss[: oss.shape[0]] = oss
            self.sv[: osv.shape[0]] = osv
            return
        self._alloc(maxv, maxd, naff, nsamp)
        self.vc[: ovc.shape[0]] = ovc
        self.dm[: odm.shape[0]] = odm
        self.dvid[: odvid.shape[0]] = odvid
        self.aff[: oaff.shape[0]] = oaff
        # remap summary ids: vcpu block, domain block, affinity block
        remap = np.empty(ocs.shape[0], dtype=np.int64)
        remap[:o_dbase] = np.arange(o_dbase)
        remap[o_dbase:o_abase] = self.dbase + np.arange(o_abase - o_dbase)
        remap[o_abase:] = self.abase + np.arange(ocs.shape[0] - o_abase)
        self.cs[remap] = ocs
        n = int(self.meta[M_NSAMP])
        self.ss[:n] = remap[oss[:n]]
        self.sv[:n] = osv[:n]
        mask = oaff >= 0
        self.aff[: oaff.shape[0]][mask] = remap[oaff[mask]]

    def _reserve_queue(self, extra: int) -> None:
        need = self.qn + extra
        if need <= self.qcap:
            return
        # compact: each pCPU's FIFO holds its entries from its head on (appended in order)
        idx = np.arange(self.qn)
        heads = self.pc[self.q_cpu[: self.qn], P_HEAD]
        live = (heads >= 0) & (idx >= heads)
        keep = np.nonzero(live)[0]
        newpos = np.full(self.qn, -1, dtype=np.int64)
        newpos[keep] = np.arange(keep.shape[0])
        cap = self.qcap
        while keep.shape[0] + extra > cap // 2:
            cap *= 2
        arrays = {}
        for name in ("q_cpu", "q_kind", "q_tsc", "q_untimed", "q_w", "q_next", "q_ev", "q_seq"):
            a = getattr(self, name)
            b = np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
            b[: keep.shape[0]] = a[keep]
            arrays[name] = b
        nxt = arrays["q_next"][: keep.shape[0]]
        m = nxt >= 0
        nxt[m] = newpos[nxt[m]]
        for name, b in arrays.items():
            setattr(self, name, b)
        for col in (P_HEAD, P_TAIL):
            v = self.pc[:, col]
            m = v >= 0
            v[m] = newpos[v[m]]
        self.qn = keep.shape[0]
        self.qcap = cap

    # ---- input -------------------------------------------------------------------------------
    def feed(self, cpu, kind, tsc, untimed, ev, words, log: bool = True) -> None:
        """Queue scheduling rows (each pCPU's rows in file order)."""
        n = int(cpu.shape[0])
        if n == 0:
            return
        self._reserve_queue(n)
        a, b = self.qn, self.qn + n
        if self.log_current and log:
            self.q_seq[a:b] = np.arange(self.fed, self.fed + n)
            self.fed += n
            if self.cur_log.shape[0] < self.fed:
                grown = np.full(max(self.fed, 2 * self.cur_log.shape[0]), -2, dtype=np.int64)
                grown[: self.cur_log.shape[0]] = self.cur_log
                self.cur_log = grown
        else:
            self.q_seq[a:b] = -1
        self.q_cpu[a:b] = cpu
        self.q_kind[a:b] = kind
        self.q_tsc[a:b] = tsc
        self.q_untimed[a:b] = untimed
        self.q_ev[a:b] = ev
        self.q_w[a:b] = words[:, :4]
        self.qn = b
        link_queue(self.pc, self.q_cpu, self.q_next, a, b)
        self.npc_used = max(self.npc_used, int(cpu.max()) + 1)

    def set_pcpu(self, cpu: int, first_tsc: int, bound: int) -> None:
        """The pCPU's first timed TSC (for ``vcpu_start``) and its lower bound for new rows."""
        if not self.seen[cpu]:
            self.seen[cpu] = True
            self.npc_used = max(self.npc_used, cpu + 1)
            self._default_vcpu(cpu)
        if self.pc[cpu, P_FIRST_TSC] == 0 and first_tsc:
            self.pc[cpu, P_FIRST_TSC] = first_tsc
        self.bound[cpu] = bound

    def set_pcpus(self, seen: np.ndarray, first_tsc: np.ndarray, last_tsc: np.ndarray) -> None:
        """Vectorised :meth:`set_pcpu` over pCPUs flagged in ``seen`` (bound = last TSC)."""
        new = np.nonzero((seen != 0) & ~self.seen[: seen.shape[0]])[0]
        for c in new:
            self.set_pcpu(int(c), int(first_tsc[c]), int(last_tsc[c]))
        idx = np.nonzero(seen)[0]
        pcf = self.pc[idx, P_FIRST_TSC]
        self.pc[idx, P_FIRST_TSC] = np.where(pcf == 0, first_tsc[idx], pcf)
        self.bound[idx] = last_tsc[idx]

    def _default_vcpu(self, cpu: int) -> None:
        if cpu > MAX_VID:
            return
        v = int(self.meta[M_NVCPU])
        if v >= self.maxv:
            self._grow(ST_GROW_VCPUS)
        vc = self.vc
        vc[v] = 0
        vc[v, V_DOM] = 0
        vc[v, V_VID] = cpu
        vc[v, V_STATE] = RS_RUNNING
        vc[v, V_LO_WRONG] = RS_INIT
        vc[v, V_P] = cpu
        vc[v, V_ACTIVATED] = 1
        self.dvid[0, cpu] = v
        self.dm[0, D_MAX_VID] = max(int(self.dm[0, D_MAX_VID]), cpu)
        self.meta[M_NVCPU] = v + 1
        self.pc[cpu, P_CURRENT] = v
        self.pc[cpu, P_ACTIVE] = 1

    def run(self, final: bool = False) -> None:
        force = np.int64(0)
        if not final and self._queued() > self.force_rows:
            # memory bound: go on even though a silent pCPU might still deliver older rows
            force = TMAX
        while True:
            st = run_engine(
                self.pc,
                self.vc,
                self.dm,
                self.dvid,
                self.did_map,
                self.cs,
                self.ss,
                self.sv,
                self.meta,
                self.aff,
                self.q_cpu,
                self.q_kind,
                self.q_tsc,
                self.q_untimed,
                self.q_w,
                self.q_next,
                self.q_ev,
                self.q_seq,
                self.cur_log,
                self.bound,
                final,
                self.dbase,
                self.abase,
                self.clo,
                self.chi,
                force,
                self.npc_used,
            )
            if st == ST_OK:
                return
            self._grow(st)

    def _queued(self) -> int:
        return self.qn

    def finish(self, last_tsc_per_cpu: dict[int, int]) -> None:
        """Queue each pCPU's end-of-stream marker and process everything."""
        cpus = np.asarray(sorted(last_tsc_per_cpu), dtype=np.int32)
        if cpus.shape[0]:
            tscs = np.asarray([last_tsc_per_cpu[int(c)] for c in cpus], dtype=np.uint64)
            self.feed(
                cpus,
                np.full(cpus.shape[0], K_DEACT, dtype=np.int8),
                tscs,
                np.zeros(cpus.shape[0], dtype=np.uint8),
                np.zeros(cpus.shape[0], dtype=np.int64),
                np.zeros((cpus.shape[0], 4), dtype=np.int64),
                log=False,
            )
        self.bound[:] = TMAX
        self.run(final=True)

    @property
    def current_log(self) -> np.ndarray:
        """With ``log_current``: the key of ``p->current`` after each fed record, in feed
        order (-1 = NULL, -2 = not processed)."""
        return self.cur_log[: self.fed]

    # ---- results -------------------------------------------------------------------------------
    def results(self, total_last_tsc: int) -> EngineResults:
        """Per-domain / per-vCPU runstate summaries (after :meth:`finish`).

        ``total_last_tsc`` is xenalyze's ``P.f.last_tsc``, used to close cpu-affinity intervals.
        """
        nv = int(self.meta[M_NVCPU])
        # xenalyze closes each vCPU's cpu-affinity interval when printing its summary
        for v in range(nv):
            pt = int(self.vc[v, V_PCPU_TSC])
            if pt:
                p = int(self.vc[v, V_P])
                self._final_sample(v * VS_STRIDE + VS_AFF, pt, total_last_tsc)
                sid = int(self.aff[v, p]) if 0 <= p < MAX_AFF_PCPUS else -1
                if sid < 0 and 0 <= p < MAX_AFF_PCPUS:
                    n = int(self.meta[M_NAFF])
                    if self.abase + n >= self.cs.shape[0]:
                        self._grow(ST_GROW_AFF)
                    sid = self.abase + n
                    self.aff[v, p] = sid
                    self.meta[M_NAFF] = n + 1
                if sid >= 0:
                    self._final_sample(sid, pt, total_last_tsc)
        ns = self.cs.shape[0]
        starts, vals = group_samples(self.ss, self.sv, int(self.meta[M_NSAMP]), ns)
        return EngineResults(self, starts, vals)

    def _final_sample(self, sid: int, t0: int, t1: int) -> None:
        n = int(self.meta[M_NSAMP])
        if n >= self.ss.shape[0]:
            self._grow(ST_GROW_SAMPLES)
        clo, chi = int(self.clo), int(self.chi)
        self.cs[sid, CS_EVENTS] += 1
        a, b = max(t0, clo), min(t1, chi)
        clipped = clo > 0 or chi < int(TMAX)
        if clipped and b <= a:
            return
        c = (b - a) & 0xFFFFFFFFFFFFFFFF
        if c >= 1 << 63:
            c -= 1 << 64
        if c == 0:
            return
        self.ss[n] = sid
        self.sv[n] = c
        self.meta[M_NSAMP] = n + 1
        self.cs[sid, CS_COUNT] += 1
        self.cs[sid, CS_CYCLES] += c


class EngineResults:
    """Summaries from a finished engine: counts, cycles and the samples xenalyze would keep."""

    def __init__(self, eng: XenalyzeEngine, starts: np.ndarray, vals: np.ndarray):
        self.eng = eng
        self.starts = starts
        self.vals = vals
        meta = eng.meta
        self.fatal = int(meta[M_FATAL])
        self.strange = int(meta[M_STRANGE])
        self.skew_events = int(meta[M_SKEW_EVENTS])
        self.skew_loops = int(meta[M_SKEW_LOOPS])
        self.skew_offsets = {
            int(p): int(eng.pc[p, P_SKEW]) for p in np.nonzero(eng.pc[:, P_SKEW])[0]
        }

    def samples(self, sid: int) -> np.ndarray:
        """The sample array xenalyze holds for summary ``sid`` (reservoir rule applied)."""
        from .percentile import reservoir

        v = self.vals[self.starts[sid] : self.starts[sid + 1]]
        return reservoir(v, SAMPLE_MAX)

    def summary(self, sid: int) -> tuple[int, int, int]:
        """``(count, cycles as uint64, events)`` of summary ``sid``."""
        c = self.eng.cs[sid]
        return int(c[CS_COUNT]), int(c[CS_CYCLES]) & 0xFFFFFFFFFFFFFFFF, int(c[CS_EVENTS])

    def domains(self) -> list[tuple[int, int]]:
        """``[(domain index, did)]`` sorted by did (the default domain excluded)."""
        nd = int(self.eng.meta[M_NDOM])
        out = [(d, int(self.eng.dm[d, D_DID])) for d in range(1, nd)]
        return sorted(out, key=lambda t: t[1])

    def vcpus(self, d: int) -> list[tuple[int, int]]:
        """``[(vcpu index, vid)]`` of domain index ``d`` in vid order."""
        row = self.eng.dvid[d]
        return [(int(row[i]), i) for i in range(MAX_VID + 1) if row[i] >= 0]

    def vcpu_sid(self, v: int, k: int) -> int:
        return v * VS_STRIDE + k

    def domain_sid(self, d: int, k: int) -> int:
        return self.eng.dbase + d * DS_STRIDE + k

    def affinity(self, v: int) -> list[tuple[int, int]]:
        """``[(pcpu, summary id)]`` of a vCPU's per-pCPU affinity summaries."""
        row = self.eng.aff[v]
        return [(p, int(row[p])) for p in range(MAX_AFF_PCPUS) if row[p] >= 0]
