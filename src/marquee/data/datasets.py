"""Torch datasets over a Split: training windows of sequences, (user, item) pairs, and evaluation users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from marquee.data.context import CONTEXT_FEATURES
from marquee.data.sequences import UserSequences, feature_arrays


def target_weights(batch: dict[str, torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target position (B, L): the weight of its event and whether it is positive (a play, not a skip).

    A batch without ``target_weight`` (hand-made, or from a log with one event type) weighs every
    target 1 and counts it positive.
    """
    if "target_weight" not in batch:
        return torch.ones_like(targets, dtype=torch.float32), torch.ones_like(targets, dtype=torch.bool)
    return batch["target_weight"], batch["target_positive"]


class SequenceWindows(Dataset):
    """Training windows: ``max_len`` inputs and, at every position, the next item as target.

    ``windows='last'`` takes each user's most recent ``max_len + 1`` items; ``'all'`` tiles the
    whole history from the end with windows that overlap by one item, so no transition is lost.
    Target-side context (``target_hour`` ...) is the context of the event being predicted, which a
    service knows at request time; ``target_weight`` and ``target_positive`` are its event's weight
    and kind (``event_weights`` and ``event_positive`` per event id), and ``user`` names the
    window's member. Batches are gathered whole (``__getitems__``, or indexing by a list of positions),
    with :func:`to_tensors` as the loader's collate function. A batch is ``max_len`` wide, or with
    ``trim=True`` as wide as its longest window (the model reads positions from the right, so the
    padding cut off changes nothing but work).
    """

    def __init__(self, sequences: UserSequences, max_len: int, windows: str = "last",
                 event_weights: np.ndarray | None = None, event_positive: np.ndarray | None = None,
                 trim: bool = False):
        if windows not in ("last", "all"):
            raise ValueError(f"windows must be 'last' or 'all', got {windows!r}")
        self.sequences, self.max_len, self.trim = sequences, max_len, trim
        self.event_weights, self.event_positive = event_weights, event_positive
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

    @property
    def lengths(self) -> np.ndarray:
        """(n_windows,) inputs in each window: what a batch of them must be wide enough for."""
        return self.ends - self.starts - 1

    def __getitems__(self, indices: list[int]) -> dict[str, np.ndarray]:
        starts, ends = self.starts[indices], self.ends[indices]
        width = max(int((ends - starts).max(initial=2)) - 1, 1) if self.trim else self.max_len
        batch = self.sequences.windows(starts, ends - 1, width)  # inputs: (B, L) each
        following = self.sequences.windows(starts + 1, ends, width)
        batch["targets"] = following["items"]
        for name in CONTEXT_FEATURES:
            if name in following:
                batch[f"target_{name}"] = following[name]
        if self.event_weights is not None:  # event id 0 (padding) weighs 0 and is not positive
            batch["target_weight"] = self.event_weights[following["event"]]
            batch["target_positive"] = self.event_positive[following["event"]]
        # the member whose rows hold the window: the user tower reads their metadata
        batch["user"] = np.searchsorted(self.sequences.indptr, starts, side="right") - 1
        return batch

    def __getitem__(self, index: int | list[int]) -> dict[str, np.ndarray]:
        if isinstance(index, list):  # a whole batch from a batch sampler used as the loader's sampler
            return self.__getitems__(index)
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


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
    such as EASE read the whole history), left-padded to the longest in the batch; ``targets``
    (distinct items, in time order) are right-padded. The context (``target_hour`` ...) is that of
    the user's first target event. Batches are gathered whole (``__getitems__``).
    """

    def __init__(self, history: pd.DataFrame, targets: pd.DataFrame, n_users: int, max_len: int | None):
        self.history = UserSequences.from_frame(history, n_users)
        self.targets = UserSequences.from_frame(targets.drop_duplicates(["user_id", "item_id"]), n_users)
        self.max_len = max_len
        self.users = np.flatnonzero(np.diff(self.targets.indptr) > 0)

    def __len__(self) -> int:
        return len(self.users)

    def __getitems__(self, indices: list[int]) -> dict[str, np.ndarray]:
        users = self.users[indices]
        first, end = self.history.indptr[users], self.history.indptr[users + 1]
        start = first if self.max_len is None else np.maximum(first, end - self.max_len)
        batch = self.history.windows(start, end, self.max_len)
        target_start = self.targets.indptr[users]
        batch["user"] = users.astype(np.int64)
        batch["targets"] = self.targets.windows(target_start, self.targets.indptr[users + 1], left=False)["items"]
        for name in CONTEXT_FEATURES:
            if name in self.targets.features:
                batch[f"target_{name}"] = self.targets.features[name][target_start]
        return batch

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Collate function for datasets that gather whole batches: arrays become tensors."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
