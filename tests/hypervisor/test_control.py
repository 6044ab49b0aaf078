"""Control operations (tb_control), boot parameters, t_info layout (spec §1.2, 1.9-1.10)."""

from __future__ import annotations

import os
import struct

import pytest

from pyxentrace.errors import XentraceError
from pyxentrace.hypervisor import TbufError, TraceBuffers
from pyxentrace.hypervisor.shm import (
    attach_segment,
    create_segment,
    tbuf_segment_name,
    unlink_segment,
)
from pyxentrace.hypervisor.tbuf import calculate_tbuf_size

TRC_ALL = 0x0FFFF000


def test_defaults_before_allocation(make_tb) -> None:
    tb = make_tb(4)
    assert tb.get_info() == (TRC_ALL, 0, 0)
    assert not tb.tb_init_done
    assert tb.tb_cpu_mask == 0b1111
    tb.TRACE_TIME(0, 0x0002800A, 1)  # tracing off: nothing happens, nothing counted
    assert tb.counters()["offered"] == 0


@pytest.mark.parametrize(("nr_cpus", "pages", "t_info_pages"), [
    (1, 32, 1),  # (1*32 + 129) * 4 = 644 bytes
    (4, 32, 1),  # (128 + 129) * 4 = 1028
    (8, 100, 1),  # (800 + 129) * 4 = 3716
    (8, 120, 2),  # (960 + 129) * 4 = 4356
])
def test_set_size_allocates_and_enables(make_tb, nr_cpus: int, pages: int,
                                        t_info_pages: int) -> None:
    tb = make_tb(nr_cpus)
    tb.set_size(pages)
    assert tb.tb_init_done
    assert tb.opt_tbuf_size == pages
    assert tb.data_size == pages * 4096 - 8
    assert tb.t_buf_highwater == (pages * 4096 - 8) // 2
    info = tb.get_info()
    assert info.evt_mask == TRC_ALL and info.buffer_mfn != 0
    assert info.size == t_info_pages * 4096
    bufs = tb.map_tbufs()
    assert sorted(bufs) == list(range(nr_cpus))
    assert all((b.prod, b.cons, b.data_size) == (0, 0, tb.data_size) for b in bufs.values())


def test_xentrace_default_size(make_tb) -> None:
    tb = make_tb(2, pages=32)
    assert (tb.data_size, tb.t_buf_highwater) == (131064, 65532)


def test_set_size_is_one_shot(make_tb) -> None:
    tb = make_tb(2)
    with pytest.raises(TbufError) as e:
        tb.set_size(0)
    assert e.value.errno_name == "EINVAL"
    tb.set_size(4)
    with pytest.raises(TbufError) as e:
        tb.set_size(4)
    assert e.value.errno_name == "EBUSY"
    with pytest.raises(TbufError) as e:
        tb.set_size(8)
    assert e.value.errno_name == "EINVAL"
    assert tb.opt_tbuf_size == 4


def test_enable_needs_buffers_disable_never_fails(make_tb) -> None:
    tb = make_tb(1)
    with pytest.raises(TbufError) as e:
        tb.enable()
    assert e.value.errno_name == "EINVAL" and e.value.errno == 22
    tb.disable()
    tb.set_size(1)
    tb.disable()
    assert not tb.tb_init_done
    tb.enable()
    assert tb.tb_init_done


def test_unknown_command_and_dispatch(make_tb) -> None:
    tb = make_tb(2)
    with pytest.raises(TbufError) as e:
        tb.tb_control(6)
    assert e.value.errno_name == "EINVAL"
    tb.tb_control(2, evt_mask=0x0020F000)
    tb.tb_control(1, cpu_mask=b"\x02", nr_bits=8)
    tb.tb_control(3, size=2)
    assert tb.tb_control(0) == (0x0020F000, tb.get_info().buffer_mfn, 4096)
    assert tb.tb_cpu_mask == 0b10
    tb.tb_control(5)
    assert not tb.tb_init_done
    tb.tb_control(4)
    assert tb.tb_init_done


def test_enomem_leaves_allocation_possible(make_tb) -> None:
    tb = make_tb(2, max_heap_pages=9)
    with pytest.raises(TbufError) as e:
        tb.set_size(8)  # 1 t_info page + 2*8 pages > 9
    assert e.value.errno_name == "ENOMEM"
    assert (tb.opt_tbuf_size, tb.tb_init_done) == (0, False)
    tb.set_size(4)  # 1 + 8 pages
    assert tb.opt_tbuf_size == 4


@pytest.mark.parametrize(("nr_cpus", "cap"), [(1, 65406), (4, 21802), (64, 1038)])
def test_size_caps(nr_cpus: int, cap: int) -> None:
    assert calculate_tbuf_size(10**6, nr_cpus)[0] == cap
    assert calculate_tbuf_size(cap - 1, nr_cpus)[0] == cap - 1


def test_oversize_request_is_silently_reduced(make_tb) -> None:
    tb = make_tb(64)
    tb.set_size(2000)  # sparse shared memory: nothing is touched but t_info
    assert tb.opt_tbuf_size == 1038
    with pytest.raises(TbufError) as e:
        tb.set_size(2000)  # no longer equal to opt_tbuf_size
    assert e.value.errno_name == "EINVAL"


def test_boot_tbuf_size_alone_starts_tracing(make_tb) -> None:
    tb = make_tb(2, tbuf_size=2)
    assert tb.tb_init_done and tb.tb_event_mask == TRC_ALL and tb.opt_tbuf_size == 2


def test_boot_tevt_mask(make_tb) -> None:
    tb = make_tb(2, tbuf_size=2, tevt_mask=0x0020F000)
    assert tb.tb_init_done and tb.tb_event_mask == 0x0020F000
    # Without tbuf_size the mask is not applied and tracing stays off.
    tb2 = make_tb(2, tevt_mask=0x0020F000)
    assert not tb2.tb_init_done and tb2.tb_event_mask == TRC_ALL


def test_boot_allocation_failure(make_tb) -> None:
    tb = make_tb(2, tbuf_size=100, tevt_mask=0x0020F000, max_heap_pages=50)
    assert (tb.opt_tbuf_size, tb.tb_init_done, tb.tb_event_mask) == (0, False, TRC_ALL)
    tb.set_size(10)
    assert tb.opt_tbuf_size == 10


def test_t_info_layout(make_tb) -> None:
    # CPUs 0, 2, 3 online at allocation; CPU 1 gets no buffer (mfn_offset 0).
    tb = make_tb(4, online=[0, 2, 3])
    tb.set_size(3)
    raw = attach_segment(tbuf_segment_name(tb.name))  # the raw bytes a consumer maps
    t_info = bytes(raw.buf[:4096])
    raw.close()
    consumer = TraceBuffers.attach(tb.name)
    try:
        assert struct.unpack_from("<H", t_info, 0)[0] == 3
        offsets = struct.unpack_from("<4H", t_info, 2)
        assert offsets == (129, 0, 129 + 2 * 3, 129 + 3 * 3)
        for cpu in (0, 2, 3):
            mfns = struct.unpack_from("<3I", t_info, 4 * offsets[cpu])
            assert mfns[1] == mfns[0] + 1 and mfns[2] == mfns[0] + 2
        info = consumer.read_t_info()
        assert info.tbuf_size == 3 and sorted(info.mfns) == [0, 2, 3]
        assert sorted(consumer.map_tbufs()) == [0, 2, 3]
    finally:
        consumer.close()
    # Tracing on the CPU without a buffer: offered, then dropped (counted as filtered).
    tb.TRACE_TIME(1, 0x0002800A, 1)
    c = tb.counters(1)
    assert (c["offered"], c["filtered"], c["written"]) == (1, 1, 0)


def test_set_cpu_mask_bitmap_rules(make_tb) -> None:
    tb = make_tb(12)
    tb.set_cpu_mask(b"\xff\xff", nr_bits=3)
    assert tb.tb_cpu_mask == 0b111
    tb.set_cpu_mask(b"\x0f\xff\xff", nr_bits=24)  # bits >= nr_cpu_ids (12) ignored
    assert tb.tb_cpu_mask == 0xF0F
    tb.set_cpu_mask(b"", nr_bits=0)  # empty mask allowed
    assert tb.tb_cpu_mask == 0
    tb.set_cpu_mask(0b1010_0000_0001)
    assert tb.tb_cpu_mask == 0xA01
    with pytest.raises(TbufError) as e:
        tb.set_cpu_mask(b"\x01", nr_bits=16)  # copy_from_guest past the bitmap
    assert e.value.errno_name == "EFAULT"
    assert tb.tb_cpu_mask == 0xA01


def test_cpu_mask_filters(make_tb) -> None:
    tb = make_tb(3, pages=1)
    tb.set_cpu_mask(0b101)
    for cpu in range(3):
        tb.TRACE_TIME(cpu, 0x0002800A, cpu)
    assert [tb.counters(c)["written"] for c in range(3)] == [1, 0, 1]
    assert tb.counters(1)["filtered"] == 1
    assert [tb.trace_will_trace_event(c, 0x8002800A) for c in range(3)] == [True, False, True]


def test_control_from_another_process_view(make_tb) -> None:
    tb = make_tb(2)
    other = TraceBuffers.attach(tb.name)
    try:
        other.set_evt_mask(0x0020F000)
        other.set_size(2)  # the consumer allocates; the producer maps lazily
        assert tb.tb_event_mask == 0x0020F000 and tb.tb_init_done
        tb.TRACE_TIME(1, 0x0020100D, 3)
        b = other.map_tbufs()[1]
        assert b.prod == 16
        assert other.counters() == tb.counters()
    finally:
        other.close()


def test_attach_errors(make_tb) -> None:
    with pytest.raises(FileNotFoundError):
        TraceBuffers.attach("pyxentrace-no-such-model")
    seg = create_segment("pyxentrace-test-not-a-model", 64 * 1024)
    try:
        with pytest.raises(XentraceError, match="not a pyxentrace control block"):
            TraceBuffers.attach("pyxentrace-test-not-a-model")
    finally:
        unlink_segment(seg)
        seg.close()


def test_close_removes_everything(make_tb) -> None:
    tb = TraceBuffers.create(nr_cpus=1, tbuf_size=1)
    name, fifo = tb.name, tb.virq_path
    assert os.path.exists(fifo)
    tb.close()
    assert not os.path.exists(fifo)
    with pytest.raises(FileNotFoundError):
        TraceBuffers.attach(name)
