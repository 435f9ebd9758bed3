# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Off-policy evaluation on the Open Bandit Dataset
#
# The Open Bandit Dataset (ZOZOTOWN, Saito et al. 2020) logged the same fashion slate twice: once under a
# uniform-random policy and once under Bernoulli Thompson sampling (BTS). Each row is one item shown at one of
# three positions, with the logger's propensity and whether the member clicked. This notebook looks at the two
# logs and their propensities, then runs `python -m marquee.bandit source=obd policies=obd`: candidate policies
# trained on the first half of the random log, valued on the second half by every off-policy estimator with
# bootstrap CIs. The BTS policy is one of the candidates, so its estimates can be held against what BTS
# actually earned in its own log (OBP's classic check).
#
# Every setting below can be overridden by an environment variable (the test suite runs this on tiny settings).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from marquee import bandit
from marquee.bandits.obd import load_obd
from marquee.bandits.report import LOGGING, estimates_figure
from marquee.config_dir import CONFIG_DIR, unique_dir

DATA_DIR = Path(os.environ.get("MARQUEE_DATA_DIR", "data"))  # holds obd/<random|bts>/<campaign>/
CAMPAIGN = os.environ.get("MARQUEE_NB_CAMPAIGN", "all")  # all | men | women
N_BOOT = int(os.environ.get("MARQUEE_NB_BOOT", "1000"))  # bootstrap draws of every CI
ESTIMATORS = os.environ.get("MARQUEE_NB_ESTIMATORS", "ips,snips,dm,dr,switch_dr,dr_os").split(",")
# more Hydra overrides of the bandit run, space-separated (the test drops the neural candidate for speed)
EXTRA = os.environ.get("MARQUEE_NB_BANDIT", "").split()
# the run and the figures go here; a folder that exists gets a fresh sibling (<name>_2, ...), as runs do
OUT = Path(unique_dir(os.environ.get("MARQUEE_NB_OUT", "logs/notebooks/artwork_bandit")))

# %% [markdown]
# ## The two logs
#
# `load_obd` reads a campaign's log into a `BanditLog`: the context is the position one-hot plus the user
# features, every one of the campaign's items is a candidate on every row.

# %%
logs = {name: load_obd(DATA_DIR / "obd", name, CAMPAIGN) for name in ("random", "bts")}
summary = pd.DataFrame({
    name: {"rows": len(log), "items": log.candidates.ids.shape[1], "context features": log.context.shape[1],
           "click rate": log.reward.mean(), "propensity min": log.propensity.min(),
           "propensity median": np.median(log.propensity), "propensity max": log.propensity.max(),
           "1 / propensity max": (1 / log.propensity).max()}
    for name, log in logs.items()})
print(summary.to_string(float_format=lambda v: f"{v:.6g}"))
summary.to_csv(OUT / "logs.csv")

# %% [markdown]
# ## Propensities
#
# The random logger shows every item with the same probability, 1 / items, at every position. BTS
# concentrates on the items its posterior favours: a few propensities near 1, a long tail of tiny ones, and
# with them large importance weights for any target policy that likes the items BTS rarely showed.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, (name, log) in zip(axes, logs.items()):
    ax.hist(log.propensity, bins=np.logspace(-4, 0, 41))
    ax.set_xscale("log")
    ax.set_title(f"{name} logger ({len(log):,} rows)")
    ax.set_xlabel("propensity of the shown item")
axes[0].set_ylabel("rows")
fig.tight_layout()
fig.savefig(OUT / "propensities.png", dpi=100)

# %% [markdown]
# ## Candidates valued on the random log
#
# `bandit.run(cfg)` is the body of `python -m marquee.bandit`: it trains the `policies=obd` candidates
# (uniform, BTS's own item frequencies, a neural ε-greedy) on the first half of the random log and values them
# on the second half with every estimator, each with a bootstrap CI and a paired difference from the logger.

# %%
with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
    cfg = compose("bandit", overrides=["source=obd", "policies=obd", f"source.campaign={CAMPAIGN}",
                                       f"paths.output_dir={OUT / 'run'}", f"paths.data_dir={DATA_DIR}",
                                       f"n_boot={N_BOOT}", f"estimators=[{','.join(ESTIMATORS)}]", *EXTRA])
values = bandit.run(cfg)
report = pd.read_csv(OUT / "run" / "report.csv", index_col=[0, 1])

# %% [markdown]
# ## Estimates with their CIs
#
# The dotted line is the random logger's own click rate. For BTS the dashed line is the click rate BTS
# actually earned in its own log: not a true value (it is itself a sample mean over that log's rows), but the
# yardstick OBP's paper measures estimators against. The run folder's `estimates.png` is the same figure
# without it.

# %%
bts_clicks = logs["bts"].reward.mean()
report["true_value"] = [bts_clicks if policy == "bernoulli_ts" else np.nan for policy, _ in report.index]
figure = estimates_figure(report, cfg.confidence, truth_label="BTS's click rate in its own log")
figure.savefig(OUT / "estimates.png", dpi=100)
figure  # noqa: B018 (Jupyter shows a cell's last expression)

# %%
bts = report.loc["bernoulli_ts"]
errors = pd.DataFrame({"estimate": bts["value"], "ci_low": bts["ci_low"], "ci_high": bts["ci_high"],
                       "relative error": (bts["value"] - bts_clicks).abs() / bts_clicks,
                       "covers": (bts["ci_low"] <= bts_clicks) & (bts_clicks <= bts["ci_high"])})
print(f"BTS click rate in its own log: {bts_clicks:.6f}")
print(errors.to_string(float_format=lambda v: f"{v:.6f}"))
print(f"logging policy (random) click rate on the valued rows: {report.loc[(LOGGING, 'on-policy'), 'value']:.6f}")
