"""Names of Xen's numbers that trace payloads carry: hypercalls and their sub-commands, x86
exception vectors, page-fault error codes, PTE bits, runstates and reserved domain ids.

Sources: Xen's public headers (``xen.h``, ``vcpu.h``, ``sched.h``, ``grant_table.h``,
``memory.h``) as summarised in ``spec/xen-constants.md``. The last section holds xenalyze's own
spellings (``tools/xentrace/xenalyze.c``), which differ from Xen's and are what ``--summary``
compatible output must print.
"""

from __future__ import annotations

# ============================================================================================
# Hypercalls (xen/include/public/xen.h)
# ============================================================================================
HYPERCALL_NAMES: dict[int, str] = {
    0: "set_trap_table",
    1: "mmu_update",
    2: "set_gdt",
    3: "stack_switch",
    4: "set_callbacks",
    5: "fpu_taskswitch",
    6: "sched_op_compat",
    7: "platform_op",
    8: "set_debugreg",
    9: "get_debugreg",
    10: "update_descriptor",
    # 11 is unused
    12: "memory_op",
    13: "multicall",
    14: "update_va_mapping",
    15: "set_timer_op",
    16: "event_channel_op_compat",
    17: "xen_version",
    18: "console_io",
    19: "physdev_op_compat",
    20: "grant_table_op",
    21: "vm_assist",
    22: "update_va_mapping_otherdomain",
    23: "iret",
    24: "vcpu_op",
    25: "set_segment_base",
    26: "mmuext_op",
    27: "xsm_op",
    28: "nmi_op",
    29: "sched_op",
    30: "callback_op",
    31: "xenoprof_op",
    32: "event_channel_op",
    33: "physdev_op",
    34: "hvm_op",
    35: "sysctl",
    36: "domctl",
    37: "kexec_op",
    38: "tmem_op",
    39: "argo_op",
    40: "xenpmu_op",
    41: "dm_op",
    42: "hypfs_op",
    **{48 + i: f"arch_{i}" for i in range(8)},
}
#: Older names of the same numbers (same hypercall, renamed) and removals.
HYPERCALL_HISTORY: dict[int, str] = {
    7: "was dom0_op",
    27: "was acm_op",
    31: "xenoprof_op dropped in Xen 4.22",
    38: "tmem_op removed (tmem dropped from Xen)",
}
#: x86 names of the architecture-specific numbers.
HYPERCALL_X86_ARCH_NAMES: dict[int, str] = {48: "mca", 49: "paging_domctl_cont"}

# Numbers whose arguments HYPERCALL_V2 / SUBCALL records carry.
HYPERCALL_MMU_UPDATE = 1
HYPERCALL_MEMORY_OP = 12
HYPERCALL_MULTICALL = 13
HYPERCALL_GRANT_TABLE_OP = 20
HYPERCALL_IRET = 23
HYPERCALL_VCPU_OP = 24
HYPERCALL_MMUEXT_OP = 26
HYPERCALL_SCHED_OP = 29
#: mmu_update's recorded count has bit 31 set when the call was preempted and continued.
MMU_UPDATE_PREEMPTED = 0x80000000


def hypercall_name(nr: int) -> str:
    """Xen's name of hypercall ``nr``; ``unknown_<nr>`` for unassigned numbers (e.g. 11)."""
    return HYPERCALL_NAMES.get(nr, f"unknown_{nr}")


# ---- sub-commands --------------------------------------------------------------------------
VCPU_OP_NAMES: dict[int, str] = {
    0: "initialise",
    1: "up",
    2: "down",
    3: "is_up",
    4: "get_runstate_info",
    5: "register_runstate_memory_area",
    6: "set_periodic_timer",
    7: "stop_periodic_timer",
    8: "set_singleshot_timer",
    9: "stop_singleshot_timer",
    10: "register_vcpu_info",
    11: "send_nmi",
    12: "get_physid",
    13: "register_vcpu_time_memory_area",
    14: "register_runstate_phys_area",
    15: "register_vcpu_time_phys_area",
}

SCHED_OP_NAMES: dict[int, str] = {
    0: "yield",
    1: "block",
    2: "shutdown",
    3: "poll",
    4: "remote_shutdown",
    5: "shutdown_code",
    6: "watchdog",
    7: "pin_override",
}

GRANT_TABLE_OP_NAMES: dict[int, str] = {
    0: "map_grant_ref",
    1: "unmap_grant_ref",
    2: "setup_table",
    3: "dump_table",
    4: "transfer",
    5: "copy",
    6: "query_size",
    7: "unmap_and_replace",
    8: "set_version",
    9: "get_status_frames",
    10: "get_version",
    11: "swap_grant_ref",
    12: "cache_flush",
}

#: mmuext_op commands (not recorded in trace records; for reference). 14 is unassigned.
MMUEXT_OP_NAMES: dict[int, str] = {
    0: "pin_l1_table",
    1: "pin_l2_table",
    2: "pin_l3_table",
    3: "pin_l4_table",
    4: "unpin_table",
    5: "new_baseptr",
    6: "tlb_flush_local",
    7: "invlpg_local",
    8: "tlb_flush_multi",
    9: "invlpg_multi",
    10: "tlb_flush_all",
    11: "invlpg_all",
    12: "flush_cache",
    13: "set_ldt",
    15: "new_user_baseptr",
    16: "clear_page",
    17: "copy_page",
    18: "flush_cache_global",
    19: "mark_super",
    20: "unmark_super",
}

#: memory_op commands (``XENMEM_*``, public/memory.h). 8 (translate_gpfn_list) was removed.
MEMORY_OP_NAMES: dict[int, str] = {
    0: "increase_reservation",
    1: "decrease_reservation",
    2: "maximum_ram_page",
    3: "current_reservation",
    4: "maximum_reservation",
    5: "machphys_mfn_list",
    6: "populate_physmap",
    7: "add_to_physmap",
    8: "translate_gpfn_list",
    9: "memory_map",
    10: "machine_memory_map",
    11: "exchange",
    12: "machphys_mapping",
    13: "set_memory_map",
    14: "maximum_gpfn",
    15: "remove_from_physmap",
    16: "set_pod_target",
    17: "get_pod_target",
    18: "get_sharing_freed_pages",
    19: "get_sharing_shared_pages",
    20: "paging_op",
    21: "access_op",
    22: "sharing_op",
    23: "add_to_physmap_batch",
    24: "claim_pages",
    25: "machphys_compat_mfn_list",
    26: "get_vnumainfo",
    27: "reserved_device_memory_map",
    28: "acquire_resource",
}

#: Sub-command tables of the hypercalls whose command argument is recorded (arg 0).
SUBOP_NAMES: dict[int, dict[int, str]] = {
    HYPERCALL_VCPU_OP: VCPU_OP_NAMES,
    HYPERCALL_SCHED_OP: SCHED_OP_NAMES,
    HYPERCALL_GRANT_TABLE_OP: GRANT_TABLE_OP_NAMES,
    HYPERCALL_MMUEXT_OP: MMUEXT_OP_NAMES,
    HYPERCALL_MEMORY_OP: MEMORY_OP_NAMES,
}


def subop_name(hypercall: int, cmd: int) -> str:
    """Name of sub-command ``cmd`` of ``hypercall``; ``unknown_<cmd>`` if not known."""
    return SUBOP_NAMES.get(hypercall, {}).get(cmd, f"unknown_{cmd}")


# ============================================================================================
# x86 exceptions, page-fault error codes, page-table entries
# ============================================================================================
#: vector -> (mnemonic, description). 15 is reserved.
EXCEPTION_VECTORS: dict[int, tuple[str, str]] = {
    0: ("#DE", "divide error"),
    1: ("#DB", "debug"),
    2: ("NMI", "non-maskable interrupt"),
    3: ("#BP", "breakpoint"),
    4: ("#OF", "overflow"),
    5: ("#BR", "bound range"),
    6: ("#UD", "invalid opcode"),
    7: ("#NM", "device not available"),
    8: ("#DF", "double fault"),
    9: ("CSO", "coprocessor segment overrun"),
    10: ("#TS", "invalid TSS"),
    11: ("#NP", "segment not present"),
    12: ("#SS", "stack fault"),
    13: ("#GP", "general protection"),
    14: ("#PF", "page fault"),
    15: ("RSVD", "reserved"),
    16: ("#MF", "x87 floating point"),
    17: ("#AC", "alignment check"),
    18: ("#MC", "machine check"),
    19: ("#XM", "SIMD floating point"),
    20: ("#VE", "virtualization"),
    21: ("#CP", "control protection"),
}
#: Vectors whose exceptions push an error code.
VECTORS_WITH_ERROR_CODE = frozenset({8, 10, 11, 12, 13, 14, 17, 21})
#: The same set as a bitmask (Xen's ``X86_EXC_HAVE_EC``).
X86_EXC_HAVE_EC = sum(1 << v for v in VECTORS_WITH_ERROR_CODE)
X86_EXC_PF = 14
X86_EXC_NM = 7


def vector_name(vector: int) -> str:
    """Mnemonic of exception ``vector`` (``#GP``); ``int 0x80``-style for other vectors."""
    if vector in EXCEPTION_VECTORS:
        return EXCEPTION_VECTORS[vector][0]
    return f"int 0x{vector:02x}"


def has_error_code(vector: int) -> bool:
    """Whether a hardware exception with this vector pushes an error code."""
    return vector in VECTORS_WITH_ERROR_CODE


# Page-fault error code bits.
PFEC_PRESENT = 1 << 0
PFEC_WRITE = 1 << 1
PFEC_USER = 1 << 2
PFEC_RSVD = 1 << 3
PFEC_INSN_FETCH = 1 << 4
PFEC_PROT_KEY = 1 << 5
PFEC_SHSTK = 1 << 6
PFEC_SGX = 1 << 15
PFEC_BITS: dict[int, str] = {
    PFEC_PRESENT: "P",
    PFEC_WRITE: "W",
    PFEC_USER: "U",
    PFEC_RSVD: "RSVD",
    PFEC_INSN_FETCH: "I",
    PFEC_PROT_KEY: "PK",
    PFEC_SHSTK: "SS",
    PFEC_SGX: "SGX",
}


def decode_pfec(code: int) -> list[str]:
    """Names of the set page-fault error-code bits, low bit first (``['P', 'W']``)."""
    return [name for bit, name in PFEC_BITS.items() if code & bit]


# Page-table entry bits (PTWR ``npte``).
PTE_PRESENT = 1 << 0
PTE_RW = 1 << 1
PTE_USER = 1 << 2
PTE_PWT = 1 << 3
PTE_PCD = 1 << 4
PTE_ACCESSED = 1 << 5
PTE_DIRTY = 1 << 6
PTE_PAT_PSE = 1 << 7
PTE_GLOBAL = 1 << 8
PTE_AVAIL_MASK = 0x7 << 9
PTE_NX = 1 << 63
PTE_SHIFT = 12
#: Frame-number field of a 64-bit or PAE PTE: bits 12-51.
PTE_MFN_MASK_PAE = ((1 << 52) - 1) & ~((1 << PTE_SHIFT) - 1)
#: Frame-number field of a non-PAE 32-bit PTE: bits 12-31.
PTE_MFN_MASK_NONPAE = 0xFFFFF000
PTE_BITS: dict[int, str] = {
    PTE_PRESENT: "P",
    PTE_RW: "RW",
    PTE_USER: "US",
    PTE_PWT: "PWT",
    PTE_PCD: "PCD",
    PTE_ACCESSED: "A",
    PTE_DIRTY: "D",
    PTE_PAT_PSE: "PAT/PSE",
    PTE_GLOBAL: "G",
    PTE_NX: "NX",
}


def pte_mfn(pte: int, *, pae: bool = True) -> int:
    """Machine frame number in ``pte`` (bits 12-51, or 12-31 when ``pae`` is False)."""
    mask = PTE_MFN_MASK_PAE if pae else PTE_MFN_MASK_NONPAE
    return (pte & mask) >> PTE_SHIFT


def decode_pte_flags(pte: int) -> list[str]:
    """Names of the set flag bits of ``pte`` (available bits 9-11 are not named)."""
    return [name for bit, name in PTE_BITS.items() if pte & bit]


# ============================================================================================
# Runstates and domains
# ============================================================================================
RUNSTATE_RUNNING = 0
RUNSTATE_RUNNABLE = 1
RUNSTATE_BLOCKED = 2
RUNSTATE_OFFLINE = 3
RUNSTATE_NAMES: dict[int, str] = {0: "running", 1: "runnable", 2: "blocked", 3: "offline"}

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_ANY = 0x7FF5
DOMID_IDLE = 0x7FFF
#: Reserved domain id -> label used in ``d[...]`` renderings.
RESERVED_DOMID_LABELS: dict[int, str] = {
    DOMID_SELF: "SELF",
    DOMID_IO: "IO",
    DOMID_XEN: "XEN",
    DOMID_COW: "COW",
    DOMID_INVALID: "INVALID",
    DOMID_ANY: "ANY",
    DOMID_IDLE: "IDLE",
}


def is_reserved_domid(domid: int) -> bool:
    """True for ``DOMID_FIRST_RESERVED`` (0x7FF0) .. 0x7FFF."""
    return DOMID_FIRST_RESERVED <= domid <= DOMID_IDLE


def domain_label(domid: int) -> str:
    """``d1``; ``d[IDLE]``, ``d[XEN]``... for named reserved ids; ``d[0x7ff8]`` for unnamed
    reserved ids. Ids above 0x7FFF (e.g. xenalyze's default domain 32768) render plainly.
    """
    if domid in RESERVED_DOMID_LABELS:
        return f"d[{RESERVED_DOMID_LABELS[domid]}]"
    if is_reserved_domid(domid):
        return f"d[0x{domid:04x}]"
    return f"d{domid}"


def vcpu_label(domid: int, vcpu: int) -> str:
    """``d1v0``, ``d[IDLE]v3`` (idle vCPU number = pCPU number), ``d[XEN]v0``."""
    return f"{domain_label(domid)}v{vcpu}"


# ============================================================================================
# xenalyze spellings (tools/xentrace/xenalyze.c) - for --summary / --dump-all compatibility.
# These differ from Xen's names above; use them only where xenalyze's output is reproduced.
# ============================================================================================
#: ``hypercall_name[HYPERCALL_MAX]`` (38 entries; 11 is NULL and prints ``(null)``).
XENALYZE_HYPERCALL_NAMES: tuple[str | None, ...] = (
    "set_trap_table",
    "mmu_update",
    "set_gdt",
    "stack_switch",
    "set_callbacks",
    "fpu_taskswitch",
    "sched_op(compat)",
    "platform_op",
    "set_debugreg",
    "get_debugreg",
    "update_descriptor",
    None,
    "memory_op",
    "multicall",
    "update_va_mapping",
    "set_timer_op",
    "evtchn_op(compat)",
    "xen_version",
    "console_io",
    "physdev_op(compat)",
    "grant_table_op",
    "vm_assist",
    "update_va_mapping_otherdomain",
    "iret",
    "vcpu_op",
    "set_segment_base",
    "mmuext_op",
    "acm_op",
    "nmi_op",
    "sched_op",
    "callback_op",
    "xenoprof_op",
    "evtchn_op",
    "physdev_op",
    "hvm_op",
    "sysctl",
    "domctl",
    "kexec_op",
)
XENALYZE_HYPERCALL_MAX = 38
#: Size of xenalyze's per-vCPU hypercall counter array (ops >= 56 are not counted).
XENALYZE_PV_HYPERCALL_MAX = 56
#: Traps counted per vector only below this number.
XENALYZE_PV_TRAP_MAX = 20
#: What xenalyze's summary prints for ops 38-55 (quirk Q1: it reads past the 38-entry table
#: into neighbouring globals; ``None`` prints ``(null)``). Verified against the binary; note
#: the trailing spaces of 46 and 47. Only for a bug-compatible mode.
XENALYZE_HYPERCALL_OVERFLOW_NAMES: dict[int, str | None] = {
    38: None,
    39: None,
    40: "vmentry",
    41: "vmexit",
    42: "handler",
    43: "emul",
    44: None,
    45: "wake to halt alone",
    46: "wake to halt any  ",
    47: "intr to halt      ",
    48: "(no handler)",
    49: "pf_xen",
    50: "pf_inject",
    51: "inj_exc",
    52: "inj_virq",
    53: "reinj_virq",
    54: "io_read",
    55: "io_write",
}


def xenalyze_hypercall_name(op: int, *, summary_quirk: bool = False) -> str | None:
    """xenalyze's name of hypercall ``op``: the table entry for ``op < 38`` (``None`` for 11),
    else ``None`` - or, with ``summary_quirk``, what its summary prints for 38..55.
    """
    if 0 <= op < XENALYZE_HYPERCALL_MAX:
        return XENALYZE_HYPERCALL_NAMES[op]
    if summary_quirk:
        return XENALYZE_HYPERCALL_OVERFLOW_NAMES.get(op)
    return None


#: ``pv_name[PV_MAX]`` indexed by PV minor (0 and 2 are NULL -> ``(null)``).
XENALYZE_PV_NAMES: tuple[str | None, ...] = (
    None,
    "hypercall",
    None,
    "trap",
    "page_fault",
    "forced_invalid_op",
    "emulate privop",
    "emulate 4g",
    "math state restore",
    "paging fixup",
    "gdt/ldt mapping fault",
    "ptwr",
    "ptwr(pae)",
    "hypercall",
    "hypercall (subcall)",
)

#: ``grant_table_op_str`` (12 entries; xenalyze has no ``cache_flush``).
XENALYZE_GRANT_TABLE_OP_NAMES: tuple[str, ...] = tuple(GRANT_TABLE_OP_NAMES[i] for i in range(12))
#: ``vcpu_op_str`` (16 entries).
XENALYZE_VCPU_OP_NAMES: tuple[str, ...] = tuple(VCPU_OP_NAMES[i] for i in range(16))
#: ``sched_op_str`` (7 entries; xenalyze has no ``pin_override``).
XENALYZE_SCHED_OP_NAMES: tuple[str, ...] = tuple(SCHED_OP_NAMES[i] for i in range(7))


def xenalyze_op_str(table: tuple[str, ...], cmd: int) -> str:
    """xenalyze's command lookup: the table entry, or ``unknown (<cmd>)`` when out of range."""
    if 0 <= cmd < len(table):
        return table[cmd]
    return f"unknown ({cmd})"


#: ``runstate_name[]``: Xen's four states plus xenalyze's internal lost, queued, init.
XENALYZE_RUNSTATE_NAMES: tuple[str, ...] = (
    "running",
    "runnable",
    "blocked",
    "offline",
    "lost",
    "queued",
    "init",
)
#: ``runnable_state_name[]`` (sub-states of runnable time).
XENALYZE_RUNNABLE_STATE_NAMES: tuple[str, ...] = ("invalid", "wake", "preempt", "other")
#: ``mem_name[]`` indexed by MEM minor.
XENALYZE_MEM_NAMES: dict[int, str] = {
    1: "grant-map",
    2: "grant-unmap",
    3: "grant-transfer",
    4: "set-p2m",
    5: "decrease-reservation",
    16: "pod-populate",
    17: "pod-zero-reclaim",
    18: "pod-superpage-splinter",
}
#: xenalyze's internal domain for records seen before any scheduling record.
XENALYZE_DEFAULT_DOMAIN = 32768
XENALYZE_IDLE_DOMAIN = DOMID_IDLE
