"""What a loader hands the out-of-core engine instead of a RawLog: where its interactions lie and how to read them.

A :class:`RawScan` names the file, its layout and, per marquee field, the file's column and the
rules its values follow (the same rules, in the same order, as the loader's own pandas reading), so
that :mod:`marquee.data.duckdb_prep` can read a log larger than memory and stop on bad input with the
loader's own error. Metadata tables are small: they are read by the loader, when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# how a column's values become a field, as the pandas loaders convert them (marquee.data.parsing.to_number ...)
KINDS = (
    "int",  # an integer ('1.0' too); missing or anything else stops
    "float",  # a finite number
    "seconds",  # a finite number, floored to whole seconds
    "text",  # a string; missing stops
    "nullable_text",  # a string or missing (device)
    "native",  # taken as the file types it (Parquet); build_log's checks only
)


@dataclass(frozen=True)
class ScanColumn:
    """The file's ``column`` behind one field, and what its values must be (``kind``, one of :data:`KINDS`).

    ``hint`` ends a conversion error (e.g. ``set id_type: str for ids that are not integers``);
    ``divisor`` turns integer ticks into seconds (1000 for ms, floored); ``bounds`` is the closed
    range an integer context field (hour, weekday) must lie in.
    """

    column: str
    kind: str = "native"
    hint: str = ""
    divisor: int = 1
    bounds: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"ScanColumn.kind must be one of {KINDS}, got {self.kind!r}")


def _no_meta() -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    return None, None


@dataclass(frozen=True)
class RawScan:
    """One interaction file to be read out of core, and the fields to take from it.

    ``fields`` maps each marquee field (user_id, item_id, timestamp, event, value and any of hour,
    dow, device) to a :class:`ScanColumn` or to a constant every row takes (a default event or
    value); its order is the order of the loader's checks, so the first error named is the same.
    ``format`` is ``csv`` (``sep``, ``header``; without a header ``names`` names every field;
    ``quote`` False for headerless research dumps) or ``parquet``. Line = data row + ``line_offset``.
    ``ordinal_time``: no timestamp field; each row's time is its position among its user's rows.
    ``meta()`` reads the item and user metadata as the loader's RawLog carries them.
    """

    name: str
    path: Path
    fields: dict[str, ScanColumn | str | float]
    format: str = "csv"
    sep: str = ","
    header: bool = True
    names: tuple[str, ...] | None = None
    quote: bool = True
    line_offset: int = 1
    ordinal_time: bool = False
    meta: Callable[[], tuple[pd.DataFrame | None, pd.DataFrame | None]] = field(default=_no_meta, compare=False)

    @property
    def size_bytes(self) -> int:
        """Size of the interaction file, for ``data.engine=auto``."""
        return self.path.stat().st_size
