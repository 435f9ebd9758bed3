"""Per-user, time-ordered interactions as CSR arrays with side features aligned to each item.

Categorical side features are ids with 0 as padding: ``event`` = event type + 1, ``hour`` =
hour of day + 1, ``dow`` = weekday + 1 (Monday is 1), ``device`` = device code + 1. ``value``
is the logged value (rating, watch fraction) and ``gap`` the seconds since the user's previous
event (positions for ordinal-time logs), both 0 at padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def feature_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Side features of each row of ``frame`` (sorted by user, then time), padding-shifted."""
    out: dict[str, np.ndarray] = {
        "event": frame["event"].cat.codes.to_numpy(np.int64) + 1,
        "value": frame["value"].to_numpy(np.float32),
    }
    for column in ("hour", "dow"):
        if column in frame:
            out[column] = frame[column].to_numpy(np.int64) + 1
    if "device" in frame:
        out["device"] = frame["device"].cat.codes.to_numpy(np.int64) + 1
    ts = frame["timestamp"].to_numpy(np.int64)
    same_user = np.r_[False, frame["user_id"].to_numpy()[1:] == frame["user_id"].to_numpy()[:-1]]
    out["gap"] = np.where(same_user, np.diff(ts, prepend=ts[:1]), 0).astype(np.float32)
    return out


@dataclass(frozen=True)
class UserSequences:
    """Rows of one frame grouped by user: user ``u``'s rows are ``indptr[u]:indptr[u + 1]``."""

    indptr: np.ndarray  # (n_users + 2,)
    items: np.ndarray  # (nnz,) item ids
    features: dict[str, np.ndarray]  # name -> (nnz,)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_users: int) -> UserSequences:
        """Group ``frame`` by user; it must be sorted by user, then time (as InteractionLog keeps it)."""
        users = frame["user_id"].to_numpy(np.int64)
        if len(users) > 1 and (np.diff(users) < 0).any():
            raise ValueError("frame must be sorted by user_id, then timestamp")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users + 1))])
        return cls(indptr, frame["item_id"].to_numpy(np.int64), feature_arrays(frame))

    def windows(self, starts: np.ndarray, ends: np.ndarray, width: int | None = None, left: bool = True
                ) -> dict[str, np.ndarray]:
        """Rows ``starts[b]:ends[b]`` (flat positions) of each window b as ``(B, width)`` arrays, zero-padded.

        Padding goes on the left (histories, so the latest event is last) or the right (target lists);
        ``width`` defaults to the longest window. Gathered without a Python loop over windows.
        """
        starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        lengths = ends - starts
        width = max(int(lengths.max(initial=0)), 1) if width is None else width
        if (lengths > width).any():
            raise ValueError(f"a window of {int(lengths.max())} rows exceeds width {width}")
        rows = np.repeat(np.arange(len(starts)), lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # 0.. per window
        flat = np.repeat(starts, lengths) + within
        cols = within + np.repeat(width - lengths, lengths) if left else within
        out = {}
        for name, values in {"items": self.items, **self.features}.items():
            padded = np.zeros((len(starts), width), dtype=values.dtype)
            padded[rows, cols] = values[flat]
            out[name] = padded
        return out
