"""Members' viewing histories: the bundle holds none, so the service reads them from an optional Parquet file.

``histories=PATH.parquet`` has one row per event with ``user_id, item_id, timestamp`` (Unix seconds) and
optionally ``event`` (a name of the bundle's ``event_names``), ``value`` and ``device``. A request that
sends ``history`` inline carries raw item ids only: its events count as plays of value 1 at unknown times.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marquee.export.bundle import Bundle

REQUIRED = ("user_id", "item_id", "timestamp")


class HistoryError(ValueError):
    """A histories file the service cannot read: the message names the file and the column."""


@dataclass
class History:
    """One member's events, oldest first: internal item ids and each event's side inputs (all (L,))."""

    items: np.ndarray
    event: np.ndarray
    value: np.ndarray
    timestamp: np.ndarray | None = None
    device: np.ndarray | None = None

    def features(self) -> dict[str, np.ndarray]:
        """The per-event inputs every stage may read, as a batch of one (1, L): ids, event, value, time, device."""
        n = len(self.items)
        hour = dow = np.zeros(n, np.int64)
        gap = np.zeros(n, np.float32)
        if self.timestamp is not None:
            when = pd.to_datetime(self.timestamp, unit="s", utc=True)
            hour, dow = when.hour.to_numpy() + 1, when.day_of_week.to_numpy() + 1
            gap = np.diff(self.timestamp, prepend=self.timestamp[:1]).astype(np.float32)
        device = self.device if self.device is not None else np.zeros(n, np.int64)
        columns = {"items": self.items, "event": self.event, "value": self.value, "hour": hour, "dow": dow,
                   "gap": gap, "device": device}
        return {name: np.asarray(column)[None, :] for name, column in columns.items()}


def inline_history(bundle: Bundle, items: np.ndarray) -> History:
    """A history sent with the request: plays (value 1) of internal ``items`` at unknown times."""
    names = bundle.features.get("event_names", [])
    play = names.index("play") + 1 if "play" in names else 1
    return History(items=items, event=np.full(len(items), play, np.int64), value=np.ones(len(items), np.float32))


class HistoryStore:
    """Histories by raw member id (as text), loaded once at start-up; events of titles the bundle lacks are dropped."""

    def __init__(self, histories: dict[str, History], dropped: int = 0):
        self.histories, self.dropped = histories, dropped

    def __len__(self) -> int:
        return len(self.histories)

    def get(self, user: str) -> History | None:
        return self.histories.get(user)

    @classmethod
    def load(cls, path: str | Path, bundle: Bundle) -> HistoryStore:
        path = Path(path).expanduser().resolve()
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise HistoryError(f"histories '{path}' cannot be read as Parquet: {err}") from err
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise HistoryError(f"histories '{path}' lacks columns {missing}; expected {list(REQUIRED)} "
                               "and optionally event, value, device")
        if not pd.api.types.is_numeric_dtype(frame["timestamp"]):
            raise HistoryError(f"histories '{path}', column 'timestamp': expected Unix seconds, got {frame['timestamp'].dtype}")
        ids = {str(raw): i + 1 for i, raw in enumerate(bundle.items.raw_ids)}  # "7" and 7 name the same title
        frame = frame.assign(item=[ids.get(str(raw), 0) for raw in frame["item_id"]])
        dropped = int((frame["item"] == 0).sum())
        frame = frame[frame["item"] > 0].sort_values(["user_id", "timestamp"], kind="stable")
        names = list(bundle.features.get("event_names", []))
        devices = list(bundle.features.get("devices", []))
        event = (frame["event"].map({n: i + 1 for i, n in enumerate(names)}).fillna(0) if "event" in frame
                 else pd.Series(names.index("play") + 1 if "play" in names else 1, index=frame.index))
        value = frame["value"].fillna(1.0) if "value" in frame else pd.Series(1.0, index=frame.index)
        device = frame["device"].map({n: i + 1 for i, n in enumerate(devices)}).fillna(0) if "device" in frame else None
        histories = {}
        for user, rows in frame.groupby("user_id", sort=False).indices.items():
            histories[str(user)] = History(
                items=frame["item"].to_numpy()[rows].astype(np.int64), event=event.to_numpy()[rows].astype(np.int64),
                value=value.to_numpy()[rows].astype(np.float32),
                timestamp=frame["timestamp"].to_numpy()[rows].astype(np.int64),
                device=None if device is None else device.to_numpy()[rows].astype(np.int64))
        return cls(histories, dropped)
