"""Event catalog and Xen name tables, checked against hand-written values from the spec
(spec/trace-buffers-and-recorder.md, spec/xenalyze-reference.md, spec/xen-constants.md) and
Xen's headers - never against values computed by the code under test.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxentrace.format import events as ev
from pyxentrace.format import xen_names as xn


def _id(value: object) -> str | None:
    """Show event ids in hex in test names."""
    return f"{value:#010x}" if isinstance(value, int) and value > 0xFFFF else None


# --------------------------------------------------------------------------------------------
# ids and names: (id, name), all hand-written
# --------------------------------------------------------------------------------------------
KNOWN = [
    (0x0001F001, "lost_records"),
    (0x0001F002, "wrap_buffer"),
    (0x0001F003, "cpu_change"),
    (0x0001F004, "trace_irq"),
    (0x00021001, "runstate_change"),
    (0x00021101, "runstate_change"),
    (0x00021002, "continue_running"),
    (0x00028001, "dom_add"),
    (0x00028004, "wake"),
    (0x0002800A, "sched_switch"),
    (0x0002800E, "switch_infprev"),
    (0x0002800F, "switch_infnext"),
    (0x00028010, "shutdown_code"),
    (0x00028011, "switch_infcont"),
    # seed-era scheduler ids, TRC_SCHED + n
    (0x0002F001, "dom_add"),
    (0x0002F00A, "sched_switch"),
    (0x0002F00E, "switch_infprev"),
    (0x0002F00F, "switch_infnext"),
    # scheduler-private: scheduler id in bits 9-11
    (0x00022001, "csched_sched_tasklet"),
    (0x0002200B, "csched_steal_check"),
    (0x00022201, "csched2_tick"),
    (0x00022213, "csched2_picked_cpu"),
    (0x00022215, "csched2_schedule"),
    (0x00022217, "csched2_runq_cand_check"),
    (0x00022801, "rtds_tickle"),
    (0x00022806, "rtds_schedule"),
    (0x00022A01, "snull_picked_cpu"),
    (0x00022A06, "snull_tasklet"),
    (0x00041001, "dom0_dom_add"),
    (0x00041002, "dom0_dom_rem"),
    # HVM
    (0x00081001, "hvm_vmentry"),
    (0x00081002, "hvm_vmexit"),
    (0x00081102, "hvm_vmexit64"),
    (0x00081003, "hvm_svm_exit"),
    (0x00081401, "hvm_vmentry_nested"),
    (0x00081502, "hvm_vmexit64_nested"),
    (0x00082001, "hvm_pf_xen"),
    (0x00082101, "hvm_pf_xen64"),
    (0x00082016, "hvm_ioport_read"),
    (0x00082216, "hvm_ioport_write"),
    (0x00082317, "hvm_iomem_write64"),
    (0x00082126, "hvm_xcr_read64"),
    (0x00084001, "hvm_emul_hpet_start_timer"),
    (0x00084011, "hvm_emul_lapic_pic_intr"),
    # memory
    (0x0010F001, "mem_page_grant_map"),
    (0x0010F002, "mem_page_grant_unmap"),
    (0x0010F003, "mem_page_grant_transfer"),
    (0x0010F004, "mem_set_p2m_entry"),
    (0x0010F005, "mem_decrease_reservation"),
    (0x0010F010, "mem_pod_populate"),
    (0x0010F011, "mem_pod_zero_reclaim"),
    (0x0010F012, "mem_pod_superpage_splinter"),
    # PV, xen-4 generation
    (0x00201001, "hypercall"),
    (0x00201101, "hypercall64"),
    (0x00201003, "trap"),
    (0x00201103, "trap64"),
    (0x00201004, "page_fault"),
    (0x00201104, "page_fault64"),
    (0x00201006, "emulate_privop"),
    (0x00201106, "emulate_privop64"),
    (0x00201008, "math_state_restore"),
    (0x0020100A, "gdt_ldt_mapping_fault"),
    (0x0020110B, "ptwr_emulation64"),
    (0x0020100C, "ptwr_emulation_pae"),
    (0x0020100D, "hypercall_v2"),
    (0x0020200E, "hypercall_subcall"),
    # PV, seed generation TRC_PV + minor
    (0x0020F001, "hypercall"),
    (0x0020F101, "hypercall64"),
    (0x0020F003, "trap"),
    (0x0020F103, "trap64"),
    (0x0020F007, "emulate_4gb"),
    (0x0020F00B, "ptwr_emulation"),
    (0x0020F10B, "ptwr_emulation64"),
    (0x0020F00C, "ptwr_emulation_pae"),
    # shadow, guest levels in bits 8-9
    (0x0040F006, "shadow_fixup"),
    (0x0040F106, "shadow_fixup"),
    (0x0040F206, "shadow_fixup"),
    (0x0040F008, "shadow_emulate"),
    (0x0040F00F, "shadow_resync_only"),
    # hw
    (0x00801001, "pm_freq_change"),
    (0x00801002, "pm_idle_entry"),
    (0x00801003, "pm_idle_exit"),
    (0x00802002, "hw_irq_move_cleanup"),
    (0x00802006, "hw_irq_assign_vector"),
    (0x00802008, "hw_irq_handled"),
    (0x0800F000, "guest"),
]

#: Ids Xen never produces (or that are not trace.h ids at all): must not be in the catalog.
ABSENT = [
    0x0020110C,  # PTWR_PAE with the 64-bit flag
    0x0020F10C,
    0x0020110D,  # V2 never carries the flag
    0x0020F00D,  # V2 did not exist in the seed class
    0x0020100E,  # SUBCALL lives in sub-class 2, not 1
    0x00201108,  # MATH_STATE_RESTORE never carries the flag
    0x0002F010,  # SHUTDOWN_CODE came after the seed
    0x00022212,  # credit2 event 18 is unassigned
    0x0040F10E,  # RESYNC_FULL is emitted without level bits
    0x0001F032,  # xenalyze-internal TRC_LOST_RECORDS_END
]


@pytest.mark.parametrize(("event", "name"), KNOWN, ids=_id)
def test_known_ids(event: int, name: str) -> None:
    assert ev.EVENTS[event] == name
    assert ev.event_name(event) == name


@pytest.mark.parametrize("event", ABSENT, ids=_id)
def test_absent_ids_are_unknown(event: int) -> None:
    assert event not in ev.EVENTS
    assert ev.event_name(event) == f"unknown_0x{event:08x}"


def test_constants_hex() -> None:
    assert ev.TRC_PV_HYPERCALL_V2 == 0x0020100D
    assert ev.TRC_PV_HYPERCALL_SUBCALL == 0x0020200E
    assert ev.TRC_TRACE_CPU_CHANGE == 0x0001F003
    assert ev.TRC_LOST_RECORDS == 0x0001F001
    assert ev.TRC_TRACE_WRAP_BUFFER == 0x0001F002
    assert ev.TRC_SCHED_CONTINUE_RUNNING == 0x00021002
    assert ev.TRC_SCHED_SWITCH == 0x0002800A
    assert ev.TRC_SCHED_SWITCH_INFCONT == 0x00028011
    assert ev.TRC_DOM0_DOM_ADD == 0x00041001
    assert ev.TRC_MEM_POD_ZERO_RECLAIM == 0x0010F011
    assert ev.TRC_SHADOW_EMULATE_UNSHADOW_UNHANDLED == 0x0040F00B
    assert ev.TRC_PM_IDLE_EXIT == 0x00801003
    assert ev.TRC_HW_IRQ_HANDLED == 0x00802008
    assert ev.TRC_SCHED_ID_MASK == 0xE00
    assert ev.trc_sched_class_evt(ev.TRC_SCHED_CSCHED2, 21) == 0x00022215
    assert ev.trc_sched_class_evt(ev.TRC_SCHED_SNULL, 2) == 0x00022A02
    assert ev.runstate_change_event(1, 0) == 0x00021101  # runnable -> running
    assert ev.runstate_change_event(0, 2) == 0x00021021  # running -> blocked
    assert ev.runstate_change_event(3, 1) == 0x00021311
    assert ev.pv_event(3, is64=True, generation="xen-3.2") == 0x0020F103
    assert ev.pv_event(3, is64=True) == 0x00201103
    assert ev.pv_event(14) == 0x0020200E
    assert ev.pv_event(12, generation="xen-3.2") == 0x0020F00C


def test_pv_event_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        ev.pv_event(256)
    with pytest.raises(ValueError):
        ev.pv_event(3, generation="xen-5")
    with pytest.raises(ValueError):
        ev.runstate_change_event(4, 0)


# --------------------------------------------------------------------------------------------
# splitting and classes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "parts"),
    [
        (0x0020200E, (0x020, 0x2, 0x00E)),
        (0x00021101, (0x002, 0x1, 0x101)),
        (0x8020100D, (0x020, 0x1, 0x00D)),  # header bits 28-31 are not part of the id
        (0x0800F123, (0x800, 0xF, 0x123)),
        (0x0FFFFFFF, (0xFFF, 0xF, 0xFFF)),
    ],
    ids=_id,
)
def test_split_event(event: int, parts: tuple[int, int, int]) -> None:
    assert ev.split_event(event) == parts


@pytest.mark.parametrize(
    ("event", "cls", "index"),
    [
        (0x0001F003, "gen", 0),
        (0x00028001, "sched", 1),
        (0x00041001, "dom0op", 2),
        (0x00082001, "hvm", 3),
        (0x0010F001, "mem", 4),
        (0x0020F001, "pv", 5),
        (0x0020200E, "pv", 5),
        (0x0040F006, "shadow", 6),
        (0x00801001, "hw", 7),
        (0x0800F123, "guest", 11),
        (0x00030000, "unknown", None),  # two bits in main
        (0x0000F001, "unknown", None),  # no bit in main
        (0x0FFFF000, "unknown", None),
        (0x0100F000, "unknown", 8),  # a single bit, but no class there
    ],
    ids=_id,
)
def test_class_name(event: int, cls: str, index: int | None) -> None:
    assert ev.class_name(event) == cls
    assert ev.class_index(event) == index


def test_classes_order() -> None:
    assert ev.CLASSES == ("gen", "sched", "dom0op", "hvm", "mem", "pv", "shadow", "hw")
    mains = [0x0001, 0x0002, 0x0004, 0x0008, 0x0010, 0x0020, 0x0040, 0x0080]
    for i, main in enumerate(mains):
        assert ev.class_name(main << 16) == ev.CLASSES[i]


# --------------------------------------------------------------------------------------------
# the 0x100 bit per class
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # PV: the flag means 64-bit, both generations
        (0x00201103, True),
        (0x00201003, False),
        (0x0020F103, True),
        (0x0020F003, False),
        (0x0020110B, True),
        (0x0020F00B, False),  # seed x86_32 non-PAE ptwr
        (0x0020100C, False),  # PTWR_PAE = 32-bit guest
        (0x0020110C, False),  # ... even with a stray flag
        (0x0020100D, None),  # V2 never flagged
        (0x0020200E, None),
        (0x0020110D, None),
        (0x00201008, None),  # MATH_STATE_RESTORE
        # HVM: explicit 64-bit variants
        (0x00081102, True),
        (0x00081502, True),  # nested
        (0x00081002, False),
        (0x00081402, False),
        (0x00081001, None),
        (0x00082126, True),
        (0x00082316, True),
        (0x00082216, False),
        (0x00082016, False),
        (0x0008200C, None),
        # not applicable: 0x100 is a runstate or a paging level or nothing
        (0x00021101, None),  # old = runnable sets 0x100
        (0x00021131, None),
        (0x0040F106, None),
        (0x0010F001, None),
        (0x0001F003, None),
        (0x00801001, None),
    ],
    ids=_id,
)
def test_is_64bit(event: int, expected: bool | None) -> None:
    assert ev.is_64bit(event) is expected


def test_runstate_id_has_bit8_but_no_width() -> None:
    rs = 0x00021101
    assert rs & 0x100
    assert ev.is_64bit(rs) is None
    assert ev.runstate_change_states(rs) == (1, 0)


@pytest.mark.parametrize(
    ("event", "states"),
    [
        (0x00021001, (0, 0)),
        (0x00021011, (0, 1)),
        (0x00021021, (0, 2)),
        (0x00021031, (0, 3)),
        (0x00021101, (1, 0)),
        (0x00021121, (1, 2)),
        (0x00021201, (2, 0)),
        (0x00021211, (2, 1)),
        (0x00021301, (3, 0)),
        (0x00021321, (3, 2)),
        (0xC0021211, (2, 1)),  # header bits ignored
    ],
    ids=_id,
)
def test_runstate_states(event: int, states: tuple[int, int]) -> None:
    assert ev.is_runstate_change(event)
    assert ev.runstate_change_states(event) == states
    assert ev.event_name(event) == "runstate_change"


@pytest.mark.parametrize(
    "event", [0x00021002, 0x00021041, 0x00021401, 0x00028001, 0x0002F001], ids=_id
)
def test_not_runstate(event: int) -> None:
    assert not ev.is_runstate_change(event)
    with pytest.raises(ValueError):
        ev.runstate_change_states(event)


def test_runstate_ids_in_catalog() -> None:
    rs = sorted(e for e, n in ev.EVENTS.items() if n == "runstate_change")
    expected = sorted(0x00021001 | o << 8 | n << 4 for o in range(4) for n in range(4))
    assert rs == expected


@pytest.mark.parametrize(
    ("event", "levels"),
    [
        (0x0040F006, 2),
        (0x0040F106, 3),
        (0x0040F206, 4),
        (0x0040F101, 3),
        (0x0040F00E, None),  # resync: no level field
        (0x0040F00C, None),
        (0x00201006, None),
        (0x00021101, None),
    ],
    ids=_id,
)
def test_shadow_guest_levels(event: int, levels: int | None) -> None:
    assert ev.shadow_guest_levels(event) == levels


# --------------------------------------------------------------------------------------------
# PV helpers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "minor"),
    [
        (0x0020F00B, 11),
        (0x0020110B, 11),
        (0x0020200E, 14),
        (0x0020100D, 13),
        (0x00201206, 6),  # bits 9-11 ignored, as xenalyze decodes
        (0x0020F103, 3),
        (0x00028001, None),
        (0x0040F006, None),
    ],
    ids=_id,
)
def test_pv_minor(event: int, minor: int | None) -> None:
    assert ev.pv_minor(event) == minor


@pytest.mark.parametrize(
    ("event", "gen"),
    [
        (0x0020F001, "xen-3.2"),
        (0x0020F10B, "xen-3.2"),
        (0x00201001, "xen-4"),
        (0x0020100D, "xen-4"),
        (0x0020200E, "xen-4"),
        (0x00203001, "unknown"),
    ],
    ids=_id,
)
def test_pv_generation(event: int, gen: str) -> None:
    assert ev.pv_generation(event) == gen


def test_pv_generation_rejects_non_pv() -> None:
    with pytest.raises(ValueError):
        ev.pv_generation(0x00021001)


def test_pv_id_counts() -> None:
    pv = [e for e in ev.EVENTS if (e >> 16) == 0x020]
    seed = [e for e in pv if (e >> 12) & 0xF == 0xF]
    xen4 = [e for e in pv if (e >> 12) & 0xF in (1, 2)]
    # minors 1, 3..12 (11 ids) + 64-bit forms of 1, 3, 4, 5, 6, 9, 10, 11 (8 ids)
    assert len(seed) == 19
    # the same, plus V2 and SUBCALL
    assert len(xen4) == 21
    assert len(pv) == 40


def test_scheduler_private() -> None:
    assert ev.sched_class_scheduler(0x00022001) == "credit"
    assert ev.sched_class_scheduler(0x00022215) == "credit2"
    assert ev.sched_class_scheduler(0x00022801) == "rtds"
    assert ev.sched_class_scheduler(0x00022A01) == "null"
    assert ev.sched_class_scheduler(0x00028001) is None
    assert ev.sched_class_scheduler(0x00022E01) is None  # id 7 unassigned
    counts: dict[str, int] = defaultdict(int)
    for e in ev.EVENTS:
        s = ev.sched_class_scheduler(e)
        if s:
            counts[s] += 1
    assert dict(counts) == {"credit": 11, "credit2": 22, "rtds": 6, "null": 6}


def test_hvm_nested() -> None:
    assert ev.is_hvm_nested(0x00081401)
    assert ev.is_hvm_nested(0x00081502)
    assert not ev.is_hvm_nested(0x00081002)
    assert not ev.is_hvm_nested(0x00082401)


# --------------------------------------------------------------------------------------------
# naming rules and aliases
# --------------------------------------------------------------------------------------------
def _alias_key(e: int) -> object:
    """What a documented alias group has in common (independent restatement of the rules)."""
    main, sub, minor = e >> 16, (e >> 12) & 0xF, e & 0xFFF
    if main == 0x002 and sub == 1 and minor & 0xF == 1 and not minor & 0xCC0:
        return "runstate"
    if main == 0x020 and sub in (0x1, 0x2, 0xF):
        return ("pv", minor)
    if main == 0x002 and sub in (0x8, 0xF) and minor <= 15:
        return ("sched-verbose", minor)
    if main == 0x040 and sub == 0xF:
        return ("shadow", minor & 0xFF)
    return e


def test_names_unique_except_documented_aliases() -> None:
    by_name: dict[str, list[int]] = defaultdict(list)
    for e, n in ev.EVENTS.items():
        by_name[n].append(e)
    aliased = {n for n, ids in by_name.items() if len(ids) > 1}
    for n in aliased:
        keys = {_alias_key(e) for e in by_name[n]}
        assert len(keys) == 1, (n, [hex(e) for e in by_name[n]])
    assert {"runstate_change", "trap", "trap64", "sched_switch", "shadow_fixup"} <= aliased
    assert "hypercall_v2" not in aliased
    assert "csched2_tickle" not in aliased
    assert ev.events_named("trap64") == (0x00201103, 0x0020F103)
    assert ev.events_named("shadow_emulate") == (0x0040F008, 0x0040F108, 0x0040F208)


def test_names_are_lower_snake() -> None:
    pat = re.compile(r"^[a-z][a-z0-9_]*$")
    bad = [n for n in ev.EVENTS.values() if not pat.match(n)]
    assert not bad


def test_all_ids_fit_28_bits_and_have_a_class() -> None:
    for e in ev.EVENTS:
        assert 0 < e <= 0x0FFFFFFF
        assert ev.class_name(e) != "unknown", hex(e)


def test_event_name_fallbacks() -> None:
    assert ev.event_name(0x00012345) == "unknown_0x00012345"
    assert ev.event_name(0x8020100D) == "hypercall_v2"
    assert ev.event_name(0x0800F123) == "guest"
    assert ev.event_name(0x00021231) == "runstate_change"


# --------------------------------------------------------------------------------------------
# vectorised lookup
# --------------------------------------------------------------------------------------------
def test_name_table() -> None:
    ids, names = ev.name_table()
    assert ids.dtype == np.uint32
    assert len(ids) == len(names) == len(ev.EVENTS)
    assert np.all(np.diff(ids.astype(np.int64)) > 0)
    assert not ids.flags.writeable
    col = np.array([0x0020100D, 0x0001F003, 0x00021101, 0x0020F103], dtype=np.uint32)
    pos = np.searchsorted(ids, col)
    assert [names[p] for p in pos] == ["hypercall_v2", "cpu_change", "runstate_change", "trap64"]


_ids = st.sampled_from(sorted(ev.EVENTS))
_any = st.integers(min_value=0, max_value=0xFFFFFFFF)
_guest = st.integers(min_value=0, max_value=0xFFFF).map(lambda x: 0x08000000 | x)


@given(st.lists(st.one_of(_ids, _any, _guest), max_size=60))
def test_vector_lookup_equals_scalar(values: list[int]) -> None:
    arr = np.array(values, dtype=np.uint32)
    got = ev.event_names(arr)
    assert got.shape == arr.shape
    assert list(got) == [ev.event_name(v) for v in values]


def test_vector_lookup_2d_and_empty() -> None:
    arr = np.array([[0x0020100D, 0x12345], [0x0800F001, 0x0002F00A]], dtype=np.uint32)
    got = ev.event_names(arr)
    assert got.shape == (2, 2)
    assert got.tolist() == [
        ["hypercall_v2", "unknown_0x00012345"],
        ["guest", "sched_switch"],
    ]
    assert ev.event_names(np.array([], dtype=np.uint32)).shape == (0,)


# --------------------------------------------------------------------------------------------
# xen_names
# --------------------------------------------------------------------------------------------
def test_hypercall_numbers() -> None:
    assert set(xn.HYPERCALL_NAMES) == (set(range(43)) - {11}) | set(range(48, 56))
    assert xn.hypercall_name(1) == "mmu_update"
    assert xn.hypercall_name(13) == "multicall"
    assert xn.hypercall_name(23) == "iret"
    assert xn.hypercall_name(24) == "vcpu_op"
    assert xn.hypercall_name(25) == "set_segment_base"
    assert xn.hypercall_name(27) == "xsm_op"
    assert xn.hypercall_name(41) == "dm_op"
    assert xn.hypercall_name(48) == "arch_0"
    assert xn.hypercall_name(55) == "arch_7"
    assert xn.hypercall_name(11) == "unknown_11"
    assert xn.hypercall_name(43) == "unknown_43"


def test_subop_names() -> None:
    assert xn.subop_name(24, 15) == "register_vcpu_time_phys_area"
    assert xn.subop_name(24, 3) == "is_up"
    assert xn.subop_name(29, 7) == "pin_override"
    assert xn.subop_name(20, 12) == "cache_flush"
    assert xn.subop_name(26, 14) == "unknown_14"
    assert xn.subop_name(26, 20) == "unmark_super"
    assert xn.subop_name(12, 0) == "increase_reservation"
    assert xn.subop_name(12, 1) == "decrease_reservation"
    assert xn.subop_name(12, 6) == "populate_physmap"
    assert xn.subop_name(12, 11) == "exchange"
    assert xn.subop_name(12, 28) == "acquire_resource"
    assert xn.subop_name(17, 0) == "unknown_0"


def test_vectors_and_error_codes() -> None:
    assert xn.X86_EXC_HAVE_EC == 0x227D00
    assert xn.vector_name(13) == "#GP"
    assert xn.vector_name(14) == "#PF"
    assert xn.vector_name(7) == "#NM"
    assert xn.vector_name(0x80) == "int 0x80"
    assert xn.has_error_code(14) and xn.has_error_code(21)
    assert not xn.has_error_code(3) and not xn.has_error_code(0x80)
    assert sorted(xn.EXCEPTION_VECTORS) == list(range(22))


def test_pfec_and_pte() -> None:
    assert xn.decode_pfec(0x7) == ["P", "W", "U"]
    assert xn.decode_pfec(0x8011) == ["P", "I", "SGX"]
    assert xn.decode_pfec(0) == []
    assert xn.PTE_MFN_MASK_PAE == 0x000FFFFFFFFFF000
    assert xn.pte_mfn(0x8000000123456067) == 0x123456
    assert xn.pte_mfn(0xFFF0000000001000) == 0x1  # bits 52-63 are not frame bits
    assert xn.pte_mfn(0x12345067, pae=False) == 0x12345
    assert xn.pte_mfn(0x1_2345_6067, pae=False) == 0x23456
    assert xn.decode_pte_flags(0x8000000000000067) == ["P", "RW", "US", "A", "D", "NX"]


def test_runstates_and_domains() -> None:
    assert xn.RUNSTATE_NAMES == {0: "running", 1: "runnable", 2: "blocked", 3: "offline"}
    old, new = ev.runstate_change_states(0x00021101)
    assert (xn.RUNSTATE_NAMES[old], xn.RUNSTATE_NAMES[new]) == ("runnable", "running")
    assert xn.DOMID_IDLE == 32767
    assert xn.vcpu_label(1, 0) == "d1v0"
    assert xn.vcpu_label(0, 3) == "d0v3"
    assert xn.vcpu_label(0x7FFF, 3) == "d[IDLE]v3"
    assert xn.vcpu_label(0x7FF2, 0) == "d[XEN]v0"
    assert xn.domain_label(0x7FF0) == "d[SELF]"
    assert xn.domain_label(0x7FF4) == "d[INVALID]"
    assert xn.domain_label(0x7FF8) == "d[0x7ff8]"
    assert xn.domain_label(32768) == "d32768"


def test_xenalyze_tables() -> None:
    hc = xn.XENALYZE_HYPERCALL_NAMES
    assert len(hc) == 38
    assert hc[6] == "sched_op(compat)"
    assert hc[11] is None
    assert hc[16] == "evtchn_op(compat)"
    assert hc[19] == "physdev_op(compat)"
    assert hc[27] == "acm_op"
    assert hc[32] == "evtchn_op"
    assert hc[37] == "kexec_op"
    assert xn.xenalyze_hypercall_name(23) == "iret"
    assert xn.xenalyze_hypercall_name(41) is None
    assert xn.xenalyze_hypercall_name(41, summary_quirk=True) == "vmexit"
    assert xn.xenalyze_hypercall_name(46, summary_quirk=True) == "wake to halt any  "
    assert xn.xenalyze_hypercall_name(38, summary_quirk=True) is None
    pv = xn.XENALYZE_PV_NAMES
    assert len(pv) == 15
    assert pv[0] is None and pv[2] is None
    assert pv[6] == "emulate privop"
    assert pv[7] == "emulate 4g"
    assert pv[10] == "gdt/ldt mapping fault"
    assert pv[12] == "ptwr(pae)"
    assert pv[13] == "hypercall"
    assert pv[14] == "hypercall (subcall)"
    assert len(xn.XENALYZE_GRANT_TABLE_OP_NAMES) == 12
    assert xn.xenalyze_op_str(xn.XENALYZE_GRANT_TABLE_OP_NAMES, 11) == "swap_grant_ref"
    assert xn.xenalyze_op_str(xn.XENALYZE_GRANT_TABLE_OP_NAMES, 12) == "unknown (12)"
    assert xn.xenalyze_op_str(xn.XENALYZE_VCPU_OP_NAMES, 15) == "register_vcpu_time_phys_area"
    assert xn.xenalyze_op_str(xn.XENALYZE_SCHED_OP_NAMES, 6) == "watchdog"
    assert xn.xenalyze_op_str(xn.XENALYZE_SCHED_OP_NAMES, 7) == "unknown (7)"
    assert xn.xenalyze_op_str(xn.XENALYZE_SCHED_OP_NAMES, -1) == "unknown (-1)"
    assert xn.XENALYZE_RUNSTATE_NAMES[:4] == ("running", "runnable", "blocked", "offline")
