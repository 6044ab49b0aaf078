"""Event ids of Xen's public ``trace.h`` (both PV id generations), with names.

Constants keep Xen's macro names. This module is pure data plus small helpers.

Event id layout (28 bits; the record header's bits 28-31 are not part of the id)::

    bits 16-27  main class  (one bit per class: gen=0x001 ... hw=0x080, guest=0x800)
    bits 12-15  sub class
    bits  0-11  minor

Naming of ``EVENTS`` (lower_snake, derived from the Xen macro name):

* gen, sched and PV events - the ones a PV analysis talks about all the time - drop ``TRC_``
  and the class word: ``lost_records``, ``wrap_buffer``, ``cpu_change``, ``runstate_change``,
  ``continue_running``, ``dom_add``, ``wake``, ``switch_infprev``, ``trap``, ``hypercall_v2``,
  ``hypercall_subcall``. One exception: ``TRC_SCHED_SWITCH`` is ``sched_switch``.
* every other class keeps its subsystem prefix so that names stay unique across classes:
  ``dom0_``, ``hvm_``, ``hvm_emul_``, ``mem_``, ``shadow_``, ``pm_``, ``hw_irq_``, and the
  scheduler-private ``csched_``, ``csched2_``, ``rtds_``, ``snull_`` (Xen's own prefixes).
* a ``TRC_64_FLAG`` variant appends ``64`` (``trap64``, ``hvm_cr_read64``); an HVM id with
  ``TRC_HVM_NESTEDFLAG`` appends ``_nested`` (``hvm_vmexit64_nested``).
* where Xen renamed a macro, the current name is used (``csched_stolen_unit``, formerly
  ``STOLEN_VCPU``; ``hvm_ioport_read``, formerly ``IO_ASSIST``).

Documented aliases (several ids, one name) - everything else has a unique name:

* ``runstate_change``: all 16 ids ``0x00021001 | old << 8 | new << 4`` (decode the states with
  :func:`runstate_change_states`).
* PV: the seed generation ``0x0020f0nn`` (xen-3.2) and today's ``0x00201nnn`` carry the same
  name for the same minor and width (see :func:`pv_generation`).
* sched: the seed ids ``0x0002f0nn`` (``TRC_SCHED + n``) and today's ``0x00028nnn``
  (``TRC_SCHED_VERBOSE + n``) carry the same name.
* shadow: bits 8-9 hold the guest paging levels minus 2 (:func:`shadow_guest_levels`), so each
  fault/emulate event has three ids with one name.

Historical HVM ids that Xen later reused are named with today's meaning: ``0x00081003`` was
``VMEXIT64`` before 2008 and is ``SVM_EXIT`` since 2024; ``0x00082020`` was ``PF_XEN64`` and is
``INTR_WINDOW``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

EVENT_MASK = 0x0FFFFFFF
TRC_CLS_SHIFT = 16
TRC_SUBCLS_SHIFT = 12

# ---- classes -------------------------------------------------------------------------------
TRC_GEN = 0x0001F000
TRC_SCHED = 0x0002F000
TRC_DOM0OP = 0x0004F000
TRC_HVM = 0x0008F000
TRC_MEM = 0x0010F000
TRC_PV = 0x0020F000
TRC_SHADOW = 0x0040F000
TRC_HW = 0x0080F000
TRC_GUEST = 0x0800F000
TRC_ALL = 0x0FFFF000

#: Top-level classes in xenalyze's order ("Log volume" lines); class ``i`` has main ``1 << i``.
CLASSES: tuple[str, ...] = ("gen", "sched", "dom0op", "hvm", "mem", "pv", "shadow", "hw")
#: Bit index of the guest class (main ``0x800``); xenalyze has no volume line for it.
GUEST_CLASS_INDEX = 11

# ---- general -------------------------------------------------------------------------------
TRC_LOST_RECORDS = TRC_GEN + 1
TRC_TRACE_WRAP_BUFFER = TRC_GEN + 2
TRC_TRACE_CPU_CHANGE = TRC_GEN + 3
#: ``xen/include/xen/trace.h`` (private header): [irq/vector, tsc_in, tsc_out] around guest IRQs.
TRC_TRACE_IRQ = TRC_GEN + 4

# ---- scheduler -----------------------------------------------------------------------------
TRC_SCHED_MIN = 0x00021000
TRC_SCHED_CLASS = 0x00022000
TRC_SCHED_VERBOSE = 0x00028000
TRC_SCHED_RUNSTATE_CHANGE = TRC_SCHED_MIN + 1
TRC_SCHED_CONTINUE_RUNNING = TRC_SCHED_MIN + 2
TRC_SCHED_DOM_ADD = TRC_SCHED_VERBOSE + 1
TRC_SCHED_DOM_REM = TRC_SCHED_VERBOSE + 2
TRC_SCHED_SLEEP = TRC_SCHED_VERBOSE + 3
TRC_SCHED_WAKE = TRC_SCHED_VERBOSE + 4
TRC_SCHED_YIELD = TRC_SCHED_VERBOSE + 5
TRC_SCHED_BLOCK = TRC_SCHED_VERBOSE + 6
TRC_SCHED_SHUTDOWN = TRC_SCHED_VERBOSE + 7
TRC_SCHED_CTL = TRC_SCHED_VERBOSE + 8
TRC_SCHED_ADJDOM = TRC_SCHED_VERBOSE + 9
TRC_SCHED_SWITCH = TRC_SCHED_VERBOSE + 10
TRC_SCHED_S_TIMER_FN = TRC_SCHED_VERBOSE + 11
TRC_SCHED_T_TIMER_FN = TRC_SCHED_VERBOSE + 12
TRC_SCHED_DOM_TIMER_FN = TRC_SCHED_VERBOSE + 13
TRC_SCHED_SWITCH_INFPREV = TRC_SCHED_VERBOSE + 14
TRC_SCHED_SWITCH_INFNEXT = TRC_SCHED_VERBOSE + 15
TRC_SCHED_SHUTDOWN_CODE = TRC_SCHED_VERBOSE + 16
TRC_SCHED_SWITCH_INFCONT = TRC_SCHED_VERBOSE + 17

#: Seed generation (xen-3.2) scheduler ids: ``TRC_SCHED + n``.
TRC_SCHED_SEED_BASE = TRC_SCHED

#: Runstate-change ids: ``TRC_SCHED_RUNSTATE_CHANGE | old << 8 | new << 4`` (2-bit states).
RUNSTATE_OLD_SHIFT = 8
RUNSTATE_NEW_SHIFT = 4
RUNSTATE_CHANGE_MASK = EVENT_MASK & ~((3 << RUNSTATE_OLD_SHIFT) | (3 << RUNSTATE_NEW_SHIFT))

# Scheduler-private events (TRC_SCHED_CLASS): scheduler id in bits 9-11, event in bits 0-8.
TRC_SCHED_ID_BITS = 3
TRC_SCHED_ID_SHIFT = TRC_SUBCLS_SHIFT - TRC_SCHED_ID_BITS
TRC_SCHED_ID_MASK = ((1 << TRC_SCHED_ID_BITS) - 1) << TRC_SCHED_ID_SHIFT
TRC_SCHED_EVT_MASK = EVENT_MASK & ~TRC_SCHED_ID_MASK
TRC_SCHED_CSCHED = 0
TRC_SCHED_CSCHED2 = 1
TRC_SCHED_SEDF = 2  # removed scheduler (its id stays reserved)
TRC_SCHED_ARINC653 = 3  # reserved; arinc653 emits no private events
TRC_SCHED_RTDS = 4
TRC_SCHED_SNULL = 5
#: Scheduler id -> scheduler name (``xl sched-*`` spelling).
SCHEDULER_IDS: dict[int, str] = {
    TRC_SCHED_CSCHED: "credit",
    TRC_SCHED_CSCHED2: "credit2",
    TRC_SCHED_SEDF: "sedf",
    TRC_SCHED_ARINC653: "arinc653",
    TRC_SCHED_RTDS: "rtds",
    TRC_SCHED_SNULL: "null",
}


def trc_sched_class_evt(sched_id: int, evt: int) -> int:
    """Xen's ``TRC_SCHED_CLASS_EVT``: id of private event ``evt`` of scheduler ``sched_id``."""
    return (TRC_SCHED_CLASS | ((sched_id << TRC_SCHED_ID_SHIFT) & TRC_SCHED_ID_MASK)) + (
        evt & TRC_SCHED_EVT_MASK
    )


# ---- dom0 operations -----------------------------------------------------------------------
TRC_DOM0_DOMOPS = 0x00041000
TRC_DOM0_DOM_ADD = TRC_DOM0_DOMOPS + 1
TRC_DOM0_DOM_REM = TRC_DOM0_DOMOPS + 2

# ---- HVM -----------------------------------------------------------------------------------
TRC_HVM_ENTRYEXIT = 0x00081000
TRC_HVM_HANDLER = 0x00082000
TRC_HVM_EMUL = 0x00084000
TRC_HVM_NESTEDFLAG = 0x400

# ---- memory --------------------------------------------------------------------------------
TRC_MEM_PAGE_GRANT_MAP = TRC_MEM + 1
TRC_MEM_PAGE_GRANT_UNMAP = TRC_MEM + 2
TRC_MEM_PAGE_GRANT_TRANSFER = TRC_MEM + 3
TRC_MEM_SET_P2M_ENTRY = TRC_MEM + 4
TRC_MEM_DECREASE_RESERVATION = TRC_MEM + 5
TRC_MEM_POD_POPULATE = TRC_MEM + 16
TRC_MEM_POD_ZERO_RECLAIM = TRC_MEM + 17
TRC_MEM_POD_SUPERPAGE_SPLINTER = TRC_MEM + 18

# ---- PV ------------------------------------------------------------------------------------
TRC_PV_ENTRY = 0x00201000
TRC_PV_SUBCALL = 0x00202000
TRC_64_FLAG = 0x100
#: The seed's name for ``TRC_64_FLAG`` (renamed 2008, same value).
TRC_PV_64_FLAG = TRC_64_FLAG
#: PV minor numbers (same in both id generations).
PV_HYPERCALL = 1
PV_TRAP = 3
PV_PAGE_FAULT = 4
PV_FORCED_INVALID_OP = 5
PV_EMULATE_PRIVOP = 6
PV_EMULATE_4GB = 7
PV_MATH_STATE_RESTORE = 8
PV_PAGING_FIXUP = 9
PV_GDT_LDT_MAPPING_FAULT = 10
PV_PTWR_EMULATION = 11
PV_PTWR_EMULATION_PAE = 12
PV_HYPERCALL_V2 = 13
PV_HYPERCALL_SUBCALL = 14

TRC_PV_HYPERCALL = TRC_PV_ENTRY + PV_HYPERCALL
TRC_PV_TRAP = TRC_PV_ENTRY + PV_TRAP
TRC_PV_PAGE_FAULT = TRC_PV_ENTRY + PV_PAGE_FAULT
TRC_PV_FORCED_INVALID_OP = TRC_PV_ENTRY + PV_FORCED_INVALID_OP
TRC_PV_EMULATE_PRIVOP = TRC_PV_ENTRY + PV_EMULATE_PRIVOP
TRC_PV_EMULATE_4GB = TRC_PV_ENTRY + PV_EMULATE_4GB
TRC_PV_MATH_STATE_RESTORE = TRC_PV_ENTRY + PV_MATH_STATE_RESTORE
TRC_PV_PAGING_FIXUP = TRC_PV_ENTRY + PV_PAGING_FIXUP
TRC_PV_GDT_LDT_MAPPING_FAULT = TRC_PV_ENTRY + PV_GDT_LDT_MAPPING_FAULT
TRC_PV_PTWR_EMULATION = TRC_PV_ENTRY + PV_PTWR_EMULATION
TRC_PV_PTWR_EMULATION_PAE = TRC_PV_ENTRY + PV_PTWR_EMULATION_PAE
TRC_PV_HYPERCALL_V2 = TRC_PV_ENTRY + PV_HYPERCALL_V2
TRC_PV_HYPERCALL_SUBCALL = TRC_PV_SUBCALL + PV_HYPERCALL_SUBCALL
#: Bits 20-31 of a V2/SUBCALL payload word 0: 2-bit argument-presence fields A0..A5.
TRC_PV_HYPERCALL_V2_ARG_MASK = 0xFFF00000

#: Seed generation (xen-3.2, until 2012): ``TRC_PV + minor`` = ``0x0020f0nn``.
TRC_PV_SEED_BASE = TRC_PV

#: PV generations, as returned by :func:`pv_generation`.
PV_GEN_SEED = "xen-3.2"
PV_GEN_XEN4 = "xen-4"

# ---- shadow --------------------------------------------------------------------------------
TRC_SHADOW_NOT_SHADOW = TRC_SHADOW + 1
TRC_SHADOW_FAST_PROPAGATE = TRC_SHADOW + 2
TRC_SHADOW_FAST_MMIO = TRC_SHADOW + 3
TRC_SHADOW_FALSE_FAST_PATH = TRC_SHADOW + 4
TRC_SHADOW_MMIO = TRC_SHADOW + 5
TRC_SHADOW_FIXUP = TRC_SHADOW + 6
TRC_SHADOW_DOMF_DYING = TRC_SHADOW + 7
TRC_SHADOW_EMULATE = TRC_SHADOW + 8
TRC_SHADOW_EMULATE_UNSHADOW_USER = TRC_SHADOW + 9
TRC_SHADOW_EMULATE_UNSHADOW_EVTINJ = TRC_SHADOW + 10
TRC_SHADOW_EMULATE_UNSHADOW_UNHANDLED = TRC_SHADOW + 11
TRC_SHADOW_WRMAP_BF = TRC_SHADOW + 12
TRC_SHADOW_PREALLOC_UNPIN = TRC_SHADOW + 13
TRC_SHADOW_RESYNC_FULL = TRC_SHADOW + 14
TRC_SHADOW_RESYNC_ONLY = TRC_SHADOW + 15
#: Shadow events carrying ``(GUEST_PAGING_LEVELS - 2) << 8`` (emitted from shadow/multi.c).
SHADOW_LEVELS_SHIFT = 8
SHADOW_LEVELED_MINORS = range(1, 12)

# ---- hardware ------------------------------------------------------------------------------
TRC_HW_PM = 0x00801000
TRC_HW_IRQ = 0x00802000
TRC_PM_FREQ_CHANGE = TRC_HW_PM + 0x01
TRC_PM_IDLE_ENTRY = TRC_HW_PM + 0x02
TRC_PM_IDLE_EXIT = TRC_HW_PM + 0x03
TRC_HW_IRQ_MOVE_CLEANUP_DELAY = TRC_HW_IRQ + 0x1
TRC_HW_IRQ_MOVE_CLEANUP = TRC_HW_IRQ + 0x2
TRC_HW_IRQ_BIND_VECTOR = TRC_HW_IRQ + 0x3
TRC_HW_IRQ_CLEAR_VECTOR = TRC_HW_IRQ + 0x4
TRC_HW_IRQ_MOVE_FINISH = TRC_HW_IRQ + 0x5
TRC_HW_IRQ_ASSIGN_VECTOR = TRC_HW_IRQ + 0x6
TRC_HW_IRQ_UNMAPPED_VECTOR = TRC_HW_IRQ + 0x7
TRC_HW_IRQ_HANDLED = TRC_HW_IRQ + 0x8

# ---- tables --------------------------------------------------------------------------------
_GEN = {
    TRC_LOST_RECORDS: "lost_records",
    TRC_TRACE_WRAP_BUFFER: "wrap_buffer",
    TRC_TRACE_CPU_CHANGE: "cpu_change",
    TRC_TRACE_IRQ: "trace_irq",
}

#: ``TRC_SCHED_VERBOSE + n`` (today) and ``TRC_SCHED + n`` (seed, n <= 15) names.
_SCHED_VERBOSE_NAMES = {
    1: "dom_add",
    2: "dom_rem",
    3: "sleep",
    4: "wake",
    5: "yield",
    6: "block",
    7: "shutdown",
    8: "ctl",
    9: "adjdom",
    10: "sched_switch",
    11: "s_timer_fn",
    12: "t_timer_fn",
    13: "dom_timer_fn",
    14: "switch_infprev",
    15: "switch_infnext",
    16: "shutdown_code",
    17: "switch_infcont",
}
_SCHED_SEED_MAX = 15

#: Scheduler-private events: (scheduler id, prefix, {event number: name}).
_SCHED_PRIVATE: tuple[tuple[int, str, dict[int, str]], ...] = (
    (
        TRC_SCHED_CSCHED,
        "csched_",
        {
            1: "sched_tasklet",
            2: "account_start",
            3: "account_stop",
            4: "stolen_unit",
            5: "picked_cpu",
            6: "tickle",
            7: "boost_start",
            8: "boost_end",
            9: "schedule",
            10: "ratelimit",
            11: "steal_check",
        },
    ),
    (
        TRC_SCHED_CSCHED2,
        "csched2_",
        {
            1: "tick",
            2: "runq_pos",
            3: "credit_burn",
            4: "credit_add",
            5: "tickle_check",
            6: "tickle",
            7: "credit_reset",
            8: "sched_tasklet",
            9: "update_load",
            10: "runq_assign",
            11: "update_unit_load",
            12: "update_runq_load",
            13: "tickle_new",
            14: "runq_max_weight",
            15: "migrate",
            16: "load_check",
            17: "load_balance",
            19: "picked_cpu",
            20: "runq_candidate",
            21: "schedule",
            22: "ratelimit",
            23: "runq_cand_check",
        },
    ),
    (
        TRC_SCHED_RTDS,
        "rtds_",
        {
            1: "tickle",
            2: "runq_pick",
            3: "budget_burn",
            4: "budget_replenish",
            5: "sched_tasklet",
            6: "schedule",
        },
    ),
    (
        TRC_SCHED_SNULL,
        "snull_",
        {
            1: "picked_cpu",
            2: "unit_assign",
            3: "unit_deassign",
            4: "migrate",
            5: "schedule",
            6: "tasklet",
        },
    ),
)

_DOM0 = {TRC_DOM0_DOM_ADD: "dom0_dom_add", TRC_DOM0_DOM_REM: "dom0_dom_rem"}

#: HVM entry/exit ids (minor within TRC_HVM_ENTRYEXIT). 0x02/0x102 were VMEXIT for both vendors
#: until 2024; since then they are VMX exits and 0x03/0x103 are SVM exits.
_HVM_ENTRYEXIT = {
    0x001: "hvm_vmentry",
    0x002: "hvm_vmexit",
    0x102: "hvm_vmexit64",
    0x003: "hvm_svm_exit",
    0x103: "hvm_svm_exit64",
}

_HVM_HANDLER = {
    0x001: "hvm_pf_xen",
    0x101: "hvm_pf_xen64",
    0x002: "hvm_pf_inject",
    0x102: "hvm_pf_inject64",
    0x003: "hvm_inj_exc",
    0x004: "hvm_inj_virq",
    0x005: "hvm_reinj_virq",
    0x006: "hvm_io_read",
    0x007: "hvm_io_write",
    0x008: "hvm_cr_read",
    0x108: "hvm_cr_read64",
    0x009: "hvm_cr_write",
    0x109: "hvm_cr_write64",
    0x00A: "hvm_dr_read",
    0x00B: "hvm_dr_write",
    0x00C: "hvm_msr_read",
    0x00D: "hvm_msr_write",
    0x00E: "hvm_cpuid",
    0x00F: "hvm_intr",
    0x010: "hvm_nmi",
    0x011: "hvm_smi",
    0x012: "hvm_vmmcall",
    0x013: "hvm_hlt",
    0x014: "hvm_invlpg",
    0x114: "hvm_invlpg64",
    0x015: "hvm_mce",
    0x016: "hvm_ioport_read",
    0x116: "hvm_ioport_read64",
    0x017: "hvm_iomem_read",
    0x117: "hvm_iomem_read64",
    0x018: "hvm_clts",
    0x019: "hvm_lmsw",
    0x119: "hvm_lmsw64",
    0x01A: "hvm_rdtsc",
    0x020: "hvm_intr_window",
    0x021: "hvm_npf",
    0x022: "hvm_realmode_emulate",
    0x023: "hvm_trap",
    0x024: "hvm_trap_debug",
    0x025: "hvm_vlapic",
    0x126: "hvm_xcr_read64",
    0x127: "hvm_xcr_write64",
    0x216: "hvm_ioport_write",
    0x316: "hvm_ioport_write64",
    0x217: "hvm_iomem_write",
    0x317: "hvm_iomem_write64",
}

_HVM_EMUL = {
    0x01: "hpet_start_timer",
    0x02: "pit_start_timer",
    0x03: "rtc_start_timer",
    0x04: "lapic_start_timer",
    0x05: "hpet_stop_timer",
    0x06: "pit_stop_timer",
    0x07: "rtc_stop_timer",
    0x08: "lapic_stop_timer",
    0x09: "pit_timer_cb",
    0x0A: "lapic_timer_cb",
    0x0B: "pic_int_output",
    0x0C: "pic_kick",
    0x0D: "pic_intack",
    0x0E: "pic_posedge",
    0x0F: "pic_negedge",
    0x10: "pic_pend_irq_call",
    0x11: "lapic_pic_intr",
}

_MEM = {
    TRC_MEM_PAGE_GRANT_MAP: "mem_page_grant_map",
    TRC_MEM_PAGE_GRANT_UNMAP: "mem_page_grant_unmap",
    TRC_MEM_PAGE_GRANT_TRANSFER: "mem_page_grant_transfer",
    TRC_MEM_SET_P2M_ENTRY: "mem_set_p2m_entry",
    TRC_MEM_DECREASE_RESERVATION: "mem_decrease_reservation",
    TRC_MEM_POD_POPULATE: "mem_pod_populate",
    TRC_MEM_POD_ZERO_RECLAIM: "mem_pod_zero_reclaim",
    TRC_MEM_POD_SUPERPAGE_SPLINTER: "mem_pod_superpage_splinter",
}

_PV_NAMES = {
    PV_HYPERCALL: "hypercall",
    PV_TRAP: "trap",
    PV_PAGE_FAULT: "page_fault",
    PV_FORCED_INVALID_OP: "forced_invalid_op",
    PV_EMULATE_PRIVOP: "emulate_privop",
    PV_EMULATE_4GB: "emulate_4gb",
    PV_MATH_STATE_RESTORE: "math_state_restore",
    PV_PAGING_FIXUP: "paging_fixup",
    PV_GDT_LDT_MAPPING_FAULT: "gdt_ldt_mapping_fault",
    PV_PTWR_EMULATION: "ptwr_emulation",
    PV_PTWR_EMULATION_PAE: "ptwr_emulation_pae",
    PV_HYPERCALL_V2: "hypercall_v2",
    PV_HYPERCALL_SUBCALL: "hypercall_subcall",
}
#: Minors that Xen (or the seed on x86-64) emits with ``TRC_64_FLAG`` for 64-bit guests.
PV_MINORS_WITH_64 = frozenset(
    {
        PV_HYPERCALL,
        PV_TRAP,
        PV_PAGE_FAULT,
        PV_FORCED_INVALID_OP,
        PV_EMULATE_PRIVOP,
        PV_PAGING_FIXUP,
        PV_GDT_LDT_MAPPING_FAULT,
        PV_PTWR_EMULATION,
    }
)
#: Minors whose id never carries width information (``is_64bit`` is ``None``).
PV_MINORS_NO_WIDTH = frozenset({PV_MATH_STATE_RESTORE, PV_HYPERCALL_V2, PV_HYPERCALL_SUBCALL})

_SHADOW = {
    1: "shadow_not_shadow",
    2: "shadow_fast_propagate",
    3: "shadow_fast_mmio",
    4: "shadow_false_fast_path",
    5: "shadow_mmio",
    6: "shadow_fixup",
    7: "shadow_domf_dying",
    8: "shadow_emulate",
    9: "shadow_emulate_unshadow_user",
    10: "shadow_emulate_unshadow_evtinj",
    11: "shadow_emulate_unshadow_unhandled",
    12: "shadow_wrmap_bf",
    13: "shadow_prealloc_unpin",
    14: "shadow_resync_full",
    15: "shadow_resync_only",
}

_HW = {
    TRC_PM_FREQ_CHANGE: "pm_freq_change",
    TRC_PM_IDLE_ENTRY: "pm_idle_entry",
    TRC_PM_IDLE_EXIT: "pm_idle_exit",
    TRC_HW_IRQ_MOVE_CLEANUP_DELAY: "hw_irq_move_cleanup_delay",
    TRC_HW_IRQ_MOVE_CLEANUP: "hw_irq_move_cleanup",
    TRC_HW_IRQ_BIND_VECTOR: "hw_irq_bind_vector",
    TRC_HW_IRQ_CLEAR_VECTOR: "hw_irq_clear_vector",
    TRC_HW_IRQ_MOVE_FINISH: "hw_irq_move_finish",
    TRC_HW_IRQ_ASSIGN_VECTOR: "hw_irq_assign_vector",
    TRC_HW_IRQ_UNMAPPED_VECTOR: "hw_irq_unmapped_vector",
    TRC_HW_IRQ_HANDLED: "hw_irq_handled",
}


def pv_event(minor: int, *, is64: bool = False, generation: str = PV_GEN_XEN4) -> int:
    """The PV event id of ``minor`` for ``generation`` (``'xen-4'`` or ``'xen-3.2'``).

    ``xen-4`` puts minor 14 (SUBCALL) in ``TRC_PV_SUBCALL`` and every other minor in
    ``TRC_PV_ENTRY``; ``xen-3.2`` uses ``TRC_PV + minor``. ``is64`` ORs in ``TRC_64_FLAG``.
    """
    if not 0 <= minor <= 0xFF:
        raise ValueError(f"PV minor {minor} not in 0..255")
    if generation == PV_GEN_XEN4:
        base = TRC_PV_SUBCALL if minor == PV_HYPERCALL_SUBCALL else TRC_PV_ENTRY
    elif generation == PV_GEN_SEED:
        base = TRC_PV_SEED_BASE
    else:
        raise ValueError(f"unknown PV generation {generation!r}")
    return base + minor + (TRC_64_FLAG if is64 else 0)


def runstate_change_event(old: int, new: int) -> int:
    """``TRC_SCHED_RUNSTATE_CHANGE`` id for a change ``old -> new`` (states 0..3)."""
    if not (0 <= old <= 3 and 0 <= new <= 3):
        raise ValueError(f"runstates must be 0..3, got {old}->{new}")
    return TRC_SCHED_RUNSTATE_CHANGE | old << RUNSTATE_OLD_SHIFT | new << RUNSTATE_NEW_SHIFT


def _build_events() -> dict[int, str]:
    ev: dict[int, str] = dict(_GEN)
    # scheduler
    for old in range(4):
        for new in range(4):
            ev[runstate_change_event(old, new)] = "runstate_change"
    ev[TRC_SCHED_CONTINUE_RUNNING] = "continue_running"
    for n, name in _SCHED_VERBOSE_NAMES.items():
        ev[TRC_SCHED_VERBOSE + n] = name
        if n <= _SCHED_SEED_MAX:
            ev[TRC_SCHED_SEED_BASE + n] = name
    for sched_id, prefix, table in _SCHED_PRIVATE:
        for n, name in table.items():
            ev[trc_sched_class_evt(sched_id, n)] = prefix + name
    ev.update(_DOM0)
    # HVM
    for minor, name in _HVM_ENTRYEXIT.items():
        ev[TRC_HVM_ENTRYEXIT + minor] = name
        ev[TRC_HVM_ENTRYEXIT + (minor | TRC_HVM_NESTEDFLAG)] = name + "_nested"
    for minor, name in _HVM_HANDLER.items():
        ev[TRC_HVM_HANDLER + minor] = name
    for minor, name in _HVM_EMUL.items():
        ev[TRC_HVM_EMUL + minor] = "hvm_emul_" + name
    ev.update(_MEM)
    # PV, both generations
    for minor, name in _PV_NAMES.items():
        gens = [PV_GEN_XEN4] if minor >= PV_HYPERCALL_V2 else [PV_GEN_XEN4, PV_GEN_SEED]
        for gen in gens:
            ev[pv_event(minor, generation=gen)] = name
            if minor in PV_MINORS_WITH_64:
                ev[pv_event(minor, is64=True, generation=gen)] = name + "64"
    # shadow: minors 1-11 with guest levels 2/3/4 in bits 8-9; 12-15 without
    for minor, name in _SHADOW.items():
        ev[TRC_SHADOW + minor] = name
        if minor in SHADOW_LEVELED_MINORS:
            for lv in (1, 2):
                ev[TRC_SHADOW + (lv << SHADOW_LEVELS_SHIFT) + minor] = name
    ev.update(_HW)
    ev[TRC_GUEST] = "guest"
    return dict(sorted(ev.items()))


#: Every known event id -> name (see the module docstring for the naming rules and aliases).
EVENTS: dict[int, str] = _build_events()


# ---- decoding helpers ----------------------------------------------------------------------
def split_event(event: int) -> tuple[int, int, int]:
    """``(main, sub, minor)`` = bits 16-27, 12-15 and 0-11 of the 28-bit id."""
    event &= EVENT_MASK
    return event >> TRC_CLS_SHIFT, (event >> TRC_SUBCLS_SHIFT) & 0xF, event & 0xFFF


def class_index(event: int) -> int | None:
    """Bit position of the single set bit of ``main`` (gen=0 ... hw=7, guest=11).

    ``None`` when ``main`` has no bit or more than one bit set (xenalyze treats that record
    as fatal: "unexpected number bits in evt.main").
    """
    main = (event & EVENT_MASK) >> TRC_CLS_SHIFT
    if main == 0 or main & (main - 1):
        return None
    return main.bit_length() - 1


def class_name(event: int) -> str:
    """``'gen'``, ``'sched'``, ... ``'hw'`` (see ``CLASSES``), ``'guest'`` or ``'unknown'``.

    ``'unknown'`` for a main field with zero or several bits set, and for single bits 8-10.
    """
    idx = class_index(event)
    if idx is None:
        return "unknown"
    if idx < len(CLASSES):
        return CLASSES[idx]
    return "guest" if idx == GUEST_CLASS_INDEX else "unknown"


def _main(event: int) -> int:
    return (event & EVENT_MASK) >> TRC_CLS_SHIFT


def is_runstate_change(event: int) -> bool:
    """True for ``TRC_SCHED_RUNSTATE_CHANGE`` ids (any old/new state)."""
    return (event & RUNSTATE_CHANGE_MASK) == TRC_SCHED_RUNSTATE_CHANGE


def runstate_change_states(event: int) -> tuple[int, int]:
    """``(old, new)`` runstates (0 running, 1 runnable, 2 blocked, 3 offline) of a change id."""
    if not is_runstate_change(event):
        raise ValueError(f"{event & EVENT_MASK:#010x} is not a runstate change")
    return (event >> RUNSTATE_OLD_SHIFT) & 3, (event >> RUNSTATE_NEW_SHIFT) & 3


def shadow_guest_levels(event: int) -> int | None:
    """Guest paging levels (2, 3, 4) encoded in bits 8-9 of a shadow fault/emulate id.

    ``None`` for non-shadow ids and for the shadow events emitted without the level field
    (minors 12-15: WRMAP_BF, PREALLOC_UNPIN, RESYNC_FULL, RESYNC_ONLY) or unknown minors.
    """
    event &= EVENT_MASK
    if _main(event) != TRC_SHADOW >> TRC_CLS_SHIFT or (event & 0xFF) not in SHADOW_LEVELED_MINORS:
        return None
    return 2 + ((event >> SHADOW_LEVELS_SHIFT) & 3)


def sched_class_scheduler(event: int) -> str | None:
    """Scheduler name (``'credit'``, ``'credit2'``, ``'rtds'``, ``'null'``...) of a
    ``TRC_SCHED_CLASS`` id, from bits 9-11; ``None`` for other ids or unassigned scheduler ids.
    """
    event &= EVENT_MASK
    if event & ~0xFFF != TRC_SCHED_CLASS:
        return None
    return SCHEDULER_IDS.get((event & TRC_SCHED_ID_MASK) >> TRC_SCHED_ID_SHIFT)


def pv_minor(event: int) -> int | None:
    """PV minor (bits 0-7, as xenalyze decodes it) for PV-class ids of either generation."""
    event &= EVENT_MASK
    if _main(event) != TRC_PV >> TRC_CLS_SHIFT:
        return None
    return event & 0xFF


def pv_generation(event: int) -> str:
    """``'xen-3.2'`` for ``0x0020f0nn`` ids, ``'xen-4'`` for ``0x00201nnn``/``0x00202nnn``.

    ``'unknown'`` for other PV sub-classes; ``ValueError`` for ids outside the PV class.
    """
    main, sub, _ = split_event(event)
    if main != TRC_PV >> TRC_CLS_SHIFT:
        raise ValueError(f"{event & EVENT_MASK:#010x} is not a PV event")
    if sub == 0xF:
        return PV_GEN_SEED
    if sub in (1, 2):
        return PV_GEN_XEN4
    return "unknown"


#: HVM ids that are explicit 64-bit variants (nested flag stripped before the lookup).
HVM_64BIT_EVENTS = frozenset(
    [TRC_HVM_ENTRYEXIT + m for m in _HVM_ENTRYEXIT if m & TRC_64_FLAG]
    + [TRC_HVM_HANDLER + m for m in _HVM_HANDLER if m & TRC_64_FLAG]
)


def is_64bit(event: int) -> bool | None:
    """Whether the id itself says "64-bit addresses" (``TRC_64_FLAG``), decoded per class.

    * PV: ``event & 0x100``, except minors 8, 13, 14 (MATH_STATE_RESTORE, HYPERCALL_V2,
      SUBCALL), which never carry width (``None``), and PTWR_EMULATION_PAE, which always means
      a 32-bit guest (``False``).
    * HVM: ``True`` for the explicit 64-bit variants (``VMEXIT64``, ``CR_READ64``, ...,
      nested or not), ``False`` for their 32-bit siblings, ``None`` for ids without a variant.
    * every other class: ``None`` - bit 8 means something else there (sched runstates, shadow
      guest levels) or nothing.
    """
    event &= EVENT_MASK
    main = _main(event)
    if main == TRC_PV >> TRC_CLS_SHIFT:
        minor = event & 0xFF
        if minor in PV_MINORS_NO_WIDTH:
            return None
        if minor == PV_PTWR_EMULATION_PAE:
            return False
        return bool(event & TRC_64_FLAG)
    if main == TRC_HVM >> TRC_CLS_SHIFT:
        base = event & ~TRC_HVM_NESTEDFLAG
        if base in HVM_64BIT_EVENTS:
            return True
        if base | TRC_64_FLAG in HVM_64BIT_EVENTS:
            return False
    return None


def is_hvm_nested(event: int) -> bool:
    """True for HVM entry/exit ids carrying ``TRC_HVM_NESTEDFLAG`` (0x400)."""
    event &= EVENT_MASK
    return event & ~0xFFF == TRC_HVM_ENTRYEXIT and bool(event & TRC_HVM_NESTEDFLAG)


# ---- names ---------------------------------------------------------------------------------
def unknown_name(event: int) -> str:
    """The stable fallback name of an id not in ``EVENTS``: ``unknown_0x00012345``."""
    return f"unknown_0x{event & EVENT_MASK:08x}"


def event_name(event: int) -> str:
    """Name of any 28-bit id (header bits 28-31 are ignored).

    Known ids use ``EVENTS``; any id of the guest class (main ``0x800``) is ``'guest'``;
    everything else gets :func:`unknown_name`.
    """
    event &= EVENT_MASK
    name = EVENTS.get(event)
    if name is not None:
        return name
    if _main(event) == TRC_GUEST >> TRC_CLS_SHIFT:
        return "guest"
    return unknown_name(event)


def events_named(name: str) -> tuple[int, ...]:
    """All ids in ``EVENTS`` with this name, ascending (several for documented aliases)."""
    return tuple(e for e, n in EVENTS.items() if n == name)


@cache
def _table() -> tuple[np.ndarray, tuple[str, ...]]:
    ids = np.fromiter(EVENTS.keys(), dtype=np.uint32, count=len(EVENTS))
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    ids.setflags(write=False)
    names = tuple(EVENTS[int(e)] for e in ids)
    return ids, names


def name_table() -> tuple[np.ndarray, list[str]]:
    """``(ids, names)``: ascending ``uint32`` ids (read-only) and their names, for
    ``np.searchsorted`` lookups over whole columns of event ids (see :func:`event_names`).
    """
    ids, names = _table()
    return ids, list(names)


def event_names(events: np.ndarray) -> np.ndarray:
    """Vectorised :func:`event_name`: an object array of names, same shape as ``events``."""
    ev = np.asarray(events).astype(np.uint64) & EVENT_MASK
    ids, names = _table()
    flat = ev.ravel()
    pos = np.searchsorted(ids, flat)
    pos_c = np.minimum(pos, len(ids) - 1)
    hit = ids[pos_c] == flat
    name_arr = np.asarray(names, dtype=object)
    out = np.empty(flat.shape, dtype=object)
    out[hit] = name_arr[pos_c[hit]]
    miss = ~hit
    if miss.any():
        guest = miss & ((flat >> TRC_CLS_SHIFT) == (TRC_GUEST >> TRC_CLS_SHIFT))
        out[guest] = "guest"
        rest = miss & ~guest
        if rest.any():
            uniq, inv = np.unique(flat[rest], return_inverse=True)
            fallback = np.asarray([unknown_name(int(u)) for u in uniq], dtype=object)
            out[rest] = fallback[inv.ravel()]
    return out.reshape(ev.shape)
