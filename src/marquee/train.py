"""Hydra entry point: ``python -m marquee.train`` (or ``marquee-train``) with config overrides."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.cli import entry_point, failure_reason
from marquee.data.atomic import update_json, write_json
from marquee.data.catalog import Catalog
from marquee.data.pipeline import prepare_split
from marquee.data.summary import format_table, split_summary
from marquee.preflight import check_group_choices, check_ks, check_stages
from marquee.rank_zero import is_rank_zero, quiet_other_ranks
from marquee.run_record import recorded_run
from marquee.training.pipeline import fit_pipeline, has_model
from marquee.training.ray_launch import check_launcher

log = logging.getLogger(__name__)


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
    output_dir = Path(cfg.paths.output_dir)
    with recorded_run(output_dir, cfg, lambda e: failure_reason(e, "train")) as record:
        check_group_choices(cfg)
        check_launcher(cfg)
        stages = check_stages(list(cfg.stages))
        pl.seed_everything(cfg.seed, workers=True)
        if cfg.get("torch_threads"):
            torch.set_num_threads(cfg.torch_threads)
        evaluator = instantiate(cfg.evaluation) if has_model(cfg) else None
        split = prepare_split(cfg.data)
        record.data(split.log)
        summary = split_summary(split)
        if is_rank_zero():
            write_json(summary, output_dir / "data_summary.json")
        if evaluator is None:
            print(format_table(summary))
            print(output_dir.resolve())
            return {}
        catalog = Catalog.from_split(split)
        check_ks(evaluator.ks, catalog.n_items)
        evaluator.check_catalog(catalog)
        system, fitted = fit_pipeline(cfg, split, catalog, evaluator, output_dir)
        metrics = dict(fitted.metrics)
        metrics.update(evaluator.evaluate_stages(system, evaluator.data(split, system.max_len), stages, output_dir))
        if is_rank_zero():
            report_to_trackers(fitted.loggers, metrics)
            update_json(metrics, output_dir / "metrics.json")
            print(output_dir.resolve())
    return metrics


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, run, and return the optimized metric for sweepers."""
    quiet_other_ranks()  # under DDP every rank runs this command; rank zero alone logs to file and screen
    metrics = run(cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()
