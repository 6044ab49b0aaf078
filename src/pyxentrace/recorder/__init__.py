"""The recorder (``xentrace``) and the simulation driver.

* :class:`Recorder` - drains a model's shared trace buffers into a trace file, as xentrace.
* :class:`RecorderOptions` and the option parsers (:func:`parse_evt_mask`,
  :func:`parse_cpu_mask`, :func:`parse_size`).
* :class:`TraceOutput` / :class:`MemoryRing` - whole-window output, the ``-M`` ring.
* :func:`simulate` / :class:`SimulateConfig` - machine + recorder as two processes.
* :func:`record_xen` (in :mod:`.xenhost`) - a real host's ``xentrace`` plus ``xl`` metadata.
* Click commands for the CLI: :mod:`.commands` (``record_cmd``, ``simulate_cmd``,
  ``demo_cmd``).
"""

from pyxentrace.recorder.daemon import Recorder, RecorderStats
from pyxentrace.recorder.options import (
    RecorderOptions,
    parse_cpu_mask,
    parse_evt_mask,
    parse_size,
)
from pyxentrace.recorder.output import MemoryRing, TraceOutput
from pyxentrace.recorder.simulate import SimulateConfig, SimulateResult, simulate

__all__ = [
    "MemoryRing",
    "Recorder",
    "RecorderOptions",
    "RecorderStats",
    "SimulateConfig",
    "SimulateResult",
    "TraceOutput",
    "parse_cpu_mask",
    "parse_evt_mask",
    "parse_size",
    "simulate",
]
