"""Names of the export formats and codecs (no heavy imports: the CLI reads them at start-up)."""

from __future__ import annotations

FORMATS = ("parquet", "arrow", "csv", "jsonl")
SUFFIX = {"parquet": ".parquet", "arrow": ".arrow", "csv": ".csv", "jsonl": ".jsonl"}
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "none")
