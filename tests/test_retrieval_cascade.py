"""The retrieval → ranking cascade measured by the unchanged Evaluator, and the cascade run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from marquee.config_dir import CONFIG_DIR
from marquee.data.build import build_log
from marquee.data.datamodules import SequenceDataModule
from marquee.data.events import EventSchema
from marquee.data.raw import RawLog
from marquee.data.splits import LeaveOneOut
from marquee.data.synthetic import SyntheticConfig, generate_frame
from marquee.evaluation.evaluator import Evaluator
from marquee.models.baselines import EASE
from marquee.models.catalog import data_args
from marquee.retrieval.cascade import CascadeRecommender, evaluate_cascade
from marquee.retrieval.two_tower import TwoTower


@pytest.fixture(scope="module")
def stages():
    """A small synthetic log split leave-one-out, an (untrained) two-tower retriever and a fitted EASE ranker."""
    interactions, items, users, _ = generate_frame(SyntheticConfig(n_users=200, n_items=120, n_interactions=8000))
    raw = RawLog("small", interactions, "small", 0, items.set_index("item_id"), users.set_index("user_id"))
    log = build_log(raw, EventSchema(types={"play": 1.0, "complete": 1.0, "skip": 1.0}))
    split = LeaveOneOut()(log)
    torch.manual_seed(0)
    args = {k: v for k, v in data_args(log).items() if k not in ("n_users", "n_events")}
    retriever = TwoTower(**args, dim=16, hidden=32, index={"kind": "flat"}).eval()
    retriever.build_index()
    ranker = EASE(log.n_items, l2=50.0).fit(split)
    # histories capped at 20 events: the split's seen items reach further back than a batch shows
    datamodule = SequenceDataModule(split, max_len=20, eval_batch_size=64)
    return retriever, ranker, datamodule


def _evaluate(model, datamodule, ks=(10, 20)):
    return Evaluator(ks=list(ks), n_boot=10, progress=False).evaluate(model, datamodule, "test")


def test_candidates_carry_the_ranker_scores_and_everything_else_is_out(stages):
    retriever, ranker, datamodule = stages
    seen = datamodule.seen("test")
    cascade = CascadeRecommender(retriever, ranker, n_candidates=30, seen=seen)
    batch = next(iter(datamodule.eval_dataloader("test")))
    with torch.inference_mode():
        scores = cascade.score(batch)  # (B, n_items + 1)
        _, candidates = retriever.retrieve(batch, 30, seen)
        full = ranker.score(batch)
    finite = torch.isfinite(scores)
    assert (finite.sum(1) == 30).all()
    assert torch.equal(finite.nonzero()[:, 1].view(-1, 30).sort(1).values, candidates.sort(1).values)
    torch.testing.assert_close(scores[finite], full[finite])
    assert not (finite & seen.mask(batch["user"])).any()  # no candidate slot spent on a seen item
    torch.testing.assert_close(cascade.score(batch, candidates[:, :5]), full.gather(1, candidates[:, :5]))


def test_cascade_over_every_unseen_item_is_the_ranker_itself(stages):
    retriever, ranker, datamodule = stages
    cascade = CascadeRecommender(retriever, ranker, n_candidates=ranker.n_items, seen=datamodule.seen("test"))
    ours, theirs = _evaluate(cascade, datamodule), _evaluate(ranker, datamodule)
    for key in ("ndcg@10", "recall@20", "mrr@10"):
        np.testing.assert_allclose(ours.per_user[key], theirs.per_user[key])


def test_retriever_alone_gives_candidate_recall(stages):
    retriever, _, datamodule = stages
    seen = datamodule.seen("test")
    retrieved = CascadeRecommender(retriever, None, n_candidates=25, seen=seen)
    recall = _evaluate(retrieved, datamodule, ks=(25,)).metrics["test/recall@25"]
    hits = []
    with torch.inference_mode():
        for batch in datamodule.eval_dataloader("test"):
            _, candidates = retriever.retrieve(batch, 25, seen)
            target = batch["targets"][:, :1]  # leave-one-out: one target per user
            hits.append((candidates == target).any(1).float())
    assert recall == pytest.approx(torch.cat(hits).mean().item())


def test_evaluate_cascade_reports_every_stage_beside_each_other(stages, tmp_path):
    retriever, ranker, datamodule = stages
    evaluator = Evaluator(ks=[10, 20], n_boot=10, progress=False)
    metrics = evaluate_cascade(retriever, ranker, datamodule, evaluator, 40, ["test"], tmp_path)
    assert metrics["test/candidate_recall@40"] == metrics["retriever/test/recall@40"]
    assert metrics["test/ndcg@10_vs_full_catalog"] == pytest.approx(
        metrics["test/ndcg@10"] / metrics["ranker/test/ndcg@10"])
    assert metrics["test/ndcg@10"] <= metrics["ranker/test/ndcg@10"] + 0.02  # an untrained retriever only loses
    for prefix in ("", "retriever/", "ranker/"):
        assert metrics[f"{prefix}test/ms_per_user"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test/candidate_recall@40"] == metrics["test/candidate_recall@40"]


def test_cascade_experiment_runs_end_to_end(tmp_path, monkeypatch):
    from marquee.retrieval.cascade import run

    overrides = ["experiment=cascade_ml100k", "data=synthetic", "data.source.n_users=150", "data.source.n_items=80",
                 "data.source.n_interactions=4000", "model@cascade.ranker=ease", "trainer.max_epochs=1",
                 "trainer.accelerator=cpu", "logger=csv", "callbacks=none", "cascade.n_candidates=30",
                 "model.index.kind=hnsw", f"paths.output_dir={tmp_path}", "evaluation.n_boot=10", "evaluation.ks=[10,20]",
                 "evaluation.progress=false"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    from marquee.data.pipeline import prepare_split

    metrics = run(cfg, prepare_split(cfg.data), tmp_path)
    assert 0 < metrics["test/candidate_recall@30"] <= 1 and "val/ndcg@10" in metrics
    assert (Path(tmp_path) / "retriever" / "checkpoints" / "index.faiss").is_file()
    assert (Path(tmp_path) / "ranker" / "checkpoints" / "model.pt").is_file()
