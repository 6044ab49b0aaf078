"""vCPU keys: one int64 per (domain, vCPU) for compiled code, and their labels.

``key = domain << 16 | vcpu`` for domains 0..0xFFFF. Two buckets are not Xen domains:

* ``DEFAULT`` (domain ``0x10000``, vCPU = pCPU): records seen on a pCPU before its first
  scheduling record - xenalyze's ``d32768v<pcpu>`` default domain, labelled ``d[DEFAULT]v<pcpu>``;
* ``NONE`` (key ``-1``): records on a pCPU whose vCPU was descheduled and no next vCPU is known
  yet - xenalyze's ``d?v?``.
"""

from __future__ import annotations

import numpy as np

from ..format.xen_names import DOMID_IDLE, domain_label

DOMAIN_SHIFT = 16
VCPU_MASK = 0xFFFF
#: Pseudo-domain of the pre-scheduling bucket (above every 16-bit domain id).
DEFAULT_DOMAIN = 0x10000
#: Key of "no current vCPU" (descheduled, nothing scheduled in yet).
NONE_KEY = -1
IDLE_DOMAIN = DOMID_IDLE
#: xenalyze's own number for its default domain (for --summary compatible text).
XENALYZE_DEFAULT_DOMAIN = 32768
#: xenalyze's ``MAX_CPUS``: scheduling records naming a larger vCPU number are ignored, pCPUs
#: above it get no default vCPU (shared by the runstate engine and the attribution).
XENALYZE_MAX_VID = 256


def make_key(domain: int, vcpu: int) -> int:
    """The int64 key of ``(domain, vcpu)`` (``ValueError`` for a vCPU number past 16 bits)."""
    if not 0 <= int(vcpu) <= VCPU_MASK:
        raise ValueError(f"vCPU number {vcpu} is not in 0..{VCPU_MASK}")
    return (int(domain) << DOMAIN_SHIFT) | int(vcpu)


def split_key(key: int) -> tuple[int, int]:
    """``(domain, vcpu)`` of a key; ``(-1, -1)`` for ``NONE_KEY``."""
    key = int(key)
    if key < 0:
        return -1, -1
    return key >> DOMAIN_SHIFT, key & VCPU_MASK


def key_label(key: int) -> str:
    """``d1v0``, ``d[IDLE]v3``, ``d[DEFAULT]v2`` (before the first scheduling record), ``d?v?``."""
    dom, vcpu = split_key(key)
    if dom < 0:
        return "d?v?"
    if dom == DEFAULT_DOMAIN:
        return f"d[DEFAULT]v{vcpu}"
    return f"{domain_label(dom)}v{vcpu}"


def parse_vcpu_label(text: str) -> int:
    """Key of a label as printed (``d1v0``, ``d[IDLE]v3``, ``d32767v0``, ``d[DEFAULT]v1``).

    Raises ``ValueError`` for anything else.
    """

    t = text.strip()
    if t == "d?v?":
        return NONE_KEY
    if not t.startswith("d") or "v" not in t:
        raise ValueError(f"not a vCPU label: {text!r} (expected e.g. d1v0 or d[IDLE]v3)")
    dpart, _, vpart = t[1:].rpartition("v")
    if not vpart.isdigit():
        raise ValueError(f"not a vCPU label: {text!r}")
    if int(vpart) > VCPU_MASK:
        raise ValueError(f"not a vCPU label: {text!r} (vCPU numbers are 0..{VCPU_MASK})")
    return make_key(parse_domain(dpart, text), int(vpart))


def parse_domain(dpart: str, text: str | None = None) -> int:
    """Domain number of ``1``, ``d1``, ``[IDLE]``, ``d[IDLE]``, ``[DEFAULT]``, ``32767``."""
    from ..format.xen_names import RESERVED_DOMID_LABELS

    s = dpart.strip()
    if s.startswith("d"):
        s = s[1:]
    if s.startswith("[") and s.endswith("]"):
        name = s[1:-1].upper()
        if name == "DEFAULT":
            return DEFAULT_DOMAIN
        for dom, label in RESERVED_DOMID_LABELS.items():
            if label == name:
                return dom
        if name.startswith("0X"):
            try:
                dom = int(name, 16)
            except ValueError:
                dom = -1
            if 0 <= dom <= 0xFFFF:
                return dom
    elif s.isdigit():
        dom = int(s)
        if dom == XENALYZE_DEFAULT_DOMAIN:
            return DEFAULT_DOMAIN
        if dom <= 0xFFFF:
            return dom
    raise ValueError(
        f"not a domain: {text or dpart!r} (expected e.g. 1, d1, d[IDLE]; ids are 0..65535)"
    )


def labels_of_keys(keys: np.ndarray) -> np.ndarray:
    """Vectorised :func:`key_label` (object array)."""
    keys = np.asarray(keys, dtype=np.int64)
    uniq, inv = np.unique(keys, return_inverse=True)
    names = np.asarray([key_label(int(k)) for k in uniq], dtype=object)
    return names[inv.reshape(keys.shape)]
