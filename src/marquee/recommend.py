"""Hydra entry point: ``python -m marquee.recommend run_dir=... users=all k=50`` writes each member's top-k to Parquet."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from marquee.cli import entry_point
from marquee.errors import ConfigError
from marquee.recommendations import BundleSource, RunSource, write_recommendations


def run(cfg: DictConfig) -> Path:
    """Write the recommendations of ``cfg.run_dir`` (or ``cfg.bundle``) to ``cfg.out``; print and return its path."""
    if (cfg.run_dir is None) == (cfg.bundle is None):
        raise ConfigError("run_dir", "give a training run (run_dir=<its folder>) or a serving bundle "
                          "(bundle=<its folder>), one of the two")
    source = RunSource(cfg.run_dir, cfg.device) if cfg.run_dir is not None else BundleSource(cfg.bundle)
    users = OmegaConf.to_container(cfg.users) if OmegaConf.is_list(cfg.users) else cfg.users
    out = write_recommendations(source, cfg.out, users, cfg.k, cfg.seen, cfg.batch_size, progress=cfg.progress)
    print(out.resolve())
    return out


@entry_point("recommend")
def main(cfg: DictConfig) -> None:
    """Compose the recommend config and run it."""
    run(cfg)


if __name__ == "__main__":
    main()
