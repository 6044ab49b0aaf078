"""Scripted scenarios: one JSON object per line, run in order on a :class:`~.machine.Machine`.

Operations (values are unsigned integers unless noted)::

    {"op":"domain","domid":1,"width":64,"vcpus":2}          # no record; vCPUs runnable
    {"op":"schedule","pcpu":0,"domid":1,"vcpu":0}            # the scheduler records
    {"op":"schedule","pcpu":0,"domid":32767,"vcpu":0}        # back to pCPU 0's idle vCPU
    {"op":"hypercall","pcpu":0,"nr":26,"args":[0,1,0,0,0,0],"eip":...}
    {"op":"multicall","pcpu":0,"calls":[{"nr":24,"args":[0,1,0,0,0,0]}]}
    {"op":"trap","pcpu":0,"vector":13,"eip":...,"use_error_code":true,"error_code":0}
    {"op":"page_fault","pcpu":0,"eip":...,"addr":...,"error_code":7}
    {"op":"forced_invalid_op"|"emulate_privop"|"emulate_4gb","pcpu":0,"eip":...}
    {"op":"math_state_restore","pcpu":0}
    {"op":"paging_fixup","pcpu":0,"eip":...,"addr":...}
    {"op":"gdt_ldt_mapping_fault","pcpu":0,"eip":...,"offset":...}
    {"op":"ptwr_emulation","pcpu":0,"addr":...,"pte":...,"eip":...}
    {"op":"advance","ns":1000}
    {"op":"block","pcpu":0}  {"op":"yield","pcpu":0}  {"op":"wake","pcpu":0,"domid":1,"vcpu":0}

Each trace-point operation emits exactly one record with the given values (subject to
``tb_init_done`` and the masks), in the layout of the ABI, the hypervisor arch and the width of
the vCPU running on that pCPU; ``hypercall`` is v1 in xen-3.2 and HYPERCALL_V2 in xen-4;
``multicall`` emits its hypercall record then (xen-4) one sub-call per entry.  Times come from
the virtual clock (``advance``).  The whole script is validated - syntax, values, and a dry run
of every operation on a machine that records nothing - before anything is emitted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pyxentrace.errors import XentraceError
from pyxentrace.format.pv_layouts import ABI_SEED
from pyxentrace.hypervisor.machine import NR_HYPERCALLS_SEED, DomainSpec, Machine
from pyxentrace.hypervisor.trace import DOMID_IDLE, VirtualTSC

U64 = (1 << 64) - 1
_PV_POINTS = {
    "trap": ("vector", "eip"),
    "page_fault": ("eip", "addr", "error_code"),
    "forced_invalid_op": ("eip",),
    "emulate_privop": ("eip",),
    "emulate_4gb": ("eip",),
    "math_state_restore": (),
    "paging_fixup": ("eip", "addr"),
    "gdt_ldt_mapping_fault": ("eip", "offset"),
    "ptwr_emulation": ("addr", "pte", "eip"),
}
#: op -> (required keys, optional keys); "pcpu" is added for every op but domain/advance.
SCHEMA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "domain": (("domid",), ("width", "vcpus", "name")),
    "schedule": (("domid", "vcpu"), ()),
    "wake": (("domid", "vcpu"), ()),
    "block": ((), ()),
    "yield": ((), ()),
    "hypercall": (("nr",), ("args", "eip")),
    "multicall": (("calls",), ("eip",)),
    "advance": (("ns",), ()),
    **{
        name: (req, ("use_error_code", "error_code") if name == "trap" else ())
        for name, req in _PV_POINTS.items()
    },
}
#: Largest value of each integer field (the rest: 64 bits).
_LIMITS = {"domid": 0x7FEF, "vcpu": 4095, "vcpus": 4096, "nr": U64, "vector": 255, "pcpu": 255}
#: Ops that may name the idle domain (DOMID_IDLE, vCPU = the pCPU): only the scheduler can
#: run an idle vCPU; it is never blocked (wake) and is not a domain one creates.
_IDLE_OK = frozenset({"schedule"})


@dataclass(frozen=True)
class ScriptOp:
    """One line of a script: its number, operation name and fields."""

    line: int
    op: str
    fields: dict[str, Any]


def _fail(line: int, msg: str, path: str | None) -> XentraceError:
    return XentraceError(f"line {line}: {msg}", path=path)


def _uint(line: int, key: str, value: Any, path: str | None, limit: int = U64) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(line, f"{key} must be an unsigned integer, got {json.dumps(value)}", path)
    if not 0 <= value <= limit:
        raise _fail(line, f"{key} {value} out of range 0..{limit}", path)
    return value


def _args(line: int, key: str, value: Any, path: str | None) -> list[int]:
    if not isinstance(value, list) or len(value) > 6:
        raise _fail(line, f"{key} must be a list of at most 6 unsigned integers", path)
    return [_uint(line, f"{key}[{i}]", a, path) for i, a in enumerate(value)]


def _check_fields(line: int, op: str, obj: dict[str, Any], path: str | None) -> dict[str, Any]:
    req, opt = SCHEMA[op]
    if op not in ("domain", "advance"):
        req = ("pcpu", *req)
    keys = set(obj) - {"op"}
    missing = [k for k in req if k not in keys]
    unknown = sorted(keys - set(req) - set(opt))
    if missing or unknown:
        what = [f"missing {', '.join(missing)}"] if missing else []
        what += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise _fail(line, f"{op}: {'; '.join(what)} (takes {', '.join(req + opt)})", path)
    out: dict[str, Any] = {}
    for k in keys:
        v = obj[k]
        if k == "args":
            out[k] = _args(line, k, v, path)
        elif k == "calls":
            if not isinstance(v, list) or not v:
                raise _fail(line, "calls must be a non-empty list of {nr, args}", path)
            calls = []
            for i, c in enumerate(v):
                if not isinstance(c, dict) or "nr" not in c or set(c) - {"nr", "args"}:
                    raise _fail(line, f'calls[{i}] must be {{"nr": N, "args": [...]}}', path)
                calls.append(
                    (
                        _uint(line, f"calls[{i}].nr", c["nr"], path),
                        _args(line, f"calls[{i}].args", c.get("args", []), path),
                    )
                )
            out[k] = calls
        elif k == "name":
            if not isinstance(v, str):
                raise _fail(line, "name must be a string", path)
            out[k] = v
        elif k == "use_error_code":
            if not isinstance(v, bool) and v not in (0, 1):
                raise _fail(line, "use_error_code must be true/false", path)
            out[k] = bool(v)
        elif k == "width":
            if v not in (32, 64) or isinstance(v, bool):
                raise _fail(line, f"width must be 32 or 64, got {json.dumps(v)}", path)
            out[k] = v
        elif k == "domid" and op in _IDLE_OK and v == DOMID_IDLE and not isinstance(v, bool):
            out[k] = v
        elif k == "domid":
            try:
                out[k] = _uint(line, k, v, path, _LIMITS[k])
            except XentraceError:
                idle = f" (or {DOMID_IDLE}, the idle domain)" if op in _IDLE_OK else ""
                raise _fail(
                    line, f"domid {json.dumps(v)} out of range 0..{_LIMITS[k]}{idle}", path
                ) from None
        else:
            out[k] = _uint(line, k, v, path, _LIMITS.get(k, U64))
    return out


def parse_script(lines: Iterable[str], path: str | None = None) -> list[ScriptOp]:
    """Parse JSON lines (blank lines and lines starting with ``#`` are skipped)."""
    ops: list[ScriptOp] = []
    for n, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise _fail(n, f"not JSON: {e}", path) from None
        if not isinstance(obj, dict):
            raise _fail(n, "expected a JSON object", path)
        op = obj.get("op")
        if op not in SCHEMA:
            raise _fail(n, f"unknown op {json.dumps(op)} (known: {', '.join(SCHEMA)})", path)
        ops.append(ScriptOp(n, op, _check_fields(n, op, obj, path)))
    return ops


def load_script(path: str | os.PathLike) -> list[ScriptOp]:
    """Read and parse a script file."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            return parse_script(f.readlines(), p)
    except OSError as e:
        raise XentraceError(f"cannot read script: {e.strerror}", path=p) from None
    except UnicodeDecodeError:
        raise XentraceError("script is not UTF-8 text", path=p) from None


class _NullBuffers:
    """Enough of :class:`~.trace.TraceBuffers` for a dry run: tracing on, nothing stored."""

    tb_init_done = True
    name = "dry-run"

    def __init__(self, nr_cpus: int):
        self.nr_cpu_ids = nr_cpus
        self.clock = VirtualTSC()
        self._cur = [(DOMID_IDLE, c, 64) for c in range(nr_cpus)]

    def set_current(self, cpu: int, domid: int, vcpu_id: int, guest_width: int = 64) -> None:
        self._cur[cpu] = (domid, vcpu_id, guest_width)

    def current(self, cpu: int) -> tuple[int, int, int]:
        return self._cur[cpu]

    def trace(self, cpu: int, event: int, extra: int = 0, data: bytes | None = None) -> None:
        if not 0 <= cpu < self.nr_cpu_ids:
            raise ValueError(f"cpu {cpu} does not exist")

    def TRACE_TIME(self, cpu: int, event: int, *args: int) -> None:  # noqa: N802
        self.trace(cpu, event)

    def trace_hypercall(self, cpu: int, event: int, op: int, args: Sequence[int]) -> None:
        self.trace(cpu, event)


def apply_op(m: Machine, op: ScriptOp) -> None:
    """Execute one operation on ``m``."""
    f = op.fields
    pcpu = f.get("pcpu")
    if pcpu is not None and pcpu >= m.nr_pcpus:
        raise XentraceError(f"pcpu {pcpu} does not exist (pCPUs 0..{m.nr_pcpus - 1})")
    name = op.op
    if name == "domain":
        width = f.get("width", 32 if m.arch.startswith("x86_32") else 64)
        m.add_domain(f["domid"], f.get("vcpus", 1), width, f.get("name", ""))
    elif name == "advance":
        m.advance(f["ns"])
    elif name == "schedule":
        m.schedule(pcpu, m.vcpu(f["domid"], f["vcpu"]))
    elif name == "wake":
        v = m.vcpu(f["domid"], f["vcpu"])
        if v.is_idle or not v.blocked:
            raise XentraceError(f"{v!r} is not blocked")
        m.wake(v, pcpu)
    elif name == "block":
        m.block(pcpu)
    elif name == "yield":
        m.yield_(pcpu)
    elif name == "hypercall":
        if m.abi == ABI_SEED and f["nr"] >= NR_HYPERCALLS_SEED:
            raise XentraceError(
                f"xen-3.2 rejected hypercall numbers >= {NR_HYPERCALLS_SEED} "
                "before tracing them (no record)"
            )
        m.hypercall(pcpu, f["nr"], f.get("args", []), f.get("eip", 0))
    elif name == "multicall":
        m.multicall(pcpu, f["calls"], f.get("eip", 0))
    else:
        _pv_point(m, pcpu, name, f)


def _pv_point(m: Machine, pcpu: int, name: str, f: dict[str, Any]) -> None:
    m._guest(pcpu)
    pv = m.pv
    if name == "trap":
        pv.trap(pcpu, f["vector"], f["eip"], f.get("use_error_code", False), f.get("error_code", 0))
    elif name == "ptwr_emulation":
        pv.ptwr_emulation(pcpu, f["addr"], f["pte"], f["eip"])
    else:
        getattr(pv, name)(pcpu, **{k: f[k] for k in _PV_POINTS[name]})


def check_script(
    ops: Sequence[ScriptOp],
    *,
    abi: str,
    arch: str,
    pcpus: int,
    tsc_hz: int,
    domains: Sequence[DomainSpec] = (),
    path: str | None = None,
) -> None:
    """Dry-run every operation on a machine that records nothing; the first problem is a
    :class:`XentraceError` naming its line."""
    m = Machine(_NullBuffers(pcpus), abi=abi, arch=arch, tsc_hz=tsc_hz)  # type: ignore[arg-type]
    for d in domains:
        m.add_domain(d.domid, d.vcpus, d.width, d.name)
    for op in ops:
        try:
            apply_op(m, op)
        except (XentraceError, ValueError) as e:
            msg = str(e)
            raise _fail(op.line, f"{op.op}: {msg}", path) from None


def run_script(
    m: Machine, ops: Sequence[ScriptOp], progress: Callable[[int], bool] | None = None
) -> int:
    """Execute ``ops`` on ``m``; ``progress(done)`` returning ``False`` stops.  Returns the
    number of operations executed."""
    done = 0
    for op in ops:
        apply_op(m, op)
        done += 1
        if progress is not None and not progress(done):
            break
    return done
