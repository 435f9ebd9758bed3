"""Load any CSV or Parquet interaction log through a column mapping given in config."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marquee.data.context import CONTEXT_FEATURES, HOURS, WEEKDAYS, resolve_timezone
from marquee.data.errors import DataError, where
from marquee.data.loaders.common import item_meta_frame, nullable_int
from marquee.data.parsing import (
    check_not_missing,
    read_delimited,
    read_header,
    require_columns,
    require_file,
    split_genres,
    to_number,
)
from marquee.data.raw import UTC_OFFSET, RawLog
from marquee.data.scan import RawScan, ScanColumn

_FIELDS = ("user_id", "item_id", "timestamp", "event", "value")
_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_CONTEXT_RANGE = {"hour": (0, HOURS - 1), "dow": (0, WEEKDAYS - 1)}
_ID_HINT = "set id_type: str for ids that are not integers"
_TS_HINT = "set timestamp_unit: iso for date strings"
_META_KEYS = ("path", "columns", "sep", "format", "genre_sep")
_META_FIELDS = ("item_id", "title", "year", "genres")
# an ISO date-time's own UTC offset (Z, +09:00, +0900, +09) after its time of day (21, 21:15, 211500, 21:15:00.5)
_ISO_OFFSET = r"^(?P<wall>.*[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?)\s*(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)$"


class TabularLog:
    """A user's own log: ``columns`` maps marquee fields to the file's column names.

    ``user_id``, ``item_id`` and ``timestamp`` are required; a missing ``event`` or ``value`` takes
    ``default_event`` / ``default_value``. ``context`` maps ``hour``/``dow``/``device`` to columns;
    ``item_meta`` (``path``, ``columns`` over item_id/title/year/genres, ``sep``, ``format``,
    ``genre_sep``) adds item metadata. For Parquet, "line N" in an error means the N-th row.

    An ISO timestamp with an offset (``2024-03-01T21:15:00+09:00``) keeps it as the event's local
    clock (hour and weekday are then local time); a naive one is wall-clock time in ``timezone``
    (an IANA name, None: UTC), which the data config sets once for loader and build alike.
    """

    def __init__(
        self,
        path: str | Path,
        name: str,
        columns: Mapping[str, str],
        sep: str = ",",
        format: str = "auto",
        id_type: str = "int",
        timestamp_unit: str = "s",
        default_event: str = "interaction",
        default_value: float = 1.0,
        context: Mapping[str, str] | None = None,
        item_meta: Mapping[str, Any] | None = None,
        timezone: str | None = None,
    ):
        self.path, self.name, self.sep, self.format = Path(path), name, sep, format
        self.columns, self.context = dict(columns), dict(context or {})
        self.id_type, self.timestamp_unit = id_type, timestamp_unit
        self.default_event, self.default_value = default_event, float(default_value)
        self.item_meta = dict(item_meta) if item_meta else None
        self.zone = resolve_timezone(timezone)
        _check_keys(self.columns, _FIELDS, "columns")
        _check_keys(self.context, CONTEXT_FEATURES, "context")
        missing = [f for f in ("user_id", "item_id", "timestamp") if f not in self.columns]
        if missing:
            raise DataError(f"columns: give the file's column for {missing} (e.g. columns.user_id=customer)")
        if id_type not in ("int", "str"):
            raise DataError(f"id_type must be 'int' or 'str', got {id_type!r}")
        if timestamp_unit not in (*_UNITS, "iso"):
            raise DataError(f"timestamp_unit must be one of {[*_UNITS, 'iso']}, got {timestamp_unit!r}")
        if self.item_meta is not None:
            _check_keys(self.item_meta, _META_KEYS, "item_meta")
            _check_keys(dict(self.item_meta.get("columns") or {}), _META_FIELDS, "item_meta.columns")

    def load(self) -> RawLog:
        """Read the mapped columns, type them, and attach item metadata if configured."""
        cols = self.columns
        frame, offset = _read_table(self.path, self.sep, self.format, [*cols.values(), *self.context.values()])
        out = pd.DataFrame(index=frame.index)
        out["user_id"] = self._ids(frame, cols["user_id"], self.path, offset)
        out["item_id"] = self._ids(frame, cols["item_id"], self.path, offset)
        out["timestamp"], utc_offset = self._timestamps(frame, cols["timestamp"], offset)
        if utc_offset is not None:
            out[UTC_OFFSET] = utc_offset
        if "event" in cols:
            check_not_missing(frame, [cols["event"]], self.path, offset)
            out["event"] = frame[cols["event"]].astype(str)
        else:
            out["event"] = self.default_event
        out["value"] = to_number(frame, cols["value"], self.path, offset) if "value" in cols else self.default_value
        for field, column in self.context.items():
            out[field] = self._context(frame, field, column, offset)
        meta = self._item_meta() if self.item_meta else None
        return RawLog(self.name, out, str(self.path), offset, item_meta=meta)

    def scan(self) -> RawScan:
        """The same reading for the out-of-core engine; ISO timestamps are read by :meth:`load` only."""
        cols, needed = self.columns, [*self.columns.values(), *self.context.values()]
        fmt = _table_format(self.path, self.format, needed)
        if fmt == "parquet":
            schema = _parquet_schema(self.path)
            require_columns(pd.DataFrame(columns=schema.names), needed, self.path, self.sep)
            stamp = schema.field(cols["timestamp"]).type
            if pa.types.is_timestamp(stamp) or pa.types.is_date(stamp):
                raise NotImplementedError(f"{where(self.path, column=cols['timestamp'])} holds dates; "
                                          "the pandas engine reads them")
        else:
            require_columns(read_header(self.path, self.sep), needed, self.path, self.sep)
        if self.timestamp_unit == "iso":
            raise NotImplementedError("timestamp_unit=iso is read by the pandas engine only")
        id_kind, id_hint = ("text", "") if self.id_type == "str" else ("int", _ID_HINT)
        timestamp = (ScanColumn(cols["timestamp"], "seconds", _TS_HINT) if self.timestamp_unit == "s"
                     else ScanColumn(cols["timestamp"], "int", _TS_HINT, divisor=_UNITS[self.timestamp_unit]))
        fields: dict[str, ScanColumn | str | float] = {
            "user_id": ScanColumn(cols["user_id"], id_kind, id_hint),
            "item_id": ScanColumn(cols["item_id"], id_kind, id_hint),
            "timestamp": timestamp,
            "event": ScanColumn(cols["event"], "text") if "event" in cols else self.default_event,
            "value": ScanColumn(cols["value"], "float") if "value" in cols else self.default_value,
        }
        for name, column in self.context.items():
            fields[name] = (ScanColumn(column, "nullable_text") if name == "device"
                            else ScanColumn(column, "int", bounds=_CONTEXT_RANGE[name]))
        return RawScan(self.name, self.path, fields, format=fmt, sep=self.sep, line_offset=2 if fmt == "csv" else 1,
                       meta=lambda: (self._item_meta() if self.item_meta else None, None))

    def _ids(self, frame: pd.DataFrame, column: str, source: Path, offset: int) -> pd.Series:
        if self.id_type == "str":
            check_not_missing(frame, [column], source, offset)
            return frame[column].astype(str)
        return _numbers(frame, column, source, offset, integer=True, hint=_ID_HINT)

    def _timestamps(self, frame: pd.DataFrame, column: str, offset: int) -> tuple[pd.Series, pd.Series | None]:
        """Unix seconds, and for ISO times the UTC offset of the clock each was written on (else None)."""
        if self.timestamp_unit == "iso" or pd.api.types.is_datetime64_any_dtype(frame[column]):
            return _iso_seconds(frame, column, self.path, offset, self.zone)
        if self.timestamp_unit == "s":  # fractional seconds are common; floor them
            seconds = np.floor(_numbers(frame, column, self.path, offset, integer=False, hint=_TS_HINT))
            return seconds.astype(np.int64), None
        ticks = _numbers(frame, column, self.path, offset, integer=True, hint=_TS_HINT)
        return ticks // _UNITS[self.timestamp_unit], None

    def _context(self, frame: pd.DataFrame, field: str, column: str, offset: int) -> pd.Series:
        if field == "device":
            return frame[column].astype("string")  # build_log turns missing devices into 'unknown'
        values = to_number(frame, column, self.path, offset, integer=True)
        lo, hi = _CONTEXT_RANGE[field]
        bad = ((values < lo) | (values > hi)).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            at = where(self.path, frame.index[row] + offset, column)
            raise DataError(f"{at}: {values.iloc[row]} is outside {lo}..{hi} for {field}")
        return values

    def _item_meta(self) -> pd.DataFrame:
        cfg = self.item_meta or {}
        path, cols = Path(cfg["path"]), dict(cfg.get("columns") or {})
        if "item_id" not in cols:
            raise DataError("item_meta.columns: give the file's column for item_id")
        frame, offset = _read_table(path, cfg.get("sep", ","), cfg.get("format", "auto"), list(cols.values()))
        ids = self._ids(frame, cols["item_id"], path, offset)
        empty = pd.Series([None] * len(frame), index=frame.index)
        title = frame[cols["title"]].fillna("") if "title" in cols else empty.fillna("")
        year = nullable_int(frame[cols["year"]] if "year" in cols else empty)
        genres = split_genres(frame[cols["genres"]] if "genres" in cols else empty, cfg.get("genre_sep", "|"))
        return item_meta_frame(ids, title, year, genres, path, offset)


def _read_table(path: Path, sep: str, fmt: str, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """Read a CSV (strings, via parsing.py) or Parquet file, checking that ``columns`` are present."""
    fmt = _table_format(path, fmt, columns)
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # pyarrow raises its own types for files that are not Parquet
            raise DataError(f"{where(path)}: not a readable Parquet file ({err})") from err
        require_columns(frame, columns, path, sep)
        return frame.reset_index(drop=True), 1
    require_columns(read_header(path, sep), columns, path, sep)
    return read_delimited(path, sep, usecols=list(dict.fromkeys(columns)))


def _table_format(path: Path, fmt: str, columns: list[str]) -> str:
    """``csv`` or ``parquet`` (``auto``: by the file's suffix), once the file is known to exist."""
    require_file(path, f"a table with columns {columns}")
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    if fmt not in ("csv", "parquet"):
        raise DataError(f"format must be 'auto', 'csv' or 'parquet', got {fmt!r}")
    return fmt


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except Exception as err:  # pyarrow raises its own types for files that are not Parquet
        raise DataError(f"{where(path)}: not a readable Parquet file ({err})") from err


def _iso_seconds(
    frame: pd.DataFrame, column: str, source: Path, offset: int, zone: tzinfo | None
) -> tuple[pd.Series, pd.Series]:
    """Dates or date-times to int64 Unix seconds and the UTC offset (seconds east) of the clock each was written on."""
    check_not_missing(frame, [column], source, offset)
    wall, utc = _local_clock(frame[column], zone)
    bad = (wall.isna() | utc.isna()).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where(source, frame.index[row] + offset, column)}: {frame[column].iloc[row]!r} is not an ISO date "
            "(e.g. 2019-11-24 00:00:34+00:00)"
        )
    second = pd.Timedelta(seconds=1)
    return (utc - pd.Timestamp(0)) // second, (wall - utc) // second


def _local_clock(raw: pd.Series, zone: tzinfo | None) -> tuple[pd.Series, pd.Series]:
    """Naive local wall-clock times and naive UTC times of ISO strings or datetimes (NaT where unreadable).

    A string's own offset (``+09:00``, ``Z``) or a datetime column's zone says where its clock was;
    naive times are wall-clock time in ``zone`` (None: UTC): a time that a daylight-saving change
    skips moves forward, one it repeats is taken the first time.
    """
    if pd.api.types.is_datetime64_any_dtype(raw):
        if raw.dt.tz is not None:
            return raw.dt.tz_localize(None), raw.dt.tz_convert(None)
        wall, has_offset, utc = raw, pd.Series(False, index=raw.index), raw
    else:
        text = raw.astype("string").str.strip()
        parts = text.str.extract(_ISO_OFFSET)
        has_offset = parts["offset"].notna()
        wall = _naive_times(parts["wall"].where(has_offset, text))
        utc = pd.to_datetime(text.where(has_offset), utc=True, errors="coerce", format="ISO8601").dt.tz_convert(None)
        utc = utc.where(has_offset, wall)
    naive = (~has_offset & wall.notna()).to_numpy()
    if zone is not None and naive.any():
        local = wall[naive].dt.tz_localize(zone, ambiguous=np.ones(int(naive.sum()), bool), nonexistent="shift_forward")
        wall, utc = wall.copy(), utc.copy()
        wall[naive], utc[naive] = local.dt.tz_localize(None), local.dt.tz_convert(None)
    return wall, utc


def _naive_times(text: pd.Series) -> pd.Series:
    """ISO strings without offsets to naive datetimes; NaT where unreadable or where an offset is left over."""
    try:
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if parsed.dt.tz is None:
            return parsed
    except ValueError:  # naive times mixed with offsets that _ISO_OFFSET did not take apart
        pass
    one = (pd.to_datetime(t, errors="coerce", format="ISO8601") for t in text)  # the rare error path only
    return pd.Series([t if t is not pd.NaT and t.tzinfo is None else pd.NaT for t in one], index=text.index,
                     dtype="datetime64[ns]")


def _numbers(frame: pd.DataFrame, column: str, source: Path, offset: int, *, integer: bool, hint: str) -> pd.Series:
    """Numbers from a column; a field that is present but not a number gets ``hint`` added to its error."""
    check_not_missing(frame, [column], source, offset)
    try:
        return to_number(frame, column, source, offset, integer=True) if integer else to_number(frame, column, source, offset)
    except DataError as err:
        raise DataError(f"{err}; {hint}") from err


def _check_keys(given: Mapping[str, Any], allowed: tuple[str, ...], key: str) -> None:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise DataError(f"{key}: unknown key(s) {unknown}; expected some of {list(allowed)}")
