"""The Xen side of the trace system: per-CPU trace buffers, control operations, trace points.

* :class:`TraceBuffers` - the trace globals and per-CPU buffers in shared memory, Xen's
  ``tb_control`` operations, ``trace()``/``TRACE()``/hypercall tracing and a bulk writer;
  ``TraceBuffers.attach(name)`` from a consumer process.
* :class:`PVTracer` - the PV trace points for one hypervisor build (ABI, arch).
* :class:`TbufError` - a failed control operation (``.errno_name``).
"""

from pyxentrace.hypervisor.control import TbufError, TbufInfo, TraceControl
from pyxentrace.hypervisor.pv import X86_EVENT_NO_EC, PVTracer
from pyxentrace.hypervisor.tbuf import TBuf, TInfo
from pyxentrace.hypervisor.trace import DOMID_IDLE, Clock, TraceBuffers, VirtualTSC

__all__ = [
    "DOMID_IDLE",
    "X86_EVENT_NO_EC",
    "Clock",
    "PVTracer",
    "TBuf",
    "TInfo",
    "TbufError",
    "TbufInfo",
    "TraceBuffers",
    "TraceControl",
    "VirtualTSC",
]
