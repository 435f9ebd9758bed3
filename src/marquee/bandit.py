"""Hydra entry point for the offline A/B test of artwork policies: ``python -m marquee.bandit source=obd``.

Reads or simulates an impression log, trains the configured candidate policies on its first rows,
values every candidate on the remaining rows with the configured off-policy estimators, and writes
``report.md`` and ``report.csv`` (values, paired differences from the baseline, CIs, weight
diagnostics), ``estimates.png`` (each estimator's value with its CI, per candidate) and ``run.json``
into the run folder. On simulated logs the report also gives each candidate's true value, which only a
simulator knows, and with ``accuracy_repeats=R`` each estimator's bias and RMSE over R fresh logs
(``estimator_accuracy.csv`` and a section of ``report.md``).

``source`` and ``policies`` are config groups (``--help`` lists their options); your own log is
``source=artwork_log source.path=<file.parquet>`` in the format of docs/impression_log.md.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from marquee.bandits.artwork_logs import artwork_frame, read_artwork_log, write_artwork_log
from marquee.bandits.estimator_accuracy import accuracy_table, format_accuracy, repeated_estimates
from marquee.bandits.features import FEATURE_MAPS
from marquee.bandits.logs import BanditLog
from marquee.bandits.obd import load_obd
from marquee.bandits.policies import Policy, UniformPolicy
from marquee.bandits.policy_file import ServedPolicy, policy_file, write_policy_file
from marquee.bandits.report import LOGGING, estimates_figure, format_report, offline_ab_report
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
    logger = simulated_logger(sim, source.logging_policy)
    impressions = sim.simulate_log(logger, source.n_rows, cfg.seed)
    write_artwork_log(artwork_frame(impressions, logger.name), output_dir / "impressions.parquet",
                      impressions.context_names)
    return impressions, sim


def simulated_logger(sim: ArtworkSimulator, name: str) -> Policy:
    """The policy ``source.logging_policy`` names, which serves the simulated impressions."""
    loggers = {"uniform": UniformPolicy, "production": sim.production_policy, "best_artwork": sim.best_artwork_policy}
    if name not in loggers:
        raise ConfigError("source.logging_policy", f"one of {list(loggers)}, got {name!r}")
    return loggers[name]()


def fingerprint(impressions: BanditLog) -> str:
    """SHA-256 over the arrays every estimate reads."""
    digest = hashlib.sha256()
    for array in (impressions.context, impressions.candidates.ids, impressions.candidates.table, impressions.action,
                  impressions.propensity, impressions.reward):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def accuracy_section(cfg: DictConfig, sim: ArtworkSimulator, policies: dict[str, Policy], truth: dict[str, float],
                     n_rows: int, q_hat_of: Callable[[BanditLog], np.ndarray], output_dir: Path) -> list[str]:
    """Each estimator's bias and RMSE over ``cfg.accuracy_repeats`` fresh logs of ``n_rows`` rows from the
    simulator's logger: written to ``estimator_accuracy.csv``; returns the report's Markdown section."""
    logger = simulated_logger(sim, cfg.source.logging_policy)
    truth = {**truth, LOGGING: sim.true_value(logger, n=cfg.source.true_value_requests)}
    log.info("estimator accuracy: %d fresh logs of %d rows", cfg.accuracy_repeats, n_rows)
    accuracy = accuracy_table(repeated_estimates(sim, logger, policies, truth, list(cfg.estimators), n_rows,
                                                 cfg.accuracy_repeats, seed=cfg.seed + 1, q_hat_of=q_hat_of))
    with atomic_path(output_dir / "estimator_accuracy.csv") as tmp:
        accuracy.to_csv(tmp)
    return ["", f"## Estimator accuracy over {cfg.accuracy_repeats} simulated logs", "",
            (f"Each log: {n_rows:,} fresh rows of the logging policy (true value {truth[LOGGING]:.4f}), valued "
             "for the same trained candidates; errors against the true values above."), "", format_accuracy(accuracy)]


def served_policies(cfg: DictConfig, sim: ArtworkSimulator | None, policies: dict[str, Policy],
                    output_dir: Path) -> dict[str, Policy]:
    """With ``save_policies``, write ``policies/<name>.json`` (uniform, and ε-greedy over each trained linear
    candidate) for ``python -m marquee.export policy=...``; returns the written files as candidates to value."""
    if not cfg.save_policies:
        return {}
    if sim is None:
        raise ConfigError("save_policies", "needs source=simulator: a served policy file carries the simulator's "
                                           f"artwork layout, and source.kind is {cfg.source.kind!r}")
    if cfg.source.feature_map != "cross":
        raise ConfigError("save_policies", f"needs source.feature_map=cross, got {cfg.source.feature_map!r}")
    folder = output_dir / "policies"
    folder.mkdir(exist_ok=True)
    files = {"uniform": policy_file(sim, None, "uniform")}
    for name, policy in policies.items():
        if getattr(policy, "posterior", None) is not None:
            files[name] = policy_file(sim, policy, name, cfg.served_epsilon)
    served = {}
    for name, body in files.items():
        log.info("served policy file %s", write_policy_file(body, folder / f"{name}.json"))
        if body["kind"] == "linear":
            served[f"{name}_served"] = ServedPolicy(body, sim)
    return served


def run(cfg: DictConfig) -> dict[str, float]:
    """Train the candidates, value them on the held-out rows, write the report; return the values by name."""
    output_dir = Path(cfg.paths.output_dir)
    with recorded_run(output_dir, cfg, lambda e: failure_reason(e, "bandit")):
        if cfg.accuracy_repeats and cfg.source.kind != "simulator":
            raise ConfigError("accuracy_repeats", "0 unless source=simulator: only a simulator knows true values "
                                                  f"(source.kind is {cfg.source.kind!r})")
        torch.manual_seed(cfg.seed)
        impressions, sim = load_source(cfg, output_dir)
        cut = int(cfg.train_fraction * len(impressions))
        train, evaluated = impressions.take(np.arange(cut)), impressions.take(np.arange(cut, len(impressions)))
        policies: dict[str, Policy] = {name: instantiate(c) for name, c in cfg.policies.items()}
        targets = {}
        for name, policy in policies.items():
            log.info("training %s on %d rows", name, len(train))
            targets[name] = policy.fit(train).action_probabilities(evaluated.context, evaluated.candidates)
        for name, served in served_policies(cfg, sim, policies, output_dir).items():
            policies[name] = served
            targets[name] = served.action_probabilities(evaluated.context, evaluated.candidates)
        feature_map = FEATURE_MAPS[cfg.source.feature_map]

        def q_hat_of(rows: BanditLog) -> np.ndarray:
            return cross_fit_q_hat(lambda: instantiate(cfg.reward_model), rows, feature_map, cfg.reward_folds, cfg.seed)

        report = offline_ab_report(evaluated, targets, q_hat_of(evaluated), list(cfg.estimators), cfg.baseline,
                                   cfg.n_boot, cfg.confidence, cfg.seed)
        text = [f"# Offline A/B test on {impressions.source}", "",
                (f"{len(train):,} rows trained the candidates; {len(evaluated):,} rows valued them "
                 f"(mean reward {evaluated.reward.mean():.4f}). Baseline: {cfg.baseline}."), "",
                format_report(report, cfg.confidence)]
        if sim is not None:
            truth = {name: sim.true_value(p, n=cfg.source.true_value_requests) for name, p in policies.items()}
            report["true_value"] = [truth.get(p, np.nan) for p, _ in report.index]
            text += ["", "True values (the simulator's): " + ", ".join(f"{k} {v:.4f}" for k, v in truth.items())]
            if cfg.accuracy_repeats:
                text += accuracy_section(cfg, sim, policies, truth, len(evaluated), q_hat_of, output_dir)
        with atomic_path(output_dir / "report.csv") as tmp:
            report.to_csv(tmp)
        with atomic_path(output_dir / "report.md") as tmp:
            tmp.write_text("\n".join(text) + "\n")
        with atomic_path(output_dir / "estimates.png") as tmp:
            estimates_figure(report, cfg.confidence).savefig(tmp, format="png", dpi=100)
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
