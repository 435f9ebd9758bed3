"""Small logs built in memory for tests."""

from __future__ import annotations

import pandas as pd

from marquee.data.build import build_log
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from marquee.data.log import InteractionLog
from marquee.data.raw import RawLog


def make_raw(rows: list[tuple], name: str = "toy", **extra_columns: list) -> RawLog:
    """A RawLog from ``(user, item, timestamp)`` or ``(user, item, timestamp, event, value)`` tuples."""
    rows = [r if len(r) == 5 else (*r, "interaction", 1.0) for r in rows]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "value"])
    for column, values in extra_columns.items():
        frame[column] = values
    return RawLog(name=name, interactions=frame, source=f"{name}.csv", line_offset=2)


def make_log(rows: list[tuple], events: EventSchema | None = None, filters: Filters | None = None,
             **extra_columns: list) -> InteractionLog:
    """An InteractionLog built from tuples through the real build path."""
    return build_log(make_raw(rows, **extra_columns), events, filters)
