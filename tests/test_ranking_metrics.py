"""Ranking and accuracy metrics: hand-computed cases with ties, chunked = full, and agreement with torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torchmetrics.functional import retrieval as tm

from marquee.data.catalog import Catalog
from marquee.data.seen import SeenItems
from marquee.evaluation.metrics import accuracy_metrics
from marquee.evaluation.ranking import (
    NEG_INF,
    RankingAccumulator,
    apply_mask,
    merge_top_k,
    pessimistic_ranks,
    rank_users,
    ranks_from_top,
)
from marquee.models.base import Recommender

PAD = NEG_INF


class FixedScores(Recommender):
    """Returns a fixed (n_users + 1, n_items + 1) score table row per user: a stand-in model for tests."""

    def __init__(self, table: torch.Tensor):
        super().__init__(Catalog(n_items=table.shape[1] - 1))
        self.table = table
        self.excluded: list[torch.Tensor | None] = []  # the ``exclude`` items of every batch scored

    def score(self, batch, items=None):
        self.excluded.append(batch.get("exclude"))
        return self.select(self.table[batch["user"]], items)


def _seen(items_by_user: dict[int, list[int]], n_users: int, n_items: int) -> SeenItems:
    rows = [(u, i) for u, items in items_by_user.items() for i in items]
    return SeenItems.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id"]), n_users, n_items)


def _batches(users: list[int], targets: list[list[int]], batch_size: int = 2):
    width = max(len(t) for t in targets)
    padded = torch.tensor([t + [0] * (width - len(t)) for t in targets])
    for i in range(0, len(users), batch_size):
        yield {"user": torch.tensor(users[i : i + batch_size]), "targets": padded[i : i + batch_size]}


def test_a_tie_counts_against_the_target():
    # items 1..4 score 0.9, 0.5, 0.5, 0.1; the target (item 2) ties with item 3 -> pessimistic rank 3
    scores = torch.tensor([[PAD, 0.9, 0.5, 0.5, 0.1]])
    ranks = pessimistic_ranks(scores, torch.tensor([[2]]))
    assert ranks.tolist() == [[3]]
    m = accuracy_metrics(ranks.numpy(), [2, 3])
    assert m["hit@2"][0] == 0 and m["hit@3"][0] == 1
    assert m["ndcg@3"][0] == pytest.approx(1 / math.log2(4))  # rank 3 -> 1 / log2(3 + 1) = 0.5
    assert m["mrr@3"][0] == pytest.approx(1 / 3)


def test_constant_scores_put_the_target_last_not_first():
    scores = torch.zeros(1, 6)
    scores[:, 0] = PAD
    assert pessimistic_ranks(scores, torch.tensor([[4]])).tolist() == [[5]]


def test_masked_items_leave_the_ranking_and_a_masked_target_ranks_last():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6]])
    mask = torch.tensor([[True, True, False, False, False]])  # padding and item 1 already seen
    masked = apply_mask(scores, mask)
    assert pessimistic_ranks(masked, torch.tensor([[3]])).tolist() == [[2]]  # item 1 no longer ahead
    assert pessimistic_ranks(masked, torch.tensor([[1]])).tolist() == [[5]]  # a seen target cannot be hit


def test_nan_scores_are_refused():
    model = FixedScores(torch.tensor([[0.0, 0.1, float("nan"), 0.3]] * 2))
    with pytest.raises(ValueError, match="NaN"):
        rank_users(model, _batches([1], [[1]]), None, k_max=2, progress=False)


@pytest.mark.parametrize("seed", range(4))
def test_ranks_read_off_the_top_list_equal_full_counts_up_to_k_max(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (50, 31), generator=gen).float()  # many ties, also at the k_max boundary
    scores[:, 0] = PAD
    targets = torch.randint(1, 31, (50, 3), generator=gen)
    targets[::4, 2] = 0  # some padding
    for k_max in (1, 5, 12):
        top_scores, _ = scores.topk(k_max, dim=1)
        full = pessimistic_ranks(scores, targets).clamp(max=k_max + 1).masked_fill(targets == 0, 0)
        assert torch.equal(ranks_from_top(scores, targets, top_scores), full)


def test_hand_computed_multi_target_metrics():
    # user A: targets at ranks 1 and 4 (R = 2); user B: one target at rank 2; user C: one target at rank 11
    ranks = np.array([[1, 4], [2, 0], [11, 0]])
    m = accuracy_metrics(ranks, [3, 5])
    # recall@3: A 1/2, B 1, C 0; recall@5: A 1
    np.testing.assert_allclose(m["recall@3"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(m["recall@5"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(m["precision@5"], [2 / 5, 1 / 5, 0.0])
    # ndcg@5 for A: (1/log2 2 + 1/log2 5) / (1/log2 2 + 1/log2 3)
    ndcg_a = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    np.testing.assert_allclose(m["ndcg@5"], [ndcg_a, 1 / math.log2(3), 0.0])
    np.testing.assert_allclose(m["mrr@5"], [1.0, 0.5, 0.0])
    # map@5 for A: (1/1 + 2/4) / min(2, 5) = 0.75; for B: (1/2) / 1
    np.testing.assert_allclose(m["map@5"], [0.75, 0.5, 0.0])
    # map@3 for A: only rank 1 within 3 -> (1/1) / min(2, 3) = 0.5
    assert m["map@3"][0] == pytest.approx(0.5)


def _ideal_dcg(n_hits: int) -> float:
    return sum(1 / math.log2(j + 1) for j in range(1, n_hits + 1))


def test_ndcg_with_more_targets_than_k_divides_by_the_ideal_dcg_of_k_hits():
    # 5 targets (as user-holdout and temporal splits give), k = 3: hits at ranks 1 and 3, the rest beyond 3
    ranks = np.array([[12, 3, 7, 1, 9]])  # in any order: the metrics sort them
    m = accuracy_metrics(ranks, [3, 10])
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    assert _ideal_dcg(3) == pytest.approx(1 + 1 / math.log2(3) + 0.5)  # min(5, 3) = 3 ideal positions, not 5
    assert m["ndcg@3"][0] == pytest.approx(dcg / _ideal_dcg(3))
    # at k = 10 the four hits 1, 3, 7, 9 count, and the ideal has all 5 targets in front
    dcg10 = dcg + 1 / math.log2(8) + 1 / math.log2(10)
    assert m["ndcg@10"][0] == pytest.approx(dcg10 / _ideal_dcg(5))
    # recall divides by every target (|hits| / R, as torchmetrics): at most 3/5 at k = 3
    assert m["recall@3"][0] == pytest.approx(2 / 5) and m["recall@10"][0] == pytest.approx(4 / 5)
    assert m["precision@3"][0] == pytest.approx(2 / 3)
    assert m["map@3"][0] == pytest.approx((1 / 1 + 2 / 3) / 3)  # j / rank_j over hits, divided by min(R, k)
    assert m["hit@3"][0] == 1 and m["mrr@3"][0] == 1


def test_ndcg_is_one_when_every_top_k_item_is_a_target_however_many_targets_remain():
    # user A: 5 targets filling ranks 1..3 (and 5, 8); user B: 1 target at rank 2 in the same padded matrix
    ranks = np.array([[1, 2, 3, 5, 8], [2, 0, 0, 0, 0]])
    m = accuracy_metrics(ranks, [3])
    np.testing.assert_allclose(m["ndcg@3"], [1.0, 1 / math.log2(3)])  # padding adds nothing to B's ideal
    np.testing.assert_allclose(m["map@3"], [1.0, 0.5])
    np.testing.assert_allclose(m["precision@3"], [1.0, 1 / 3])
    np.testing.assert_allclose(m["recall@3"], [3 / 5, 1.0])  # all k slots hit, yet 2 of A's 5 targets unreached


def test_ranks_beyond_k_max_from_full_ranking_score_as_misses_for_many_targets():
    # item i scores 1 - i / 100, so its rank is i; targets 1, 3, 5, 7, 9 with k_max = 3
    n_items = 10
    table = torch.tensor([[PAD] + [1 - i / 100 for i in range(1, n_items + 1)]] * 2)
    ranked = rank_users(FixedScores(table), _batches([1], [[9, 3, 7, 1, 5]]), None, k_max=3, progress=False)
    assert sorted(ranked.ranks[0].tolist()) == [1, 3, 4, 4, 4]  # ranks past k_max are reported as k_max + 1
    m = accuracy_metrics(ranked.ranks, [3])
    assert m["ndcg@3"][0] == pytest.approx((1 + 1 / math.log2(4)) / _ideal_dcg(3))
    assert m["recall@3"][0] == pytest.approx(2 / 5)


@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("seed", range(5))
def test_metrics_equal_torchmetrics_on_random_cases(seed, k):
    gen = torch.Generator().manual_seed(seed)
    n_users, n_items, max_targets = 40, 60, 8  # up to 8 targets: more than k = 3
    scores = torch.rand(n_users, n_items + 1, generator=gen) * 0.99 + 0.01  # positive: torchmetrics' AP needs it
    scores[:, 0] = PAD
    n_targets = torch.randint(1, max_targets + 1, (n_users,), generator=gen)
    targets = torch.zeros(n_users, max_targets, dtype=torch.long)
    for u in range(n_users):
        targets[u, : n_targets[u]] = torch.randperm(n_items, generator=gen)[: n_targets[u]] + 1
    ours = accuracy_metrics(pessimistic_ranks(scores, targets).numpy(), [k])
    for u in range(n_users):
        relevant = torch.zeros(n_items, dtype=torch.bool)
        relevant[targets[u, : n_targets[u]] - 1] = True
        preds = scores[u, 1:]
        assert ours[f"recall@{k}"][u] == pytest.approx(tm.retrieval_recall(preds, relevant, top_k=k).item())
        assert ours[f"precision@{k}"][u] == pytest.approx(tm.retrieval_precision(preds, relevant, top_k=k).item())
        assert ours[f"hit@{k}"][u] == pytest.approx(tm.retrieval_hit_rate(preds, relevant, top_k=k).item())
        assert ours[f"ndcg@{k}"][u] == pytest.approx(tm.retrieval_normalized_dcg(preds, relevant, top_k=k).item(), abs=1e-6)
        assert ours[f"mrr@{k}"][u] == pytest.approx(tm.retrieval_reciprocal_rank(preds, relevant, top_k=k).item())
        if n_targets[u] == 1:  # torchmetrics divides AP by the hits found, we by min(R, k): equal for one target
            assert ours[f"map@{k}"][u] == pytest.approx(tm.retrieval_average_precision(preds, relevant, top_k=k).item())


@pytest.mark.parametrize("item_chunk", [1, 3, 7, 100])
def test_item_chunks_give_the_same_ranks_and_lists_as_the_full_catalog(item_chunk):
    gen = torch.Generator().manual_seed(0)
    table = torch.randint(0, 4, (6, 21), generator=gen).float()  # integer scores: many ties
    model = FixedScores(table)
    users, targets = [1, 2, 3, 4, 5], [[3], [5, 7], [1], [20, 2, 9], [11]]

    seen = _seen({u: [u] for u in range(1, 6)}, n_users=5, n_items=20)  # user u has seen item u
    full = rank_users(model, _batches(users, targets), seen, k_max=5, progress=False)
    chunked = rank_users(model, _batches(users, targets), seen, k_max=5, item_chunk=item_chunk, progress=False)
    np.testing.assert_array_equal(full.ranks, chunked.ranks)
    # lists may order tied items differently; their scores must agree position by position
    np.testing.assert_array_equal(np.take_along_axis(table[users].numpy(), full.top_items, 1),
                                  np.take_along_axis(table[users].numpy(), chunked.top_items, 1))
    assert not (full.top_items == np.array(users)[:, None]).any()  # seen items never recommended
    assert (full.top_items > 0).all()


def test_merge_top_k_keeps_the_best_across_chunks():
    values, items = merge_top_k(None, None, torch.tensor([[0.1, 0.7]]), torch.tensor([1, 2]), 2)
    values, items = merge_top_k(values, items, torch.tensor([[0.9, 0.2]]), torch.tensor([3, 4]), 2)
    assert items.tolist() == [[3, 2]] and values[0].tolist() == pytest.approx([0.9, 0.7])


def test_asking_for_more_items_than_remain_unseen_is_an_error():
    model = FixedScores(torch.rand(2, 4))
    with pytest.raises(ValueError, match="exceeds the number of unseen items"):
        rank_users(model, _batches([1], [[1]]), _seen({1: [1, 2, 3]}, 1, 3), k_max=2, progress=False)


def test_seen_items_padded_lists_each_users_items_right_padded():
    seen = _seen({1: [3, 1], 3: [2]}, n_users=3, n_items=4)
    assert seen.padded(torch.tensor([1, 2, 3])).tolist() == [[1, 3], [0, 0], [2, 0]]
    assert seen.padded(torch.tensor([2])).tolist() == [[0]]  # nobody has seen anything: one padding column


def test_accumulator_hands_the_model_each_rows_seen_items_and_ranks_as_rank_users():
    # user 1 has seen items 1 and 3, user 2 item 2; scores fall with the item id, so seen items would lead
    table = torch.tensor([[PAD, 0.9, 0.8, 0.7, 0.6, 0.5]] * 3)
    seen = _seen({1: [1, 3], 2: [2]}, n_users=2, n_items=5)
    model = FixedScores(table)
    accumulator = RankingAccumulator(seen, k_max=2)
    with torch.inference_mode():
        for batch in _batches([1, 2], [[4], [1]], batch_size=1):
            accumulator.add(model, batch)
    assert accumulator.n_batches == 2
    assert [e.tolist() for e in model.excluded] == [[[1, 3]], [[2]]]
    ranked = accumulator.result()
    assert ranked.users.tolist() == [1, 2]
    assert ranked.top_items.tolist() == [[2, 4], [1, 3]]  # seen items never listed
    assert ranked.ranks.tolist() == [[2], [1]]  # user 1's target 4 behind 2; user 2's target 1 first
    reference = rank_users(FixedScores(table), _batches([1, 2], [[4], [1]]), seen, k_max=2, progress=False)
    np.testing.assert_array_equal(reference.ranks, ranked.ranks)
    np.testing.assert_array_equal(reference.top_items, ranked.top_items)


def test_accumulator_without_masking_passes_no_exclude_and_refuses_an_empty_result():
    model = FixedScores(torch.tensor([[PAD, 0.9, 0.8, 0.7]] * 2))
    accumulator = RankingAccumulator(None, k_max=2)
    with pytest.raises(ValueError, match="no evaluation rows"):
        accumulator.result()
    with torch.inference_mode():
        accumulator.add(model, next(_batches([1], [[1]])))
    assert model.excluded == [None]
    assert accumulator.result().ranks.tolist() == [[1]]
