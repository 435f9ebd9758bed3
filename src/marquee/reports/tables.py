"""The ranked table of groups and their paired tests.

A group's number for a metric is the mean ± sd over its runs (seeds) of what each run's
``metrics.json`` says, nothing recomputed. Its CI, and every paired test, are over users: each user's
per-user metric averaged over the group's runs (all of them evaluated on the same users), bootstrapped
(:func:`~marquee.evaluation.statistics.bootstrap_cis`) or paired with another group's users
(:func:`~marquee.evaluation.statistics.compare_runs`).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from marquee.evaluation.statistics import bootstrap_cis, compare_runs, format_comparison, holm
from marquee.reports.groups import Group
from marquee.reports.protocol import NotComparable, load_per_user

ALL_PAIRS_UP_TO = 4  # groups; above, every group is tested against the best only


def pooled_per_user(group: Group, stage: str, metrics: list[str]) -> pd.DataFrame:
    """Each user's ``metrics`` (those the runs have per user) averaged over the group's runs, indexed by user id."""
    frames = [load_per_user(run.path, stage) for run in group.runs]
    for run, frame in zip(group.runs[1:], frames[1:]):
        other = frame.index.symmetric_difference(frames[0].index)
        if len(other):
            raise NotComparable(f"the runs of group {group.label} were evaluated on different users: "
                                f"'{group.runs[0].path}' and '{run.path}' differ in {len(other)} user(s)")
    columns = [m for m in metrics if all(m in frame.columns for frame in frames)]
    if len(frames) == 1:
        return frames[0][columns]
    return pd.concat([frame[columns] for frame in frames]).groupby(level=0).mean()


def summary_table(groups: list[Group], per_user: dict[str, pd.DataFrame], stage: str, metrics: list[str],
                  n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """One row per group, best first by ``metrics[0]``: ``rank, group, name, runs`` and per metric
    ``<m>`` (mean over runs of ``metrics.json``'s ``<stage>/<m>``), ``<m>_sd`` (NaN for one run) and,
    for per-user metrics, ``<m>_ci_low``/``<m>_ci_high`` over users. ``per_user`` maps a label to its pooled table.
    """
    rows = []
    for group in groups:
        recorded = [run.metrics() for run in group.runs]
        for run, values in zip(group.runs, recorded):
            if f"{stage}/{metrics[0]}" not in values:
                near = sorted(k for k in values if k.startswith(f"{stage}/") and not k.endswith(("_low", "_high")))
                raise NotComparable(f"'{run.path / 'metrics.json'}' has no '{stage}/{metrics[0]}'; it has {near}")
        row = {"group": group.label, "name": group.name, "runs": len(group.runs)}
        pooled = per_user[group.label]
        _, lows, highs = bootstrap_cis(pooled.to_numpy(), n_boot, confidence, seed) if pooled.shape[1] else ([], [], [])
        for metric in metrics:
            values = np.array([r.get(f"{stage}/{metric}", np.nan) for r in recorded], dtype=np.float64)
            row[metric] = float(values.mean())
            row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            j = pooled.columns.get_loc(metric) if metric in pooled.columns else None
            row[f"{metric}_ci_low"] = float(lows[j]) if j is not None else math.nan
            row[f"{metric}_ci_high"] = float(highs[j]) if j is not None else math.nan
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(metrics[0], ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def pairs_to_test(groups: list[Group], best: str) -> list[tuple[Group, Group]]:
    """Every pair in label order (the later against the earlier) for up to 4 groups, else each group against the best."""
    if len(groups) <= ALL_PAIRS_UP_TO:
        return list(combinations(groups, 2))
    top = next(g for g in groups if g.label == best)
    return [(top, g) for g in groups if g is not top]


def paired_table(pairs: list[tuple[Group, Group]], per_user: dict[str, pd.DataFrame], metrics: list[str],
                 n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The :func:`compare_runs` rows of every pair (``b`` against ``a``, ``diff`` = b − a) on the metrics all
    groups have per user, with ``p_holm``: the t-test p-values Holm-adjusted over the pairs, per metric."""
    if not pairs:
        return pd.DataFrame()
    shared = [m for m in metrics if all(m in per_user[g.label].columns for pair in pairs for g in pair)]
    if not shared:
        return pd.DataFrame()
    tables = []
    for a, b in pairs:
        table = compare_runs(per_user[a.label], per_user[b.label], shared, n_boot, confidence, seed, (a.label, b.label))
        tables.append(table.reset_index().assign(a=a.label, b=b.label))
    paired = pd.concat(tables, ignore_index=True)
    paired["p_holm"] = paired.groupby("metric")["p_ttest"].transform(lambda p: holm(p.to_numpy()))
    return paired[["a", "b", *[c for c in paired.columns if c not in ("a", "b")]]]


def mean_sd(mean: float, sd: float) -> str:
    """``0.0712 ± 0.0021``, or the mean alone for one run (no sd)."""
    return f"{mean:.4f}" if math.isnan(sd) else f"{mean:.4f} ± {sd:.4f}"


def summary_text(table: pd.DataFrame, metrics: list[str], confidence: float = 0.95) -> pd.DataFrame:
    """The ranked table as strings: mean ± sd per metric, and the CI over users of the ranking metric."""
    first = metrics[0]
    shown = pd.DataFrame({"rank": table["rank"], "group": table["group"], "name": table["name"],
                          "runs": table["runs"], first: [mean_sd(m, s) for m, s in zip(table[first], table[f"{first}_sd"])],
                          f"{confidence:.0%} CI": [f"[{lo:.4f}, {hi:.4f}]" if not math.isnan(lo) else "-"
                                                   for lo, hi in zip(table[f"{first}_ci_low"], table[f"{first}_ci_high"])]})
    for metric in metrics[1:]:
        shown[metric] = [mean_sd(m, s) if not math.isnan(m) else "-" for m, s in zip(table[metric], table[f"{metric}_sd"])]
    return shown


def pairs_text(paired: pd.DataFrame) -> pd.DataFrame:
    """Paired-test rows as strings, one per pair and metric (``B vs A``: diff = B − A)."""
    return pd.DataFrame({
        "pair": [f"{b} vs {a}" for a, b in zip(paired["a"], paired["b"])],
        "metric": paired["metric"],
        "users": paired["n_users"].astype(int),
        "diff": paired["diff"].map("{:+.4f}".format),
        f"{paired['confidence'].iloc[0]:.0%} CI": [f"[{lo:+.4f}, {hi:+.4f}]"
                                                   for lo, hi in zip(paired["diff_low"], paired["diff_high"])],
        "rel": paired["relative"].map("{:+.1%}".format),
        "p(boot)": paired["p_bootstrap"].map("{:.3g}".format),
        "p(t)": paired["p_ttest"].map("{:.3g}".format),
        "p(t, Holm)": paired["p_holm"].map("{:.3g}".format),
        "d_z": paired["cohens_d"].map("{:+.3f}".format),
    })


def format_report_tables(table: pd.DataFrame, paired: pd.DataFrame, metrics: list[str], stage: str,
                         confidence: float = 0.95) -> str:
    """The text ``marquee.compare`` prints: the ranked table, then the paired tests (all metrics for one pair)."""
    lines = [(f"{len(table)} group(s) on {stage}, ranked by {metrics[0]}: mean ± sd over each group's runs "
              f"(their metrics.json); {confidence:.0%} CI over users, each user averaged over the group's runs"),
             summary_text(table, metrics, confidence).to_string(index=False)]
    if paired.empty:
        return "\n".join(lines)
    lines.append("")
    pair_keys = paired[["a", "b"]].drop_duplicates()
    if len(pair_keys) == 1:
        a, b = pair_keys.iloc[0]
        lines.append(format_comparison(paired.set_index("metric"), (a, b)))
    else:
        shown = metrics[0] if (paired["metric"] == metrics[0]).any() else paired["metric"].iloc[0]
        lines.append(f"paired tests on {shown} over users averaged over each group's runs (X vs Y: diff = X - Y)")
        lines.append(pairs_text(paired[paired["metric"] == shown]).drop(columns="metric").to_string(index=False))
    return "\n".join(lines)
