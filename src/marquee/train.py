"""Hydra entry point: ``python -m marquee.train`` (or ``marquee-train``) with config overrides."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.checkpoint import save_model
from marquee.config_dir import CONFIG_DIR
from marquee.data.atomic import update_json, write_json
from marquee.data.pipeline import prepare_split
from marquee.data.summary import format_table, split_summary
from marquee.models.base import FittedRecommender
from marquee.run_record import write_run_record

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, float]:
    """Load and split the data, record the run; with a model, fit it and evaluate every configured stage."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    split = prepare_split(cfg.data)
    summary = split_summary(split)
    write_json(summary, output_dir / "data_summary.json")
    write_run_record(output_dir, cfg, split.log)
    if cfg.get("model") is None:
        print(format_table(summary))
        print(output_dir.resolve())
        return {}

    model = instantiate(cfg.model, n_items=split.log.n_items)
    datamodule = instantiate(cfg.datamodule)(split=split)
    if not isinstance(model, FittedRecommender):
        raise NotImplementedError(f"{type(model).__name__}: gradient-trained models are not wired in yet")
    started = time.perf_counter()
    model.fit(split)
    metrics: dict[str, float] = {"train/fit_seconds": time.perf_counter() - started}
    save_model(model, cfg.model, output_dir / "checkpoints", data_fingerprint=split.log.fingerprint)

    metrics.update(instantiate(cfg.evaluation).evaluate_stages(model, datamodule, list(cfg.stages), output_dir))
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
