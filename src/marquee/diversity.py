"""Diversity re-ranking (MMR over genres), numpy only: the service runs it per request, the evaluator per user."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def genre_sets(item_genres: np.ndarray) -> list[frozenset[int]]:
    """Each item's genre ids as a set, from an ``(n_items + 1, G)`` id table padded with 0 (the Catalog's)."""
    return [frozenset(int(g) for g in row if g) for row in np.asarray(item_genres)]


def jaccard(genres: Sequence[frozenset[Hashable]]) -> np.ndarray:
    """``(n, n)`` Jaccard similarity of the genre sets; 0 between two items without genres."""
    index = {g: j for j, g in enumerate({g for s in genres for g in s})}
    multi_hot = np.zeros((len(genres), max(len(index), 1)), dtype=np.float64)  # (n, G)
    for i, s in enumerate(genres):
        multi_hot[i, [index[g] for g in s]] = 1.0
    shared = multi_hot @ multi_hot.T  # (n, n) |a & b|
    sizes = multi_hot.sum(1)  # (n,)
    union = sizes[:, None] + sizes[None, :] - shared  # (n, n) |a | b|
    return shared / np.maximum(union, 1.0)


def mmr(items: np.ndarray, scores: np.ndarray, genres: Sequence[frozenset[Hashable]], weight: float,
        k: int) -> np.ndarray:
    """Maximal marginal relevance: ``items`` (best first) reordered so the first ``k`` trade score for genre variety.

    Each pick maximizes ``(1 - weight) * score - weight * max Jaccard(genres, picked genres)``, scores scaled to
    [0, 1]; ``weight`` 0 keeps the ranking as it is. The items after the first ``k`` keep their order, and
    equal values go to the better ranked item, so the first ``j`` picks do not depend on ``k >= j``.
    ``items``, ``scores`` and ``genres`` are aligned, ``(n,)`` each.
    """
    if weight <= 0 or len(items) < 2:
        return items
    span = float(scores.max() - scores.min()) or 1.0
    relevance = (1 - weight) * ((scores - scores.min()) / span)  # (n,) in the scores' dtype
    similarity = jaccard(genres)  # (n, n)
    overlap = np.zeros(len(items))  # (n,) max similarity to the items picked so far
    free = np.ones(len(items), dtype=bool)
    picked = []
    for _ in range(min(k, len(items))):
        value = relevance - (weight * overlap).astype(relevance.dtype)  # (n,)
        best = int(np.argmax(np.where(free, value, -np.inf)))  # the first (best ranked) of equal values
        picked.append(best)
        free[best] = False
        overlap = np.maximum(overlap, similarity[best])
    return items[picked + np.flatnonzero(free).tolist()]
