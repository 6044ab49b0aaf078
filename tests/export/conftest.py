from __future__ import annotations

from pathlib import Path

import pytest

from .handtrace import write_trace


@pytest.fixture
def pv_trace(tmp_path) -> Path:
    return write_trace(tmp_path / "hand.bin")
