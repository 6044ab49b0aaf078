"""Names of the export formats and codecs (no heavy imports: the CLI reads them at start-up)."""

from __future__ import annotations

FORMATS = ("parquet", "arrow", "csv", "jsonl")
SUFFIX = {"parquet": ".parquet", "arrow": ".arrow", "csv": ".csv", "jsonl": ".jsonl"}
COMPRESSIONS = ("zstd", "snappy", "gzip", "lz4", "none")

#: Codecs of each format (the first is the default); CSV and JSON Lines are not compressed.
CODECS = {
    "parquet": ("zstd", "snappy", "gzip", "lz4", "none"),
    "arrow": ("zstd", "lz4", "none"),
    "csv": (),
    "jsonl": (),
}


def compression_for(fmt: str, compression: str | None) -> str:
    """The codec to use (``compression`` or the format's default); ``ValueError`` saying why
    when the format cannot use it."""
    codecs = CODECS[fmt]
    if compression is None:
        return codecs[0] if codecs else "none"
    if not codecs:
        if compression == "none":
            return "none"
        raise ValueError(f"--compression does not apply to {fmt} (written uncompressed)")
    if compression not in codecs:
        raise ValueError(
            f"{fmt} files compress with {', '.join(c for c in codecs if c != 'none')} or none, "
            f"not {compression}"
        )
    return compression
