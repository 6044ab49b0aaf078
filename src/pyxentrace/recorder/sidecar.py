"""The metadata sidecar ``TRACE.meta.json`` the recorder writes next to the trace.

Keys (readers need only ``tsc_hz``):

* ``tsc_hz`` - TSC rate; ``nr_pcpus``; ``abi`` (``xen-4``/``xen-3.2``); ``arch``;
  ``domains`` - ``[{"domid", "name", "vcpus", "width"}]`` (width 32/64, null when unknown);
* ``start_time``/``end_time`` - UTC, ISO 8601; ``source`` - ``pyxentrace-model`` or ``xen``;
* ``pcpus`` - per-pCPU producer counters ``{"0": {"offered", "filtered", "written", "lost"}}``
  (model only: a real host does not expose them).  ``offered`` = trace-point calls reaching
  ``trace()`` with tracing on; ``filtered`` = dropped by the event or CPU mask (or no buffer);
  ``written`` = records that entered the buffer (WRAP and LOST records not counted); ``lost`` =
  records dropped for lack of space.  ``offered = filtered + written + lost``;
* ``buffers`` - pages per CPU, ``data_size``, and per pCPU the WRAP and LOST_RECORDS records
  inserted and ``unreported_lost`` (drops no LOST_RECORDS record reached the file for);
* ``recorder`` - options, windows and bytes written, wake-ups, ``-M`` drops, exit status.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from pyxentrace.format.meta import sidecar_path

FORMAT = "pyxentrace-meta/1"
COUNTERS = ("offered", "filtered", "written", "lost")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meta_path_for(output: str | None, explicit: str | None = None) -> str | None:
    """The sidecar path: ``explicit``, else ``OUTPUT.meta.json``; None for standard output."""
    if explicit:
        return explicit
    if output in (None, "-"):
        return None
    return sidecar_path(output)


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
