"""The offline A/B test: several candidate policies valued on one log, each with CIs and a paired difference.

Every policy and estimator is bootstrapped over the same row resamples, so a difference between two
policies (or against the logging policy, whose value is the log's mean reward) has a paired CI that is
far narrower than the two separate intervals suggest. :func:`estimates_figure` draws the report as OBP
users know it: each estimator's value with its CI, beside the true value where a simulator knows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

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


def estimates_figure(report: pd.DataFrame, confidence: float = 0.95, truth_label: str = "true value") -> Figure:
    """One panel per candidate policy of :func:`offline_ab_report`: each estimator's value with its CI as an
    error bar, the policy's ``true_value`` (a column only simulated logs have) as a dashed line labelled
    ``truth_label``, and the logging policy's on-policy value as a dotted one. Panels share the value axis."""
    policies = [p for p in report.index.unique("policy") if p != LOGGING]
    if not policies:
        raise ValueError(f"the report values no candidate policy, only {list(report.index)}")
    logged = report.loc[(LOGGING, "on-policy"), "value"] if (LOGGING, "on-policy") in report.index else None
    width = max(len(report.loc[p]) for p in policies)  # estimators in the widest panel
    fig = Figure(figsize=(1.2 + (0.9 + 0.45 * width) * len(policies), 3.8), layout="constrained")
    axes = fig.subplots(1, len(policies), sharey=True, squeeze=False)[0]
    for ax, policy in zip(axes, policies):
        rows = report.loc[policy]  # indexed by estimator
        x = np.arange(len(rows))
        value, low, high = (rows[c].to_numpy(np.float64) for c in ("value", "ci_low", "ci_high"))
        ax.errorbar(x, value, yerr=np.abs(np.stack([value - low, high - value])), fmt="o", capsize=4,
                    label=f"estimate [{confidence:.0%} CI]")
        true_value = rows["true_value"].iloc[0] if "true_value" in rows else np.nan
        if np.isfinite(true_value):
            ax.axhline(true_value, color="black", linestyle="--", linewidth=1, label=truth_label)
        if logged is not None:
            ax.axhline(logged, color="grey", linestyle=":", linewidth=1, label="logging policy (on-policy)")
        ax.set_xticks(x, list(rows.index), rotation=45, ha="right")
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(str(policy))
    axes[0].set_ylabel("estimated value (mean reward)")
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    axes[0].legend(legend.values(), legend.keys(), fontsize="small", loc="best")  # one legend, every panel's entries
    return fig
