"""Text rendering for the CLI (rich tables, bulk line formatting)."""
