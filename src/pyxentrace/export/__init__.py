"""Outputs people use: Parquet / Arrow / CSV / JSON Lines tables (optionally a hive-partitioned
fleet dataset), Perfetto timelines and a self-contained HTML report.

    from pyxentrace.export import export_table, write_perfetto, write_report
    export_table("trace.bin", "trace.parquet")
    export_table("host1.bin", "fleet/", "parquet", partition=True, host="host1")
    write_perfetto("trace.bin", "trace.pftrace")
    write_report("trace.bin", "report.html")
"""

from __future__ import annotations

from importlib import import_module

_LAZY = {
    "schema": ".columns",
    "Result": ".convert",
    "default_host": ".convert",
    "export_table": ".convert",
    "write_perfetto": ".convert",
    "write_report": ".report",
}


def __getattr__(name: str):
    """Import the exporters on first use (the CLI imports the commands at start-up)."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Result",
    "default_host",
    "export_table",
    "schema",
    "write_perfetto",
    "write_report",
]
