"""Any xentrace file (ours or a real Xen's) into time-ordered columnar batches."""

from .batch import (
    COLUMNS,
    FLAG_LATE,
    FLAG_NO_TSC_YET,
    FLAG_TSC_BACKWARDS,
    FLAG_UNTIMED,
    RecordBatch,
)
from .core import TraceReader, read
from .report import Anomaly, ReadReport

__all__ = [
    "COLUMNS",
    "FLAG_LATE",
    "FLAG_NO_TSC_YET",
    "FLAG_TSC_BACKWARDS",
    "FLAG_UNTIMED",
    "Anomaly",
    "ReadReport",
    "RecordBatch",
    "TraceReader",
    "read",
]
