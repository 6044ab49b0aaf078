"""Recording on a real Xen host: the host's own ``xentrace`` plus a sidecar from ``xl``.

``xl info`` gives the TSC rate (``cpu_mhz``), the pCPU count (``nr_cpus``), the machine
(``x86_64``) and the Xen version, which says which generation of trace records the host
writes (:func:`abi_for_version`); ``xl list`` names the domains.
Guest widths and the producer counters are not visible from dom0's tools, so they are left
out (width ``null``, no ``pcpus``).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
from typing import Any

from pyxentrace.errors import XentraceError
from pyxentrace.recorder.options import RecorderOptions
from pyxentrace.recorder.sidecar import base_meta, utc_now, write_meta

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)


def _run(argv: list[str]) -> str:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise XentraceError(f"{argv[0]}: not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise XentraceError(f"{' '.join(argv)}: no answer in 60 s") from None
    if cp.returncode != 0:
        err = (cp.stderr.strip().splitlines() or ["failed"])[-1]
        raise XentraceError(f"{' '.join(argv)}: {err}")
    return cp.stdout


def parse_xl_info(text: str) -> dict[str, str]:
    """``key : value`` lines of ``xl info``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out.setdefault(key.strip(), value.strip())
    return out


def parse_xl_list(text: str) -> list[dict[str, Any]]:
    """Rows of ``xl list``: name, id, vCPUs (the header line is skipped)."""
    doms = []
    for line in text.splitlines():
        m = re.match(r"^(.*?)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+[\d.]+\s*$", line)
        if m:
            doms.append(
                {
                    "domid": int(m.group(2)),
                    "name": m.group(1).strip(),
                    "vcpus": int(m.group(4)),
                    "width": None,
                }
            )
    return doms


#: Trace record generations by Xen release (the label is the first release of each).
ABI_GENERATIONS = (
    # (first release, label): what changed
    ((4, 3), "xen-4"),  # 2012-10-03: PV ids 0x00201nnn, HYPERCALL_V2 + SUBCALL records
    ((3, 4), "xen-3.4"),  # 2008-09-08: RUNSTATE_CHANGE records, SCHED_MIN/VERBOSE ids,
    # 28-byte LOST_RECORDS with a TSC; PV records still the seed's (0x0020f0nn, v1 hypercall)
    ((0, 0), "xen-3.2"),  # the 2007 seed: sched 0x0002f0nn, no runstates, 8-byte LOST_RECORDS
)


def abi_for_version(version: str | None) -> str | None:
    """The trace record generation of a Xen release, None if the version is unknown.

    * ``xen-4`` - Xen >= 4.3: PV ids ``0x00201nnn``, HYPERCALL_V2 and SUBCALL records
      (renumbered 2012-10-03, after 4.2).
    * ``xen-3.4`` - Xen 3.4 to 4.2: runstate records (``0x00021nnn``, since 2008-09-08, after
      3.3.0 shipped in August 2008) and the VERBOSE scheduler ids ``0x00028nnn``, but the seed's
      PV ids ``0x0020f0nn`` and v1 hypercall records.
    * ``xen-3.2`` - Xen 3.2 and 3.3: the seed patch's records only (scheduler ids
      ``0x0002f0nn``, no runstate records, LOST_RECORDS without a TSC).
    """
    m = re.match(r"(\d+)\.(\d+)", version or "")
    if not m:
        return None
    release = (int(m.group(1)), int(m.group(2)))
    return next(label for first, label in ABI_GENERATIONS if release >= first)


def host_info(xl: str = "xl") -> dict[str, Any]:
    """The sidecar's host part from ``xl info`` and ``xl list``."""
    info = parse_xl_info(_run([xl, "info"]))
    version = (
        info.get("xen_version")
        or ".".join(info[k] for k in ("xen_major", "xen_minor") if k in info)
        or None
    )
    host: dict[str, Any] = {
        "xen_version": version,
        "abi": abi_for_version(version),
        "arch": info.get("machine"),
    }
    with contextlib.suppress(ValueError, KeyError):
        host["tsc_hz"] = int(round(float(info["cpu_mhz"]) * 1e6))
    with contextlib.suppress(ValueError, KeyError):
        host["nr_pcpus"] = int(info["nr_cpus"])
    host["domains"] = parse_xl_list(_run([xl, "list"]))
    return host


def xentrace_argv(
    opts: RecorderOptions, output: str | None, explicit: set[str], xentrace: str = "xentrace"
) -> list[str]:
    """The ``xentrace`` command line for ``opts`` (``explicit``: options given by the user)."""
    argv = [xentrace]
    if opts.evt_mask:
        argv += ["-e", f"{opts.evt_mask:#x}"]
    if opts.cpu_mask is not None:
        argv += ["-c", opts.cpu_mask]
    if "tbuf_pages" in explicit:
        argv += ["-S", str(opts.tbuf_pages)]
    if "poll_ms" in explicit:
        argv += ["-s", str(opts.poll_ms)]
    if opts.time_limit_s:
        argv += ["-T", str(opts.time_limit_s)]
    if opts.reserve_mb:
        argv += ["-r", str(opts.reserve_mb)]
    if opts.memory_buffer:
        argv += ["-M", str(opts.memory_buffer)]
    argv += ["-D"] if opts.discard else []
    argv += ["-x"] if not opts.disable_at_exit else []
    argv += ["-X"] if opts.start_disabled else []
    argv.append(output if output not in (None, "-") else "/dev/stdout")
    return argv


def record_xen(
    opts: RecorderOptions,
    output: str | None,
    meta_path: str | None,
    explicit: set[str],
    warn: Any = None,
) -> int:
    """Run the host's ``xentrace`` with ``opts``; returns its exit status.

    Signals that stop xentrace (INT, TERM, HUP, ALRM) are passed on to it.
    """
    xentrace = shutil.which("xentrace")
    if xentrace is None:
        raise XentraceError(
            "xentrace: not found on PATH (install the Xen tools, or record the model with --model)"
        )
    meta: dict[str, Any] | None = None
    if meta_path:
        try:
            host = host_info()
        except XentraceError as e:
            if warn:
                warn(f"no host details for the sidecar: {e}")
            host = None
        meta = base_meta(host, "xen")
        meta["start_time"] = utc_now()
        meta["recorder"] = {"options": opts.to_dict(), "program": xentrace}
        write_meta(meta_path, meta)
    proc = subprocess.Popen(xentrace_argv(opts, output, explicit, xentrace))
    old = {sig: signal.signal(sig, lambda s, f: proc.send_signal(s)) for sig in FORWARDED}
    try:
        rc = proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if meta is not None and meta_path:
        meta["end_time"] = utc_now()
        meta["recorder"]["exit_status"] = rc
        with contextlib.suppress(OSError):
            write_meta(meta_path, meta)
    return 1 if rc < 0 else rc


__all__ = [
    "ABI_GENERATIONS",
    "abi_for_version",
    "host_info",
    "parse_xl_info",
    "parse_xl_list",
    "record_xen",
    "xentrace_argv",
]
