"""Compiled helpers that write ASCII text into a byte buffer (for bulk line output)."""

from __future__ import annotations

import numpy as np
from numba import njit

HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


@njit(cache=True, inline="always")
def put_bytes(out, p, src, a, b):
    for i in range(a, b):
        out[p] = src[i]
        p += 1
    return p


@njit(cache=True, inline="always")
def put_uint(out, p, v, width, pad):
    """Decimal ``v`` (>= 0), right-aligned in ``width`` with ``pad`` (32 space or 48 '0')."""
    tmp = np.empty(20, dtype=np.uint8)
    n = 0
    if v == 0:
        tmp[0] = 48
        n = 1
    while v > 0:
        tmp[n] = 48 + v % 10
        v //= 10
        n += 1
    for _ in range(width - n):
        out[p] = pad
        p += 1
    for i in range(n - 1, -1, -1):
        out[p] = tmp[i]
        p += 1
    return p


@njit(cache=True, inline="always")
def put_hex(out, p, v, width, hexd):
    """Lower-case hex of ``v`` (uint64), zero-padded to at least ``width`` digits."""
    n = 1
    x = v >> np.uint64(4)
    while x > 0:
        n += 1
        x >>= np.uint64(4)
    if n < width:
        n = width
    for i in range(n - 1, -1, -1):
        out[p + i] = hexd[np.int64(v & np.uint64(15))]
        v >>= np.uint64(4)
    return p + n


@njit(cache=True, inline="always")
def put_seconds(out, p, ns):
    """``ns`` (>= 0) as seconds with 9 decimals, seconds right-aligned in 3 columns."""
    p = put_uint(out, p, ns // 1000000000, 3, 32)
    out[p] = 46
    p += 1
    return put_uint(out, p, ns % 1000000000, 9, 48)
