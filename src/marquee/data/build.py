"""Turn a loader's RawLog into an InteractionLog: validate, drop duplicates, map events, filter, encode."""

from __future__ import annotations

import logging
from datetime import tzinfo

import numpy as np
import pandas as pd

from marquee.data.context import HOURS, WEEKDAYS, resolve_timezone
from marquee.data.errors import DataError, where
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from marquee.data.log import InteractionLog, event_order
from marquee.data.parsing import check_not_missing
from marquee.data.raw import REQUIRED_COLUMNS, UTC_OFFSET, RawLog
from marquee.data.vocab import Vocabulary

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday is 0


def build_log(
    raw: RawLog, events: EventSchema | None = None, filters: Filters | None = None, timezone: str | None = None
) -> InteractionLog:
    """Validate ``raw``, apply the documented drop rules and ``filters``, and encode ids.

    Drop rules, each logged with its count: rows identical in every column (duplicates) keep
    their first copy; rows whose event is unknown go when ``events.unknown == 'drop'``; a missing
    ``device`` becomes ``'unknown'``. Missing ids, timestamps or values, and values outside their
    event type's range, stop with an error. Rows are put in :func:`~marquee.data.log.event_order`
    before filtering, so neither the filters nor the log depend on the file's row order. Derived
    hour and weekday are local time: the row's ``utc_offset`` if the data carries one, else
    ``timezone`` (an IANA name; None is UTC).
    """
    events = events or EventSchema()
    filters = filters or Filters()
    zone = resolve_timezone(timezone)
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
    events.check_values(frame, raw.source, raw.line_offset)

    if "device" in frame:
        unknown = frame["device"].isna()
        if unknown.any():
            log.warning("%s: %d rows without device set to 'unknown'", raw.source, int(unknown.sum()))
        frame = frame.assign(device=frame["device"].astype("string").fillna("unknown"))

    # from here on the index is the row's place in the event order, which a filter may shuffle
    frame = filters.apply(event_order(frame).reset_index(drop=True), raw.name)
    users, items = Vocabulary.fit(frame["user_id"]), Vocabulary.fit(frame["item_id"])
    encoded = pd.DataFrame(
        {
            "user_id": users.encode(frame["user_id"]),
            "item_id": items.encode(frame["item_id"]),
            "timestamp": frame["timestamp"].to_numpy(np.int64),
            "event": frame["event"].to_numpy(),
            "value": frame["value"].to_numpy(np.float32),
        },
        index=frame.index,
    )
    encoded["event"] = pd.Categorical(encoded["event"], categories=events.names)
    encoded = _add_context(encoded, frame, raw.ordinal_time, zone)
    encoded = encoded.sort_index().reset_index(drop=True)
    return InteractionLog(
        name=raw.name,
        interactions=encoded,
        users=users,
        items=items,
        events=events,
        item_meta=align_meta(raw.item_meta, items, "item", raw.name, with_genres=True),
        user_meta=align_meta(raw.user_meta, users, "user", raw.name),
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


def hour_and_weekday(ts: np.ndarray, utc_offset: np.ndarray | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day (0-23) and weekday (Monday 0) of Unix-second timestamps on a clock ``utc_offset`` s east of UTC."""
    local = np.asarray(ts, dtype=np.int64) + np.asarray(utc_offset, dtype=np.int64)
    hour = (local // 3600) % HOURS
    return hour.astype(np.int8), ((local // SECONDS_PER_DAY + EPOCH_WEEKDAY) % WEEKDAYS).astype(np.int8)


def zone_offsets(ts: np.ndarray, zone: tzinfo | None) -> np.ndarray:
    """Seconds east of UTC of ``zone``'s clock at each Unix-second timestamp (daylight saving included); 0 for UTC."""
    ts = np.asarray(ts, dtype=np.int64)
    if zone is None:
        return np.zeros(len(ts), dtype=np.int64)
    utc = pd.to_datetime(ts, unit="s", utc=True)
    return ((utc.tz_convert(zone).tz_localize(None) - utc.tz_localize(None)) // pd.Timedelta(seconds=1)).to_numpy()


def _add_context(encoded: pd.DataFrame, frame: pd.DataFrame, ordinal_time: bool, zone: tzinfo | None) -> pd.DataFrame:
    """Copy given context columns; derive local hour and weekday from real timestamps when absent."""
    hour, dow = None, None
    if not ordinal_time and not {"hour", "dow"} <= set(frame.columns):
        ts = encoded["timestamp"].to_numpy()
        offset = zone_offsets(ts, zone)
        if UTC_OFFSET in frame:  # the offset the data carries wins over the configured zone
            given = frame[UTC_OFFSET].to_numpy(np.float64)
            offset = np.where(np.isnan(given), offset, given).astype(np.int64)
        hour, dow = hour_and_weekday(ts, offset)
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


def align_meta(
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
