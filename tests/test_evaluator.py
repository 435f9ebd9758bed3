"""The evaluator end to end: leakage shows up, masking matters, outputs round-trip, chunking and DDP agree."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch

from marquee.data.build import build_log
from marquee.data.catalog import Catalog
from marquee.data.evaluation_data import EvaluationData
from marquee.data.events import EventSchema
from marquee.data.loaders.movielens import MovieLens100K
from marquee.data.splits import LeaveOneOut
from marquee.errors import ConfigError
from marquee.evaluation.evaluator import Evaluator
from marquee.models.base import FittedRecommender


class Memorizer(FittedRecommender):
    """Scores 1 + noise for items the user had in the rows it was fitted on, noise elsewhere."""

    def __init__(self, catalog: Catalog, rows: pd.DataFrame):
        super().__init__(catalog)
        memory = torch.zeros(catalog.n_users + 1, catalog.n_items + 1)
        memory[torch.tensor(rows["user_id"].to_numpy()), torch.tensor(rows["item_id"].to_numpy())] = 1.0
        self.register_buffer("memory", memory)

    def score(self, batch, items=None):
        users = batch["user"]
        noise = torch.rand(len(users), self.n_items + 1, generator=torch.Generator().manual_seed(7))
        return self.select(self.memory[users] + 0.5 * noise.to(users.device), items)


@pytest.fixture(scope="module")
def ml100k_split(shared_data):
    log = build_log(MovieLens100K(shared_data / "ml-100k", download=False).load(), EventSchema({"rating": 1.0}))
    return LeaveOneOut()(log)


@pytest.fixture(scope="module")
def catalog(ml100k_split):
    return Catalog.from_split(ml100k_split)


def _evaluate(model, split, **kwargs):
    evaluator = Evaluator(ks=[10, 50], n_boot=200, progress=False, batch_size=256, device="cpu", **kwargs)
    return evaluator.evaluate(model, evaluator.data(split, model.max_len), "test")


def test_a_model_that_memorizes_training_scores_at_chance_unless_test_rows_leak(ml100k_split, catalog):
    split = ml100k_split
    honest = _evaluate(Memorizer(catalog, split.history("test")), split)
    # chance: 10 of the ~1,570 unseen items -> recall@10 around 0.006
    assert honest.metrics["test/recall@10"] < 0.03
    leaked = _evaluate(Memorizer(catalog, pd.concat([split.history("test"), split.test])), split)
    assert leaked.metrics["test/recall@10"] > 0.95
    assert leaked.metrics["test/ndcg@10_ci_low"] > honest.metrics["test/ndcg@10_ci_high"]


def test_keeping_seen_items_lets_them_crowd_out_the_target(ml100k_split, catalog):
    split = ml100k_split
    model = Memorizer(catalog, split.history("test"))
    kept = _evaluate(model, split, seen="keep")
    masked = _evaluate(model, split, seen="mask")
    # with seen items kept, the memorized history (at least 19 items per user) fills every top 10
    assert kept.metrics["test/recall@10"] == 0.0 < masked.metrics["test/recall@10"]


def test_outputs_carry_cis_beyond_accuracy_slices_and_round_trip(ml100k_split, catalog, tmp_path):
    split = ml100k_split
    model = Memorizer(catalog, split.history("test"))
    result = _evaluate(model, split, user_meta_slices=["gender"])
    m = result.metrics
    for key in ("test/ndcg@10", "test/recall@50", "test/coverage@10", "test/gini@10", "test/personalization@10",
                "test/novelty@10", "test/diversity@10", "test/popularity@10", "test/map@10", "test/mrr@10"):
        assert key in m, key
    assert m["test/ndcg@10_ci_low"] <= m["test/ndcg@10"] <= m["test/ndcg@10_ci_high"]
    assert m["test/n_users"] == 943
    assert m["test/ms_per_user"] == pytest.approx(1000 * m["test/rank_seconds"] / 943)
    assert {"test/slice/activity=cold/n_users", "test/slice/popularity=tail/ndcg@10",
            "test/slice/gender=F/recall@10"} <= set(m)
    slice_users = sum(m[f"test/slice/activity={b}/n_users"] for b in ("cold", "medium", "heavy"))
    assert slice_users == 943
    result.save(tmp_path)
    per_user = pd.read_parquet(tmp_path / "per_user_test.parquet").set_index("user_id")
    assert per_user["ndcg@10"].mean() == pytest.approx(m["test/ndcg@10"])
    assert len(per_user) == 943 and set(per_user["gender"]) == {"F", "M"}


def test_item_chunks_give_the_same_metrics(ml100k_split, catalog):
    split = ml100k_split
    model = Memorizer(catalog, split.history("test"))
    full, chunked = _evaluate(model, split), _evaluate(model, split, item_chunk=300)
    for key in ("test/ndcg@10", "test/recall@50", "test/coverage@50"):
        assert chunked.metrics[key] == pytest.approx(full.metrics[key])


def test_sampled_metrics_need_the_flag_warn_and_flatter(ml100k_split, catalog, caplog):
    split = ml100k_split
    model = Memorizer(catalog, split.history("test"))
    assert not any(k.startswith("test/sampled_") for k in _evaluate(model, split).metrics)
    with caplog.at_level(logging.WARNING):
        result = _evaluate(model, split, sampled={"n_negatives": 100, "strategy": "uniform"})
    assert "known to mislead" in caplog.text
    # among 100 random negatives a chance-level model finds the target in the top 10 about 10% of the time
    assert 0.05 < result.metrics["test/sampled_hit@10"] < 0.16
    assert result.metrics["test/sampled_hit@10"] > 5 * result.metrics["test/hit@10"]


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="evaluation.seen: 'mask' or 'keep'"):
        Evaluator(seen="sometimes")
    with pytest.raises(ConfigError, match="evaluation.ks: cut-offs are positive"):
        Evaluator(ks=[0, 10])
    with pytest.raises(ConfigError, match="evaluation.confidence"):
        Evaluator(confidence=95)


def test_the_evaluator_builds_its_data_with_its_own_settings_and_the_models_history_length(ml100k_split):
    evaluator = Evaluator(batch_size=64, history="train", num_workers=0, device="cpu", progress=False)
    data = evaluator.data(ml100k_split, 5)
    assert isinstance(data, EvaluationData) and data.split is ml100k_split
    assert (data.max_len, data.batch_size, data.history) == (5, 64, "train")
    batch = next(iter(data.eval_dataloader("test")))
    assert batch["items"].shape == (64, 5) and batch["targets"].shape == (64, 1)
    assert evaluator.resolved_device() == torch.device("cpu")
    assert Evaluator(device="auto").resolved_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="evaluation.history: one of"):
        Evaluator(history="future").data(ml100k_split, None)


def test_train_history_feeds_training_rows_only_but_still_masks_the_validation_item(ml100k_split, catalog):
    split = ml100k_split
    visible = next(iter(Evaluator(batch_size=2000).data(split, None).eval_dataloader("test")))
    train = next(iter(Evaluator(batch_size=2000, history="train").data(split, None).eval_dataloader("test")))
    assert torch.equal(train["user"], visible["user"]) and len(train["user"]) == 943
    val_item = split.val.set_index("user_id")["item_id"].reindex(train["user"].numpy()).to_numpy()
    assert ((train["items"] > 0).sum(1) == (visible["items"] > 0).sum(1) - 1).all()  # one validation row less
    assert (visible["items"].numpy() == val_item[:, None]).any(1).all()
    assert not (train["items"].numpy() == val_item[:, None]).any()
    # the memorizer scores every validation item >= 1: only the mask keeps it out of the lists
    result = _evaluate(Memorizer(catalog, split.history("test")), split, history="train")
    val_item = split.val.set_index("user_id")["item_id"].reindex(result.per_user.index).to_numpy()
    assert result.top_items.shape == (943, 50) and not (result.top_items == val_item[:, None]).any()


def test_an_unknown_slice_column_is_refused_before_any_ranking(ml100k_split, catalog):
    split = ml100k_split
    model = Memorizer(catalog, split.history("test"))
    with pytest.raises(ValueError, match=r"no user metadata column\(s\) \['shoe_size'\]; have \['age', 'gender'"):
        _evaluate(model, split, user_meta_slices=["shoe_size"])
