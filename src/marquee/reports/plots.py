"""The report's figures: accuracy against coverage per group, and a sweep's history and parameters (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from marquee.data.atomic import atomic_path
from marquee.reports.sweeps import Sweep

LOG_SCALE_SPAN = 100.0  # a positive parameter spanning more than 2 decades is drawn on a log axis


def save(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as PNG atomically and release it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def accuracy_vs_coverage(summary: pd.DataFrame, metric: str, coverage: str) -> Figure:
    """Each group a point at (``coverage``, ``metric``) with its sd over seeds as error bars, labelled by group."""
    figure, ax = plt.subplots(figsize=(6.4, 4.8))
    x, y = summary[coverage], summary[metric]
    ax.errorbar(x, y, xerr=summary[f"{coverage}_sd"].fillna(0), yerr=summary[f"{metric}_sd"].fillna(0),
                fmt="o", capsize=3)
    for label, xi, yi in zip(summary["group"], x, y):
        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel(f"{coverage} (mean ± sd over seeds)")
    ax.set_ylabel(f"{metric} (mean ± sd over seeds)")
    ax.set_title(f"{metric} against {coverage}")
    ax.grid(alpha=0.3)
    return figure


def optimization_history(sweep: Sweep) -> Figure:
    """Each complete trial's value by trial number, pruned trials faded, and the best value so far as a step line."""
    figure, ax = plt.subplots(figsize=(7, 4.5))
    done = sweep.complete()
    pruned = sweep.trials[(sweep.trials["state"] == "PRUNED") & sweep.trials["value"].notna()]
    ax.scatter(done["number"], done["value"], s=18, label="complete")
    if len(pruned):
        ax.scatter(pruned["number"], pruned["value"], s=14, marker="x", color="grey", alpha=0.6,
                   label="pruned (last reported)")
    if len(done):
        best = done["value"].cummax() if sweep.direction == "maximize" else done["value"].cummin()
        ax.step(done["number"], best, where="post", color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(sweep.metric)
    ax.set_title(f"{sweep.name}: optimization history ({sweep.direction})")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return figure


def log_scale(sweep: Sweep, param: str, values: pd.Series) -> bool:
    """Whether ``param`` is drawn on a log axis: searched on a log scale, or positive and spanning over 2 decades."""
    if (sweep.search_space.get(param) or {}).get("log"):
        return True
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.isna().any() or numeric.empty or numeric.min() <= 0:
        return False
    return numeric.max() / numeric.min() > LOG_SCALE_SPAN


def parameters(sweep: Sweep) -> Figure:
    """One panel per searched parameter: each complete trial's value against the parameter's value."""
    params = sweep.params
    columns = min(3, max(1, len(params)))
    rows = max(1, math.ceil(len(params) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    done = sweep.complete()
    for ax, param in zip(axes.flat, params):
        values = done[f"params_{param}"]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            ax.scatter(numeric, done["value"], s=18)
            if log_scale(sweep, param, values):
                ax.set_xscale("log")
        else:  # categorical: one column of points per choice
            choices = sorted(values.astype(str).unique())
            positions = values.astype(str).map({c: i for i, c in enumerate(choices)})
            ax.scatter(positions + np.random.default_rng(0).uniform(-0.1, 0.1, len(positions)), done["value"], s=18)
            ax.set_xticks(range(len(choices)), choices)
        ax.set_xlabel(param)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params):]:
        ax.set_visible(False)
    figure.suptitle(f"{sweep.name}: {sweep.metric} against each parameter (complete trials)")
    figure.tight_layout()
    return figure
