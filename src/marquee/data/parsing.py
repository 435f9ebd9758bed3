"""Read delimited files and type their columns, stopping with errors that name file, line and column."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from marquee.data.errors import DataError, where

_COMMON_SEPARATORS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", "::": "'::'", " ": "space"}


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and what it should hold."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file '{path}' not found: expected {what}")
    return path


def read_delimited(
    path: str | Path,
    sep: str,
    *,
    names: list[str] | None = None,
    usecols: list[str] | None = None,
    encoding: str = "utf-8",
) -> tuple[pd.DataFrame, int]:
    """Read a delimited text file with every field as a string.

    With ``names`` the file has no header and must have exactly that many fields per line;
    otherwise its first line is the header. Returns the frame (index = data row) and the line
    number of data row 0. Multi-character separators are swapped for a control character so
    the fast C parser can read them.
    """
    path = Path(path)
    try:
        text: str | io.StringIO = path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        raise DataError(f"{where(path)}: not readable as {encoding} text ({err.reason} at byte {err.start})") from err
    if len(sep) > 1:
        text = text.replace(sep, "\x1f")
    reader_sep = "\x1f" if len(sep) > 1 else sep
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=reader_sep,
            header=None if names else 0,
            names=names,
            usecols=usecols,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            engine="c",
            quoting=3 if names else 0,  # headerless research dumps have no quoting
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as err:
        raise DataError(f"{where(path)}: cannot be parsed with separator {sep!r}: {err}") from err
    except ValueError as err:  # usecols naming absent columns
        raise DataError(f"{where(path)}: {err}") from err
    if frame.empty and not text.strip():
        raise DataError(f"{where(path)}: the file is empty")
    line_offset = 1 if names else 2
    if names:
        _check_field_counts(frame, path, sep, line_offset)
    return frame, line_offset


def _check_field_counts(frame: pd.DataFrame, path: Path, sep: str, line_offset: int) -> None:
    """A headerless file read with the wrong separator leaves trailing fields empty: say so."""
    short = frame.iloc[:, -1].isna().to_numpy()
    if short.any():
        row = int(np.flatnonzero(short)[0])
        first = str(frame.iloc[row, 0])
        guess = next((name for s, name in _COMMON_SEPARATORS.items() if s != sep and s in first), None)
        hint = f"; the line seems {guess}-separated" if guess else ""
        raise DataError(
            f"{where(path, row + line_offset)}: expected {frame.shape[1]} fields separated by {sep!r}, "
            f"found fewer{hint}"
        )


def require_columns(frame: pd.DataFrame, required: list[str] | tuple[str, ...], source: str | Path, sep: str) -> None:
    """Raise naming the missing columns, the columns found, and a separator hint when it looks wrong."""
    missing = [c for c in required if c not in frame.columns]
    if not missing:
        return
    found = list(frame.columns)
    hint = ""
    if len(found) == 1:
        guess = next((name for s, name in _COMMON_SEPARATORS.items() if s != sep and s in found[0]), None)
        if guess:
            hint = f"; the header seems {guess}-separated, not {sep!r}"
    raise DataError(f"{where(source)}: missing column(s) {missing}; found {found}{hint}")


def to_number(
    frame: pd.DataFrame, column: str, source: str | Path, line_offset: int, *, integer: bool = False
) -> pd.Series:
    """Convert a string column to numbers; raise at the first empty or non-numeric field."""
    raw = frame[column]
    empty = raw.isna().to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError(f"{where(source, frame.index[row] + line_offset, column)}: missing value; expected a number")
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna().to_numpy()
    if integer and not bad.all():
        bad |= ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan)) | (values % 1 != 0).to_numpy(na_value=True)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        raise DataError(
            f"{where(source, frame.index[row] + line_offset, column)}: {raw.iloc[row]!r} is not {kind}"
        )
    return values.astype(np.int64) if integer else values.astype(np.float64)


def check_not_missing(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], source: str | Path, line_offset: int) -> None:
    """Raise at the first missing (NaN or empty) value among ``columns``."""
    for column in columns:
        empty = frame[column].isna().to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(f"{where(source, frame.index[row] + line_offset, column)}: missing value")


def split_genres(values: pd.Series, sep: str) -> pd.Series:
    """Turn ``'Action|Comedy'`` strings into lists, with an empty list for a missing field."""
    return values.fillna("").map(lambda s: [g for g in s.split(sep) if g and g != "(no genres listed)"])
