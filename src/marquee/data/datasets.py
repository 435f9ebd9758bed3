"""Torch datasets over a Split: training windows of sequences, (user, item) pairs, and evaluation users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from marquee.data.sequences import CONTEXT, UserSequences, feature_arrays


class SequenceWindows(Dataset):
    """Training windows: ``max_len`` inputs and, at every position, the next item as target.

    ``windows='last'`` takes each user's most recent ``max_len + 1`` items; ``'all'`` tiles the
    whole history from the end with windows that overlap by one item, so no transition is lost.
    Target-side context (``target_hour`` ...) is the context of the event being predicted, which a
    service knows at request time.
    """

    def __init__(self, sequences: UserSequences, max_len: int, windows: str = "last"):
        if windows not in ("last", "all"):
            raise ValueError(f"windows must be 'last' or 'all', got {windows!r}")
        self.sequences, self.max_len = sequences, max_len
        starts, ends = sequences.indptr[:-1], sequences.indptr[1:]
        lengths = ends - starts
        if windows == "last":
            self.ends = ends[lengths >= 2]
            self.starts = np.maximum(self.ends - max_len - 1, starts[lengths >= 2])
        else:
            # windows per user: ceil((n - 1) / max_len); window j ends j * max_len rows before the end
            per_user = np.where(lengths >= 2, -(-(lengths - 1) // max_len), 0)
            owner = np.repeat(np.arange(len(lengths)), per_user)
            j = np.arange(per_user.sum()) - np.repeat(np.cumsum(per_user) - per_user, per_user)
            self.ends = ends[owner] - j * max_len
            self.starts = np.maximum(self.ends - max_len - 1, starts[owner])

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        start, end = int(self.starts[index]), int(self.ends[index])
        inputs = self.sequences.window(start, end - 1, self.max_len)  # (L,) each
        nxt = self.sequences.window(start + 1, end, self.max_len)
        inputs["targets"] = nxt["items"]
        for name in CONTEXT:
            if name in nxt:
                inputs[f"target_{name}"] = nxt[name]
        return inputs


class InteractionPairs(Dataset):
    """Training rows as (user, item) pairs with weight, value and context; indexed by a batch of positions.

    Fetching a whole batch per call (a ``BatchSampler`` as the loader's sampler) keeps loading
    vectorized at any log size.
    """

    def __init__(self, frame: pd.DataFrame, event_weights: np.ndarray):
        feats = feature_arrays(frame)
        self.columns = {
            "user": frame["user_id"].to_numpy(np.int64),
            "item": frame["item_id"].to_numpy(np.int64),
            "weight": event_weights[feats["event"]],
            **{k: v for k, v in feats.items() if k != "gap"},
        }

    def __len__(self) -> int:
        return len(self.columns["user"])

    def __getitem__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices)
        return {name: torch.from_numpy(values[idx]) for name, values in self.columns.items()}


class EvaluationUsers(Dataset):
    """One row per evaluated user: the history visible at that stage and all of the user's targets.

    The history is the last ``max_len`` events, or all of them when ``max_len`` is None (models
    such as EASE read the whole history). ``targets`` vary in length per user; :func:`collate_eval`
    pads them. The context (``target_hour`` ...) is that of the user's first target event.
    """

    def __init__(self, history: pd.DataFrame, targets: pd.DataFrame, n_users: int, max_len: int | None):
        self.history = UserSequences.from_frame(history, n_users)
        self.max_len = max_len
        target_seq = UserSequences.from_frame(targets, n_users)
        self.users = np.flatnonzero(np.diff(target_seq.indptr) > 0)
        self.targets = target_seq

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        user = int(self.users[index])
        end = int(self.history.indptr[user + 1])
        first = int(self.history.indptr[user])
        start = first if self.max_len is None else max(first, end - self.max_len)
        row = self.history.window(start, end, self.max_len or end - start)
        target_start = int(self.targets.indptr[user])
        row["user"] = np.int64(user)
        row["targets"] = self.targets.items[target_start : int(self.targets.indptr[user + 1])]
        for name in CONTEXT:
            if name in self.targets.features:
                row[f"target_{name}"] = self.targets.features[name][target_start]
        return row


def collate_eval(rows: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack evaluation rows: ``targets`` right-padded with 0, histories of unequal length left-padded."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if key == "targets":
            out[key] = torch.from_numpy(_pad(values, left=False))
        elif np.ndim(values[0]) == 1:
            out[key] = torch.from_numpy(_pad(values, left=True))
        else:
            out[key] = torch.from_numpy(np.stack(values))
    return out


def _pad(values: list[np.ndarray], left: bool) -> np.ndarray:
    """Stack 1-D arrays into ``(n, longest)`` with zeros on the left (histories) or right (targets)."""
    lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    width = max(int(lengths.max()), 1)
    out = np.zeros((len(values), width), dtype=values[0].dtype)
    rows = np.repeat(np.arange(len(values)), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # position in its array
    cols = within + np.repeat(width - lengths, lengths) if left else within
    out[rows, cols] = np.concatenate(values) if len(rows) else []
    return out
