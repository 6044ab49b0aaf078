"""Columnar record batches (numpy), convertible to Arrow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scan import FLAG_LATE, FLAG_NO_TSC_YET, FLAG_TSC_BACKWARDS, FLAG_UNTIMED

COLUMNS = ("offset", "cpu", "tsc", "flags", "event", "nwords", "words")
DTYPES = {
    "offset": np.int64,
    "cpu": np.uint16,
    "tsc": np.uint64,
    "flags": np.uint8,
    "event": np.uint32,
    "nwords": np.uint8,
}


@dataclass(slots=True)
class RecordBatch:
    """Records as columns. ``words`` is ``(n, 7)`` uint32, zero past ``nwords``.

    offset: file offset of the record header; cpu: pCPU of its window; tsc: raw TSC (an
    untimed record carries its pCPU's last TSC); flags: FLAG_* bits; event: 28-bit id.
    """

    offset: np.ndarray
    cpu: np.ndarray
    tsc: np.ndarray
    flags: np.ndarray
    event: np.ndarray
    nwords: np.ndarray
    words: np.ndarray

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    @classmethod
    def empty(cls, n: int = 0) -> RecordBatch:
        return cls(
            *(np.empty(n, dtype=DTYPES[c]) for c in COLUMNS[:-1]),
            np.empty((n, 7), dtype=np.uint32),
        )

    @classmethod
    def concat(cls, batches: list[RecordBatch]) -> RecordBatch:
        if not batches:
            return cls.empty(0)
        return cls(*(np.concatenate([getattr(b, c) for b in batches]) for c in COLUMNS))

    def take(self, idx: np.ndarray | slice) -> RecordBatch:
        return RecordBatch(*(getattr(self, c)[idx] for c in COLUMNS))

    @property
    def untimed(self) -> np.ndarray:
        return (self.flags & FLAG_UNTIMED) != 0

    @property
    def late(self) -> np.ndarray:
        return (self.flags & FLAG_LATE) != 0

    def to_arrow(self):
        """A ``pyarrow.RecordBatch`` with the same columns (words as fixed-size list)."""
        import pyarrow as pa

        words = pa.FixedSizeListArray.from_arrays(pa.array(self.words.reshape(-1)), 7)
        return pa.RecordBatch.from_arrays(
            [pa.array(getattr(self, c)) for c in COLUMNS[:-1]] + [words], names=list(COLUMNS)
        )


__all__ = [
    "COLUMNS",
    "RecordBatch",
    "FLAG_UNTIMED",
    "FLAG_NO_TSC_YET",
    "FLAG_TSC_BACKWARDS",
    "FLAG_LATE",
]
