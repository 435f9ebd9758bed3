"""Cold start: new items held out of training and ranked among themselves, and the content baseline they face.

New users need no code of their own: :class:`~marquee.data.splits.UserHoldout` keeps held-out
members out of training and gives each a few onboarding picks as history, and the two-tower's user
tower reads those picks, the member's metadata and the request context. New items need a split
(:class:`ItemHoldout`) and a catalog restricted to them (:class:`RestrictedCatalog`): a service
launching a title ranks it against other launches, not against the back catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from marquee.data.log import InteractionLog
from marquee.data.splits import Split, holdout_roles
from marquee.models.base import FittedRecommender, Recommender


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
    def items(split: Split, stage: str) -> torch.Tensor:
        """The cold items of ``stage``: (C,) ids, sorted."""
        return torch.from_numpy(np.unique(split.targets(stage)["item_id"].to_numpy(np.int64)))


class RestrictedCatalog(Recommender):
    """``model``'s scores over ``items`` only; every other item scores -inf, so rankings run over those items."""

    def __init__(self, model: Recommender, items: torch.Tensor):
        super().__init__(model.n_items)
        self.model = model
        allowed = torch.zeros(model.n_items + 1, dtype=torch.bool)
        allowed[items] = True
        allowed[0] = False
        self.register_buffer("allowed", allowed)

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.model.score(batch).float().masked_fill(~self.allowed, float("-inf"))  # (B, n_items + 1)
        return self.select(scores, items)


class GenrePopularity(FittedRecommender):
    """An item scores the mean, over its genres, of the training interactions per item of that genre.

    The popularity a brand-new title can have: it has no interactions, but its genres do.
    """

    def __init__(self, n_items: int, item_genres: torch.Tensor | None = None, n_genres: int = 0):
        super().__init__(n_items)
        if item_genres is None or n_genres == 0:
            raise ValueError("GenrePopularity needs item genres, and this catalog has none")
        self.register_buffer("item_genres", item_genres)  # (n_items + 1, G), 0 = padding
        self.n_genres = n_genres
        self.register_buffer("popularity", torch.zeros(n_items + 1))

    def fit(self, split: Split) -> GenrePopularity:
        counts = torch.as_tensor(split.item_counts, dtype=torch.float32)  # (n_items + 1,)
        warm = (counts > 0).float()
        genres = self.item_genres  # (n_items + 1, G)
        present = (genres > 0).float()
        per_genre = torch.zeros(self.n_genres + 1).index_add_(0, genres.flatten(), (counts[:, None] * present).flatten())
        items_per_genre = torch.zeros(self.n_genres + 1).index_add_(0, genres.flatten(), (warm[:, None] * present).flatten())
        rate = per_genre / items_per_genre.clamp(min=1)  # (G + 1,) interactions per warm item of the genre
        self.popularity.copy_((rate[genres] * present).sum(1) / present.sum(1).clamp(min=1))
        return self

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        return self.select(self.popularity.expand(len(batch["user"]), -1), items).clone()
