"""Splits of an InteractionLog into train / validation / test, with what each evaluation may see.

Every split keeps test interactions out of training and out of the popularity counts, and hands
over, per user, the items seen before each evaluated stage so the evaluator can mask them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from marquee.data.errors import DataError
from marquee.data.log import InteractionLog
from marquee.data.seen import SeenItems

logger = logging.getLogger(__name__)

STAGES = ("val", "test")


@dataclass
class Split:
    """Train rows, validation and test targets, and the fold-in histories of held-out users.

    ``history(stage)`` is everything a model may read when predicting that stage's targets:
    training rows plus, for held-out users, their fold-in rows (and, for test, the validation rows).
    """

    log: InteractionLog
    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    strategy: str
    val_fold_in: pd.DataFrame = field(default_factory=pd.DataFrame)
    test_fold_in: pd.DataFrame = field(default_factory=pd.DataFrame)
    _seen: dict[str, SeenItems] = field(default_factory=dict, init=False, repr=False)

    def targets(self, stage: str) -> pd.DataFrame:
        """The rows to predict at ``stage`` ('val' or 'test'): its positive events (a skip is never a target)."""
        part = {"val": self.val, "test": self.test}[_check_stage(stage)]
        return part[self.log.events.is_positive(part["event"])]

    def history(self, stage: str) -> pd.DataFrame:
        """Rows visible when predicting ``stage``, in the log's order (by user, then time, ties broken as the log does).

        Every part is a slice of ``log.interactions``, whose index is the row's position, so sorting
        by index restores the log's order exactly, ties included.
        """
        parts = [self.train, self.val_fold_in]
        if _check_stage(stage) == "test":
            parts += [self.val, self.test_fold_in]
        parts = [p for p in parts if len(p)]
        return pd.concat(parts).sort_index(kind="stable") if len(parts) > 1 else parts[0]

    def seen(self, stage: str) -> SeenItems:
        """Per user, the items already seen before ``stage``'s targets (to be masked in ranking); built once."""
        if stage not in self._seen:
            self._seen[stage] = SeenItems.from_frame(self.history(stage), self.log.n_users, self.log.n_items)
        return self._seen[stage]

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Positive training events per item id (index 0 is padding): the only popularity marquee uses."""
        positive = self.train[self.log.events.is_positive(self.train["event"])]
        return np.bincount(positive["item_id"].to_numpy(), minlength=self.log.n_items + 1)

    def summary(self) -> dict[str, int | float | str]:
        """Sizes of each part, for printing and for the run record."""
        out: dict[str, int | float | str] = {"split": self.strategy}
        for part in ("train", "val", "test"):
            frame = getattr(self, part)
            out[f"{part}_interactions"] = len(frame)
            out[f"{part}_users"] = int(frame["user_id"].nunique())
        train_items = set(np.flatnonzero(self.item_counts))
        out["test_targets_cold_item"] = int((~self.test["item_id"].isin(train_items)).sum())
        out["items_in_train"] = len(train_items)
        return out


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return stage


def _empty(log: InteractionLog) -> pd.DataFrame:
    return log.interactions.iloc[:0]


@dataclass(frozen=True)
class LeaveOneOut:
    """Per user, the last positive event by time is test, the second last validation, the rest train.

    A not-positive event (a skip) goes with the next positive event after it: skips between the
    second-last and the last positive event are validation rows (history when predicting test), skips
    after the last one are test rows (never seen by training, never targets). Users with fewer than
    ``min_interactions`` (at least 3) positive events keep all rows in training and are not evaluated;
    their count is logged. Events in the same second keep the log's tie-break
    (:func:`~marquee.data.log.event_order`, a fixed hash of the user and item ids), never the file's order.
    """

    min_interactions: int = 3

    def __call__(self, log: InteractionLog) -> Split:
        if self.min_interactions < 3:
            raise DataError("split.min_interactions must be >= 3: one train, one validation and one test row")
        frame = log.interactions  # sorted by user, then time (InteractionLog's invariant)
        positive = pd.Series(log.events.is_positive(frame["event"]).astype(np.int64), index=frame.index)
        # per row: the positive events at or after it in the user's history (1 at the last positive, 0 after it)
        after = positive[::-1].groupby(frame["user_id"][::-1], sort=False).cumsum()[::-1].to_numpy()
        size = positive.groupby(frame["user_id"], sort=False).transform("sum").to_numpy()
        evaluated = size >= self.min_interactions
        short = frame.loc[~evaluated, "user_id"].nunique()
        if short:
            logger.info("%s: %d users with fewer than %d positive events stay in training only",
                        log.name, short, self.min_interactions)
        is_positive = positive.to_numpy().astype(bool)
        test = evaluated & ((after == 0) | ((after == 1) & is_positive))
        val = evaluated & (((after == 1) & ~is_positive) | ((after == 2) & is_positive))
        return Split(log, frame[~(test | val)], frame[val], frame[test], "leave_one_out")


@dataclass(frozen=True)
class TemporalSplit:
    """One global cut in time: rows before ``val_start`` train, up to ``test_start`` validate, later test.

    Cut points are Unix seconds, or quantiles of all timestamps when left null.
    """

    val_start: int | None = None
    test_start: int | None = None
    val_quantile: float = 0.8
    test_quantile: float = 0.9

    def __call__(self, log: InteractionLog) -> Split:
        if log.ordinal_time:
            raise DataError(f"{log.name}: timestamps are positions, not times; a temporal split needs real times")
        ts = log.interactions["timestamp"]
        val_start = self.val_start if self.val_start is not None else int(ts.quantile(self.val_quantile))
        test_start = self.test_start if self.test_start is not None else int(ts.quantile(self.test_quantile))
        if not val_start <= test_start:
            raise DataError(f"split: val_start ({val_start}) must not be after test_start ({test_start})")
        frame = log.interactions
        train, test = frame[ts < val_start], frame[ts >= test_start]
        val = frame[(ts >= val_start) & (ts < test_start)]
        if train.empty or test.empty:
            raise DataError(f"{log.name}: temporal cut at {val_start}/{test_start} leaves train or test empty")
        return Split(log, train, val, test, "temporal")


def holdout_roles(candidates: np.ndarray, n_ids: int, val_fraction: float, test_fraction: float,
                  seed: int) -> np.ndarray:
    """Role per id 0..n_ids (0 train, 1 val, 2 test): random fractions of ``candidates`` are held out."""
    if not (0 <= val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise DataError("split: need 0 <= val_fraction, 0 < test_fraction and val_fraction + test_fraction < 1")
    shuffled = np.random.default_rng(seed).permutation(candidates)
    n_test, n_val = round(test_fraction * len(shuffled)), round(val_fraction * len(shuffled))
    role = np.zeros(n_ids + 1, dtype=np.int8)
    role[shuffled[:n_test]], role[shuffled[n_test : n_test + n_val]] = 2, 1
    return role


@dataclass(frozen=True)
class UserHoldout:
    """Hold out whole users (cold users): their first ``fold_in`` rows are an onboarding history, the rest targets.

    Held-out users never appear in training. Users with no rows beyond the fold-in are not evaluated.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    fold_in: int = 3
    seed: int = 0

    def __call__(self, log: InteractionLog) -> Split:
        role = holdout_roles(np.arange(1, log.n_users + 1), log.n_users, self.val_fraction, self.test_fraction,
                             self.seed)
        frame = log.interactions
        user_role = role[frame["user_id"].to_numpy()]
        position = frame.groupby("user_id", sort=False).cumcount().to_numpy()
        fold = position < self.fold_in
        parts = {
            name: frame[(user_role == r) & (fold if kind == "fold_in" else ~fold)]
            for r, stage in ((1, "val"), (2, "test"))
            for kind, name in (("fold_in", f"{stage}_fold_in"), ("targets", stage))
        }
        return Split(log, frame[user_role == 0], parts["val"], parts["test"], "user_holdout",
                     parts["val_fold_in"], parts["test_fold_in"])


@dataclass(frozen=True)
class ItemHoldout:
    """Hold out whole items (cold items): none of their interactions trains; they are the targets to predict.

    A random ``val_fraction`` / ``test_fraction`` of the items with at least ``min_interactions``
    are validation / test items; every interaction with them is a target of that stage. Users are
    evaluated from their training history (interactions with the other items).
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    min_interactions: int = 1
    seed: int = 0

    def __call__(self, log: InteractionLog) -> Split:
        frame = log.interactions
        counts = np.bincount(frame["item_id"].to_numpy(), minlength=log.n_items + 1)
        eligible = np.flatnonzero(counts >= self.min_interactions)
        role = holdout_roles(eligible[eligible > 0], log.n_items, self.val_fraction, self.test_fraction, self.seed)
        item_role = role[frame["item_id"].to_numpy()]
        return Split(log, frame[item_role == 0], frame[item_role == 1], frame[item_role == 2], "item_holdout")

    @staticmethod
    def items(split: Split, stage: str) -> np.ndarray:
        """The cold items of ``stage``: (C,) ids, sorted."""
        return np.unique(split.targets(stage)["item_id"].to_numpy(np.int64))
