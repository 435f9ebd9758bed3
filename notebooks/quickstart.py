# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # marquee quickstart: the data, two models, one paired comparison
#
# Loads MovieLens-100K through marquee's own configs, prints the data summary, fits EASE (closed form)
# and trains a small SASRec, then compares the two on the same test users with paired-bootstrap CIs:
# what `python -m marquee.train model=ease`, `python -m marquee.train experiment=sasrec_ml100k` and
# `python -m marquee.compare RUN_A RUN_B` do from the shell.
#
# Every setting below can be overridden by an environment variable, so the test suite runs this
# notebook on tiny settings (`tests/test_notebooks.py`). The data is read from `$MARQUEE_DATA_DIR`
# (or `./data`; ML-100K is fetched there on first use).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from hydra import compose, initialize_config_dir

from marquee import train
from marquee.compare import compare_run_dirs
from marquee.config_dir import CONFIG_DIR, unique_dir
from marquee.data.pipeline import prepare_split
from marquee.data.summary import format_table, split_summary
from marquee.evaluation.statistics import format_comparison

DATA = os.environ.get("MARQUEE_NB_DATA", "ml100k")  # a data config: configs/data/<name>.yaml
EPOCHS = int(os.environ.get("MARQUEE_NB_EPOCHS", "5"))  # SASRec's training epochs
# more Hydra overrides of SASRec, space-separated (the test shrinks it: "model.layers=1 datamodule.windows=last")
SASREC = os.environ.get("MARQUEE_NB_SASREC", "").split()
N_BOOT = int(os.environ.get("MARQUEE_NB_BOOT", "1000"))  # bootstrap draws of every CI
THREADS = os.environ.get("MARQUEE_NB_THREADS", "null")  # torch CPU threads (null: torch's default, one per core)
# runs, table and figure go here; a folder that exists gets a fresh sibling (<name>_2, ...), as runs do
OUT = Path(unique_dir(os.environ.get("MARQUEE_NB_OUT", "logs/notebooks/quickstart")))
METRICS = ["ndcg@10", "recall@10", "recall@50", "mrr@10"]


def config(run_name: str, *overrides: str):
    """The composed `train` config with these overrides, writing its run folder to OUT/<run_name>."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[f"data={DATA}", f"paths.output_dir={OUT / run_name}",
                                           f"evaluation.n_boot={N_BOOT}", "evaluation.progress=false",
                                           f"torch_threads={THREADS}", *overrides])


# %% [markdown]
# ## The data
#
# One `InteractionLog` split leave-one-out: per user the last positive event is test, the second last
# validation. The summary is what every run writes as `data_summary.json`.

# %%
split = prepare_split(config("summary").data)
summary = split_summary(split)
print(format_table(summary))

# %% [markdown]
# ## Two models through the one training path
#
# `train.run(cfg)` is the body of `python -m marquee.train`: it fits the model, evaluates validation and
# test over the full catalog (seen items masked) and writes the run folder (`metrics.json`, per-user
# Parquet files, `run.json`). SASRec here is the `sasrec_ml100k` experiment for `EPOCHS` epochs.

# %%
ease = train.run(config("ease", "model=ease"))
sasrec = train.run(config("sasrec", "experiment=sasrec_ml100k", f"trainer.max_epochs={EPOCHS}",
                          "+trainer.enable_progress_bar=false", "~callbacks.progress_bar", *SASREC))
for name, metrics in (("EASE", ease), ("SASRec", sasrec)):
    print(f"{name} test/ndcg@10 = {metrics['test/ndcg@10']:.6f}  "
          f"[{metrics['test/ndcg@10_ci_low']:.6f}, {metrics['test/ndcg@10_ci_high']:.6f}]")

# %%
rows = []
for name, metrics in (("EASE", ease), ("SASRec", sasrec)):
    for metric in METRICS:
        key = f"test/{metric}"
        rows.append({"model": name, "metric": metric, "value": metrics[key],
                     "ci_low": metrics[f"{key}_ci_low"], "ci_high": metrics[f"{key}_ci_high"]})
table = pd.DataFrame(rows)
fig, ax = plt.subplots(figsize=(7, 3.5))
width = 0.38
for i, (name, group) in enumerate(table.groupby("model", sort=False)):
    x = [j + (i - 0.5) * width for j in range(len(group))]
    errors = [group["value"] - group["ci_low"], group["ci_high"] - group["value"]]
    ax.bar(x, group["value"], width, yerr=errors, capsize=3, label=name)
ax.set_xticks(range(len(METRICS)), METRICS)
ax.set_ylabel("test value (95% CI)")
ax.set_title(f"{DATA}: EASE and SASRec ({EPOCHS} epochs)")
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "test_metrics.png", dpi=100)

# %% [markdown]
# ## The paired comparison
#
# `compare_run_dirs` is `python -m marquee.compare`: it checks that both runs used the same data, split
# and evaluation protocol, pairs their per-user test metrics and reports each difference (SASRec − EASE)
# with its paired-bootstrap CI and p-values.

# %%
comparison = compare_run_dirs(OUT / "ease", OUT / "sasrec", metrics=METRICS, n_boot=N_BOOT)
print(format_comparison(comparison))
comparison.to_csv(OUT / "compare.csv")
print(f"run folders: {(OUT / 'ease').resolve()} and {(OUT / 'sasrec').resolve()}")
