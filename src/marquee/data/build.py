"""Turn a loader's RawLog into an InteractionLog: validate, drop duplicates, map events, filter, encode."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from marquee.data.context import HOURS, WEEKDAYS
from marquee.data.errors import DataError, where
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from marquee.data.log import InteractionLog
from marquee.data.parsing import check_not_missing
from marquee.data.raw import REQUIRED_COLUMNS, RawLog
from marquee.data.vocab import Vocabulary

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0


def build_log(raw: RawLog, events: EventSchema | None = None, filters: Filters | None = None) -> InteractionLog:
    """Validate ``raw``, apply the documented drop rules and ``filters``, and encode ids.

    Drop rules, each logged with its count: rows identical in every column (duplicates) keep
    their first copy; rows whose event is unknown go when ``events.unknown == 'drop'``; a missing
    ``device`` becomes ``'unknown'``. Missing ids, timestamps or values stop with an error.
    """
    events = events or EventSchema()
    filters = filters or Filters()
    frame = raw.interactions
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{where(raw.source)}: loader produced no column(s) {missing}")
    check_not_missing(frame, [c for c in REQUIRED_COLUMNS if c != "event"], raw.source, raw.line_offset)
    _check_numeric(frame, raw)

    dup = frame.duplicated(keep="first").to_numpy()
    if dup.any():
        log.warning("%s: dropped %d duplicate rows (identical in every column; first copy kept)", raw.source, dup.sum())
        frame = frame[~dup]

    event, keep = events.encode(frame["event"], raw.source, raw.line_offset)
    frame = frame.assign(event=event)[keep]

    if "device" in frame:
        unknown = frame["device"].isna()
        if unknown.any():
            log.warning("%s: %d rows without device set to 'unknown'", raw.source, int(unknown.sum()))
        frame = frame.assign(device=frame["device"].astype("string").fillna("unknown"))

    frame = filters.apply(frame, raw.name)
    users, items = Vocabulary.fit(frame["user_id"]), Vocabulary.fit(frame["item_id"])
    encoded = pd.DataFrame(
        {
            "user_id": users.encode(frame["user_id"]),
            "item_id": items.encode(frame["item_id"]),
            "timestamp": frame["timestamp"].to_numpy(np.int64),
            "event": frame["event"].to_numpy(),
            "value": frame["value"].to_numpy(np.float32),
        }
    )
    encoded["event"] = pd.Categorical(encoded["event"], categories=events.names)
    encoded = _add_context(encoded, frame, raw.ordinal_time)
    # sort by user, then time; a stable sort keeps the file's order among equal timestamps
    encoded = encoded.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    return InteractionLog(
        name=raw.name,
        interactions=encoded,
        users=users,
        items=items,
        events=events,
        item_meta=_align_meta(raw.item_meta, items, "item", raw.name, with_genres=True),
        user_meta=_align_meta(raw.user_meta, users, "user", raw.name),
        ordinal_time=raw.ordinal_time,
    )


def _check_numeric(frame: pd.DataFrame, raw: RawLog) -> None:
    for column in ("timestamp", "value"):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise DataError(f"{where(raw.source, column=column)}: loader produced {frame[column].dtype}, expected numbers")
    bad = ~np.isfinite(frame["value"].to_numpy(np.float64))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"{where(raw.source, frame.index[row] + raw.line_offset, 'value')}: not a finite number")


def hour_and_weekday(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC hour of day (0-23) and weekday (Monday 0) of Unix-second timestamps."""
    ts = np.asarray(ts, dtype=np.int64)
    return ((ts // 3600) % HOURS).astype(np.int8), ((ts // SECONDS_PER_DAY + EPOCH_WEEKDAY) % WEEKDAYS).astype(np.int8)


def _add_context(encoded: pd.DataFrame, frame: pd.DataFrame, ordinal_time: bool) -> pd.DataFrame:
    """Copy given context columns; derive hour and weekday (UTC) from real timestamps when absent."""
    hour, dow = hour_and_weekday(encoded["timestamp"].to_numpy())
    if "hour" in frame:
        encoded["hour"] = frame["hour"].to_numpy(np.int8)
    elif not ordinal_time:
        encoded["hour"] = hour
    if "dow" in frame:
        encoded["dow"] = frame["dow"].to_numpy(np.int8)
    elif not ordinal_time:
        encoded["dow"] = dow
    if "device" in frame:
        encoded["device"] = pd.Categorical(frame["device"].to_numpy(dtype=object))
    return encoded


def _align_meta(
    meta: pd.DataFrame | None, vocab: Vocabulary, kind: str, name: str, with_genres: bool = False
) -> pd.DataFrame:
    """Re-key metadata by id (1..n); ids without metadata get empty fields, logged with their count."""
    if meta is None or meta.empty:
        meta = pd.DataFrame(index=pd.Index([], dtype=vocab.raw_ids.dtype))
    if meta.index.has_duplicates:
        dup = meta.index[meta.index.duplicated()][:3].tolist()
        raise DataError(f"{name}: {kind} metadata has duplicate {kind} ids, e.g. {dup}")
    aligned = meta.reindex(vocab.raw_ids)
    absent = ~vocab.raw_ids.isin(meta.index)
    if absent.any() and len(meta):
        log.warning("%s: %d of %d %ss have no metadata", name, int(absent.sum()), len(vocab), kind)
    if with_genres:
        genres = aligned["genres"] if "genres" in aligned else pd.Series([None] * len(aligned))
        # Parquet hands list columns back as arrays; the contract wants lists of strings
        aligned["genres"] = [[str(x) for x in g] if isinstance(g, (list, tuple, np.ndarray)) else [] for g in genres]
    aligned.index = pd.RangeIndex(1, len(vocab) + 1, name="id")
    return aligned
