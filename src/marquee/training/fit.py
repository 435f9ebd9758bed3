"""Fitting one stage: build its model from the Catalog, fit it in closed form or train it with Lightning, save it.

Every model of every pipeline goes through :func:`fit_stage`; the pipeline (:mod:`marquee.training.pipeline`)
only decides which stages there are and how their models compose.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.checkpoint import build, save_system
from marquee.data.catalog import Catalog
from marquee.data.splits import Split
from marquee.evaluation.evaluator import Evaluator
from marquee.models.base import FittedRecommender, Recommender, TrainableRecommender
from marquee.rank_zero import is_rank_zero
from marquee.run_record import code_version
from marquee.training.distributed import WrappedSamplerEpoch
from marquee.training.module import RecommenderModule
from marquee.training.ray_launch import is_ray, train_on_ray
from marquee.training.resume import ResumeInNewRun
from marquee.training.throughput import ThroughputLogger

log = logging.getLogger(__name__)


@dataclass
class FittedStage:
    """A stage's fitted model, its training metrics (``train/...``) and the trackers it reported to."""

    model: Recommender
    metrics: dict[str, float] = field(default_factory=dict)
    loggers: list = field(default_factory=list)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def fit_stage(cfg: DictConfig, split: Split, catalog: Catalog, evaluator: Evaluator, stage_dir: str | Path
              ) -> FittedStage:
    """Build ``cfg.model`` around ``catalog``, fit or train it on ``split`` (its datamodule, optim, trainer and
    callbacks from ``cfg``; ``cfg.ckpt_path`` resumes), and save it as ``stage_dir/checkpoints/model.pt``."""
    stage_dir = Path(stage_dir)
    model: Recommender = build(cfg.model, catalog=catalog)
    loggers = instantiate_all(cfg.get("logger"))  # every model reports to the trackers, a closed-form one too
    n_parameters = sum(p.numel() for p in model.parameters())  # a closed-form model has its weights after fit
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "git": code_version(),
                                "data_fingerprint": split.log.fingerprint})
    started = time.perf_counter()
    if isinstance(model, FittedRecommender):
        model.fit(split)
        stage = FittedStage(model, {"train/fit_seconds": time.perf_counter() - started}, loggers)
    elif isinstance(model, TrainableRecommender):
        stage = _train_with_lightning(cfg, model, split, evaluator, loggers)
        stage.metrics["train/n_parameters"] = float(n_parameters)
    else:
        raise TypeError(f"{type(model).__name__} is neither a FittedRecommender nor a TrainableRecommender")
    if is_rank_zero():
        save_system(model, {"model": cfg.model}, None, catalog, stage_dir / "checkpoints",
                    data_fingerprint=split.log.fingerprint)
    return stage


def build_module(cfg: DictConfig, model: TrainableRecommender, split: Split, evaluator: Evaluator
                 ) -> tuple[RecommenderModule, pl.LightningDataModule]:
    """The LightningModule around ``model`` and its datamodule, as every launcher trains them."""
    # the datamodule gets the model's max_len and the evaluator's rows: validation ranks what evaluation ranks
    datamodule = instantiate(cfg.datamodule)(split=split, max_len=model.max_len,
                                             evaluation=evaluator.data(split, model.max_len))
    optim = cfg.optim
    module = RecommenderModule(
        model,
        optimizer=instantiate(optim.optimizer),
        evaluator=evaluator,
        scheduler=instantiate(optim.scheduler) if optim.get("scheduler") else None,
        scheduler_interval=optim.get("scheduler_interval", "epoch"),
        seed=cfg.seed,
    )
    return module, datamodule


def training_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The configured callbacks and the ones every training run has."""
    # a resumed run copies the earlier run's checkpoints into its own folder and goes on there (ResumeInNewRun)
    # and a shuffle inside a BatchSampler (the pair datamodule's) gets each epoch too, with or without DDP
    return [*instantiate_all(cfg.get("callbacks")), ThroughputLogger(), ResumeInNewRun(), WrappedSamplerEpoch()]


def _train_with_lightning(cfg: DictConfig, model: TrainableRecommender, split: Split, evaluator: Evaluator,
                          loggers: list) -> FittedStage:
    if is_ray(cfg):  # the same module on a Ray cluster's workers; the best weights come back into ``model``
        return train_on_ray(cfg, model, split, evaluator, loggers)
    module, datamodule = build_module(cfg, model, split, evaluator)
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=training_callbacks(cfg), logger=loggers or False)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - started
    monitored = [c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)]
    checkpoint = monitored[0] if monitored else None
    best_path = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    if best_path:  # Lightning's own loading (its checkpoint IO and strategy), into the module we trained
        trainer.strategy.load_model_state_dict(trainer.strategy.load_checkpoint(best_path))
        log.info("restored the best validation checkpoint %s", best_path)
    metrics = {
        "train/seconds": seconds,
        "train/epochs": float(trainer.current_epoch),
    }
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["train/best_val_score"] = float(checkpoint.best_model_score)
    return FittedStage(model, metrics, loggers)
