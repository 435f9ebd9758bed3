"""Pipelines: a stage sees the run's config with its own keys, and a pipeline resumes stage by stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from marquee import train
from marquee.config_dir import CONFIG_DIR
from marquee.training.pipeline import stage_config

SMALL = ("data=synthetic", "data.source.n_users=120", "data.source.n_items=60", "data.source.n_interactions=3000",
         "model=ease", "pipeline=cascade", "pipeline.system.n_candidates=10", "evaluation.ks=[5,10]",
         "pipeline.stages.retriever.model.dim=16", "pipeline.stages.retriever.model.hidden=32",
         "pipeline.stages.retriever.model.index.kind=flat", "+pipeline.stages.retriever.trainer.max_epochs=2",
         "callbacks=none", "logger=csv", "evaluation.n_boot=10", "evaluation.progress=false",
         "+trainer.enable_progress_bar=false", "stages=[test]")


def _cfg(out: Path, *overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[*SMALL, f"paths.output_dir={out}", *overrides])


def test_a_stage_replaces_model_and_datamodule_and_merges_training_keys_over_the_runs(tmp_path):
    cfg = _cfg(tmp_path, "trainer.max_epochs=7", "+pipeline.stages.retriever.optim.optimizer.lr=0.01")
    retriever = stage_config(cfg, "retriever", cfg.pipeline.stages.retriever, tmp_path / "retriever")
    ranker = stage_config(cfg, "ranker", cfg.pipeline.stages.ranker, tmp_path / "ranker")
    assert retriever.model._target_.endswith("TwoTower") and ranker.model._target_.endswith("EASE")
    assert retriever.datamodule._target_.endswith("SequenceDataModule")
    assert ranker.datamodule._target_.endswith("PairDataModule")
    # merged: the stage's own keys win, every other key is the run's
    assert retriever.trainer.max_epochs == 2 and ranker.trainer.max_epochs == 7
    assert retriever.trainer.accelerator == cfg.trainer.accelerator
    assert retriever.optim.optimizer.lr == 0.01 and ranker.optim.optimizer.lr == cfg.optim.optimizer.lr
    assert retriever.paths.output_dir == str(tmp_path / "retriever")
    bad = OmegaConf.create({"trainer": {"max_epoch": 3}})  # misspelt
    with pytest.raises(Exception, match="max_epoch"):
        stage_config(cfg, "retriever", bad, tmp_path / "retriever")
    with pytest.raises(ValueError, match="pipeline.stages.retriever.loss: a stage sets only"):
        stage_config(cfg, "retriever", OmegaConf.create({"loss": {}}), tmp_path / "retriever")


@pytest.mark.slow
def test_a_pipeline_resumes_stage_by_stage_from_an_earlier_run(tmp_path):
    first = train.run(_cfg(tmp_path / "first"))
    assert "retriever/train/seconds" in first and "ranker/train/fit_seconds" in first
    # the ranker's model is gone, as if the run had died after the retriever: only it is fitted again
    (tmp_path / "first" / "ranker" / "checkpoints" / "model.pt").unlink()
    resumed = train.run(_cfg(tmp_path / "second", f"resume_from={tmp_path / 'first'}"))
    assert "retriever/train/seconds" not in resumed  # loaded, not trained
    assert "ranker/train/fit_seconds" in resumed
    for key in ("test/ndcg@10", "test/recall@10", "retriever/test/recall@10", "ranker/test/ndcg@10"):
        assert resumed[key] == first[key], key
    saved = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert saved["test/ndcg@10"] == first["test/ndcg@10"]
    assert (tmp_path / "second" / "checkpoints" / "artifacts" / "retriever" / "index.faiss").is_file()
