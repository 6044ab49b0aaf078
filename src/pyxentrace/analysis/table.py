"""Records as Arrow tables: the reader's columns, decoded PV / scheduler fields, attribution."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..format import events as ev
from ..format import xen_names as xn
from ..reader.batch import RecordBatch
from . import decode as D
from .keys import DOMAIN_SHIFT, NONE_KEY, VCPU_MASK, labels_of_keys

RUNSTATE_NAMES = np.asarray(list(xn.RUNSTATE_NAMES.values()), dtype=object)


def _names(values: np.ndarray, valid: np.ndarray, fn) -> list:
    """Python names of ``values`` where valid (computed once per distinct value)."""
    out: list = [None] * values.shape[0]
    if not valid.any():
        return out
    uniq, inv = np.unique(values[valid], return_inverse=True)
    table = [fn(int(u)) for u in uniq]
    idx = np.nonzero(valid)[0]
    for j, k in zip(idx.tolist(), inv.ravel().tolist(), strict=True):
        out[j] = table[k]
    return out


def _op_name(op: int) -> str:
    return xn.hypercall_name(op)


def arrow_batch(b: RecordBatch, attribution: dict[str, np.ndarray], first_tsc: int, cpu_hz: float):
    """One ``pyarrow.RecordBatch`` with every column of :func:`schema_doc`."""
    import pyarrow as pa

    n = len(b)
    c = D.decode_columns(b.event, b.nwords, b.words)
    key = attribution["key"]
    keyx = attribution["key_xenalyze"]
    has = key != NONE_KEY
    hasx = keyx != NONE_KEY

    def nullable(values, valid, typ):
        return pa.array(values, type=typ, mask=~np.asarray(valid, dtype=bool))

    def dict_col(names):
        return pa.array(names, type=pa.string()).dictionary_encode()

    minor = c["minor"]
    is_pv = minor >= 0
    op = c["op"]
    has_op = op >= 0
    vec = c["vector"]
    has_vec = vec >= 0
    sub = c["subcmd"]
    has_sub = sub >= 0
    pf = c["error_code_valid"] & (minor == 4)
    old = c["old_state"].astype(np.int64)
    new = c["new_state"].astype(np.int64)
    has_rs = old >= 0
    words = pa.FixedSizeListArray.from_arrays(pa.array(b.words.reshape(-1)), 7)
    cols = {
        "offset": pa.array(b.offset),
        "cpu": pa.array(b.cpu),
        "tsc": pa.array(b.tsc),
        "time_s": pa.array((b.tsc.astype(np.int64) - np.int64(first_tsc)) / cpu_hz),
        "untimed": pa.array((b.flags & 1) != 0),
        "flags": pa.array(b.flags),
        "event": pa.array(b.event),
        "event_name": dict_col(D.event_names(b.event)),
        "class": dict_col(
            [ev.class_name(int(e)) for e in b.event] if n < 64 else _class_names(b.event)
        ),
        "nwords": pa.array(b.nwords),
        "words": words,
        "domain": nullable(np.where(has, key >> DOMAIN_SHIFT, 0), has, pa.int32()),
        "vcpu": nullable(np.where(has, key & VCPU_MASK, 0), has, pa.int32()),
        "vcpu_label": dict_col(labels_of_keys(key)),
        "domain_xenalyze": nullable(np.where(hasx, keyx >> DOMAIN_SHIFT, 0), hasx, pa.int32()),
        "vcpu_xenalyze": nullable(np.where(hasx, keyx & VCPU_MASK, 0), hasx, pa.int32()),
        "pv_minor": nullable(minor, is_pv, pa.int16()),
        "pv_64bit": nullable(c["pv64"], is_pv, pa.bool_()),
        "pv_size_ok": nullable(c["size_ok"], is_pv, pa.bool_()),
        "eip": nullable(c["eip"], c["eip_valid"], pa.uint64()),
        "addr": nullable(c["addr"], c["addr_valid"], pa.uint64()),
        "ldt_offset": nullable(c["ldt_offset"], c["ldt_offset_valid"], pa.uint64()),
        "error_code": nullable(c["error_code"], c["error_code_valid"], pa.uint32()),
        "vector": nullable(vec, has_vec, pa.int32()),
        "vector_name": dict_col(_names(vec, has_vec, xn.vector_name)),
        "use_error_code": nullable(c["use_error_code"], c["use_error_code_valid"], pa.bool_()),
        **{
            f"pf_{b_}": nullable(c[f"pf_{b_}"], pf, pa.bool_())
            for b_ in ("present", "write", "user", "reserved", "ifetch")
        },
        "pte": nullable(c["pte"], c["pte_valid"], pa.uint64()),
        "pte_mfn": nullable(c["pte_mfn"], c["pte_valid"], pa.uint64()),
        "pte_flags": nullable(c["pte_flags"], c["pte_valid"], pa.uint16()),
        "pte_nx": nullable(c["pte_nx"], c["pte_valid"], pa.bool_()),
        "pte_pae": nullable(c["pte_pae"], c["pte_valid"], pa.bool_()),
        "hypercall": nullable(op, has_op, pa.int32()),
        "hypercall_name": dict_col(_names(op, has_op, _op_name)),
        "arg_presence": nullable(c["arg_presence"], c["arg_presence_valid"], pa.uint16()),
        **{f"arg{i}": nullable(c[f"arg{i}"], c[f"arg{i}_valid"], pa.uint64()) for i in range(6)},
        "subcmd": nullable(sub, has_sub, pa.int64()),
        "subcmd_name": dict_col(
            [
                D.subcmd_name(int(o), int(s)) if ok else None
                for o, s, ok in zip(op.tolist(), sub.tolist(), has_sub.tolist(), strict=True)
            ]
            if has_sub.any()
            else [None] * n
        ),
        "count": nullable(c["count"], c["count"] >= 0, pa.int64()),
        "preempted": nullable(c["preempted"], (op == 1) & (c["count"] >= 0), pa.bool_()),
        "target_vcpu": nullable(c["target_vcpu"], c["target_vcpu"] >= 0, pa.int64()),
        "multicall_parent": nullable(attribution["parent"], attribution["parent"] >= 0, pa.int64()),
        "subcall_index": nullable(
            attribution["subcall_index"], attribution["subcall_index"] >= 0, pa.int64()
        ),
        "sched_domain": nullable(c["sched_dom"], c["sched_dom"] >= 0, pa.int32()),
        "sched_vcpu": nullable(c["sched_vcpu"], c["sched_vcpu"] >= 0, pa.int32()),
        "old_state": dict_col(np.where(has_rs, RUNSTATE_NAMES[old & 3], None)),
        "new_state": dict_col(np.where(has_rs, RUNSTATE_NAMES[new & 3], None)),
        "next_domain": nullable(c["next_dom"], c["next_dom"] >= 0, pa.int32()),
        "next_vcpu": nullable(c["next_vcpu"], c["next_vcpu"] >= 0, pa.int32()),
        "lost_count": nullable(c["lost_count"], c["lost_count"] >= 0, pa.int64()),
        "lost_first_tsc": nullable(c["lost_first_tsc"], c["lost_count"] >= 0, pa.uint64()),
    }
    return pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))


def _class_names(events: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(events, return_inverse=True)
    names = np.asarray([ev.class_name(int(e)) for e in uniq], dtype=object)
    return names[inv.ravel()]


def unify(batches: Iterable) -> list:
    """Arrow batches with one dictionary per column (so they concatenate into a table)."""
    import pyarrow as pa

    lst = list(batches)
    if not lst:
        return lst
    t = pa.Table.from_batches(lst).unify_dictionaries()
    return t.to_batches()
