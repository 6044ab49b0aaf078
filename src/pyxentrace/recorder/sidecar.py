"""The metadata sidecar ``TRACE.meta.json`` the recorder writes next to the trace.

Keys (readers need only ``tsc_hz``):

* ``tsc_hz`` - TSC rate; ``nr_pcpus``; ``abi`` (``xen-4``, ``xen-3.4``, ``xen-3.2``); ``arch``;
  ``domains`` - ``[{"domid", "name", "vcpus", "width"}]`` (width 32/64, null when unknown);
* ``start_time``/``end_time`` - UTC, ISO 8601; ``source`` - ``pyxentrace-model`` or ``xen``;
* ``pcpus`` - per-pCPU producer counters **for this recording** (the model's lifetime totals
  at the end minus those at startup) ``{"0": {"offered", "filtered", "written", "lost"}}``
  (model only: a real host does not expose them).  ``offered`` = trace-point calls reaching
  ``trace()`` with tracing on; ``filtered`` = dropped by the event or CPU mask (or no buffer);
  ``written`` = records that entered the buffer (WRAP and LOST records not counted); ``lost`` =
  records dropped for lack of space.  ``offered = filtered + written + lost``;
* ``buffers`` - pages per CPU, ``data_size``, buffered CPUs, and per pCPU:
  ``wrap_records``/``lost_records`` (WRAP and LOST_RECORDS records inserted during the
  recording); ``unreported_lost`` (drops no LOST_RECORDS record reports: forgotten when tracing
  was disabled at exit, or still pending at the end); ``pending_lost_at_start`` (drops before
  the recording whose LOST_RECORDS record was still owed); ``backlog_records``/
  ``backlog_lost`` (data records and LOST_RECORDS counts already buffered at startup, copied
  into the file; 0 with ``-D``); ``discarded_records``/``discarded_lost``/``discarded_bytes``
  (what ``-D`` dropped); ``left_records``/``left_lost`` (written during the recording but still
  buffered after the last pass: only with ``-x`` or a host writing while the recorder exits);
* ``recorder`` - options, windows and bytes written, wake-ups, ``-M`` drops (windows, bytes,
  and per pCPU records and LOST counts), ``exit``, ``stop_signal``, ``stop_reason``
  (``signal``, ``time limit``, ``request``, ``parent exited``, ``error``),
  ``counters_at_start`` (the lifetime totals the deltas start from) and ``counters_exact``
  (both samples were taken while no producer was writing; otherwise the deltas may be off by
  the records written during the sampling).

Conservation, per pCPU, for a recording without ``-M`` drops (``N`` = data records in the file,
``L`` = sum of its LOST_RECORDS counts)::

    N = written + backlog_records - left_records
    N + L + unreported_lost + left_records + left_lost
      = offered - filtered + backlog_records + backlog_lost + pending_lost_at_start
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from typing import Any

from pyxentrace.format.meta import sidecar_path

FORMAT = "pyxentrace-meta/1"
COUNTERS = ("offered", "filtered", "written", "lost")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meta_path_for(output: str | None, explicit: str | None = None) -> str | None:
    """The sidecar path: ``explicit``, else ``OUTPUT.meta.json`` when OUTPUT is (or will be) a
    regular file; None for standard output, devices, pipes (``-o /dev/full`` must not create
    ``/dev/full.meta.json``)."""
    if explicit:
        return explicit
    if output in (None, "-") or not _regular_output(output):
        return None
    return sidecar_path(output)


def _regular_output(path: str) -> bool:
    if os.path.abspath(path).startswith(("/dev/", "/proc/")):
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True  # created as a regular file
    except OSError:
        return True  # opening it will report the problem


def base_meta(host: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """The host part of the sidecar (from the model's host info or ``xl``)."""
    meta: dict[str, Any] = {"format": FORMAT, "source": source}
    host = host or {}
    for key in ("tsc_hz", "nr_pcpus", "abi", "arch", "xen_version", "start_tsc"):
        if host.get(key) is not None:
            meta[key] = host[key]
    meta["domains"] = [
        {
            "domid": d["domid"],
            "name": d.get("name"),
            "vcpus": d.get("vcpus"),
            "width": d.get("width"),
        }
        for d in host.get("domains", [])
    ]
    return meta


def write_meta(path: str, meta: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed over the sidecar)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
