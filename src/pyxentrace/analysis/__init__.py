"""Analyses: PV decoding, domain/vCPU attribution, summaries (ours and xenalyze's), the dump.

Library entry points (the CLI commands in :mod:`.cli_commands` are thin shells over these):

* :func:`compute_summary` -> :class:`Summary` (``.to_dict()``, :func:`render_text`,
  :func:`render_xenalyze`)
* :func:`write_dump` (text or JSON lines)
* :func:`decode_columns` (vectorised payload decoding of a batch)
* :class:`Attributor` (per-row domain/vCPU attribution over consecutive batches)
* :func:`make_filters` -> :class:`Filters` (shared --from/--to/--cpu/--domain/--vcpu/--event)
"""

from .decode import decode_columns
from .dump import Attributor, write_dump
from .filters import Filters, make_filters
from .keys import key_label, parse_vcpu_label
from .render_text import render_text
from .render_xenalyze import render_xenalyze
from .summary import Summary, compute_summary

__all__ = [
    "Attributor",
    "Filters",
    "Summary",
    "compute_summary",
    "decode_columns",
    "key_label",
    "make_filters",
    "parse_vcpu_label",
    "render_text",
    "render_xenalyze",
    "write_dump",
]
