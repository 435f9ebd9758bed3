"""The retrieval → ranking cascade measured by the unchanged Evaluator, and the cascade pipeline end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from marquee import eval as marquee_eval
from marquee import train
from marquee.checkpoint import load_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.build import build_log
from marquee.data.catalog import Catalog
from marquee.data.evaluation_data import EvaluationData
from marquee.data.events import EventSchema
from marquee.data.raw import RawLog
from marquee.data.splits import LeaveOneOut
from marquee.data.synthetic import SyntheticConfig, generate_frame
from marquee.evaluation.evaluator import Evaluator
from marquee.models.baselines import EASE
from marquee.models.sasrec import SASRec
from marquee.retrieval.cascade import CascadeRecommender
from marquee.retrieval.two_tower import TwoTower


@pytest.fixture(scope="module")
def stages():
    """A small synthetic log split leave-one-out, an (untrained) two-tower retriever and a fitted EASE ranker."""
    interactions, items, users, _ = generate_frame(SyntheticConfig(n_users=200, n_items=120, n_interactions=8000))
    raw = RawLog("small", interactions, "small", 0, items.set_index("item_id"), users.set_index("user_id"))
    log = build_log(raw, EventSchema(types={"play": 1.0, "complete": 1.0, "skip": 1.0}))
    split = LeaveOneOut()(log)
    catalog = Catalog.from_split(split)
    torch.manual_seed(0)
    retriever = TwoTower(catalog, dim=16, hidden=32, index={"kind": "flat"}).eval()
    retriever.build_index()
    ranker = EASE(catalog, l2=50.0).fit(split)
    # histories capped at 20 events: the split's seen items reach further back than a batch shows
    data = EvaluationData(split, max_len=20, batch_size=64)
    return retriever, ranker, data


def _evaluate(model, data, ks=(10, 20)):
    return Evaluator(ks=list(ks), n_boot=10, progress=False).evaluate(model, data, "test")


def _batch(data: EvaluationData, stage: str = "test") -> dict[str, torch.Tensor]:
    """The first evaluation batch with its seen items as ``exclude``, as the evaluator hands it to a model."""
    batch = next(iter(data.eval_dataloader(stage)))
    return {**batch, "exclude": data.seen(stage).padded(batch["user"])}


def test_candidates_carry_the_ranker_scores_and_everything_else_is_out(stages):
    retriever, ranker, data = stages
    seen = data.seen("test")
    cascade = CascadeRecommender(retriever, ranker, n_candidates=30)
    batch = _batch(data)
    # the capped histories miss some seen items: only ``exclude`` keeps those out of the candidates
    assert (seen.count(batch["user"].numpy()) > (batch["items"] > 0).sum(1).numpy()).any()
    with torch.inference_mode():
        scores = cascade.score(batch)  # (B, n_items + 1)
        _, candidates = retriever.retrieve(batch, 30)
        full = ranker.score(batch)
    finite = torch.isfinite(scores)
    assert (finite.sum(1) == 30).all()
    assert torch.equal(finite.nonzero()[:, 1].view(-1, 30).sort(1).values, candidates.sort(1).values)
    torch.testing.assert_close(scores[finite], full[finite])
    assert not (finite & seen.mask(batch["user"])).any()  # no candidate slot spent on a seen item
    torch.testing.assert_close(cascade.score(batch, candidates[:, :5]), full.gather(1, candidates[:, :5]))


def test_cascade_over_every_unseen_item_is_the_ranker_itself(stages):
    retriever, ranker, data = stages
    cascade = CascadeRecommender(retriever, ranker, n_candidates=ranker.n_items)
    ours, theirs = _evaluate(cascade, data), _evaluate(ranker, data)
    for key in ("ndcg@10", "recall@20", "mrr@10"):
        np.testing.assert_allclose(ours.per_user[key], theirs.per_user[key])


def test_retriever_alone_gives_candidate_recall(stages):
    retriever, _, data = stages
    seen = data.seen("test")
    retrieved = CascadeRecommender(retriever, None, n_candidates=25)
    recall = _evaluate(retrieved, data, ks=(25,)).metrics["test/recall@25"]
    hits = []
    with torch.inference_mode():
        for batch in data.eval_dataloader("test"):
            _, candidates = retriever.retrieve({**batch, "exclude": seen.padded(batch["user"])}, 25)
            target = batch["targets"][:, :1]  # leave-one-out: one target per user
            hits.append((candidates == target).any(1).float())
    assert recall == pytest.approx(torch.cat(hits).mean().item())


def test_the_evaluator_reports_every_stage_of_a_cascade_beside_it(stages, tmp_path):
    retriever, ranker, data = stages
    cascade = CascadeRecommender(retriever, ranker, n_candidates=40)
    parts = cascade.evaluated_parts()
    assert set(parts) == {"retriever", "ranker"} and parts["ranker"] is ranker
    evaluator = Evaluator(ks=[10, 20, 40], n_boot=10, progress=False)
    metrics = evaluator.evaluate_stages(cascade, data, ["test"], tmp_path)
    # candidate recall@40 is the retriever's own recall@40, and the ranker is measured over the full catalog
    retriever_alone = evaluator.evaluate(CascadeRecommender(retriever, None, n_candidates=40), data, "test")
    assert metrics["retriever/test/recall@40"] == retriever_alone.metrics["test/recall@40"]
    assert metrics["ranker/test/ndcg@10"] == evaluator.evaluate(ranker, data, "test").metrics["test/ndcg@10"]
    assert metrics["test/ndcg@10"] <= metrics["ranker/test/ndcg@10"] + 0.02  # an untrained retriever only loses
    for prefix in ("", "retriever/", "ranker/"):
        assert metrics[f"{prefix}test/ms_per_user"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/ndcg@10", "retriever/test/recall@40", "ranker/test/ndcg@10"):
        assert saved[key] == metrics[key], key
    # each part's per-user table is kept beside the system's, over the same users, so the two can be paired
    whole = pd.read_parquet(tmp_path / "per_user_test.parquet")
    for part in ("retriever", "ranker"):
        mine = pd.read_parquet(tmp_path / f"per_user_test.{part}.parquet")
        assert mine["user_id"].tolist() == whole["user_id"].tolist()
        assert mine["ndcg@10"].mean() == pytest.approx(metrics[f"{part}/test/ndcg@10"])


SMALL_CASCADE = (
    "experiment=cascade_ml100k", "data=synthetic", "data.source.n_users=150", "data.source.n_items=80",
    "data.source.n_interactions=4000", "trainer.max_epochs=2", "trainer.accelerator=cpu", "logger=csv",
    "~callbacks.progress_bar", "+trainer.enable_progress_bar=false", "evaluation.n_boot=10",
    "evaluation.ks=[10,30]", "evaluation.progress=false", "pipeline.system.n_candidates=30", "model.max_len=30",
    "model.hidden=16", "model.layers=1", "model.heads=1", "model.inner=32",
    "pipeline.stages.retriever.model.dim=16", "pipeline.stages.retriever.model.hidden=32",
    "pipeline.stages.retriever.trainer.max_epochs=2")


def test_cascade_experiment_trains_saves_and_reevaluates_exactly(tmp_path, monkeypatch):
    widths: list[int] = []
    original = SASRec.training_loss

    def recording(self, batch):
        widths.append(batch["items"].shape[1])
        return original(self, batch)

    monkeypatch.setattr(SASRec, "training_loss", recording)
    run_dir = tmp_path / "run"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*SMALL_CASCADE, f"paths.output_dir={run_dir}"])
    trained = train.run(cfg)

    # the ranker (the run's model) trained on windows of its own max_len; the retriever stage is a two-tower
    assert widths and set(widths) == {30}
    assert 0 < trained["retriever/test/recall@30"] <= 1 and "ranker/test/ndcg@10" in trained
    assert "val/ndcg@10" in trained and "retriever/val/recall@30" in trained
    for stage in ("retriever", "ranker"):
        assert (run_dir / stage / "checkpoints" / "model.pt").is_file(), stage
    assert (run_dir / "checkpoints" / "model.pt").is_file()
    assert (run_dir / "checkpoints" / "artifacts" / "retriever" / "index.faiss").is_file()
    system, payload = load_system(run_dir / "checkpoints" / "model.pt")
    assert isinstance(system, CascadeRecommender) and system.n_candidates == 30
    assert isinstance(system.retriever, TwoTower) and isinstance(system.ranker, SASRec)
    assert system.retriever.index is not None and system.retriever.index.kind == "hnsw"
    assert payload["stages"]["ranker"]["max_len"] == 30 and system.ranker.max_len == 30

    # marquee.eval rebuilds the cascade and re-evaluates with the run's own settings (ks=[10,30] included)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        eval_cfg = compose("eval", overrides=[f"run_dir={run_dir}", f"paths.output_dir={tmp_path / 'eval'}"])
    again = marquee_eval.run(eval_cfg)
    compared = [k for k in trained if "test/" in k and not k.endswith(("seconds", "ms_per_user"))]
    assert "test/recall@30" in compared and "retriever/test/recall@30" in compared
    for key in compared:
        assert again[key] == trained[key], key
