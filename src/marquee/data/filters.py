"""Filters applied before the split: value threshold, de-duplication and k-core."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from marquee.data.errors import DataError

log = logging.getLogger(__name__)

_DEDUP = ("none", "keep_first", "keep_last")


@dataclass(frozen=True)
class Filters:
    """Which interactions to keep before splitting.

    ``min_value`` drops rows whose value is below it (e.g. ratings under 4 as non-positive);
    ``dedup`` keeps one row per (user, item): the earliest (``keep_first``) or the latest
    (``keep_last``); ``user_core``/``item_core`` repeatedly drop users and items with fewer
    interactions until every one left has at least that many (the k-core).
    """

    min_value: float | None = None
    dedup: str = "none"
    user_core: int = 0
    item_core: int = 0

    def __post_init__(self) -> None:
        if self.dedup not in _DEDUP:
            raise DataError(f"filters.dedup must be one of {_DEDUP}, got {self.dedup!r}")
        if self.user_core < 0 or self.item_core < 0:
            raise DataError("filters.user_core and filters.item_core must be >= 0")

    def apply(self, frame: pd.DataFrame, name: str) -> pd.DataFrame:
        """Return the rows that pass, logging how many each filter dropped; raise if none pass."""
        n0, users0 = len(frame), frame["user_id"].nunique()
        if self.min_value is not None:
            frame = self._drop(frame, frame["value"] >= self.min_value, f"value < {self.min_value}", name)
        if self.dedup != "none":
            order = frame.sort_values("timestamp", kind="stable")
            keep = "first" if self.dedup == "keep_first" else "last"
            kept = order.drop_duplicates(["user_id", "item_id"], keep=keep).sort_index()
            report(len(frame) - len(kept), f"repeated (user, item) pairs ({self.dedup})", name)
            frame = kept
        if self.user_core or self.item_core:
            frame = self._k_core(frame, name)
        if frame.empty:
            raise DataError(f"{name}: no interactions left after filters {self}; loosen them")
        lost = users0 - frame["user_id"].nunique()
        if lost:
            log.info("%s: %d users lost every interaction to the filters and were dropped", name, lost)
        log.info("%s: filters kept %d of %d interactions", name, len(frame), n0)
        return frame

    def _k_core(self, frame: pd.DataFrame, name: str) -> pd.DataFrame:
        before = len(frame)
        while True:
            user_n = frame.groupby("user_id")["item_id"].transform("size")
            item_n = frame.groupby("item_id")["user_id"].transform("size")
            keep = (user_n >= self.user_core) & (item_n >= self.item_core)
            if keep.all():
                break
            frame = frame[keep]
        report(before - len(frame), f"k-core (users >= {self.user_core}, items >= {self.item_core})", name)
        return frame

    def _drop(self, frame: pd.DataFrame, keep: pd.Series, why: str, name: str) -> pd.DataFrame:
        report(int((~keep).sum()), why, name)
        return frame[keep]


def report(count: int, why: str, name: str) -> None:
    """Log how many interactions a filter dropped, and why."""
    if count:
        log.info("%s: dropped %d interactions: %s", name, count, why)
