"""Diversity re-ranking before the metrics (``evaluation.rerank``): each user's top ``pool`` reordered by MMR.

The ranking pass lists each user's best ``pool`` unseen items; :func:`~marquee.diversity.mmr` (the
function the service runs) reorders them over the items' genres, and every metric at every k reads the
reordered list. A target's rank is its place in that list, ties still counting against it: items the
list puts after the target but scoring the same count as ahead of it, so weight 0 gives exactly the
ranks of no re-ranking. A target outside the pool stays beyond every k.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from marquee.data.catalog import Catalog
from marquee.diversity import genre_sets, mmr
from marquee.errors import ConfigError

KEY = "evaluation.rerank"
METHODS = ("mmr",)


@dataclass
class Rerank:
    """MMR at ``weight`` (0 keeps the ranking, 1 weighs genre variety only) over each user's top ``pool`` items."""

    weight: float
    pool: int
    _genres: tuple[Catalog, list[frozenset[int]]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, ks: list[int]) -> Rerank | None:
        """The re-ranking ``cfg`` asks for, checked against the cut-offs ``ks``; None when off (null or weight 0)."""
        if cfg is None:
            return None
        unknown = sorted(set(cfg) - {"name", "weight", "pool"})
        if unknown:
            raise ConfigError(KEY, f"unknown key(s) {unknown}; give name, weight and pool")
        name, weight, pool = cfg.get("name", "mmr"), float(cfg.get("weight", 0.0)), cfg.get("pool", 50)
        if name not in METHODS:
            raise ConfigError(f"{KEY}.name", f"one of {list(METHODS)}, got {name!r}")
        if not 0 <= weight <= 1:
            raise ConfigError(f"{KEY}.weight", f"a weight in [0, 1], got {weight}")
        if not isinstance(pool, int) or pool < 1:
            raise ConfigError(f"{KEY}.pool", f"a positive integer, got {pool!r}")
        if weight == 0:
            return None
        if max(ks) > pool:
            raise ConfigError(f"{KEY}.pool", f"{pool} is below the largest k {max(ks)}: MMR re-ranks the top "
                              f"{pool} items, so every k of evaluation.ks must be <= pool")
        return cls(weight, pool)

    def genres(self, catalog: Catalog) -> list[frozenset[int]]:
        """Each item's genre set (index = item id), converted once per catalog; a catalog without genres is refused."""
        if self._genres is None or self._genres[0] is not catalog:
            if catalog.n_genres == 0 or not bool(catalog.item_genres.any()):
                raise ConfigError(KEY, "the data set has no item genres, and MMR re-ranks over genres; "
                                  "set evaluation.rerank=null")
            if self.pool > catalog.n_items:
                raise ConfigError(f"{KEY}.pool", f"{self.pool} exceeds the catalog's {catalog.n_items} items")
            self._genres = (catalog, genre_sets(catalog.item_genres.cpu().numpy()))
        return self._genres[1]

    def __call__(self, catalog: Catalog, top_scores: torch.Tensor, top: torch.Tensor, targets: torch.Tensor,
                 ranks: torch.Tensor, k_max: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-ranked target ranks (B, T) and top-``k_max`` lists (B, k_max) from a batch's top ``pool``.

        ``top_scores`` and ``top`` (B, pool) are the best-first lists, ``ranks`` (B, T) the targets'
        pessimistic ranks, exact up to ``pool``.
        """
        genres = self.genres(catalog)
        scores, items = top_scores.cpu().numpy(), top.cpu().numpy()  # (B, P)
        order = np.stack([mmr(np.arange(len(row)), s, [genres[i] for i in row], self.weight, k_max)
                          for s, row in zip(scores, items)])  # (B, P)
        items, scores = np.take_along_axis(items, order, 1), np.take_along_axis(scores, order, 1)
        wanted = targets.cpu().numpy()  # (B, T)
        at = items[:, None, :] == wanted[:, :, None]  # (B, T, P)
        place = at.argmax(-1)  # (B, T) 0-based place in the re-ranked list
        score = np.take_along_axis(scores, place, 1)  # (B, T) the target's score where listed
        behind = np.arange(scores.shape[1])[None, None, :] > place[:, :, None]  # (B, T, P)
        tied = ((scores[:, None, :] == score[:, :, None]) & behind).sum(-1)  # (B, T)
        inside = at.any(-1) & (ranks.cpu().numpy() <= self.pool)
        new = np.where(inside, np.minimum(place + 1 + tied, k_max + 1), k_max + 1)
        new = np.where(wanted == 0, 0, new)
        return (torch.from_numpy(new).to(ranks.device, ranks.dtype),
                torch.from_numpy(np.ascontiguousarray(items[:, :k_max])).to(top.device))
