from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

DATA = Path(__file__).parent.parent / "data"

REAL_TRACES = ("real-xen417-pvdom0", "real-xen417-lost", "real-credit2-hvm")
PV_DOM0_TRACES = ("real-xen417-pvdom0", "real-xen417-lost")


@cache
def summary_of(name: str, batch_rows: int | None = None):
    """The summary of ``tests/data/<name>.bin`` (cached: each trace is analysed once)."""
    from pyxentrace.analysis.summary import compute_summary

    return compute_summary(DATA / f"{name}.bin", batch_rows=batch_rows)


@cache
def oracle_text(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA
