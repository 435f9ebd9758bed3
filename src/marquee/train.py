"""Hydra entry point: ``python -m marquee.train`` (or ``marquee-train``) with config overrides."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.config_dir import CONFIG_DIR
from marquee.data.atomic import update_json, write_json
from marquee.data.catalog import Catalog
from marquee.data.errors import DataError
from marquee.data.pipeline import prepare_split
from marquee.data.summary import format_table, split_summary
from marquee.models.memory import InsufficientMemory
from marquee.run_record import write_run_record
from marquee.training.pipeline import fit_pipeline, has_model

log = logging.getLogger(__name__)

# mistakes a user can fix: one message and exit code 2, the traceback only in the run's log
USER_ERRORS = (DataError, InsufficientMemory)


def user_error(error: BaseException) -> BaseException | None:
    """The user's mistake behind ``error``, also when Hydra wrapped it while building an object from the config."""
    while error is not None:
        if isinstance(error, USER_ERRORS):
            return error
        error = error.__cause__
    return None


def log_traceback_to_files(error: BaseException) -> None:
    """Write ``error`` with its traceback into the run's log files only (the screen gets one line)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "stopped: %s", (error,),
                            (type(error), error, error.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def report_to_trackers(loggers: list, metrics: dict[str, float]) -> None:
    """Send the final metrics (slices left to metrics.json) to every tracker, then close the trackers."""
    final = {k: v for k, v in metrics.items() if "/slice/" not in k}
    for logger in loggers:
        logger.log_metrics(final)
        logger.finalize("success")
        if type(logger).__name__ == "WandbLogger":  # Lightning leaves the wandb run open until exit
            logger.experiment.finish()


def run(cfg: DictConfig) -> dict[str, float]:
    """Load and split the data, record the run; with a model, fit the pipeline and evaluate every configured stage."""
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    output_dir = Path(cfg.paths.output_dir)
    split = prepare_split(cfg.data)
    summary = split_summary(split)
    write_json(summary, output_dir / "data_summary.json")
    write_run_record(output_dir, cfg, split.log)
    if not has_model(cfg):
        print(format_table(summary))
        print(output_dir.resolve())
        return {}
    evaluator = instantiate(cfg.evaluation)
    system, fitted = fit_pipeline(cfg, split, Catalog.from_split(split), evaluator, output_dir)
    metrics = dict(fitted.metrics)
    metrics.update(evaluator.evaluate_stages(system, evaluator.data(split, system.max_len), list(cfg.stages),
                                             output_dir))
    report_to_trackers(fitted.loggers, metrics)
    update_json(metrics, output_dir / "metrics.json")
    print(output_dir.resolve())
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, run, and return the optimized metric for sweepers."""
    try:
        metrics = run(cfg)
    except Exception as error:
        mistake = user_error(error)
        if mistake is None:
            raise
        log_traceback_to_files(error)
        print(f"error: {mistake}", file=sys.stderr)
        sys.exit(2)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()
