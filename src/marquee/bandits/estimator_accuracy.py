"""How accurate each off-policy estimator is where the truth is known: the same estimate on many simulated logs.

OBP's benchmark protocol (Saito et al. 2020): draw ``repeats`` fresh logs from the logging policy, value every
(fixed, already trained) target policy on each with every estimator, and compare with the simulator's true
value. Per (policy, estimator): bias, standard deviation and RMSE over the repeats, the RMSE relative to the
true value, and OBP's "relative-ee", the mean of ``|estimate - truth| / truth``. The logging policy's own
on-policy mean is a row too: its bias is near zero by construction, a check on the truth itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from marquee.bandits.estimators import NEEDS_REWARD_MODEL, estimator_terms
from marquee.bandits.logs import BanditLog
from marquee.bandits.policies import Policy
from marquee.bandits.report import LOGGING
from marquee.bandits.simulator import ArtworkSimulator

QHat = Callable[[BanditLog], np.ndarray]  # a reward model's (n, K) predictions for a log's candidates


def repeated_estimates(sim: ArtworkSimulator, logger: Policy, targets: Mapping[str, Policy],
                       truth: Mapping[str, float], estimators: Sequence[str], n_rows: int, repeats: int,
                       seed: int = 1, q_hat_of: QHat | None = None) -> pd.DataFrame:
    """One row per (repeat, policy, estimator): the estimate on the log of seed ``seed + repeat`` and the truth.

    ``truth`` maps :data:`LOGGING` and every target's name to its true value. ``q_hat_of`` fits the reward
    model on each log (cross-fitted, as the report does); without it the estimators that need one are left out.
    """
    missing = [name for name in (LOGGING, *targets) if name not in truth]
    if missing:
        raise ValueError(f"no true value for {missing}; truth has {list(truth)}")
    if q_hat_of is None:
        estimators = [e for e in estimators if e not in NEEDS_REWARD_MODEL]
    rows = []
    for repeat in range(repeats):
        log = sim.simulate_log(logger, n_rows, seed + repeat)
        rows.append({"repeat": repeat, "policy": LOGGING, "estimator": "on-policy",
                     "estimate": float(log.reward.mean()), "true_value": truth[LOGGING]})
        needs_model = q_hat_of is not None and any(e in NEEDS_REWARD_MODEL for e in estimators)
        q_hat = q_hat_of(log) if needs_model else None
        for name, policy in targets.items():
            target = policy.action_probabilities(log.context, log.candidates)
            for estimator, terms in estimator_terms(log, target, q_hat, estimators).items():
                rows.append({"repeat": repeat, "policy": name, "estimator": estimator, "estimate": terms.value,
                             "true_value": truth[name]})
    return pd.DataFrame(rows)


def accuracy_table(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per (policy, estimator) of :func:`repeated_estimates`: repeats, true value, mean estimate, bias, sd, RMSE,
    relative RMSE (RMSE / truth) and relative-ee (mean |error| / truth)."""
    error = estimates["estimate"] - estimates["true_value"]
    frame = estimates.assign(error=error, squared=error**2, relative=error.abs() / estimates["true_value"])
    grouped = frame.groupby(["policy", "estimator"], sort=False)
    table = pd.DataFrame({
        "repeats": grouped.size(),
        "true_value": grouped["true_value"].first(),
        "mean_estimate": grouped["estimate"].mean(),
        "bias": grouped["error"].mean(),
        "sd": grouped["estimate"].std(ddof=1),
        "rmse": np.sqrt(grouped["squared"].mean()),
        "relative_ee": grouped["relative"].mean(),
    })
    table.insert(table.columns.get_loc("rmse") + 1, "relative_rmse", table["rmse"] / table["true_value"])
    return table


def format_accuracy(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`accuracy_table`'s rows."""
    lines = ["| policy | estimator | true value | mean estimate | bias | sd | RMSE | relative RMSE | relative-ee |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (policy, estimator), r in table.iterrows():
        lines.append(f"| {policy} | {estimator} | {r['true_value']:.4f} | {r['mean_estimate']:.4f} | "
                     f"{r['bias']:+.4f} | {r['sd']:.4f} | {r['rmse']:.4f} | {r['relative_rmse']:.3f} | "
                     f"{r['relative_ee']:.3f} |")
    return "\n".join(lines)
