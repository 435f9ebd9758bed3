"""Training a stage on a Ray cluster (``launcher=ray``): Ray Train's ``TorchTrainer`` and its Lightning integration.

What runs where:

- **This process (the driver)** reads and splits the data, builds the model, starts a local Ray (or joins
  ``launcher.address``), puts the untrained model, the split, the evaluator and the resolved config into
  Ray's object store, and waits.
- **Each of the ``launcher.num_workers`` Ray workers** is one DDP rank (gloo on CPU, nccl on GPU; Ray sets up
  the process group). It builds the LightningModule, datamodule and callbacks a one-process run builds
  (:func:`~marquee.training.fit.build_module`, :func:`~marquee.training.fit.training_callbacks`) and a
  ``pl.Trainer`` with ``RayDDPStrategy``, ``RayLightningEnvironment`` and ``RayTrainReportCallback``, which
  reports a checkpoint every epoch to ``launcher.storage_path``; Ray keeps the best ones by the
  ModelCheckpoint's monitor (and the latest). Worker zero records what Lightning sends to the loggers and
  returns it. The workers write nothing into the run folder.
- **Back in the driver** the best checkpoint's weights are loaded into the stage's model, the best and the
  last checkpoint are copied into ``<run>/checkpoints`` under a one-process run's names, the recorded curves
  are replayed into the run's trackers, and the rest of the run (evaluation in this one process,
  ``model.pt``, ``metrics.json``, ``run.json``) is the one-process path.

Ray imports lazily: without Ray installed only :func:`is_ray` and :func:`check_launcher` run, and the latter
says what to install.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only

from marquee.data.splits import Split
from marquee.errors import ConfigError
from marquee.evaluation.evaluator import Evaluator
from marquee.models.base import TrainableRecommender

log = logging.getLogger(__name__)

INSTALL = 'pip install "marquee[ray]"'
# the file RayTrainReportCallback writes into each reported checkpoint folder
CHECKPOINT_FILE = "checkpoint.ckpt"


def is_ray(cfg: DictConfig) -> bool:
    """Whether ``cfg`` trains on Ray (``launcher=ray``); a config from before launchers existed trains locally."""
    launcher = cfg.get("launcher")
    return bool(launcher) and launcher.get("kind") == "ray"


def check_launcher(cfg: DictConfig) -> None:
    """Before any data is read: ``launcher=ray`` needs Ray Train, and owns the training processes itself."""
    if not is_ray(cfg):
        return
    trainer = cfg.get("trainer") or {}
    if trainer.get("strategy") not in (None, "auto") or int(trainer.get("num_nodes") or 1) != 1:
        raise ConfigError("launcher", f"launcher=ray starts the training processes itself (launcher.num_workers, "
                                      f"one DDP rank each); drop trainer=ddp / ddp_cpu (trainer.strategy="
                                      f"{trainer.get('strategy')}, trainer.num_nodes={trainer.get('num_nodes', 1)})")
    if int(cfg.launcher.num_workers) < 1:
        raise ConfigError("launcher.num_workers", f"{cfg.launcher.num_workers}: at least one worker")
    try:
        import ray.train.lightning._lightning_utils as ray_lightning
    except ImportError as error:
        raise ConfigError("launcher", f"launcher=ray needs Ray Train, which is not installed ({error}): "
                                      f"{INSTALL}, or launcher=local") from error
    if ray_lightning.pl is not pl:  # Ray prefers the `lightning` package; its strategy is foreign to our Trainer
        raise ConfigError("launcher", "Ray Train found the `lightning` package beside pytorch_lightning and uses "
                                      "it, so a pytorch_lightning Trainer rejects its strategy: pip uninstall lightning")


class RecordingLogger(Logger):
    """On global rank zero, records what Lightning sends to the loggers, for the driver to replay into its own."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    @property
    def name(self) -> str:
        return "recorded"

    @property
    def version(self) -> int:
        return 0

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("hyperparams", params))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append(("metrics", dict(metrics), step))


def replay(calls: list[tuple], loggers: list) -> None:
    """Send the recorded calls to ``loggers`` in their order, then close them as Lightning does at the end of fit."""
    for logger in loggers:
        for kind, *args in calls:
            if kind == "metrics":
                logger.log_metrics(*args)
            else:
                logger.log_hyperparams(*args)
        logger.save()
        logger.finalize("success")


def _checkpoint_configs(cfg: DictConfig) -> tuple[DictConfig | None, DictConfig | None]:
    """The configured ModelCheckpoint with a monitor (the best) and the one without (the last), either may be None."""
    best = last = None
    for entry in (cfg.get("callbacks") or {}).values():
        if not isinstance(entry, DictConfig) or not str(entry.get("_target_", "")).endswith("ModelCheckpoint"):
            continue
        if entry.get("monitor"):
            best = best or entry
        else:
            last = last or entry
    return best, last


def _train_worker(config: dict[str, Any]) -> dict[str, Any] | None:
    """One Ray Train worker: one DDP rank of the Lightning fit. Returns, on rank zero, the loggers' calls."""
    import ray
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback, prepare_trainer

    from marquee.training.fit import build_module, training_callbacks

    payload = ray.get(config["payload"])
    cfg = OmegaConf.create(payload["cfg"])
    model, split, evaluator = payload["model"], payload["split"], payload["evaluator"]
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    module, datamodule = build_module(cfg, model, split, evaluator)
    # Ray's reported checkpoints take the ModelCheckpoints' place: nothing writes into the driver's run folder
    callbacks = [c for c in training_callbacks(cfg) if not isinstance(c, ModelCheckpoint)]
    recorder = RecordingLogger()
    with tempfile.TemporaryDirectory(prefix="marquee-ray-") as scratch:
        trainer: pl.Trainer = instantiate(
            cfg.trainer, default_root_dir=scratch, accelerator="gpu" if config["use_gpu"] else "cpu",
            devices="auto", strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()],
            callbacks=[*callbacks, RayTrainReportCallback()], logger=recorder if config["loggers"] else False,
            enable_checkpointing=False)
        trainer = prepare_trainer(trainer)
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        seconds = time.perf_counter() - started
    if trainer.global_rank != 0:
        return None
    return {"calls": recorder.calls, "seconds": seconds, "epochs": trainer.current_epoch}


def quiet_ray_process() -> None:
    """In every process of this run's Ray job: without Ray's dashboard (``ray[default]``) there is no state API, and
    Ray Train's placement-group cleaner warns about it once a second for the whole run; only its errors are shown."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def _ray_init_args(launcher: DictConfig) -> dict[str, Any]:
    """Join ``launcher.address``, or start a Ray for this run alone with enough CPUs for the workers (a small
    machine oversubscribes rather than waits forever)."""
    args: dict[str, Any] = {"runtime_env": {"worker_process_setup_hook": quiet_ray_process}}
    if launcher.get("address"):
        return {**args, "address": launcher.address}
    cpus = float((launcher.get("resources_per_worker") or {}).get("CPU", 1))
    return {**args, "num_cpus": max(os.cpu_count() or 1, math.ceil(cpus * launcher.num_workers))}


def _storage(launcher: DictConfig) -> str:
    path = str(launcher.storage_path)
    return path if "://" in path else str(Path(path).resolve())


def _best(result: Any, monitor: str | None, mode: str) -> tuple[Any, dict[str, Any]]:
    """The kept checkpoint with the best ``monitor`` (of equals the earliest, which ModelCheckpoint would keep; NaN
    never), and its metrics; without a monitor, the latest."""
    scored = [(c, m) for c, m in (result.best_checkpoints or [])
              if monitor and isinstance(m.get(monitor), (int, float)) and not math.isnan(m[monitor])]
    if not scored:
        return result.checkpoint, dict(result.metrics or {})
    sign = 1.0 if mode == "max" else -1.0
    return max(scored, key=lambda cm: (sign * cm[1][monitor], -cm[1].get("epoch", 0)))


def _load_weights(checkpoint: Any, model: TrainableRecommender) -> dict[str, Any]:
    """The Lightning checkpoint inside a reported Ray checkpoint; its module's weights go into ``model``."""
    with checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    prefix = "net."  # RecommenderModule keeps the model as ``net``
    weights = {k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    if len(weights) != len(state["state_dict"]):
        raise RuntimeError(f"unexpected keys in the checkpoint: {sorted(set(state['state_dict']) - set(weights))}")
    model.load_state_dict(weights, strict=True)
    return state


def _copy_into_run(checkpoint: Any, entry: DictConfig | None, metrics: dict[str, Any]) -> None:
    """Copy a reported checkpoint into the run folder under the name ``entry`` (a ModelCheckpoint config) gives it."""
    if checkpoint is None or entry is None:
        return
    namer: ModelCheckpoint = instantiate(entry)
    name = namer.format_checkpoint_name({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
    target = Path(namer.dirpath or ".") / Path(name).name
    target.parent.mkdir(parents=True, exist_ok=True)
    with checkpoint.as_directory() as folder:
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(Path(folder) / CHECKPOINT_FILE, partial)
        partial.replace(target)


def train_on_ray(cfg: DictConfig, model: TrainableRecommender, split: Split, evaluator: Evaluator, loggers: list):
    """Train ``model`` with Ray Train on ``cfg.launcher``'s workers; return it with the best epoch's weights loaded."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from marquee.training.fit import FittedStage

    launcher = cfg.launcher
    best_cfg, last_cfg = _checkpoint_configs(cfg)
    monitor = best_cfg.get("monitor") if best_cfg is not None else None
    mode = str(best_cfg.get("mode", "min")) if best_cfg is not None else "max"
    top_k = int(best_cfg.get("save_top_k", 1)) if best_cfg is not None else 1
    storage = _storage(launcher)
    name = f"{Path(cfg.paths.output_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline by default, like every tracker here
        ray.init(**_ray_init_args(launcher))
    try:
        payload = ray.put({"cfg": OmegaConf.to_container(cfg, resolve=True), "model": model, "split": split,
                           "evaluator": evaluator})
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"payload": payload, "use_gpu": bool(launcher.use_gpu), "loggers": bool(loggers)},
            scaling_config=ScalingConfig(num_workers=int(launcher.num_workers), use_gpu=bool(launcher.use_gpu),
                                         resources_per_worker=OmegaConf.to_container(launcher.resources_per_worker)
                                         if launcher.get("resources_per_worker") else None),
            run_config=RunConfig(name=name, storage_path=storage, checkpoint_config=CheckpointConfig(
                num_to_keep=None if top_k < 0 else max(top_k, 1), checkpoint_score_attribute=monitor,
                checkpoint_score_order=mode)),
        )
        log.info("Ray Train: %d workers, checkpoints in %s/%s", launcher.num_workers, storage, name)
        result = trainer.fit()
        if result.error is not None:
            raise result.error
        best, best_metrics = _best(result, monitor, mode)
        if best is None:
            raise RuntimeError(f"Ray Train reported no checkpoint in {storage}/{name}")
        _load_weights(best, model)
        log.info("restored the best validation checkpoint %s", best.path)
        _copy_into_run(best, best_cfg, best_metrics)
        _copy_into_run(result.checkpoint, last_cfg, dict(result.metrics or {}))
    finally:
        if started_here:
            ray.shutdown()
    returned = result.return_value or {}
    replay(returned.get("calls", []), loggers)
    metrics = {"train/seconds": float(returned.get("seconds", float("nan"))),
               "train/epochs": float(returned.get("epochs", best_metrics.get("epoch", 0)))}
    if monitor and best_metrics.get(monitor) is not None:
        metrics["train/best_val_score"] = float(best_metrics[monitor])
    return FittedStage(model, metrics, loggers)
