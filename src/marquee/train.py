"""Hydra entry point: ``python -m marquee.train`` (or ``marquee-train``) with config overrides."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from marquee.config_dir import CONFIG_DIR
from marquee.data.atomic import write_json
from marquee.data.pipeline import prepare_split
from marquee.data.summary import format_table, split_summary
from marquee.run_record import write_run_record

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Load and split the configured data, record the run, and print the data summary."""
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    split = prepare_split(cfg.data)
    summary = split_summary(split)
    write_json(summary, output_dir / "data_summary.json")
    write_run_record(output_dir, cfg, split.log)
    if cfg.get("model") is not None:
        raise NotImplementedError("no model families exist yet; run with model=null (the default)")
    print(format_table(summary))
    print(output_dir.resolve())
    return summary


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Compose the config, run, and return the optimized metric for sweepers."""
    summary = run(cfg)
    metric = cfg.get("optimized_metric")
    return summary.get(metric) if metric else None


if __name__ == "__main__":
    main()
