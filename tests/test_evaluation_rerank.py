"""``evaluation.rerank``: MMR over genres before every metric, hand-checked, exact at weight 0, refused where it cannot work."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from marquee.data.build import build_log
from marquee.data.catalog import Catalog
from marquee.data.raw import RawLog
from marquee.data.seen import SeenItems
from marquee.data.splits import LeaveOneOut
from marquee.diversity import mmr
from marquee.errors import ConfigError
from marquee.evaluation.evaluator import Evaluator
from marquee.evaluation.ranking import rank_users
from marquee.evaluation.rerank import Rerank
from marquee.models.base import Recommender

MMR = {"name": "mmr", "weight": 0.5, "pool": 4}


class TableScores(Recommender):
    """Scores every user's items from a fixed (n_users + 1, n_items + 1) table."""

    def __init__(self, catalog: Catalog, table: torch.Tensor):
        super().__init__(catalog)
        self.table = table

    def score(self, batch, items=None):
        return self.select(self.table[batch["user"]], items)


def _split():
    """Users 1-3 watched items 7 and 8, then their test item (3, 2, 3); users 4 and 5 only train (items 1, 4, 5, 6).

    Genres: items 1, 2, 5, 6 Drama, 3 Comedy, 4 Horror, 7 and 8 Western.
    """
    rows = [(1, 7, 1), (1, 8, 2), (1, 3, 3), (2, 7, 1), (2, 8, 2), (2, 2, 3), (3, 7, 1), (3, 8, 2), (3, 3, 3),
            (4, 1, 1), (4, 4, 2), (5, 5, 1), (5, 6, 2)]
    frame = pd.DataFrame([(u, i, t, "interaction", 1.0) for u, i, t in rows],
                         columns=["user_id", "item_id", "timestamp", "event", "value"])
    genres = {1: ["Drama"], 2: ["Drama"], 3: ["Comedy"], 4: ["Horror"], 5: ["Drama"], 6: ["Drama"],
              7: ["Western"], 8: ["Western"]}
    meta = pd.DataFrame({"genres": pd.Series(genres)})
    return LeaveOneOut()(build_log(RawLog("toy", frame, "toy.csv", item_meta=meta)))


def _model(split) -> TableScores:
    """Every user scores items 1..6 at 0.9, 0.8, ..., 0.4 and the seen items 7 and 8 at 1.0."""
    log = split.log
    ids = log.items.encode(np.arange(1, 9))
    table = torch.full((log.n_users + 1, log.n_items + 1), float("-inf"))
    table[:, torch.as_tensor(ids, dtype=torch.long)] = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 1.0, 1.0])
    return TableScores(Catalog.from_split(split), table)


def _evaluate(split, **kwargs):
    evaluator = Evaluator(ks=[2], n_boot=10, progress=False, device="cpu", **kwargs)
    model = _model(split)
    return evaluator.evaluate(model, evaluator.data(split, model.max_len), "test")


def test_mmr_brings_a_new_genre_into_the_top_2_and_the_metrics_follow_by_hand():
    split = _split()
    plain, diverse = _evaluate(split), _evaluate(split, rerank=MMR)
    # seen 7 and 8 masked, the pool is items 1-4 (0.9..0.6, relevance 1, 2/3, 1/3, 0); pick 1: item 1; pick 2:
    # item 2 = 0.5 * 2/3 - 0.5 * 1 (Drama again) = -1/6, item 3 = 0.5 * 1/3 - 0 = 1/6, item 4 = 0 -> item 3
    items = split.log.items
    assert [items.decode(row).tolist() for row in plain.top_items] == [[1, 2]] * 3
    assert [items.decode(row).tolist() for row in diverse.top_items] == [[1, 3]] * 3
    hit = 1 / math.log2(3)  # NDCG@2 of a single target at rank 2
    # users 1 and 3 want item 3 (rank 3 -> 2), user 2 item 2 (rank 2 -> out of the list)
    assert plain.per_user["ndcg@2"].tolist() == pytest.approx([0.0, hit, 0.0])
    assert diverse.per_user["ndcg@2"].tolist() == pytest.approx([hit, 0.0, hit])
    assert plain.metrics["test/ndcg@2"] == pytest.approx(hit / 3)
    assert diverse.metrics["test/ndcg@2"] == pytest.approx(2 * hit / 3)
    assert diverse.metrics["test/recall@2"] == pytest.approx(2 / 3)
    # Drama + Drama: cosine distance 0; Drama + Comedy: 1
    assert plain.metrics["test/diversity@2"] == 0.0 and diverse.metrics["test/diversity@2"] == 1.0


def test_weight_0_is_no_rerank_exactly_ties_included():
    generator = torch.Generator().manual_seed(0)
    n_users, n_items = 40, 30
    table = torch.randint(0, 6, (n_users + 1, n_items + 1), generator=generator).float()  # many ties
    genre_ids = torch.randint(0, 5, (n_items + 1, 2), generator=generator)
    catalog = Catalog(n_items=n_items, n_users=n_users, item_genres=genre_ids, n_genres=4)
    seen = SeenItems.from_frame(pd.DataFrame({"user_id": np.repeat(np.arange(1, n_users + 1), 3),
                                              "item_id": torch.randint(1, n_items + 1, (3 * n_users,),
                                                                       generator=generator).numpy()}),
                                n_users, n_items)
    targets = torch.randint(1, n_items + 1, (n_users, 2), generator=generator)

    def batches():
        for start in range(0, n_users, 16):
            yield {"user": torch.arange(1, n_users + 1)[start : start + 16], "targets": targets[start : start + 16]}

    model = TableScores(catalog, table)
    plain = rank_users(model, batches(), seen, k_max=10, progress=False)
    users = np.arange(1, n_users + 1)[:, None]
    for item_chunk in (None, 7):
        same = rank_users(model, batches(), seen, k_max=10, item_chunk=item_chunk, progress=False,
                          rerank=Rerank(weight=0.0, pool=20))
        np.testing.assert_array_equal(same.ranks, plain.ranks)  # every accuracy metric, at every k
        # the same scores at every place: the lists differ only in how topk orders equal scores
        np.testing.assert_array_equal(table[users, same.top_items], table[users, plain.top_items])
    distinct = TableScores(catalog, torch.rand(n_users + 1, n_items + 1, generator=generator))
    np.testing.assert_array_equal(
        rank_users(distinct, batches(), seen, k_max=10, progress=False, rerank=Rerank(weight=0.0, pool=20)).top_items,
        rank_users(distinct, batches(), seen, k_max=10, progress=False).top_items)
    moved = rank_users(model, batches(), seen, k_max=10, progress=False, rerank=Rerank(weight=0.9, pool=20))
    assert (moved.top_items != plain.top_items).any()
    # a listed target's rank is its place plus the equal-scoring items listed after it
    for user in range(n_users):
        for target, rank in zip(targets[user].tolist(), moved.ranks[user].tolist()):
            row = moved.top_items[user].tolist()
            if target in row and rank <= 10:
                place = row.index(target)
                later = [table[user + 1, i] for i in row[place + 1 :]]
                assert rank >= place + 1 + sum(s == table[user + 1, target] for s in later)


def test_weight_0_in_the_config_gives_the_plain_evaluation():
    split = _split()
    plain, zero = _evaluate(split), _evaluate(split, rerank={**MMR, "weight": 0.0})
    assert zero.metrics.keys() == plain.metrics.keys()
    for key, value in plain.metrics.items():
        if not key.endswith("seconds") and not key.endswith("ms_per_user"):
            assert zero.metrics[key] == value, key


def test_validation_during_training_reranks_as_the_final_evaluation():
    split = _split()
    evaluator = Evaluator(ks=[2], n_boot=10, progress=False, device="cpu", rerank=MMR)
    model = _model(split)
    data = evaluator.data(split, model.max_len)
    accumulator = evaluator.accumulator(data, "test")
    with torch.inference_mode():
        for batch in data.eval_dataloader("test"):
            accumulator.add(model, batch)
    final = evaluator.evaluate(model, data, "test")
    assert evaluator.accuracy(accumulator.result())["ndcg@2"] == pytest.approx(final.metrics["test/ndcg@2"])
    np.testing.assert_array_equal(accumulator.result().top_items, final.top_items)


def test_the_evaluator_runs_the_services_mmr():
    scores, genres = np.array([1.0, 0.9, 0.8, 0.1]), [frozenset({1}), frozenset({1}), frozenset({2}), frozenset({3})]
    rerank = Rerank(weight=0.5, pool=4)
    catalog = Catalog(n_items=4, item_genres=torch.tensor([[0], [1], [1], [2], [3]]), n_genres=3)
    ranks, top = rerank(catalog, torch.from_numpy(scores[None]), torch.tensor([[1, 2, 3, 4]]), torch.tensor([[2]]),
                        torch.tensor([[2]]), k_max=4)
    assert top.tolist() == [(mmr(np.arange(4), scores, genres, 0.5, 4) + 1).tolist()] == [[1, 3, 4, 2]]
    assert ranks.tolist() == [[4]]


@pytest.mark.parametrize(("settings", "message"), [
    ({"ks": [2, 10], "rerank": {**MMR, "pool": 5}}, "evaluation.rerank.pool: 5 is below the largest k 10"),
    ({"rerank": {**MMR, "name": "xquad"}}, r"evaluation.rerank.name: one of \['mmr'\], got 'xquad'"),
    ({"rerank": {**MMR, "weight": 1.5}}, "evaluation.rerank.weight: a weight in"),
    ({"rerank": {**MMR, "depth": 9}}, r"evaluation.rerank: unknown key\(s\) \['depth'\]"),
    ({"rerank": MMR, "ks": [2], "sampled": {"n_negatives": 5}}, "evaluation.rerank: sampled-negative"),
])
def test_settings_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        Evaluator(**{"ks": [2], **settings})


def test_k_above_the_pool_is_refused_even_when_only_the_weight_is_given():
    with pytest.raises(ConfigError, match="evaluation.rerank.pool: 50 is below the largest k 100"):
        Evaluator(ks=[10, 100], rerank={"weight": 0.3})  # name and pool default to mmr and 50


def test_a_catalog_without_genres_is_refused_before_any_ranking():
    catalog = Catalog(n_items=6, n_users=2)
    evaluator = Evaluator(ks=[2], rerank=MMR, progress=False, device="cpu")
    with pytest.raises(ConfigError, match="evaluation.rerank: the data set has no item genres"):
        evaluator.check_catalog(catalog)
    model = TableScores(catalog, torch.rand(3, 7))
    batches = [{"user": torch.tensor([1, 2]), "targets": torch.tensor([[1], [2]])}]
    with pytest.raises(ConfigError, match="no item genres"):
        rank_users(model, batches, None, k_max=2, progress=False, rerank=evaluator.reranker)
    Evaluator(ks=[2], rerank={**MMR, "weight": 0.0}).check_catalog(catalog)  # off: nothing to refuse
