"""PV trace points, byte for byte against C structs declared as Xen declares them.

``pv_golden.c`` is compiled with gcc into tmp_path and prints, for each vector, the event id,
the payload bytes and the fields read back through the C struct.  Every (trace point x ABI x
hypervisor arch x guest width) combination is emitted through :class:`PVTracer` (single call
and bulk), read back from the trace buffer, and compared; ``encode``/``decode`` of the layout
table are compared too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from pyxentrace.format import pv_layouts as pl
from pyxentrace.hypervisor import PVTracer, TraceBuffers

from .conftest import parse_records

HERE = Path(__file__).parent
EIP = 0xFFFF8000_1234_5678
ADDR = 0x00007FFF_DEAD_B008
NPTE = 0x80000001_23456067
TSC = 0x0000_0123_89AB_CDEF

COMBOS = [
    ("xen-3.2", "x86_32", 32),
    ("xen-3.2", "x86_32-pae", 32),
    ("xen-3.2", "x86_64", 32),
    ("xen-3.2", "x86_64", 64),
    ("xen-4", "x86_64", 32),
    ("xen-4", "x86_64", 64),
]

_ARGS = (1, 0x1_0000_0002, 3, 0xFFFF_FFFF_8000_0004, 5, 6)
#: Tracer-level calls: method -> list of keyword sets.
VECTORS: dict[str, list[dict]] = {
    "hypercall": [
        *(dict(op=op, args=_ARGS, eip=EIP) for op in (1, 13, 20, 24, 26, 29, 3, 23, 0)),
        dict(op=0x123456, args=_ARGS, eip=EIP),  # op >= 2**20: bits collide with the flags
        dict(op=(1 << 32) + 24, args=_ARGS, eip=EIP),  # switch on the full op: no match
    ],
    "multicall_call": [dict(op=op, args=_ARGS) for op in (1, 20, 24, 29, 17)],
    "trap": [
        dict(trapnr=13, eip=EIP, use_error_code=True, error_code=0x12345678),
        dict(trapnr=0x8080, eip=EIP, use_error_code=2, error_code=0xABCD),  # 15-bit trapnr
        dict(trapnr=0x80, eip=EIP, use_error_code=False, error_code=0x5555),  # int $0x80
        dict(trapnr=1, eip=EIP, use_error_code=False, error_code=0),
    ],
    "page_fault": [dict(eip=EIP, addr=ADDR, error_code=0x1_0000_0007)],
    "forced_invalid_op": [dict(eip=EIP)],
    "emulate_privop": [dict(eip=EIP)],
    "emulate_4gb": [dict(eip=0xC010_1234)],
    "math_state_restore": [dict()],
    "paging_fixup": [dict(eip=EIP, addr=ADDR)],
    "gdt_ldt_mapping_fault": [dict(eip=EIP, offset=0x1238)],
    "ptwr_emulation": [dict(addr=ADDR, npte=NPTE, eip=EIP)],
}


def c_values(abi: str, method: str, v: dict) -> list[int]:
    """The arguments of Xen's C function for this call, in its parameter order."""
    if method == "hypercall":
        if abi == "xen-3.2":
            return [v["eip"], v["op"]]  # regs->eip, regs->eax
        return [v["op"], *v["args"]]
    if method == "multicall_call":
        return [v["op"], *v["args"]]
    if method == "trap":
        ec = v["error_code"]
        if abi == "xen-4" and not v["use_error_code"]:
            ec = 0xFFFFFFFF  # today's callers pass X86_EVENT_NO_EC (-1)
        return [v["trapnr"], v["eip"], int(v["use_error_code"]), ec]
    if method == "ptwr_emulation":
        return [v["addr"], v["npte"], v["eip"]]
    order = {"page_fault": ("eip", "addr", "error_code"), "paging_fixup": ("eip", "addr"),
             "gdt_ldt_mapping_fault": ("eip", "offset")}.get(method, ("eip",))
    return [v[k] for k in order if k in v]


CASES = [(abi, arch, width, method, i)
         for abi, arch, width in COMBOS
         for method, vecs in VECTORS.items()
         for i in range(len(vecs))]


@pytest.fixture(scope="module")
def golden(cc: str, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, list[str]]:
    """Compile pv_golden.c and run every vector through it once."""
    out = tmp_path_factory.mktemp("golden")
    exe = out / "pv_golden"
    subprocess.run([cc, "-std=gnu11", "-O1", "-Wall", "-Werror", "-Wno-overflow",
                    "-o", str(exe), str(HERE / "pv_golden.c")], check=True)
    lines = [f"{abi} {arch} {width} {method} " + " ".join(
        hex(x & 0xFFFFFFFFFFFFFFFF) for x in c_values(abi, method, VECTORS[method][i]))
        for abi, arch, width, method, i in CASES]
    res = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True)
    rows = res.stdout.splitlines()
    assert len(rows) == len(CASES)
    return {case: row.split() for case, row in zip(CASES, rows, strict=True)}


@pytest.fixture(scope="module")
def tb() -> TraceBuffers:
    t = TraceBuffers.create(nr_cpus=2, tbuf_size=4)
    t.clock.now = TSC
    yield t
    t.close()


def _emit(tb: TraceBuffers, abi: str, arch: str, width: int, method: str, v: dict,
          bulk: bool) -> list:
    pv = PVTracer(tb, abi, arch)
    tb.set_current(0, 3, 1, width)
    b = tb.map_tbufs()[0]
    b.prod = b.cons = 0
    if not bulk:
        getattr(pv, method)(0, **v)
    else:
        kw = {k: val for k, val in v.items() if k != "args"}
        for i, a in enumerate(v.get("args", ())):
            kw[f"arg{i}"] = np.array([a], dtype=np.uint64)
        kw = {k: np.array([val], dtype=np.uint64) if isinstance(val, int) else val
              for k, val in kw.items()}
        pv.bulk(method, 0, np.array([TSC], dtype=np.uint64), **kw)
    return parse_records(b.window(0, b.prod))


@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
@pytest.mark.parametrize(("abi", "arch", "width", "method", "i"), CASES)
def test_trace_point_bytes(golden: dict, tb: TraceBuffers, abi: str, arch: str, width: int,
                           method: str, i: int, bulk: bool) -> None:
    expect = golden[(abi, arch, width, method, i)]
    v = VECTORS[method][i]
    if expect == ["none"]:
        if method == "emulate_4gb":
            with pytest.raises(ValueError, match="emulate_4gb"):
                _emit(tb, abi, arch, width, method, v, bulk)
        else:
            assert _emit(tb, abi, arch, width, method, v, bulk) == []
        return
    recs = _emit(tb, abi, arch, width, method, v, bulk)
    assert len(recs) == 1
    (rec,) = recs
    event, payload = int(expect[0], 16), bytes.fromhex(expect[1].replace("-", ""))
    assert rec.event == event
    assert rec.tsc == TSC  # every PV record is timed
    assert rec.payload == payload
    assert rec.nwords * 4 == len(payload)


@pytest.mark.parametrize(("abi", "arch", "width", "method", "i"), CASES)
def test_layout_table_encode_decode(golden: dict, abi: str, arch: str, width: int, method: str,
                                    i: int) -> None:
    expect = golden[(abi, arch, width, method, i)]
    if expect == ["none"]:
        return
    event, payload = int(expect[0], 16), bytes.fromhex(expect[1].replace("-", ""))
    fields = {k: int(val) for k, val in (kv.split("=") for kv in expect[2:])}
    vals = c_values(abi, method, VECTORS[method][i])
    if method in ("hypercall", "multicall_call") and abi == "xen-4":
        point = "hypercall_v2" if method == "hypercall" else "hypercall_subcall"
        kw = {"op": vals[0], **{f"arg{k}": a for k, a in enumerate(vals[1:])}}
    elif method == "hypercall":
        point, kw = "hypercall", {"eip": vals[0], "eax": vals[1]}
    elif method == "trap":
        point, kw = "trap", dict(zip(("trapnr", "eip", "use_error_code", "error_code"), vals,
                                     strict=True))
    elif method == "ptwr_emulation":
        point, kw = "ptwr_emulation", dict(zip(("addr", "pte", "eip"), vals, strict=True))
    else:
        point = method
        kw = dict(zip(pl.layout(point, abi, arch, width).names, vals, strict=True))
    assert pl.encode(point, abi, arch, width, **kw) == (event, payload)
    words = np.frombuffer(payload, dtype="<u4")
    if point.startswith("hypercall_") and kw["op"] & 0xFFF00000:
        # The op spilled into the presence bits (Xen WARNs): C's field view is not what the
        # record says; the decoder keeps the low 20 bits and flags the record.
        assert pl.decode(event, payload) == {"op": kw["op"] & 0xFFFFF, "malformed": 1}
        return
    assert pl.decode(event, list(words)) == fields
    assert pl.decode(event, payload) == fields
    # Vectorised forms agree with the C bytes too.
    ev, wd, ex = pl.encode_array(point, abi, arch, width,
                                 **{k: np.array([x & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
                                    for k, x in kw.items()})
    assert (int(ev[0]), int(ex[0])) == (event, len(payload))
    assert wd[0, : len(payload) // 4].tobytes() == payload
    lay = pl.find_layout(event, len(payload))
    if lay.kind == "struct":
        cols = pl.decode_array(lay, np.frombuffer(payload.ljust(28, b"\0"), "<u4")[None, :])
        assert {k: int(c[0]) for k, c in cols.items()} == fields


# ---- the i386 layouts, compiled for real with -m32 when the compiler can ---------------------

I386 = r"""
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
/* Seed x86_32 structs with the real -m32 "unsigned long"; values as in the Python test. */
#define SEC(n) __attribute__((section(".golden_" #n), used))
SEC(hypercall) struct { unsigned long eip; uint32_t eax; } __attribute__((packed))
    hypercall = { 0xc0105678u, 24 };
SEC(trap) struct { unsigned long eip; unsigned trapnr:15, use_error_code:1, error_code:16; }
    __attribute__((packed)) trap = { 0xc0105678u, 0x8080 & 0x7fff, 1, 0xabcd };
SEC(page_fault) struct { unsigned long eip, addr; uint32_t error_code; }
    __attribute__((packed)) page_fault = { 0xc0105678u, 0xdeadb008u, 7 };
SEC(two) struct { unsigned long va1, va2; } __attribute__((packed)) two = { 0xc0105678u, 0x1238 };
SEC(ptwr_pae) struct { struct { uint64_t l1; } pte; unsigned long addr, eip; }
    ptwr_pae = { { 0x8000000123456067ull }, 0xdeadb008u, 0xc0105678u };
SEC(ptwr_nonpae) struct { struct { uint32_t l1; } pte; unsigned long addr, eip; }
    ptwr_nonpae = { { 0x23456067u }, 0xdeadb008u, 0xc0105678u };
_Static_assert(sizeof(unsigned long) == 4, "ILP32");
_Static_assert(sizeof(ptwr_pae) == 16 && __alignof__(ptwr_pae) == 4, "i386 u64 alignment");
"""

I386_CALLS = {
    "hypercall": ("x86_32", "hypercall", dict(op=24, eip=0xC0105678)),
    "trap": ("x86_32", "trap", dict(trapnr=0x8080, eip=0xC0105678, use_error_code=True,
                                    error_code=0xABCD)),
    "page_fault": ("x86_32", "page_fault", dict(eip=0xC0105678, addr=0xDEADB008, error_code=7)),
    "two": ("x86_32", "gdt_ldt_mapping_fault", dict(eip=0xC0105678, offset=0x1238)),
    "ptwr_pae": ("x86_32-pae", "ptwr_emulation", dict(addr=0xDEADB008, npte=NPTE,
                                                      eip=0xC0105678)),
    "ptwr_nonpae": ("x86_32", "ptwr_emulation", dict(addr=0xDEADB008, npte=0x23456067,
                                                     eip=0xC0105678)),
}


def test_i386_layouts_compiled_with_m32(cc: str, tmp_path: Path, tb: TraceBuffers) -> None:
    src = tmp_path / "i386.c"
    src.write_text(I386)
    obj = tmp_path / "i386.o"
    res = subprocess.run([cc, "-m32", "-w", "-c", "-o", str(obj), str(src)],
                         capture_output=True, text=True)
    objcopy = Path(cc).with_name("objcopy")
    if res.returncode != 0 or not objcopy.exists():
        pytest.skip("compiler cannot build -m32 objects (or no objcopy): only the fixed-width "
                    "emulation in pv_golden.c covers the x86_32 layouts")
    for name, (arch, method, v) in I386_CALLS.items():
        dump = tmp_path / f"{name}.bin"
        subprocess.run([str(objcopy), f"--dump-section=.golden_{name}={dump}", str(obj)],
                       check=True, capture_output=True)
        (rec,) = _emit(tb, "xen-3.2", arch, 32, method, v, bulk=False)
        assert rec.payload == dump.read_bytes(), name
