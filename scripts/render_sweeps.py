"""Write experiments/sweeps/README.md and its plots from the committed study files only.

    python scripts/render_sweeps.py          # (also: python scripts/bench_sweeps.py render)

Reads each study's study.json, trials.csv and best.yaml, the winner's and the default config's seed
folders (metrics.json, per_user_test.parquet) and workers.jsonl; prints nothing it did not read there.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "sweeps"
METRIC = "ndcg@10"


def seed_runs(folder: Path) -> list[Path]:
    """Seed folders with a finished evaluation (metrics.json holding test metrics), in seed order."""
    runs = [p for p in sorted(folder.glob("seed_*")) if (p / "metrics.json").is_file()]
    return [p for p in runs if f"test/{METRIC}" in json.loads((p / "metrics.json").read_text())]


def seed_summary(runs: list[Path]) -> tuple[list[float], pd.Series]:
    """Each seed's test metric (from metrics.json) and the per-user metric averaged over the seeds."""
    values = [json.loads((p / "metrics.json").read_text())[f"test/{METRIC}"] for p in runs]
    per_user = pd.concat([pd.read_parquet(p / "per_user_test.parquet").set_index("user_id")[METRIC] for p in runs],
                         axis=1).mean(axis=1)
    return values, per_user


def plot_history(trials: pd.DataFrame, direction: str, path: Path) -> None:
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    best = done["value"].cummax() if direction == "maximize" else done["value"].cummin()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.scatter(done["number"], done["value"], s=18, label="completed trial")
    ax.step(done["number"], best, where="post", color="C1", label="best so far")
    pruned = trials[trials["state"] == "PRUNED"]
    if len(pruned):
        ax.scatter(pruned["number"], [done["value"].min()] * len(pruned), marker="x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"val/{METRIC}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_params(trials: pd.DataFrame, path: Path) -> None:
    done = trials[trials["state"] == "COMPLETE"]
    params = [c for c in trials.columns if c.startswith("params_")]
    fig, axes = plt.subplots(1, len(params), figsize=(2.6 * len(params), 2.8), sharey=True, squeeze=False)
    for ax, column in zip(axes[0], params):
        x = done[column]
        numeric = pd.api.types.is_numeric_dtype(x)
        ax.scatter(x if numeric else x.astype(str), done["value"], s=14)
        if numeric and x.min() > 0 and x.max() / x.min() > 100:
            ax.set_xscale("log")
        ax.set_xlabel(column.removeprefix("params_"), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel(f"val/{METRIC}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def training_budget(overrides: list[str]) -> str:
    """Epoch cap and early-stopping patience of the study's trials, as its committed configs compose them."""
    from marquee.sweeps.study import compose_train

    cfg = compose_train([*overrides, "paths.output_dir=unused"])
    stopping = (cfg.get("callbacks") or {}).get("early_stopping")
    patience = f"early stopping on {stopping.monitor}, patience {stopping.patience}" if stopping else "no early stopping"
    return f"each trial at most {cfg.trainer.max_epochs} epochs, {patience}"


def study_section(folder: Path) -> list[str]:
    study = json.loads((folder / "study.json").read_text())
    trials = pd.read_csv(folder / "trials.csv")
    n_trials = study["spec"]["n_trials"]
    counts = trials["state"].value_counts().to_dict()
    lines = [f"## {study['study_name']}", "",
             (f"Search space (`configs/hparams_search/{study['study_name']}.yaml`), TPE seeded "
             f"{study['spec']['sampler_seed']}, median pruning {study['spec']['pruner']}, objective "
             f"`{study['metric']}` ({study['direction']}). Shared overrides: `{' '.join(study['overrides'])}`; "
             f"{training_budget(study['overrides'])}."), "",
             f"Trials so far: {len(trials)} of {n_trials} (" + ", ".join(f"{v} {k.lower()}" for k, v in
                                                                     sorted(counts.items())) + "); "
             f"trial time {duration(trials['duration_s'].sum())} in all.", ""]
    if "optimize" in study:
        lines += [(f"Wall time of the optimization: {duration(study['optimize']['wall_seconds'])} with "
                  f"{study['optimize']['workers']} worker(s)."), ""]
    if (trials["state"] == "COMPLETE").any():
        plot_history(trials, study["direction"], folder / "optimization_history.png")
        plot_params(trials, folder / "params.png")
        name = folder.name
        lines += [f"![optimization history]({name}/optimization_history.png)", "",
                  f"![each hyperparameter]({name}/params.png)", ""]
    best_file = folder / "best.yaml"
    if best_file.is_file():
        best = yaml.safe_load(best_file.read_text())
        params = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in best["params"].items())
        lines += [(f"Frozen winner (`{name}/best.yaml`): trial {best['trial']}, {best['metric']} "
                  f"{best['value']:.4f}; {params}."), ""]
    else:
        lines += ["No winner is frozen yet: the study has not reached its trial count.", ""]
    lines += seeds_section(folder)
    return lines


def seeds_section(folder: Path) -> list[str]:
    winner, default = seed_runs(folder / "seeds"), seed_runs(folder / "default")
    if not winner or not default:
        return [(f"Test, read once after freezing: not yet (winner seeds run: {len(winner)}, default seeds run: "
                f"{len(default)})."), ""]
    a_values, a_users = seed_summary(default)
    b_values, b_users = seed_summary(winner)
    users = a_users.index.intersection(b_users.index)
    diff = (b_users[users] - a_users[users]).to_numpy()
    rng = np.random.default_rng(0)
    boots = [rng.choice(diff, len(diff)).mean() for _ in range(1000)]
    p = stats.ttest_rel(b_users[users], a_users[users]).pvalue

    def row(label: str, values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        return f"| {label} | {len(values)} | {statistics.mean(values):.4f} ± {sd:.4f} | " + \
            ", ".join(f"{v:.4f}" for v in values) + " |"

    return ["Test NDCG@10 (full catalog, seen masked), each config over its seeds:", "",
            "| config | seeds | mean ± sd | every seed |", "|---|---|---|---|",
            row("default", a_values), row("tuned (frozen winner)", b_values), "",
            (f"Paired over {len(users)} test users (each user's NDCG@10 averaged over the seeds): tuned − default "
            f"{diff.mean():+.4f} [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}] "
            f"(95% bootstrap), paired t-test p = {p:.3g}."), ""]


def workers_section() -> list[str]:
    path = OUT / "workers.jsonl"
    if not path.is_file():
        return ["## One worker or two", "", "Not measured yet (`python scripts/bench_sweeps.py workers`).", ""]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by = {w: [r["wall_seconds"] for r in rows if r["workers"] == w] for w in sorted({r["workers"] for r in rows})}
    lines = ["## One worker or two", "",
             (f"The same {rows[0]['trials']}-trial `{rows[0]['study']}` study, run {len(by[1])} times with each "
             f"worker count, interleaved, on {rows[0]['machine']} (threads per worker: 2 for one worker, 1 each "
             "for two):"), "", "| workers | wall s, each run | mean |", "|---|---|---|"]
    lines += [f"| {w} | {', '.join(f'{s:.1f}' for s in v)} | {statistics.mean(v):.1f} |" for w, v in by.items()]
    if 1 in by and 2 in by:
        ratios = [a / b for a, b in zip(by[1], by[2])]
        lines += ["", f"Ratio one/two workers per interleaved pair: {', '.join(f'{r:.2f}' for r in ratios)}."]
    return [*lines, ""]


def render(out: Path = OUT) -> Path:
    lines = ["# Hyperparameter studies", "",
             ("Written by `python scripts/render_sweeps.py` from the files in this folder; the studies run with "
             "`python scripts/bench_sweeps.py study sasrec` (and `two_tower`), the default configs' seeds with "
             "`python scripts/bench_sweeps.py default sasrec`. Protocol: trials are chosen on validation only "
             "(they never evaluate test); the winner is frozen to `best.yaml`, then it and the default config "
             "run with seeds 0-4 and only those runs read test."), ""]
    for folder in sorted(p for p in out.iterdir() if (p / "study.json").is_file()):
        lines += study_section(folder)
    lines += workers_section()
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
