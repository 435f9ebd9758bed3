"""Beyond-accuracy metrics over recommended top-k lists: coverage, exposure Gini, popularity, novelty, diversity.

``top_items`` is an ``(n_users, k_max)`` array (numpy or torch) of item ids ``1..n_items`` ordered best
first; a metric at ``k`` reads its first ``k`` columns. Per-user metrics return ``(n_users,)`` float
arrays; metrics of the whole set of lists return a float.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse


def _lists(top_items: np.ndarray | torch.Tensor, k: int, n_items: int) -> np.ndarray:
    """The first ``k`` columns of ``top_items`` as int64 numpy, checked to hold item ids ``1..n_items``."""
    if isinstance(top_items, torch.Tensor):
        top_items = top_items.detach().cpu().numpy()
    top = np.asarray(top_items)
    if top.ndim != 2 or top.shape[0] == 0:
        raise ValueError(f"top_items: expected a non-empty (n_users, k_max) array, got shape {top.shape}")
    if not 1 <= k <= top.shape[1]:
        raise ValueError(f"k={k} is outside 1..{top.shape[1]}, the number of columns of top_items")
    top = top[:, :k].astype(np.int64, copy=False)  # (U, k)
    lo, hi = top.min(), top.max()
    if lo < 1 or hi > n_items:
        raise ValueError(f"top_items holds item id(s) outside 1..{n_items} (min {lo}, max {hi}); 0 is padding")
    return top


def _exposure(top: np.ndarray, n_items: int) -> np.ndarray:
    """How many times each item id ``1..n_items`` appears in the lists, as an ``(n_items,)`` count vector."""
    return np.bincount(top.ravel(), minlength=n_items + 1)[1:]


def coverage(top_items: np.ndarray | torch.Tensor, k: int, n_items: int) -> float:
    """Share of the catalog that appears in at least one top-k list."""
    return float((_exposure(_lists(top_items, k, n_items), n_items) > 0).sum() / n_items)


def gini_exposure(top_items: np.ndarray | torch.Tensor, k: int, n_items: int) -> float:
    """Gini coefficient of item exposure over the whole catalog: 0 is equal exposure, (n-1)/n all on one item.

    With exposures sorted ascending ``x_1 <= ... <= x_n`` over all ``n = n_items`` items (never-recommended
    ones at 0), ``G = Σ_i (2i - n - 1) x_i / (n Σ_i x_i)``, which equals ``Σ_i Σ_j |x_i - x_j| / (2 n² mean(x))``.
    """
    x = np.sort(_exposure(_lists(top_items, k, n_items), n_items)).astype(np.float64)  # (n_items,)
    n = len(x)
    rank = np.arange(1, n + 1)
    return float(((2 * rank - n - 1) * x).sum() / (n * x.sum()))


def average_popularity(top_items: np.ndarray | torch.Tensor, k: int, item_counts: np.ndarray) -> np.ndarray:
    """Per user, the mean training interaction count of the recommended items (ARP)."""
    counts = np.asarray(item_counts, dtype=np.float64)  # (n_items + 1,)
    return counts[_lists(top_items, k, len(counts) - 1)].mean(axis=1)


def novelty(top_items: np.ndarray | torch.Tensor, k: int, item_counts: np.ndarray, n_train_users: int) -> np.ndarray:
    """Per user, the mean self-information ``-log2(count_i / n_train_users)`` of the recommended items, in bits.

    Counts are clipped to ``1..n_train_users``: an item never seen in training counts as seen once (the
    rarest observable item, so novelty stays finite), and repeat interactions cannot push p above 1.
    """
    if n_train_users < 1:
        raise ValueError(f"n_train_users must be at least 1, got {n_train_users}")
    counts = np.clip(np.asarray(item_counts, dtype=np.float64), 1, n_train_users)  # (n_items + 1,)
    information = -np.log2(counts / n_train_users)
    return information[_lists(top_items, k, len(counts) - 1)].mean(axis=1)


def _genre_vectors(item_genres: tuple[np.ndarray, np.ndarray]) -> sparse.csr_matrix:
    """L2-normalised genre multi-hot rows for item ids ``0..n_items`` from CSR ``(indptr, genre_ids)``."""
    indptr, genre_ids = (np.asarray(a, dtype=np.int64) for a in item_genres)
    n_genres = int(genre_ids.max()) + 1 if len(genre_ids) else 1
    multi_hot = sparse.csr_matrix((np.ones(len(genre_ids)), genre_ids, indptr), shape=(len(indptr) - 1, n_genres))
    multi_hot.sum_duplicates()
    multi_hot.data[:] = 1.0  # a genre listed twice is still one genre
    norms = np.sqrt(np.asarray(multi_hot.sum(axis=1)).ravel())  # (n_items + 1,)
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)  # genre-less items stay all-zero
    return sparse.diags(scale) @ multi_hot


def intra_list_diversity(
    top_items: np.ndarray | torch.Tensor, k: int, item_genres: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Per user, the mean pairwise cosine distance (1 - cosine similarity) between the genre vectors of the k items.

    With L2-normalised vectors ``v``, the sum of cosine similarities over ordered pairs ``i != j`` is
    ``||Σ v||² - Σ ||v||²``, so ILD = ``1 - (||Σ v||² - Σ ||v||²) / (k (k - 1))`` without a pairwise loop.
    An item without genres has a zero vector: similarity 0, hence distance 1, to every other item.
    """
    if k < 2:
        raise ValueError(f"intra-list diversity needs k >= 2 (pairs of items), got k={k}")
    vectors = _genre_vectors(item_genres)  # (n_items + 1, G)
    top = _lists(top_items, k, vectors.shape[0] - 1)  # (U, k)
    n_users = top.shape[0]
    # a (U, n_items + 1) selection matrix with one 1 per list position, so that pick @ vectors sums each list
    pick = sparse.csr_matrix(
        (np.ones(top.size), top.ravel(), np.arange(0, top.size + 1, k)), shape=(n_users, vectors.shape[0])
    )
    summed = pick @ vectors  # (U, G)
    sum_sq = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()  # ||Σ v||², (U,)
    self_sq = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()[top].sum(axis=1)  # Σ ||v||² (1 or 0 each)
    return 1.0 - (sum_sq - self_sq) / (k * (k - 1))


def personalization(top_items: np.ndarray | torch.Tensor, k: int, n_items: int) -> float:
    """One minus the mean share of items that two users' top-k lists have in common, over all user pairs.

    Exact in O(n_items): if item i is in ``c_i`` lists it is shared by ``c_i (c_i - 1) / 2`` pairs, so
    ``Σ_{u<v} |L_u ∩ L_v| = Σ_i c_i (c_i - 1) / 2``; divide by the ``U (U - 1) / 2`` pairs and by k.
    """
    top = _lists(top_items, k, n_items)  # (U, k)
    n_users = top.shape[0]
    if n_users < 2:
        raise ValueError(f"personalization needs at least 2 users, got {n_users}")
    ordered = np.sort(top, axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise ValueError("top_items repeats an item within a user's list; personalization needs distinct items")
    c = _exposure(top, n_items).astype(np.int64)  # (n_items,) lists holding each item
    shared = (c * (c - 1) // 2).sum()
    pairs = n_users * (n_users - 1) / 2
    return float(1.0 - shared / pairs / k)
