"""Beyond-accuracy metrics on small hand-computed lists, and against brute-force pairwise loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from marquee.evaluation.beyond_accuracy import (
    average_popularity,
    coverage,
    gini_exposure,
    intra_list_diversity,
    novelty,
    personalization,
)

N_ITEMS = 5
# three users' top-2 lists over items 1..5; exposure at k=2: item1 ×3, item2 ×2, item3 ×1, items 4 and 5 ×0
TOP = np.array([[1, 2], [1, 3], [2, 1]])
# training counts per item id 0..5 (0 is padding), with 16 training users
COUNTS = np.array([0, 8, 4, 1, 0, 2])
N_TRAIN_USERS = 16
# genres per item id 0..5 as CSR: 0 → {}, 1 → {1, 2}, 2 → {1, 2}, 3 → {3}, 4 → {1}, 5 → {}
GENRES = (np.array([0, 0, 2, 4, 5, 6, 6]), np.array([1, 2, 1, 2, 3, 1]))


def _csr(genre_lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.concatenate([[0], np.cumsum([len(g) for g in genre_lists])])
    return indptr, np.array([g for gs in genre_lists for g in gs], dtype=np.int64)


def test_coverage():
    assert coverage(TOP, 2, N_ITEMS) == pytest.approx(3 / 5)  # items {1, 2, 3}
    assert coverage(TOP, 1, N_ITEMS) == pytest.approx(2 / 5)  # items {1, 2}
    assert coverage(torch.from_numpy(TOP), 2, N_ITEMS) == pytest.approx(3 / 5)  # tensors are accepted too


def test_gini_hand_cases():
    # equal exposure: every item of 4 shown once
    assert gini_exposure(np.array([[1, 2], [3, 4]]), 2, 4) == pytest.approx(0.0)
    # all exposure on one item of 4: (n - 1) / n = 3 / 4
    assert gini_exposure(np.array([[3], [3], [3]]), 1, 4) == pytest.approx(3 / 4)
    # mixed: sorted exposure x = [0, 0, 1, 2, 3], n = 5, Σx = 6, weights 2i - n - 1 = [-4, -2, 0, 2, 4]
    # G = (0 + 0 + 0 + 2·2 + 4·3) / (5 · 6) = 16 / 30
    assert gini_exposure(TOP, 2, N_ITEMS) == pytest.approx(16 / 30)


def test_gini_matches_mean_absolute_difference_formula():
    rng = np.random.default_rng(0)
    n_items = 40
    top = np.stack([rng.choice(np.arange(1, 16), size=6, replace=False) for _ in range(25)])  # skewed to items 1..15
    x = np.bincount(top.ravel(), minlength=n_items + 1)[1:].astype(float)
    direct = np.abs(x[:, None] - x[None, :]).sum() / (2 * n_items**2 * x.mean())
    assert gini_exposure(top, 6, n_items) == pytest.approx(direct)


def test_average_popularity():
    # u1: (8 + 4) / 2, u2: (8 + 1) / 2, u3: (4 + 8) / 2
    assert average_popularity(TOP, 2, COUNTS) == pytest.approx([6.0, 4.5, 6.0])
    assert average_popularity(TOP, 1, COUNTS) == pytest.approx([8.0, 8.0, 4.0])


def test_novelty():
    # -log2(count / 16): item1 8 → 1 bit, item2 4 → 2, item3 1 → 4, item5 2 → 3
    assert novelty(TOP, 2, COUNTS, N_TRAIN_USERS) == pytest.approx([1.5, 2.5, 1.5])
    # item4 was never seen in training: its count is clipped to 1 → 4 bits; with item5: (4 + 3) / 2
    assert novelty(np.array([[4, 5]]), 2, COUNTS, N_TRAIN_USERS) == pytest.approx([3.5])
    # a count above the number of users (repeat interactions) is clipped to p = 1 → 0 bits
    assert novelty(np.array([[1]]), 1, np.array([0, 40]), N_TRAIN_USERS) == pytest.approx([0.0])


def test_intra_list_diversity_hand_cases():
    lists = np.array(
        [
            [1, 2, 5],  # items 1, 2 share all genres
            [1, 3, 4],  # item 3 disjoint from both; 1 and 4 share genre 1
            [3, 5, 4],  # item 5 has no genres
        ]
    )
    ild2 = intra_list_diversity(lists, 2, GENRES)
    # [1, 2]: identical genres → distance 0; [1, 3]: disjoint → 1; [3, 5]: genre-less item 5 → 1
    assert ild2 == pytest.approx([0.0, 1.0, 1.0])
    ild3 = intra_list_diversity(lists, 3, GENRES)
    # [1, 2, 5]: similarities (1,2) = 1, (1,5) = 0, (2,5) = 0 → 1 - 1/3
    # [1, 3, 4]: (1,3) = 0, (1,4) = |{1}| / √(2·1) = 1/√2, (3,4) = 0 → 1 - (1/√2)/3 ≈ 0.764298
    # [3, 5, 4]: all similarities 0 → 1
    assert ild3 == pytest.approx([2 / 3, 1 - 1 / (3 * np.sqrt(2)), 1.0])
    with pytest.raises(ValueError, match="k >= 2"):
        intra_list_diversity(lists, 1, GENRES)


def test_intra_list_diversity_matches_pairwise_loop():
    rng = np.random.default_rng(1)
    n_items, n_genres, k = 30, 6, 5
    genre_lists = [[]] + [
        list(rng.choice(np.arange(1, n_genres + 1), size=rng.integers(0, 4), replace=False)) for _ in range(n_items)
    ]
    top = np.stack([rng.choice(np.arange(1, n_items + 1), size=k, replace=False) for _ in range(20)])
    multi_hot = np.zeros((n_items + 1, n_genres + 1))
    for item, genres in enumerate(genre_lists):
        multi_hot[item, genres] = 1.0

    def distance(i: int, j: int) -> float:
        norm = np.linalg.norm(multi_hot[i]) * np.linalg.norm(multi_hot[j])
        return 1.0 if norm == 0 else 1.0 - multi_hot[i] @ multi_hot[j] / norm

    expected = [np.mean([distance(i, j) for i, j in itertools.combinations(row, 2)]) for row in top]
    assert intra_list_diversity(top, k, _csr(genre_lists)) == pytest.approx(expected)


def test_personalization_hand_cases():
    assert personalization(np.array([[1, 2], [1, 2], [2, 1]]), 2, 4) == pytest.approx(0.0)  # identical lists
    assert personalization(np.array([[1, 2], [3, 4]]), 2, 4) == pytest.approx(1.0)  # disjoint lists
    # overlaps: (u1,u2) = {1} → 1/2, (u1,u3) = {1,2} → 2/2, (u2,u3) = {1} → 1/2; mean 2/3 → 1 - 2/3
    # identity check: c = [3, 2, 1, 0, 0] → Σ c(c-1)/2 = 3 + 1 = 4 = 1 + 2 + 1
    assert personalization(TOP, 2, N_ITEMS) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="repeats an item"):
        personalization(np.array([[1, 1], [2, 3]]), 2, 4)


def test_personalization_matches_pairwise_loop():
    rng = np.random.default_rng(2)
    n_items, k = 20, 5
    top = np.stack([rng.choice(np.arange(1, n_items + 1), size=k, replace=False) for _ in range(30)])
    overlaps = [len(set(u) & set(v)) / k for u, v in itertools.combinations(top.tolist(), 2)]
    assert personalization(top, k, n_items) == pytest.approx(1 - np.mean(overlaps))


def test_personalization_scales_to_100k_users():
    rng = np.random.default_rng(3)
    top = np.argsort(rng.random((100_000, 50)), axis=1)[:, :10] + 1  # distinct items per row from 1..50
    assert 0.0 < personalization(top, 10, 50) < 1.0


def test_bad_lists_are_refused():
    with pytest.raises(ValueError, match="outside 1..5"):
        coverage(np.array([[0, 1]]), 2, N_ITEMS)  # 0 is padding, never an item
    with pytest.raises(ValueError, match="outside 1..5"):
        coverage(np.array([[1, 6]]), 2, N_ITEMS)
    with pytest.raises(ValueError, match="k=3"):
        coverage(TOP, 3, N_ITEMS)
