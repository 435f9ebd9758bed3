"""Impression logs of a contextual bandit: context, candidate arms with features, the arm shown, its propensity, reward.

One row is one impression: a member (``context``) was shown one of several candidate arms (artworks of a
title, or items of a slate position), the logging policy chose ``action`` with probability ``propensity``,
and ``reward`` was observed. Every off-policy estimator reads this and nothing else, so it is checked
once, here: a zero, missing, negative or above-one propensity makes importance weighting meaningless and
is refused with the row and column that hold it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from marquee.data.errors import DataError

PROPENSITY_TOLERANCE = 1e-9  # a propensity may exceed 1 by rounding, no more


@dataclass(frozen=True)
class Candidates:
    """The arms each row may show: ids into a shared feature table; ``-1`` pads rows with fewer arms."""

    ids: np.ndarray  # (n, K) int64 arm ids, -1 where a row has no arm in that slot
    table: np.ndarray  # (n_arms, f) float32 features of every arm, row = arm id
    keys: np.ndarray | None = None  # (n_arms,) the id each arm has outside marquee (artwork id, item id)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_slots(self) -> int:
        return self.ids.shape[1]

    @property
    def mask(self) -> np.ndarray:
        """(n, K) True where the slot holds an arm."""
        return self.ids >= 0

    @property
    def features(self) -> np.ndarray:
        """(n, K, f) features of every candidate; zeros in empty slots."""
        feats = self.table[np.maximum(self.ids, 0)]  # (n, K, f)
        feats[~self.mask] = 0.0
        return feats

    def take(self, rows: np.ndarray | slice) -> Candidates:
        return Candidates(self.ids[rows], self.table, self.keys)


@dataclass(frozen=True)
class BanditLog:
    """A validated impression log; ``action`` is the slot of ``candidates`` that was shown.

    ``meta`` holds per-row identifiers that no estimator reads (user, title, hour, timestamp) so that a
    study can group rows; ``position`` is the 0-based slate position where the log has one.
    """

    context: np.ndarray  # (n, d) float32 member context
    candidates: Candidates  # (n, K) arms the logging policy chose among
    action: np.ndarray  # (n,) int64 slot in candidates.ids of the arm shown
    propensity: np.ndarray  # (n,) float64 logging policy's probability of that arm
    reward: np.ndarray  # (n,) float64
    context_names: tuple[str, ...] = ()
    position: np.ndarray | None = None  # (n,) int64, 0-based
    meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = "bandit log"

    def __post_init__(self) -> None:
        n = len(self.action)
        object.__setattr__(self, "context", np.asarray(self.context, dtype=np.float32))
        object.__setattr__(self, "action", np.asarray(self.action, dtype=np.int64))
        object.__setattr__(self, "reward", np.asarray(self.reward, dtype=np.float64))
        shapes = {"context": self.context.shape[0], "candidates": len(self.candidates), "propensity": len(self.propensity),
                  "reward": len(self.reward)}
        if self.position is not None:
            shapes["position"] = len(self.position)
        if len(self.meta.columns):
            shapes["meta"] = len(self.meta)
        wrong = {k: v for k, v in shapes.items() if v != n}
        if wrong:
            raise DataError(f"{self.source}: {n} actions but {wrong} rows; every array needs one row per impression")
        if self.context.ndim != 2 or (self.context_names and len(self.context_names) != self.context.shape[1]):
            raise DataError(f"{self.source}: context has shape {self.context.shape} but {len(self.context_names)} names")
        at = self._row
        object.__setattr__(self, "propensity", check_propensities(self.propensity, lambda i: at(i, "propensity")))
        bad = np.flatnonzero((self.action < 0) | (self.action >= self.candidates.n_slots))
        if len(bad) == 0:
            bad = np.flatnonzero(self.candidates.ids[np.arange(n), self.action] < 0)
        if len(bad):
            i = bad[0]
            raise DataError(f"{at(i, 'action')}: slot {self.action[i]} holds no candidate arm "
                            f"(arms {self.candidates.ids[i][self.candidates.ids[i] >= 0].tolist()}); {len(bad)} such rows")
        for name, values in (("reward", self.reward), ("context", self.context)):
            nonfinite = np.flatnonzero(~np.isfinite(values.reshape(n, -1)).all(axis=1))
            if len(nonfinite):
                raise DataError(f"{at(nonfinite[0], name)}: not a finite number; {len(nonfinite)} such rows")

    def _row(self, i: int, column: str) -> str:
        return f"{self.source}, row {int(i)}, column '{column}'"

    def __len__(self) -> int:
        return len(self.action)

    @property
    def chosen_arm(self) -> np.ndarray:
        """(n,) id of the arm shown on each row."""
        return self.candidates.ids[np.arange(len(self)), self.action]

    def take(self, rows: np.ndarray) -> BanditLog:
        """The rows ``rows`` (a bootstrap resample, a split) as a log of their own."""
        return replace(
            self,
            context=self.context[rows],
            candidates=self.candidates.take(rows),
            action=self.action[rows],
            propensity=self.propensity[rows],
            reward=self.reward[rows],
            position=None if self.position is None else self.position[rows],
            meta=self.meta.iloc[rows].reset_index(drop=True) if len(self.meta.columns) else self.meta,
        )


def check_propensities(values: np.ndarray | pd.Series, locate: Callable[[int], str]) -> np.ndarray:
    """Return ``values`` as float64 if every one is a probability in (0, 1]; else raise naming the first bad row.

    ``locate(i)`` turns a row index into the place a reader can find it (file, line, column).
    """
    given = np.asarray(values)
    if given.dtype.kind in "fiub":
        raw = given.astype(np.float64)
    else:  # text or objects: anything that does not parse as a number counts as missing
        raw = pd.to_numeric(pd.Series(given, dtype=object), errors="coerce").to_numpy(np.float64)
    problems = (
        (np.isnan(raw), "missing or not a number"),
        (raw <= 0, "zero or negative (the logging policy could not have shown this arm)"),
        (raw > 1 + PROPENSITY_TOLERANCE, "above 1"),
    )
    for bad, what in problems:
        rows = np.flatnonzero(bad)
        if len(rows):
            i = rows[0]
            raise DataError(f"{locate(i)}: propensity {_plain(given[i])!r} is {what}; expected a "
                            f"probability in (0, 1] ({len(rows)} such rows)")
    return np.minimum(raw, 1.0)


def _plain(value: object) -> object:
    """A numpy scalar as the Python value it holds, so messages read ``0.0`` rather than ``np.float64(0.0)``."""
    return value.item() if isinstance(value, np.generic) else value
