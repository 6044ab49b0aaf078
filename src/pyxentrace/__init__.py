"""pyxentrace: Xen's trace system for PV guests — buffers, recorder, reader, analyses, exports."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import XentraceError  # noqa: E402


def open(path, cpu_hz: float | None = None):  # noqa: A001 - mirrors perfetto's entry point
    """Open a xentrace file (or ``-`` for stdin) as a :class:`pyxentrace.api.Trace`."""
    from .api import Trace

    return Trace(path, cpu_hz=cpu_hz)


__all__ = ["XentraceError", "__version__", "open"]
