"""The notebooks under notebooks/ run end to end on tiny settings, and what they show is what the runs wrote.

Each notebook is a jupytext percent script, executed here as ``python notebooks/<name>.py`` in a fresh
interpreter from an empty folder, with its settings given through ``MARQUEE_NB_*`` environment variables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PNG = b"\x89PNG\r\n\x1a\n"


def run_notebook(name: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess:
    """``python notebooks/<name>.py`` from ``cwd`` with these ``MARQUEE_NB_*`` settings (and no others)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_NB_")}
    env.update(settings, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(NOTEBOOKS / f"{name}.py")], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{name}.py failed:\n{done.stderr[-4000:]}"
    return done


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes().startswith(PNG)


def test_every_notebook_is_a_percent_script_with_markdown():
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    assert names == ["artwork_bandit", "quickstart", "sweep_analysis"]
    for name in names:
        text = (NOTEBOOKS / f"{name}.py").read_text()
        assert "format_name: percent" in text and text.count("# %% [markdown]") >= 3, name
        assert len(re.findall(r"^# %%$", text, re.MULTILINE)) >= 3, name  # code cells


def test_quickstart_trains_ease_and_sasrec_and_compares_them(shared_data, tmp_path):
    out = tmp_path / "out"
    done = run_notebook("quickstart", tmp_path, MARQUEE_NB_EPOCHS="1", MARQUEE_NB_BOOT="50", MARQUEE_NB_THREADS="1",
                        MARQUEE_NB_OUT=str(out),
                        MARQUEE_NB_SASREC="model.layers=1 model.hidden=32 model.inner=64 model.max_len=20 "
                                          "datamodule.windows=last datamodule.batch_size=128")
    summary = dict(re.findall(r"^(users|items|interactions|split)\s+(\S+)$", done.stdout, re.MULTILINE))
    assert summary == {"users": "943", "items": "1,682", "interactions": "100,000", "split": "leave_one_out"}
    metrics = {name: json.loads((out / name / "metrics.json").read_text()) for name in ("ease", "sasrec")}
    assert metrics["sasrec"]["train/epochs"] == 1
    # the numbers the notebook prints are the runs' own metrics.json
    for label, name in (("EASE", "ease"), ("SASRec", "sasrec")):
        value, low, high = map(float, re.search(rf"^{label} test/ndcg@10 = (\S+)\s+\[(\S+), (\S+)\]$", done.stdout,
                                                re.MULTILINE).groups())
        assert value == pytest.approx(metrics[name]["test/ndcg@10"], abs=1e-6)
        assert (low, high) == pytest.approx((metrics[name]["test/ndcg@10_ci_low"],
                                             metrics[name]["test/ndcg@10_ci_high"]), abs=1e-6)
    # the paired comparison pairs the two runs' per-user tables: its means are the runs' metrics, B is SASRec
    comparison = pd.read_csv(out / "compare.csv", index_col=0)
    assert list(comparison.index) == ["ndcg@10", "recall@10", "recall@50", "mrr@10"]
    for metric, row in comparison.iterrows():
        assert row["mean_a"] == pytest.approx(metrics["ease"][f"test/{metric}"])
        assert row["mean_b"] == pytest.approx(metrics["sasrec"][f"test/{metric}"])
        assert row["n_users"] == 943
    assert "paired comparison over 943 users" in done.stdout
    assert is_png(out / "test_metrics.png")


def write_fake_study(directory: Path) -> dict:
    """A study folder as ``marquee.sweep`` lays it out: 6 complete trials (planted values), one pruned, 3 seeds."""
    directory.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(directory / "optuna.journal")))
    study = optuna.create_study(study_name="toy", storage=storage, direction="maximize")
    space = {"model.l2": FloatDistribution(1.0, 5000.0, log=True), "model.hidden": CategoricalDistribution([32, 64])}
    l2s, values = [3.0, 40.0, 2000.0, 10.0, 700.0, 90.0], [0.050, 0.061, 0.058, 0.055, 0.072, 0.066]
    rows = []
    for i, (l2, value) in enumerate(zip(l2s, values)):
        study.enqueue_trial({"model.l2": l2, "model.hidden": [32, 64][i % 2]})  # the next ask takes these params
        trial = study.ask(space)
        study.tell(trial, value)
        rows.append({"number": trial.number, "state": "COMPLETE", "value": value, "duration_s": 1.0,
                     **{f"params_{k}": v for k, v in trial.params.items()}, "run_dir": f"trials/{trial.number:04d}"})
    pruned = study.ask(space)
    study.tell(pruned, state=TrialState.PRUNED)
    rows.append({"number": pruned.number, "state": "PRUNED", "value": None, "duration_s": 0.5,
                 **{f"params_{k}": v for k, v in pruned.params.items()}, "run_dir": f"trials/{pruned.number:04d}"})
    pd.DataFrame(rows).to_csv(directory / "trials.csv", index=False)
    best = study.best_trial
    (directory / "study.json").write_text(json.dumps({
        "study_name": "toy", "metric": "val/ndcg@10", "direction": "maximize", "storage": "optuna.journal",
        "search_space": {"model.l2": {"type": "float", "low": 1.0, "high": 5000.0, "log": True},
                         "model.hidden": {"type": "categorical", "choices": [32, 64]}},
        "overrides": ["hparams_search=toy", "model=ease"]}))
    (directory / "best.yaml").write_text(yaml.safe_dump({"study": "toy", "trial": best.number, "metric": "val/ndcg@10",
                                                         "value": best.value, "params": best.params}))
    seeds = {}
    for seed, (val, ndcg) in enumerate([(0.066, 0.061), (0.069, 0.064), (0.063, 0.058)]):
        run_dir = directory / "seeds" / f"seed_{seed}"
        run_dir.mkdir(parents=True)
        metrics = {"val/ndcg@10": val, "test/ndcg@10": ndcg, "test/recall@10": 2 * ndcg, "test/recall@50": 5 * ndcg,
                   "test/mrr@10": ndcg / 2}
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        (run_dir / "run.json").write_text(json.dumps({"status": "finished"}))
        seeds[seed] = metrics
    return {"values": values, "numbers": [r["number"] for r in rows[:-1]], "best": best, "seeds": seeds}


def test_sweep_analysis_reads_the_study_its_history_and_the_winners_seeds(tmp_path):
    fake = write_fake_study(tmp_path / "study")
    out = tmp_path / "out"
    done = run_notebook("sweep_analysis", tmp_path, MARQUEE_NB_STUDY=str(tmp_path / "study"), MARQUEE_NB_OUT=str(out))
    assert "trials: 6 complete, 1 pruned" in done.stdout
    assert f"best trial {fake['best'].number}: val/ndcg@10 = {max(fake['values']):.6f}" in done.stdout
    # the history the plot draws: complete trials only, in order, with the running best
    history = pd.read_csv(out / "history.csv")
    assert history["number"].tolist() == fake["numbers"]
    np.testing.assert_allclose(history["value"], fake["values"])
    np.testing.assert_allclose(history["best_so_far"], np.maximum.accumulate(fake["values"]))
    # the winner's seeds: each seed's metrics, and their mean ± sd as printed
    seeds = pd.read_csv(out / "seeds.csv", index_col="seed")
    assert seeds.index.tolist() == [0, 1, 2]
    test_ndcg = [fake["seeds"][s]["test/ndcg@10"] for s in range(3)]
    np.testing.assert_allclose(seeds["test/ndcg@10"], test_ndcg)
    mean, sd = np.mean(test_ndcg), np.std(test_ndcg, ddof=1)
    assert f"test/ndcg@10: {mean:.6f} ± {sd:.6f} (mean ± sd)" in done.stdout
    for figure in ("history.png", "params.png", "seeds.png"):
        assert is_png(out / figure), figure


def test_artwork_bandit_shows_the_obd_logs_propensities_and_estimates_with_cis(shared_data, tmp_path):
    out = tmp_path / "out"
    done = run_notebook("artwork_bandit", tmp_path, MARQUEE_NB_BOOT="50", MARQUEE_NB_ESTIMATORS="ips,snips,dr",
                        MARQUEE_NB_BANDIT="~policies.epsilon_greedy", MARQUEE_NB_OUT=str(out))
    logs = pd.read_csv(out / "logs.csv", index_col=0)
    assert logs.loc["rows"].tolist() == [10_000, 10_000] and logs.loc["items", "random"] == 80
    # the uniform logger's propensity is 1/80 on every row; BTS's spread over orders of magnitude
    assert logs.loc["propensity min", "random"] == logs.loc["propensity max", "random"] == pytest.approx(1 / 80)
    assert logs.loc["propensity max", "bts"] / logs.loc["propensity min", "bts"] > 100
    report = pd.read_csv(out / "run" / "report.csv", index_col=[0, 1])
    assert list(report.index) == [("logging policy", "on-policy"), *[(p, e) for p in ("uniform", "bernoulli_ts")
                                                                      for e in ("ips", "snips", "dr")]]
    assert report.loc[("uniform", "ips"), "value"] == pytest.approx(report.loc[("logging policy", "on-policy"), "value"])
    assert (report["ci_low"] <= report["value"]).all() and (report["value"] <= report["ci_high"]).all()
    # the printed BTS table is the run's report, held against BTS's click rate in its own log
    bts_clicks = logs.loc["click rate", "bts"]
    assert f"BTS click rate in its own log: {bts_clicks:.6f}" in done.stdout
    for estimator in ("ips", "snips", "dr"):
        printed = re.search(rf"^{estimator}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(True|False)$", done.stdout, re.MULTILINE)
        value, low, high, relative = map(float, printed.groups()[:4])
        row = report.loc[("bernoulli_ts", estimator)]
        assert (value, low, high) == pytest.approx((row["value"], row["ci_low"], row["ci_high"]), abs=1e-6)
        assert relative == pytest.approx(abs(row["value"] - bts_clicks) / bts_clicks, abs=1e-6)
    for figure in (out / "propensities.png", out / "estimates.png", out / "run" / "estimates.png"):
        assert is_png(figure), figure
