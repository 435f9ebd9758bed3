"""The offline A/B test: several candidate policies valued on one log, each with CIs and a paired difference.

Every policy and estimator is bootstrapped over the same row resamples, so a difference between two
policies (or against the logging policy, whose value is the log's mean reward) has a paired CI that is
far narrower than the two separate intervals suggest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from marquee.bandits.estimators import Terms, bootstrap_values, diagnostics, estimator_terms
from marquee.bandits.logs import BanditLog

LOGGING = "logging policy"


def offline_ab_report(log: BanditLog, targets: Mapping[str, np.ndarray], q_hat: np.ndarray | None = None,
                      estimators: Sequence[str] = ("ips", "snips", "dm", "dr", "dr_os"), baseline: str = LOGGING,
                      n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per (policy, estimator): value with CI, difference from ``baseline`` with paired CI, diagnostics.

    ``targets`` maps a policy name to its ``(n, K)`` action probabilities on the log's rows. ``baseline``
    is :data:`LOGGING` (the log's own mean reward) or one of the targets, compared estimator by estimator.
    """
    if baseline != LOGGING and baseline not in targets:
        raise ValueError(f"baseline {baseline!r} is neither {LOGGING!r} nor one of the targets {list(targets)}")
    if q_hat is None:
        estimators = [e for e in estimators if e in ("replay", "ips", "snips")]
    on_policy = Terms(log.reward, np.ones(len(log)))
    terms: dict[tuple[str, str], Terms] = {(LOGGING, "on-policy"): on_policy}
    for name, target in targets.items():
        for estimator, t in estimator_terms(log, target, q_hat, estimators).items():
            terms[(name, estimator)] = t
    keys = list(terms)
    boot = bootstrap_values([terms[k] for k in keys], n_boot, seed)  # (n_boot, m), shared resamples
    alpha = 1.0 - confidence
    rows = []
    for j, (policy, estimator) in enumerate(keys):
        # the same estimator's value of the baseline; the logging row has none against a named baseline
        base_key = (LOGGING, "on-policy") if baseline == LOGGING else (baseline, estimator)
        base = keys.index(base_key) if base_key in terms else None
        diff = boot[:, j] - boot[:, base] if base is not None else np.full(len(boot), np.nan)
        t = terms[(policy, estimator)]
        low, high = np.nanquantile(boot[:, j], [alpha / 2, 1 - alpha / 2])
        diff_low, diff_high = np.nanquantile(diff, [alpha / 2, 1 - alpha / 2]) if base is not None else (np.nan,) * 2
        rows.append({
            "policy": policy, "estimator": estimator, "value": t.value, "ci_low": low, "ci_high": high,
            "diff": t.value - terms[base_key].value if base is not None else np.nan,
            "diff_low": diff_low, "diff_high": diff_high,
            # share of resamples on which the policy does not beat the baseline: a one-sided bootstrap p-value
            "p_not_better": float(np.mean(diff <= 0)) if base not in (None, j) else np.nan,
            **diagnostics(t.weights),
        })
    return pd.DataFrame(rows).set_index(["policy", "estimator"])


def format_report(report: pd.DataFrame, confidence: float = 0.95) -> str:
    """A Markdown table of :func:`offline_ab_report`'s rows."""
    level = f"{confidence:.0%}"
    lines = [f"| policy | estimator | value [{level} CI] | vs baseline [{level} CI] | P(not better) | ESS | max weight |",
             "|---|---|---|---|---|---|---|"]
    for (policy, estimator), r in report.iterrows():
        ess = "" if np.isnan(r["ess"]) else f"{r['ess']:,.0f}"
        max_w = "" if np.isnan(r["max_weight"]) else f"{r['max_weight']:.1f}"
        p = "" if np.isnan(r["p_not_better"]) else f"{r['p_not_better']:.3f}"
        diff = "" if np.isnan(r["diff"]) else f"{r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"
        lines.append(f"| {policy} | {estimator} | {r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | "
                     f"{diff} | {p} | {ess} | {max_w} |")
    return "\n".join(lines)
