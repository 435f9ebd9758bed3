"""Ranking over part of the catalog: how new titles are judged, a launch ranked against other launches."""

from __future__ import annotations

import torch

from marquee.models.base import Recommender


class RestrictedCatalog(Recommender):
    """``model``'s scores over ``items`` only; every other item scores -inf, so rankings run over those items.

    With :class:`~marquee.data.splits.ItemHoldout` it measures cold items: a service launching a
    title ranks it against other launches, not against the back catalog.
    """

    def __init__(self, model: Recommender, items: torch.Tensor):
        super().__init__(model.catalog)
        self.model, self.max_len = model, model.max_len
        allowed = torch.zeros(model.n_items + 1, dtype=torch.bool)
        allowed[torch.as_tensor(items)] = True
        allowed[0] = False
        self.register_buffer("allowed", allowed)

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.model.score(batch).float().masked_fill(~self.allowed, float("-inf"))  # (B, n_items + 1)
        return self.select(scores, items)
