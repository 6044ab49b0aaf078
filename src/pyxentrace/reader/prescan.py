"""A cheap walk over window headers only: which pCPUs a file holds and where each one ends."""

from __future__ import annotations

import numpy as np
from numba import njit

from .scan import CPU_CHANGE_HEADER, MAX_CPUS, MAX_WINDOW_BYTES

PRESCAN_OK = 0  # stopped at ``limit``; call again from the returned position
PRESCAN_END = 1  # walked every window to the end of the file
PRESCAN_BAD = 2  # met something that is not a well-formed window header


@njit(cache=True)
def prescan_windows(w, last_end, pos, limit):
    """Walk window headers from word ``pos`` until a header at or past word ``limit``.

    Fills ``last_end[cpu]`` (byte offset after the pCPU's last window seen). Returns
    (word position, status).
    """
    n = w.shape[0]
    while pos + 3 <= n:
        if pos >= limit:
            return pos, PRESCAN_OK
        if w[pos] != CPU_CHANGE_HEADER:
            return pos, PRESCAN_BAD
        cpu = np.int64(np.int32(np.uint32(w[pos + 1])))
        size = np.int64(w[pos + 2])
        if cpu < 0 or cpu >= MAX_CPUS or size % 4 != 0 or size > MAX_WINDOW_BYTES:
            return pos, PRESCAN_BAD
        end = pos + 3 + size // 4
        if end > n:
            return pos, PRESCAN_BAD
        last_end[cpu] = end * 4
        pos = end
    return pos, PRESCAN_END if pos == n else PRESCAN_BAD
