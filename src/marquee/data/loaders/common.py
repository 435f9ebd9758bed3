"""Metadata helpers shared by the loaders: unique ids, titles with a year, nullable integers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from marquee.data.errors import DataError, where

_TITLE_YEAR = r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)$"


def check_unique(ids: pd.Series, source: str | Path, line_offset: int, column: str) -> None:
    """Raise at the first id that repeats an earlier line's (metadata has one row per id)."""
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise DataError(f"{where(source, ids.index[row] + line_offset, column)}: id {ids.iloc[row]!r} occurs twice")


def item_meta_frame(
    ids: pd.Series, title: pd.Series, year: pd.Series, genres: pd.Series, source: str | Path, line_offset: int
) -> pd.DataFrame:
    """Item metadata as the RawLog wants it: indexed by raw item id, with title, year and genres."""
    check_unique(ids, source, line_offset, str(ids.name))
    meta = pd.DataFrame({"title": title.astype(str), "year": year, "genres": genres})
    return meta.set_axis(pd.Index(ids.to_numpy(), name="item_id"))


def title_and_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Split ``'Toy Story (1995)'`` into ``'Toy Story'`` and 1995; titles without a year keep ``<NA>``."""
    titles = titles.fillna("").str.strip()
    parts = titles.str.extract(_TITLE_YEAR)
    return parts["title"].fillna(titles), nullable_int(parts["year"])


def nullable_int(values: pd.Series) -> pd.Series:
    """Metadata integers (year, age) as ``Int64``; fields that are not numbers (``'unknown'``) become ``<NA>``."""
    return pd.to_numeric(values, errors="coerce").round().astype("Int64")
