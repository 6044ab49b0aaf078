"""The compiled sequential scan: xentrace bytes -> record columns, stats and anomalies.

One call scans as far as its input buffer, output capacity and stats table allow, and keeps
all state (position, current window, last TSC per pCPU) in arrays, so a file of any size is
read in bounded chunks. Nothing is allocated from a size read out of the file.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_CPUS = 4096
MAX_WINDOW_BYTES = 1 << 30
CPU_CHANGE_HEADER = 0x2001F003
EV_CPU_CHANGE = 0x0001F003
EV_WRAP = 0x0001F002
EV_LOST = 0x0001F001

# row flags
FLAG_UNTIMED = 1  # no TSC in the record: carries its pCPU's last TSC
FLAG_NO_TSC_YET = 2  # untimed and no TSC seen yet on that pCPU (tsc = 0)
FLAG_TSC_BACKWARDS = 4  # TSC lower than the previous one on the same pCPU
FLAG_LATE = 8  # arrived after the merge had passed its time (set by the merger)

# anomaly codes (messages live in report.py)
A_BAD_WINDOW_HEADER = 1  # a: word found
A_WINDOW_SIZE = 2  # a: size
A_CPU_RANGE = 3  # a: cpu, b: size
A_WINDOW_PAST_EOF = 4  # a: window bytes, b: bytes available
A_RECORD_OVERRUNS_WINDOW = 5  # a: record size, b: bytes left in window
A_TRUNCATED = 6  # a: bytes expected, b: bytes available
A_GARBAGE_HEADER = 7  # a: header word
A_TSC_BACKWARDS = 8  # a: cpu, b: cycles back
A_CPU_CHANGE_IN_WINDOW = 9  # a: cpu of enclosing window
A_RESYNC = 10  # a: bytes skipped while looking for a window header
A_LATE = 11  # a: cpu, b: cycles late (merger)
A_TRAILING_BYTES = 12  # a: bytes

# state slots
S_POS = 0  # absolute word index of the next thing to read
S_IN_WINDOW = 1
S_WIN_CPU = 2
S_WIN_END = 3  # absolute word index where the current window ends
S_RESYNC = 4  # 1 while searching for a window header
S_RESYNC_START = 5
S_FILE_WORDS = 6  # total words in the file, -1 if unknown (stream)
S_DONE = 7
S_NSTATE = 8

# counter slots
C_WINDOWS = 0
C_WRAP = 1
C_WRAP_BYTES = 2
C_LOST_ROWS = 3
C_LOST_SUM = 4
C_UNTIMED = 5
C_SKIPPED_BYTES = 6
C_ROWS = 7
C_ANOMALIES = 8
C_RECORDS = 9  # every record except CPU_CHANGE window headers (wrap and lost included)
C_TSC_BACKWARDS = 10
C_BYTES = 11
C_NCOUNTERS = 16

# internal row layout: 8 x uint64 = one cache line per record (see rows.py)
R_TSC = 0
R_OFFSET = 1
R_META = 2  # cpu bits 0-15, flags 16-23, nwords 24-31, event 32-59
R_WORDS = 3  # payload words, two per slot (low word first), slots 3..6
ROW_SLOTS = 8


@njit(cache=True, inline="always")
def pack_meta(cpu, flags, nw, event):
    return (
        np.uint64(cpu)
        | (np.uint64(flags) << np.uint64(16))
        | (np.uint64(nw) << np.uint64(24))
        | (np.uint64(event) << np.uint64(32))
    )


RET_NEED_DATA = 0
RET_OUT_FULL = 1
RET_EOF = 2
RET_TABLE_FULL = 3


def new_state(file_words: int) -> np.ndarray:
    st = np.zeros(S_NSTATE, dtype=np.int64)
    st[S_WIN_CPU] = -1
    st[S_FILE_WORDS] = file_words
    return st


def new_table(capacity: int = 1 << 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An open-addressing (cpu, event) -> (count, bytes) table."""
    return (
        np.full(capacity, -1, dtype=np.int64),
        np.zeros(capacity, dtype=np.int64),
        np.zeros(capacity, dtype=np.int64),
    )


@njit(cache=True, inline="always")
def _hash(key, mask):
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(40)) & mask


@njit(cache=True)
def _table_add(keys, counts, nbytes, key, size):
    mask = keys.shape[0] - 1
    i = _hash(key, mask)
    while True:
        k = keys[i]
        if k == key:
            counts[i] += 1
            nbytes[i] += size
            return 0
        if k == -1:
            keys[i] = key
            counts[i] = 1
            nbytes[i] = size
            return 1
        i = (i + 1) & mask


@njit(cache=True)
def grow_table(keys, counts, nbytes):
    """Rehash into a table twice as large."""
    cap = keys.shape[0] * 2
    k2 = np.full(cap, -1, dtype=np.int64)
    c2 = np.zeros(cap, dtype=np.int64)
    b2 = np.zeros(cap, dtype=np.int64)
    mask = cap - 1
    for j in range(keys.shape[0]):
        if keys[j] != -1:
            i = _hash(keys[j], mask)
            while k2[i] != -1:
                i = (i + 1) & mask
            k2[i] = keys[j]
            c2[i] = counts[j]
            b2[i] = nbytes[j]
    return k2, c2, b2


@njit(cache=True, inline="always")
def _anomaly(anom, counters, off, code, a, b):
    n = counters[C_ANOMALIES]
    if n < anom.shape[0]:
        anom[n, 0] = off
        anom[n, 1] = code
        anom[n, 2] = a
        anom[n, 3] = b
    counters[C_ANOMALIES] = n + 1


@njit(cache=True)
def _popcount12(x):
    c = 0
    while x:
        c += x & 1
        x >>= 1
    return c


@njit(cache=True, nogil=True)
def scan(
    w,
    base,
    eof,
    st,
    last_tsc,
    first_tsc,
    has_tsc,
    counters,
    anom,
    keys,
    counts,
    nbytes,
    table_used,
    o_rows,
):
    """Scan words ``w`` (absolute word index ``base``..) from ``st[S_POS]``; see module doc.

    Returns (status, rows written, table entries in use).
    """
    cap = o_rows.shape[0]
    end = base + w.shape[0]
    file_words = st[S_FILE_WORDS]
    tmask_limit = keys.shape[0] // 2
    n = 0
    pos = st[S_POS]
    while True:
        if n == cap:
            st[S_POS] = pos
            return RET_OUT_FULL, n, table_used
        if table_used >= tmask_limit:
            st[S_POS] = pos
            return RET_TABLE_FULL, n, table_used
        if st[S_IN_WINDOW] == 0:
            if st[S_RESYNC] == 1:
                # look for a plausible window header, one word at a time
                found = False
                while pos + 3 <= end:
                    if w[pos - base] == CPU_CHANGE_HEADER:
                        c = np.int64(np.int32(np.uint32(w[pos + 1 - base])))
                        sz = np.int64(w[pos + 2 - base])
                        if 0 <= c < MAX_CPUS and sz % 4 == 0 and sz <= MAX_WINDOW_BYTES:
                            if file_words < 0 or pos + 3 + sz // 4 <= file_words:
                                found = True
                                break
                    pos += 1
                if not found:
                    if not eof:
                        st[S_POS] = pos
                        return RET_NEED_DATA, n, table_used
                    pos = end
                skipped = (pos - st[S_RESYNC_START]) * 4
                counters[C_SKIPPED_BYTES] += skipped
                _anomaly(anom, counters, st[S_RESYNC_START] * 4, A_RESYNC, skipped, 0)
                st[S_RESYNC] = 0
                if not found:
                    continue
            if pos >= end:
                if not eof:
                    st[S_POS] = pos
                    return RET_NEED_DATA, n, table_used
                st[S_POS] = pos
                st[S_DONE] = 1
                return RET_EOF, n, table_used
            if pos + 3 > end:
                if not eof:
                    st[S_POS] = pos
                    return RET_NEED_DATA, n, table_used
                avail = (end - pos) * 4
                _anomaly(anom, counters, pos * 4, A_TRUNCATED, 12, avail)
                counters[C_SKIPPED_BYTES] += avail
                st[S_POS] = end
                st[S_DONE] = 1
                return RET_EOF, n, table_used
            h = w[pos - base]
            if h != CPU_CHANGE_HEADER:
                _anomaly(anom, counters, pos * 4, A_BAD_WINDOW_HEADER, np.int64(h), 0)
                st[S_RESYNC] = 1
                st[S_RESYNC_START] = pos
                pos += 1
                continue
            cpu = np.int64(np.int32(np.uint32(w[pos + 1 - base])))
            size = np.int64(w[pos + 2 - base])
            if size % 4 != 0 or size > MAX_WINDOW_BYTES:
                _anomaly(anom, counters, pos * 4, A_WINDOW_SIZE, size, 0)
                st[S_RESYNC] = 1
                st[S_RESYNC_START] = pos
                pos += 1
                continue
            if cpu < 0 or cpu >= MAX_CPUS:
                _anomaly(anom, counters, pos * 4, A_CPU_RANGE, cpu, size)
                counters[C_SKIPPED_BYTES] += 12 + size
                pos += 3 + size // 4
                continue
            counters[C_WINDOWS] += 1
            wend = pos + 3 + size // 4
            if file_words >= 0 and wend > file_words:
                _anomaly(
                    anom, counters, pos * 4, A_WINDOW_PAST_EOF, size, (file_words - pos - 3) * 4
                )
            st[S_IN_WINDOW] = 1
            st[S_WIN_CPU] = cpu
            st[S_WIN_END] = wend
            pos += 3
            continue
        # inside a window
        wend = st[S_WIN_END]
        cpu = st[S_WIN_CPU]
        if pos >= wend:
            st[S_IN_WINDOW] = 0
            continue
        if pos >= end:
            if not eof:
                st[S_POS] = pos
                return RET_NEED_DATA, n, table_used
            _anomaly(anom, counters, pos * 4, A_TRUNCATED, (wend - pos) * 4, 0)
            st[S_POS] = pos
            st[S_DONE] = 1
            return RET_EOF, n, table_used
        h = np.int64(w[pos - base])
        nw = (h >> 28) & 7
        timed = (h >> 31) & 1
        size = 1 + 2 * timed + nw
        if pos + size > wend:
            _anomaly(anom, counters, pos * 4, A_RECORD_OVERRUNS_WINDOW, size * 4, (wend - pos) * 4)
            counters[C_SKIPPED_BYTES] += (wend - pos) * 4
            pos = wend
            st[S_IN_WINDOW] = 0
            continue
        if pos + size > end:
            if not eof:
                st[S_POS] = pos
                return RET_NEED_DATA, n, table_used
            _anomaly(anom, counters, pos * 4, A_TRUNCATED, size * 4, (end - pos) * 4)
            counters[C_SKIPPED_BYTES] += (end - pos) * 4
            st[S_POS] = end
            st[S_DONE] = 1
            return RET_EOF, n, table_used
        event = h & 0x0FFFFFFF
        if _popcount12((event >> 16) & 0xFFF) != 1:
            _anomaly(anom, counters, pos * 4, A_GARBAGE_HEADER, h, 0)
            counters[C_SKIPPED_BYTES] += size * 4
            pos += size
            continue
        if event == EV_CPU_CHANGE:
            _anomaly(anom, counters, pos * 4, A_CPU_CHANGE_IN_WINDOW, cpu, 0)
            counters[C_SKIPPED_BYTES] += size * 4
            pos += size
            continue
        flags = 0
        if timed:
            tsc = np.uint64(w[pos + 1 - base]) | (np.uint64(w[pos + 2 - base]) << np.uint64(32))
            if has_tsc[cpu] and tsc < last_tsc[cpu]:
                flags |= FLAG_TSC_BACKWARDS
                counters[C_TSC_BACKWARDS] += 1
                _anomaly(
                    anom, counters, pos * 4, A_TSC_BACKWARDS, cpu, np.int64(last_tsc[cpu] - tsc)
                )
            if not has_tsc[cpu]:
                first_tsc[cpu] = tsc
            last_tsc[cpu] = tsc
            has_tsc[cpu] = 1
        else:
            tsc = last_tsc[cpu]
            flags |= FLAG_UNTIMED
            if not has_tsc[cpu]:
                flags |= FLAG_NO_TSC_YET
            counters[C_UNTIMED] += 1
        table_used += _table_add(keys, counts, nbytes, (cpu << 28) | event, size * 4)
        counters[C_RECORDS] += 1
        counters[C_BYTES] += size * 4
        if event == EV_WRAP:
            counters[C_WRAP] += 1
            counters[C_WRAP_BYTES] += size * 4
            pos += size
            continue
        p = pos + 1 + 2 * timed - base
        o_rows[n, R_TSC] = tsc
        o_rows[n, R_OFFSET] = np.uint64(pos * 4)
        o_rows[n, R_META] = pack_meta(cpu, flags, nw, event)
        for j in range(3):
            lo = np.uint64(w[p + 2 * j]) if 2 * j < nw else np.uint64(0)
            hi = np.uint64(w[p + 2 * j + 1]) if 2 * j + 1 < nw else np.uint64(0)
            o_rows[n, R_WORDS + j] = lo | (hi << np.uint64(32))
        o_rows[n, R_WORDS + 3] = np.uint64(w[p + 6]) if nw == 7 else np.uint64(0)
        if event == EV_LOST:
            counters[C_LOST_ROWS] += 1
            if nw >= 1:
                counters[C_LOST_SUM] += w[p]
        n += 1
        counters[C_ROWS] += 1
        pos += size
