"""Hydra entry point for the offline A/B test of artwork policies: ``python -m marquee.bandit source=obd``.

Reads or simulates an impression log, trains the configured candidate policies on its first rows,
values every candidate on the remaining rows with the configured off-policy estimators, and writes
``report.md`` and ``report.csv`` (values, paired differences from the baseline, CIs, weight
diagnostics) and ``run.json`` into the run folder. On simulated logs the report also gives each
candidate's true value, which only a simulator knows.

``source`` and ``policies`` are config groups (``--help`` lists their options); your own log is
``source=artwork_log source.path=<file.parquet>`` in the format of docs/impression_log.md.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.bandits.artwork_logs import artwork_frame, read_artwork_log, write_artwork_log
from marquee.bandits.features import FEATURE_MAPS
from marquee.bandits.logs import BanditLog
from marquee.bandits.obd import load_obd
from marquee.bandits.policies import Policy, UniformPolicy
from marquee.bandits.report import format_report, offline_ab_report
from marquee.bandits.reward_model import cross_fit_q_hat
from marquee.bandits.simulator import ArtworkSimulator, SimulatorConfig
from marquee.cli import entry_point, failure_reason
from marquee.data.atomic import atomic_path, update_json
from marquee.data.pipeline import load_log
from marquee.errors import ConfigError
from marquee.run_record import recorded_run

log = logging.getLogger(__name__)


def load_source(cfg: DictConfig, output_dir: Path) -> tuple[BanditLog, ArtworkSimulator | None]:
    """The impression log the config names; a simulated one is also written as an artwork log."""
    source = cfg.source
    if source.kind == "obd":
        return load_obd(source.root, source.behavior_policy, source.campaign), None
    if source.kind == "artwork_log":
        return read_artwork_log(source.path), None
    if source.kind != "simulator":
        raise ConfigError("source.kind", f"simulator, obd or artwork_log, got {source.kind!r}")
    sim = ArtworkSimulator.from_interaction_log(load_log(cfg.data), SimulatorConfig(**source.simulator))
    loggers = {"uniform": UniformPolicy(), "production": sim.production_policy(),
               "best_artwork": sim.best_artwork_policy()}
    if source.logging_policy not in loggers:
        raise ConfigError("source.logging_policy", f"one of {list(loggers)}, got {source.logging_policy!r}")
    logger = loggers[source.logging_policy]
    impressions = sim.simulate_log(logger, source.n_rows, cfg.seed)
    write_artwork_log(artwork_frame(impressions, logger.name), output_dir / "impressions.parquet",
                      impressions.context_names)
    return impressions, sim


def fingerprint(impressions: BanditLog) -> str:
    """SHA-256 over the arrays every estimate reads."""
    digest = hashlib.sha256()
    for array in (impressions.context, impressions.candidates.ids, impressions.candidates.table, impressions.action,
                  impressions.propensity, impressions.reward):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def run(cfg: DictConfig) -> dict[str, float]:
    """Train the candidates, value them on the held-out rows, write the report; return the values by name."""
    output_dir = Path(cfg.paths.output_dir)
    with recorded_run(output_dir, cfg, lambda e: failure_reason(e, "bandit")):
        torch.manual_seed(cfg.seed)
        impressions, sim = load_source(cfg, output_dir)
        cut = int(cfg.train_fraction * len(impressions))
        train, evaluated = impressions.take(np.arange(cut)), impressions.take(np.arange(cut, len(impressions)))
        policies: dict[str, Policy] = {name: instantiate(c) for name, c in cfg.policies.items()}
        targets = {}
        for name, policy in policies.items():
            log.info("training %s on %d rows", name, len(train))
            targets[name] = policy.fit(train).action_probabilities(evaluated.context, evaluated.candidates)
        feature_map = FEATURE_MAPS[cfg.source.feature_map]
        q_hat = cross_fit_q_hat(lambda: instantiate(cfg.reward_model), evaluated, feature_map, cfg.reward_folds, cfg.seed)
        report = offline_ab_report(evaluated, targets, q_hat, list(cfg.estimators), cfg.baseline, cfg.n_boot,
                                   cfg.confidence, cfg.seed)
        text = [f"# Offline A/B test on {impressions.source}", "",
                (f"{len(train):,} rows trained the candidates; {len(evaluated):,} rows valued them "
                 f"(mean reward {evaluated.reward.mean():.4f}). Baseline: {cfg.baseline}."), "",
                format_report(report, cfg.confidence)]
        if sim is not None:
            truth = {name: sim.true_value(p, n=cfg.source.true_value_requests) for name, p in policies.items()}
            report["true_value"] = [truth.get(p, np.nan) for p, _ in report.index]
            text += ["", "True values (the simulator's): " + ", ".join(f"{k} {v:.4f}" for k, v in truth.items())]
        with atomic_path(output_dir / "report.csv") as tmp:
            report.to_csv(tmp)
        with atomic_path(output_dir / "report.md") as tmp:
            tmp.write_text("\n".join(text) + "\n")
        update_json({"data": {"source": impressions.source, "rows": len(impressions),
                              "fingerprint": fingerprint(impressions)}}, output_dir / "run.json", sort_keys=False)
        print("\n".join(text))
        print(output_dir.resolve())
    return {f"{p}/{e}": float(v) for (p, e), v in report["value"].items()}


@entry_point("bandit")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
