"""A cheap walk over window headers only: which pCPUs a file holds and where each one ends."""

from __future__ import annotations

import numpy as np
from numba import njit

from .scan import CPU_CHANGE_HEADER, MAX_CPUS, MAX_WINDOW_BYTES


@njit(cache=True)
def prescan_windows(w, last_end):
    """Fill ``last_end[cpu]`` (byte offset after the pCPU's last window).

    Returns the byte offset where the walk stopped; equal to ``4 * len(w)`` when every window
    header was well formed, smaller when it met something that is not a window header.
    """
    n = w.shape[0]
    pos = 0
    while pos + 3 <= n:
        if w[pos] != CPU_CHANGE_HEADER:
            return pos * 4
        cpu = np.int64(np.int32(np.uint32(w[pos + 1])))
        size = np.int64(w[pos + 2])
        if cpu < 0 or cpu >= MAX_CPUS or size % 4 != 0 or size > MAX_WINDOW_BYTES:
            return pos * 4
        end = pos + 3 + size // 4
        if end > n:
            return pos * 4
        last_end[cpu] = end * 4
        pos = end
    return pos * 4
