"""The contract between a loader and the rest of marquee: raw ids, typed columns, file-relative rows."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp", "event", "value")
ITEM_META_COLUMNS = ("title", "year", "genres")
UTC_OFFSET = "utc_offset"  # optional: seconds east of UTC of the clock the event was logged on


@dataclass
class RawLog:
    """What a loader hands over: one row per logged event, still keyed by raw ids.

    ``interactions`` has the columns of ``REQUIRED_COLUMNS`` (``timestamp`` as int64 Unix seconds,
    or positions when ``ordinal_time``; ``event`` as raw labels; ``value`` as float) and any of
    ``marquee.data.context.CONTEXT_FEATURES``, and ``utc_offset`` (seconds east of UTC, missing where
    the data gives none) when timestamps carry their local offset, so that hour and weekday can be
    local time. Its index is the row's position in ``source`` so that later checks can name
    the line: line = index + ``line_offset``. ``item_meta`` is indexed by raw item id with
    ``title``, ``year`` and ``genres`` (a list of strings); ``user_meta`` by raw user id.
    """

    name: str
    interactions: pd.DataFrame
    source: str
    line_offset: int = 1
    item_meta: pd.DataFrame | None = None
    user_meta: pd.DataFrame | None = None
    ordinal_time: bool = False
