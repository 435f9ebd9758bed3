"""The one error type for bad input data, so callers can tell it from bugs."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message names the file, row and column and what was expected."""


def where(source: str | Path, line: int | None = None, column: str | None = None) -> str:
    """Format a location such as ``file 'u.data', line 12, column 'item_id'`` (``row`` for Parquet files)."""
    parts = [f"file '{source}'"]
    if line is not None:
        unit = "row" if Path(source).suffix in (".parquet", ".pq") else "line"
        parts.append(f"{unit} {line}")
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)
