"""xenalyze's percentile estimators and sample reservoir, ported exactly.

* :func:`self_weighted_percentile` - the quickselect weighted by the values themselves that
  xenalyze uses for every runstate line (``{p5|p50|p95}``). It reorders its array, and xenalyze
  calls it for p50, then p5, then p95 on the same array; :func:`xenalyze_triplet` does the same.
* :func:`nr_percentile` - the plain Numerical-Recipes quickselect used for ``cpu affinity``.
* :func:`reservoir` - which samples xenalyze keeps: every one while fewer than ``sample_max``
  (32 Mi) have been seen (the array starts at ``sample_size`` = 1024 and doubles), then only a
  subset (slot ``count % size`` when ``(slot - lap / 3) % lap == 0``, ``lap = count / size + 1``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

SAMPLE_MAX = 1024 * 1024 * 32


@njit(cache=True, inline="always")
def _cdiv(a, b):
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


@njit(cache=True)
def self_weighted_percentile(a, n, ple):
    """xenalyze's ``self_weighted_percentile(A, N, ple)``; ``a`` (int64) is reordered."""
    nw = np.int64(0)
    for i in range(n):
        nw += a[i]
    kw = _cdiv(nw * ple, 100)
    lo = 0
    lw = np.int64(0)
    hi = n - 1
    hw = nw - a[hi]
    while lo < hi:
        k = (lo + hi) >> 1
        x = a[k]
        i = lo
        iw = lw
        j = hi
        jw = hw
        while True:
            while a[i] < x:
                iw += a[i]
                i += 1
            while x < a[j]:
                jw -= a[j]
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                iw += a[i]
                i += 1
                jw -= a[j]
                j -= 1
            if i > j:
                break
        if jw < kw:
            lo = i
            lw = iw
        if kw < iw:
            hi = j
            hw = jw
    return a[lo]


@njit(cache=True)
def nr_percentile(a, n, ple):
    """xenalyze's plain ``percentile(A, N, ple)`` (returns ``A[N*ple/100]`` after selection)."""
    if n == 0:
        return np.int64(0)
    k = n * ple // 100
    lo = 0
    hi = n - 1
    while lo < hi:
        x = a[k]
        i = lo
        j = hi
        while True:
            while a[i] < x:
                i += 1
            while x < a[j]:
                j -= 1
            if i <= j:
                t = a[i]
                a[i] = a[j]
                a[j] = t
                i += 1
                j -= 1
            if i > j:
                break
        if j < k:
            lo = i
        if k < i:
            hi = j
    return a[k]


@njit(cache=True)
def xenalyze_triplet(samples, self_weighted):
    """``(p5, p50, p95)`` computed as xenalyze does: p50, p5, p95 on one (copied) array."""
    a = samples.copy()
    n = a.shape[0]
    if n == 0:
        return np.int64(0), np.int64(0), np.int64(0)
    if self_weighted:
        p50 = self_weighted_percentile(a, n, 50)
        p5 = self_weighted_percentile(a, n, 5)
        p95 = self_weighted_percentile(a, n, 95)
    else:
        p50 = nr_percentile(a, n, 50)
        p5 = nr_percentile(a, n, 5)
        p95 = nr_percentile(a, n, 95)
    return p5, p50, p95


def reservoir(values: np.ndarray, sample_max: int = SAMPLE_MAX) -> np.ndarray:
    """The sample array xenalyze holds after seeing ``values`` (non-zero samples, in order).

    Its length is ``min(len(values), sample_max)``: every value while fewer than ``sample_max``
    were seen, then the subset rule of ``update_cycles``.
    """
    values = np.asarray(values, dtype=np.int64)
    n = values.shape[0]
    if n <= sample_max:
        return values.copy()
    out = values[:sample_max].copy()
    k = np.arange(sample_max, n, dtype=np.int64)
    lap = k // sample_max + 1
    idx = k % sample_max
    keep = (idx - lap // 3) % lap == 0  # a zero remainder is the same in C and Python
    # later samples overwrite earlier ones at the same slot: assign in order
    out[idx[keep]] = values[k[keep]]
    return out
