"""The PV trace points (seed patch 06a73c9f93 and today's ``xen/arch/x86/pv/trace.c``).

Each point is gated on ``tb_init_done``, picks its layout from
:data:`pyxentrace.format.pv_layouts.LAYOUTS` by (point, ABI, hypervisor arch, guest width of
the vCPU current on that pCPU), and emits a timed record through ``trace_time``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pyxentrace.format.events import TRC_PV_HYPERCALL_SUBCALL, TRC_PV_HYPERCALL_V2
from pyxentrace.format.pv_layouts import (
    ABI_SEED,
    ABI_XEN4,
    Layout,
    check_combo,
    encode_array,
    encode_fields,
    layout,
)
from pyxentrace.format.record import TRC_HD_CYCLE_FLAG
from pyxentrace.hypervisor.trace import TraceBuffers

#: ``X86_EVENT_NO_EC``: today's error code of an event that has none.
X86_EVENT_NO_EC = -1


def trap_error_code(abi: str, use_error_code, error_code):
    """The error code a TRAP record carries (scalars or arrays).

    xen-4: ``X86_EVENT_NO_EC`` (-1, so the TE word's high half reads 0xffff) when the event has
    no error code; the seed traced the error-code register whatever ``use_error_code`` said.
    """
    if abi != ABI_XEN4:
        return error_code
    if np.ndim(use_error_code) == 0 and np.ndim(error_code) == 0:
        return error_code if use_error_code else X86_EVENT_NO_EC
    return np.where(np.asarray(use_error_code, dtype=bool),
                    np.asarray(error_code, dtype=np.int64), X86_EVENT_NO_EC)


def record_values(abi: str, point: str, values: dict[str, np.ndarray | int],
                  n: int) -> tuple[str | None, dict[str, np.ndarray]]:
    """Arguments of a :class:`PVTracer` method (``n`` calls, arrays or scalars) -> the layout
    point and its field values, as those methods encode them; ``(None, {})`` when the ABI
    has no record for it (the seed's multicall entries)."""
    vals = {k: v if isinstance(v, np.ndarray) and v.shape == (n,)
            else np.broadcast_to(np.asarray(v), (n,)) for k, v in values.items()}
    if point == "hypercall":
        if abi == ABI_SEED:
            return "hypercall", {"eip": vals.get("eip", np.zeros(n, np.int64)),
                                 "eax": vals["op"]}
        return "hypercall_v2", {k: v for k, v in vals.items() if k != "eip"}
    if point == "multicall_call":
        return (None, {}) if abi == ABI_SEED else ("hypercall_subcall", vals)
    if point == "trap":
        uec = vals["use_error_code"].astype(bool)
        ec = vals.get("error_code", np.zeros(n, np.int64)).astype(np.int64)
        return "trap", {"eip": vals["eip"], "trapnr": vals["trapnr"],
                        "use_error_code": uec.astype(np.int64),
                        "error_code": trap_error_code(abi, uec, ec)}
    if point == "ptwr_emulation":
        return "ptwr_emulation", {"pte": vals["npte"], "addr": vals["addr"],
                                  "eip": vals["eip"]}
    return point, vals


class PVTracer:
    """PV trace points of one hypervisor build (``abi``, ``arch``) over ``tb``'s buffers."""

    def __init__(self, tb: TraceBuffers, abi: str = ABI_XEN4, arch: str = "x86_64"):
        check_combo(abi, arch)
        self.tb = tb
        self.abi = abi
        self.arch = arch
        self._cache: dict[tuple[str, int], Layout] = {}

    def _layout(self, point: str, width: int) -> Layout:
        lay = self._cache.get((point, width))
        if lay is None:
            lay = self._cache[(point, width)] = layout(point, self.abi, self.arch, width)
        return lay

    def _emit(self, cpu: int, point: str, **values: int) -> None:
        lay = self._layout(point, self.tb.current(cpu)[2])
        payload = encode_fields(lay, values)
        self.tb.trace(cpu, lay.event | TRC_HD_CYCLE_FLAG, len(payload), payload)

    # ---- hypercalls ------------------------------------------------------------------------
    def hypercall(self, cpu: int, op: int, args: Sequence[int] = (), eip: int = 0) -> None:
        """Hypercall entry: v1 ``[eip][eax]`` in the seed ABI, HYPERCALL_V2 in xen-4."""
        if not self.tb.tb_init_done:
            return
        if self.abi == ABI_SEED:
            self._emit(cpu, "hypercall", eip=eip, eax=op)
        else:
            self._layout("hypercall_v2", self.tb.current(cpu)[2])  # validates the width
            self.tb.trace_hypercall(cpu, TRC_PV_HYPERCALL_V2, op, args)

    def multicall_call(self, cpu: int, op: int, args: Sequence[int] = ()) -> None:
        """One multicall entry: HYPERCALL_SUBCALL in xen-4; the seed did not trace these."""
        if not self.tb.tb_init_done or self.abi == ABI_SEED:
            return
        self._layout("hypercall_subcall", self.tb.current(cpu)[2])
        self.tb.trace_hypercall(cpu, TRC_PV_HYPERCALL_SUBCALL, op, args)

    # ---- exceptions and emulation ----------------------------------------------------------
    def trap(self, cpu: int, trapnr: int, eip: int, use_error_code: bool,
             error_code: int = 0) -> None:
        """An exception or software interrupt bounced to the guest.

        xen-4: without an error code Xen passes ``X86_EVENT_NO_EC`` (TE high half 0xffff).
        Seed: the error code register is traced whatever ``use_error_code`` says.
        """
        if not self.tb.tb_init_done:
            return
        self._emit(cpu, "trap", eip=eip, trapnr=trapnr, use_error_code=int(bool(use_error_code)),
                   error_code=trap_error_code(self.abi, bool(use_error_code), error_code))

    def page_fault(self, cpu: int, eip: int, addr: int, error_code: int) -> None:
        """A #PF bounced to the guest (``eip`` = the guest's rip, ``addr`` = CR2)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "page_fault", eip=eip, addr=addr, error_code=error_code)

    def forced_invalid_op(self, cpu: int, eip: int) -> None:
        """An emulated ``ud2; .ascii "xen"; cpuid`` (post-emulation rip)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "forced_invalid_op", eip=eip)

    def emulate_privop(self, cpu: int, eip: int) -> None:
        """A privileged instruction emulated after #GP(0)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "emulate_privop", eip=eip)

    def emulate_4gb(self, cpu: int, eip: int) -> None:
        """x86_32 hypervisors only: a 4GB-segment access emulated (``ValueError`` elsewhere)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "emulate_4gb", eip=eip)

    def math_state_restore(self, cpu: int) -> None:
        """Lazy FPU restore without bouncing #NM (never carries the 64-bit flag)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "math_state_restore")

    def paging_fixup(self, cpu: int, eip: int, addr: int) -> None:
        """A #PF fixed by shadow paging."""
        if self.tb.tb_init_done:
            self._emit(cpu, "paging_fixup", eip=eip, addr=addr)

    def gdt_ldt_mapping_fault(self, cpu: int, eip: int, offset: int) -> None:
        """An LDT shadow mapping fault fixed (``offset`` into the LDT area)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "gdt_ldt_mapping_fault", eip=eip, offset=offset)

    def ptwr_emulation(self, cpu: int, addr: int, npte: int, eip: int) -> None:
        """A write to a page-table page emulated (``npte`` = the new PTE)."""
        if self.tb.tb_init_done:
            self._emit(cpu, "ptwr_emulation", pte=npte, addr=addr, eip=eip)

    # ---- bulk ------------------------------------------------------------------------------
    def bulk(self, point: str, cpus: np.ndarray | int, tsc: np.ndarray,
             **values: np.ndarray | int) -> None:
        """Emit ``len(tsc)`` records of one trace point through the bulk writer.

        ``point`` and ``values`` use the method names and arguments above (``hypercall`` takes
        ``op``, ``arg0``..``arg5`` and ``eip``; ``ptwr_emulation`` takes ``npte``; ``trap``
        takes ``use_error_code``).  The guest width comes from each CPU's current vCPU.
        """
        if not self.tb.tb_init_done:
            return
        tsc = np.asarray(tsc, dtype=np.uint64)
        n = tsc.shape[0]
        cpus_a = np.ascontiguousarray(np.broadcast_to(cpus, (n,)), dtype=np.int64)
        lay_point, vals = record_values(self.abi, point, values, n)
        if lay_point is None:
            return
        widths = np.array([self.tb.current(c)[2] for c in range(self.tb.nr_cpu_ids)])[cpus_a]
        events = np.zeros(n, dtype=np.uint32)
        words = np.zeros((n, 7), dtype=np.uint32)
        extra = np.zeros(n, dtype=np.int64)
        for width in np.unique(widths):
            sel = widths == width
            sub = {k: v[sel] for k, v in vals.items()}
            ev, wd, ex = encode_array(lay_point, self.abi, self.arch, int(width), **sub)
            events[sel], words[sel], extra[sel] = ev, wd, ex
        events |= np.uint32(TRC_HD_CYCLE_FLAG)
        self.tb.trace_bulk(cpus_a, events, extra, words, tsc)
