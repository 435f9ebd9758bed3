"""Fitting a pipeline: every stage by :func:`~marquee.training.fit.fit_stage`, then one composed Recommender.

``pipeline.stages`` is an ordered mapping of stage name to what that stage changes from the run's
config: ``model`` and ``datamodule`` replace the run's (a retriever is another model than the run's
ranker); ``optim``, ``trainer``, ``callbacks`` and ``logger`` are merged over the run's, key by key
(a key the run's config does not have is an error); ``ckpt_path`` resumes that stage. An empty
stage is the run's own model as the run configures it. ``pipeline.system`` builds the evaluated
system from the stages' models, passed by stage name (null: the one stage's model). A single
model is the one-stage pipeline ``pipeline=single``; a stage of a multi-stage run writes under
``<run>/<stage>/``, and the system is saved as ``<run>/checkpoints/model.pt`` either way.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from marquee.checkpoint import MODEL_FILE, compose_system, load_system, save_system
from marquee.data.catalog import Catalog
from marquee.data.splits import Split
from marquee.evaluation.evaluator import Evaluator
from marquee.models.base import Recommender
from marquee.rank_zero import is_rank_zero
from marquee.training.fit import FittedStage, fit_stage

log = logging.getLogger(__name__)

OWN_KEYS = ("model", "datamodule")  # a stage's own, replacing the run's
MERGED_KEYS = ("optim", "trainer", "callbacks", "logger")  # merged over the run's


def stage_config(cfg: DictConfig, name: str, stage: DictConfig, stage_dir: Path) -> DictConfig:
    """The run's config as stage ``name`` sees it: its own keys in place, its output under ``stage_dir``."""
    view = copy.deepcopy(cfg)
    OmegaConf.set_struct(view, True)
    view.paths.output_dir = str(stage_dir)
    for key, value in stage.items():
        if key in OWN_KEYS:
            view[key] = value
        elif key in MERGED_KEYS:
            base = copy.deepcopy(cfg[key]) if cfg.get(key) is not None else OmegaConf.create({})
            OmegaConf.set_struct(base, True)  # a misspelt key fails here, naming itself
            view[key] = OmegaConf.merge(base, value)
        elif key == "ckpt_path":
            view.ckpt_path = value
        else:
            raise ValueError(f"pipeline.stages.{name}.{key}: a stage sets only {[*OWN_KEYS, *MERGED_KEYS, 'ckpt_path']}")
    if view.get("model") is None:
        raise ValueError(f"pipeline stage '{name}' has no model: give model=... or pipeline.stages.{name}.model")
    return view


def has_model(cfg: DictConfig) -> bool:
    """Whether any stage trains a model (a run without one only loads, splits and summarizes the data)."""
    return cfg.get("model") is not None or any(s.get("model") is not None for s in cfg.pipeline.stages.values())


def fit_pipeline(cfg: DictConfig, split: Split, catalog: Catalog, evaluator: Evaluator, output_dir: str | Path
                 ) -> tuple[Recommender, FittedStage]:
    """Fit every stage in order, compose the system, save it as ``output_dir/checkpoints/model.pt``.

    Returns the system and a :class:`FittedStage` holding every stage's training metrics (prefixed
    with the stage's name when there are several) and trackers. ``cfg.resume_from`` names an earlier
    run of the same pipeline: its finished stages are loaded instead of fitted, an unfinished one
    resumes from its ``last.ckpt``.
    """
    output_dir = Path(output_dir)
    stages = cfg.pipeline.stages
    single = len(stages) == 1
    if cfg.get("ckpt_path") and not single:
        raise ValueError("ckpt_path resumes a one-stage run; resume a pipeline with resume_from=<run dir>, or set "
                         "pipeline.stages.<name>.ckpt_path")
    models: dict[str, Recommender] = {}
    model_cfgs: dict[str, DictConfig] = {}
    fitted = FittedStage(model=None)
    for name, stage in stages.items():
        stage_dir = output_dir if single else output_dir / name
        view = stage_config(cfg, name, stage, stage_dir)
        done = _resumed(cfg, name, single, view)
        if done is not None:
            log.info("stage %s: loaded the finished stage %s", name, done)
            models[name] = load_system(done)[0]
            if is_rank_zero():
                save_system(models[name], {"model": view.model}, None, catalog, stage_dir / "checkpoints",
                            data_fingerprint=split.log.fingerprint)
        else:
            part = fit_stage(view, split, catalog, evaluator, stage_dir)
            models[name] = part.model
            fitted.metrics.update({(k if single else f"{name}/{k}"): v for k, v in part.metrics.items()})
            fitted.loggers += part.loggers
        model_cfgs[name] = view.model
    system = compose_system(models, cfg.pipeline.get("system"))
    fitted.model = system
    if not single and is_rank_zero():
        save_system(system, model_cfgs, cfg.pipeline.system, catalog, output_dir / "checkpoints",
                    data_fingerprint=split.log.fingerprint)
    return system, fitted


def _resumed(cfg: DictConfig, name: str, single: bool, view: DictConfig) -> Path | None:
    """The finished model of stage ``name`` in ``cfg.resume_from``, or None (setting ``view.ckpt_path`` to its
    ``last.ckpt`` when the stage had started)."""
    if not cfg.get("resume_from"):
        return None
    checkpoints = Path(cfg.resume_from) / ("" if single else name) / "checkpoints"
    if (checkpoints / MODEL_FILE).is_file():
        return checkpoints / MODEL_FILE
    if (checkpoints / "last.ckpt").is_file():
        view.ckpt_path = str(checkpoints / "last.ckpt")
    return None
