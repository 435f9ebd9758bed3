"""Per-user accuracy metrics at k from pessimistic target ranks (see ranking.py for the tie rule).

``ranks`` is (U, T): the 1-based rank of each of a user's targets, 0 for padding. With R the number
of a user's targets and hits the targets ranked within k:
recall = |hits| / R; hit = 1 if any hit; precision = |hits| / k; MRR = 1 / best rank if within k;
NDCG = sum over hits of 1 / log2(rank + 1), divided by the ideal DCG of min(R, k) hits;
MAP = sum over hits, in rank order j = 1, 2, ..., of (j / rank_j), divided by min(R, k).

Written here rather than taken from torchmetrics: its retrieval metrics need every user's full
score vector and loop over query groups, while these work on the (U, T) ranks the chunked ranking
keeps, for all users and every k at once; tests check them against torchmetrics on random cases.
"""

from __future__ import annotations

import numpy as np

ACCURACY_METRICS = ("recall", "hit", "precision", "ndcg", "mrr", "map")


def accuracy_metrics(ranks: np.ndarray, ks: list[int] | tuple[int, ...]) -> dict[str, np.ndarray]:
    """Every accuracy metric at every k, as ``{'ndcg@10': (U,) array, ...}``."""
    ranks = np.sort(np.where(ranks > 0, ranks, np.iinfo(np.int64).max), axis=1)  # (U, T), padding last
    valid = ranks < np.iinfo(np.int64).max
    n_rel = valid.sum(1)  # (U,)
    if (n_rel == 0).any():
        raise ValueError("every evaluated user needs at least one target")
    discount = np.where(valid, 1.0 / np.log2(np.minimum(ranks, 2**62).astype(np.float64) + 1.0), 0.0)  # (U, T)
    ideal_cum = np.cumsum(1.0 / np.log2(np.arange(2, ranks.shape[1] + 2)))  # (T,) ideal DCG of j hits
    position = np.arange(1, ranks.shape[1] + 1)  # j-th hit in rank order
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hits = valid & (ranks <= k)  # (U, T)
        n_hits = hits.sum(1)
        best = ranks[:, 0]
        ideal = ideal_cum[np.minimum(n_rel, k) - 1]
        out[f"recall@{k}"] = n_hits / n_rel
        out[f"hit@{k}"] = (n_hits > 0).astype(np.float64)
        out[f"precision@{k}"] = n_hits / k
        out[f"ndcg@{k}"] = (discount * hits).sum(1) / ideal
        out[f"mrr@{k}"] = np.where(best <= k, 1.0 / best, 0.0)
        out[f"map@{k}"] = np.where(hits, position / ranks, 0.0).sum(1) / np.minimum(n_rel, k)
    return out
