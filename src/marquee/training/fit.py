"""Build, train and checkpoint any configured model: closed-form fitting or Lightning training."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.checkpoint import save_model
from marquee.data.datamodules import EvaluationDataModule
from marquee.data.splits import Split
from marquee.models.base import FittedRecommender, Recommender, TrainableRecommender
from marquee.models.catalog import build_model
from marquee.run_record import code_version
from marquee.training.module import RecommenderModule
from marquee.training.throughput import ThroughputLogger

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def train_model(cfg: DictConfig, model_cfg: DictConfig, datamodule: EvaluationDataModule, split: Split,
                output_dir: str | Path) -> tuple[Recommender, dict[str, float], list]:
    """Build the model from ``model_cfg``, fit or train it, save ``checkpoints/model.pt``; return it,
    its training metrics and the Lightning loggers (empty for fitted models)."""
    output_dir = Path(output_dir)
    model, data_args = build_model(model_cfg, split)
    started = time.perf_counter()
    loggers: list = []
    if isinstance(model, FittedRecommender):
        model.fit(split)
        metrics = {"train/fit_seconds": time.perf_counter() - started}
    elif isinstance(model, TrainableRecommender):
        metrics, loggers = _train_with_lightning(cfg, model, datamodule, split, output_dir)
    else:
        raise TypeError(f"{type(model).__name__} is neither a FittedRecommender nor a TrainableRecommender")
    save_model(model, model_cfg, output_dir / "checkpoints", data_args=data_args,
               data_fingerprint=split.log.fingerprint)
    return model, metrics, loggers


def _train_with_lightning(cfg: DictConfig, model: TrainableRecommender, datamodule: EvaluationDataModule,
                          split: Split, output_dir: Path) -> tuple[dict[str, float], list]:
    optim = cfg.optim
    module = RecommenderModule(
        model,
        optimizer=instantiate(optim.optimizer),
        scheduler=instantiate(optim.scheduler) if optim.get("scheduler") else None,
        scheduler_interval=optim.get("scheduler_interval", "epoch"),
        ks=list(cfg.evaluation.ks),
        mask_seen=cfg.evaluation.get("seen", "mask") == "mask",
        seed=cfg.seed,
    )
    callbacks = [*instantiate_all(cfg.get("callbacks")), ThroughputLogger()]
    if cfg.get("ckpt_path"):
        # Lightning restores a ModelCheckpoint's best score only when its dirpath is unchanged: a resumed run
        # keeps writing checkpoints beside the one it resumes from, so its best is chosen over all epochs
        for callback in callbacks:
            if isinstance(callback, pl.callbacks.ModelCheckpoint):
                callback.dirpath = str(Path(cfg.ckpt_path).resolve().parent)
        log.info("resuming: checkpoints continue in %s", Path(cfg.ckpt_path).resolve().parent)
    loggers = instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    n_parameters = sum(p.numel() for p in model.parameters())
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True), "git": code_version(),
                                "data_fingerprint": split.log.fingerprint, "n_parameters": n_parameters})
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.perf_counter() - started
    monitored = [c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)]
    checkpoint = monitored[0] if monitored else None
    best_path = getattr(checkpoint, "best_model_path", "") if checkpoint is not None else ""
    if best_path:
        state = torch.load(best_path, map_location="cpu", weights_only=False)["state_dict"]
        module.load_state_dict(state)
        log.info("restored the best validation checkpoint %s", best_path)
    model.to("cpu")
    metrics = {
        "train/seconds": seconds,
        "train/epochs": float(trainer.current_epoch),
        "train/n_parameters": float(n_parameters),
    }
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["train/best_val_score"] = float(checkpoint.best_model_score)
    return metrics, loggers
