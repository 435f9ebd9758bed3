# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Reading a hyperparameter study
#
# `python -m marquee.sweep hparams_search=NAME n_trials=N` leaves a study folder: `study.json` (name, metric,
# direction, search space), `optuna.journal` (the Optuna storage), `trials.csv`, one run folder per trial under
# `trials/` (validation only), the frozen winner in `best.yaml`, and the winner re-run once per seed under
# `seeds/seed_<s>/` (validation and test). This notebook loads the study with Optuna, draws how the search went
# and what each parameter did, and reads the winner's test metrics over its seeds.
#
# `MARQUEE_NB_STUDY` names the study folder; without it the newest one under `logs/sweep/` is read.

# %%
import json
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pandas as pd
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState


def newest_study(root: Path) -> Path:
    """The most recently written study folder under ``root`` (``<root>/<name>/<time>/study.json``)."""
    found = sorted(root.glob("*/*/study.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no study.json under {root}/*/*/: run python -m marquee.sweep first, "
                                "or set MARQUEE_NB_STUDY to a study folder")
    return found[-1].parent


STUDY_DIR = Path(os.environ.get("MARQUEE_NB_STUDY") or newest_study(Path("logs/sweep")))
OUT = Path(os.environ.get("MARQUEE_NB_OUT", "logs/notebooks/sweep_analysis"))
TEST_METRICS = ["ndcg@10", "recall@10", "recall@50", "mrr@10"]  # read from each seed's metrics.json
OUT.mkdir(parents=True, exist_ok=True)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the matplotlib plots

# %% [markdown]
# ## The study

# %%
meta = json.loads((STUDY_DIR / "study.json").read_text())
storage = JournalStorage(JournalFileBackend(str(STUDY_DIR / meta["storage"])))
study = optuna.load_study(study_name=meta["study_name"], storage=storage)
states = pd.Series([t.state.name for t in study.trials]).value_counts()
print(f"study {meta['study_name']!r} in {STUDY_DIR}: {meta['direction']} {meta['metric']}")
print("trials: " + ", ".join(f"{n} {state.lower()}" for state, n in states.items()))
print(f"best trial {study.best_trial.number}: {meta['metric']} = {study.best_value:.6f} with {study.best_params}")
print("search space:\n" + yaml.safe_dump(meta["search_space"], sort_keys=False))

# %% [markdown]
# ## How the search went
#
# Each complete trial's validation value in the order the trials started, and the best so far. A study whose
# best-so-far line is still climbing at the end wanted more trials.

# %%
complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
history = pd.DataFrame({"number": [t.number for t in complete], "value": [t.value for t in complete]})
history["best_so_far"] = history["value"].cummax() if meta["direction"] == "maximize" else history["value"].cummin()
history.to_csv(OUT / "history.csv", index=False)
ax = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=meta["metric"])
ax.figure.set_size_inches(7, 3.5)
ax.figure.savefig(OUT / "history.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## What each parameter did
#
# One panel per searched key: every complete trial's value against the value it drew (colour: trial number,
# later trials darker). A flat cloud says the key barely mattered within its range; a cloud piled against
# one end of the range says the range should move.

# %%
axes = optuna.visualization.matplotlib.plot_slice(study, target_name=meta["metric"])
figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
figure.set_size_inches(3.2 * len(study.best_params), 3.2)
figure.savefig(OUT / "params.png", dpi=100, bbox_inches="tight")

# the same data as a table: the trials.csv the sweep wrote
trials = pd.read_csv(STUDY_DIR / "trials.csv")
print(trials.drop(columns=["run_dir"]).to_string(index=False))

# %% [markdown]
# ## The winner over seeds
#
# A trial's validation value is one draw, and it was *chosen* for being high: the winner's seeds, re-run with
# the same config, show what it is worth (validation, to see how much of the trial's edge was luck) and the
# test metrics that no trial ever read.

# %%
best = yaml.safe_load((STUDY_DIR / "best.yaml").read_text())
seeds = {}
for path in sorted((STUDY_DIR / "seeds").glob("seed_*/metrics.json")):
    metrics = json.loads(path.read_text())
    seeds[int(path.parent.name.removeprefix("seed_"))] = {
        meta["metric"]: metrics.get(meta["metric"]), **{f"test/{m}": metrics.get(f"test/{m}") for m in TEST_METRICS}}
seed_table = pd.DataFrame.from_dict(seeds, orient="index").rename_axis("seed").sort_index()
seed_table.to_csv(OUT / "seeds.csv")
print(f"best trial {best['trial']}: {meta['metric']} = {best['value']:.6f}; its {len(seed_table)} seeds:")
print(seed_table.to_string(float_format=lambda v: f"{v:.6f}"))
for column in seed_table.columns:
    print(f"{column}: {seed_table[column].mean():.6f} ± {seed_table[column].std(ddof=1):.6f} (mean ± sd)")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
test_columns = [c for c in seed_table.columns if c.startswith("test/")]
ax.bar(test_columns, seed_table[test_columns].mean(), yerr=seed_table[test_columns].std(ddof=1), capsize=4)
for column in test_columns:  # each seed as a point over its bar
    ax.plot([column] * len(seed_table), seed_table[column], "k.", alpha=0.6)
ax.set_title(f"{meta['study_name']}: winner (trial {best['trial']}) over {len(seed_table)} seeds, mean ± sd")
fig.tight_layout()
fig.savefig(OUT / "seeds.png", dpi=100)
