"""The one definition of request-context features: hour of day, weekday, device and the gap since the last event.

Every consumer (the log builder, training windows, the ranker's side inputs, the two-tower's user
tower, the bandit simulator) reads names, id conventions and embedding-table sizes from here, so a
table size is derived from the data or from the calendar, never typed twice. Ids are shifted by one:
0 is padding (or "unknown"), so ``hour`` 0-23 has ids 1-24 and a table of 25 rows.

Hour and weekday are the member's local wall-clock time: the UTC offset an event carries (an ISO
timestamp such as ``2024-03-01T21:15:00+09:00``), else the configured ``data.timezone`` (an IANA
name such as ``Europe/Berlin``), else UTC. Ordering and splitting always use absolute time.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass

import numpy as np
import torch

from marquee.data.errors import DataError

CONTEXT_FEATURES = ("hour", "dow", "device")  # what a request (and every logged event) may carry
HOURS = 24
WEEKDAYS = 7  # Monday is 0
GAP_BUCKETS = 32  # log2 buckets of seconds since the previous event: 1 s ... ~68 years


@dataclass(frozen=True)
class ContextSpec:
    """Which context features a log has and how big their embedding tables are (padding row included).

    ``devices`` are the device names of the log in id order (device id k + 1 is ``devices[k]``);
    ``time`` says whether hour and weekday exist (logs with ordinal time have neither).
    """

    time: bool = True
    devices: tuple[str, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        """The context features this log can feed, in :data:`CONTEXT_FEATURES` order."""
        present = {"hour": self.time, "dow": self.time, "device": bool(self.devices)}
        return tuple(f for f in CONTEXT_FEATURES if present[f])

    def size(self, feature: str) -> int:
        """Rows of the embedding table of ``feature`` (hour, dow, device or gap), padding row included."""
        sizes = {"hour": HOURS + 1, "dow": WEEKDAYS + 1, "device": len(self.devices) + 1, "gap": GAP_BUCKETS + 1}
        if feature not in sizes:
            raise ValueError(f"unknown context feature {feature!r}; choose from {sorted(sizes)}")
        return sizes[feature]


def resolve_timezone(name: str | None) -> zoneinfo.ZoneInfo | None:
    """The IANA time zone ``name`` (None: UTC, returned as None); an unknown name stops with a DataError."""
    if name is None:
        return None
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise DataError(f"timezone: unknown time zone {name!r}; expected an IANA name such as 'Europe/Berlin' "
                        "or 'America/New_York' (null means UTC)") from err


def gap_bucket(seconds: torch.Tensor) -> torch.Tensor:
    """Seconds since the previous event -> bucket ids: 0 for none (padding, first event), else 1 + floor(log2 s)."""
    return torch.where(seconds > 0, torch.log2(seconds.clamp(min=1)).long() + 1, 0).clamp(max=GAP_BUCKETS)


def hour_bucket_ids(hours: np.ndarray, n_buckets: int) -> np.ndarray:
    """Hours 0-23 -> ``n_buckets`` equal parts of the day (0-based), e.g. 4 buckets of six hours."""
    return (np.asarray(hours) * n_buckets // HOURS).astype(np.int64)
