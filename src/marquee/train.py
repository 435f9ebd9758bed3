"""Hydra entry point: ``python -m marquee.train`` (or ``marquee-train``) with config overrides."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.config_dir import CONFIG_DIR
from marquee.data.atomic import update_json, write_json
from marquee.data.pipeline import prepare_split
from marquee.data.summary import format_table, split_summary
from marquee.run_record import write_run_record
from marquee.training.fit import train_model

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
    """Load and split the data, record the run; with a model, fit it and evaluate every configured stage."""
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    output_dir = Path(cfg.paths.output_dir)
    split = prepare_split(cfg.data)
    summary = split_summary(split)
    write_json(summary, output_dir / "data_summary.json")
    write_run_record(output_dir, cfg, split.log)
    if cfg.get("model") is None:
        print(format_table(summary))
        print(output_dir.resolve())
        return {}

    if cfg.get("cascade"):  # retrieval -> ranking: two models trained, one system evaluated
        from marquee.retrieval.cascade import run as run_cascade

        metrics = run_cascade(cfg, split, output_dir)
        print(output_dir.resolve())
        return metrics
    datamodule = instantiate(cfg.datamodule)(split=split)
    model, metrics, loggers = train_model(cfg, cfg.model, datamodule, split, output_dir)
    metrics.update(instantiate(cfg.evaluation).evaluate_stages(model, datamodule, list(cfg.stages), output_dir))
    report_to_trackers(loggers, metrics)
    update_json(metrics, output_dir / "metrics.json")
    print(output_dir.resolve())
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, run, and return the optimized metric for sweepers."""
    metrics = run(cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


if __name__ == "__main__":
    main()
