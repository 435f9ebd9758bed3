"""``marquee.compare`` over many runs: seed groups named by what differs, the ranked table equal to the runs'
metrics.json, paired tests between groups, and sweep folders with their plots."""

from __future__ import annotations

import json
import shutil
import statistics
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marquee.compare import main as compare
from marquee.evaluation.statistics import bootstrap_ci, holm
from marquee.reports import plots
from marquee.reports.groups import system_name
from marquee.reports.sweeps import load_sweep
from tests.test_compare import FINGERPRINT, write_run

N_USERS = 300
BASE = np.random.default_rng(0).random(N_USERS)  # every run's users share these base values


def config(model: str, seed: int, out: Path, **model_keys) -> dict:
    """A resolved config as run.json records it, with the keys that differ per run but do not name a group."""
    return {"seed": seed, "task_name": "train", "torch_threads": 1, "paths": {"output_dir": str(out)},
            "model": {"_target_": f"marquee.models.{model.lower()}.{model}", **model_keys},
            "optim": {"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001}},
            "datamodule": {"batch_size": 256, "seed": seed, "num_workers": 0},
            "callbacks": {"model_checkpoint": {"dirpath": str(out / "checkpoints"), "monitor": "val/ndcg@10"},
                          "progress_bar": {"_target_": "pytorch_lightning.callbacks.TQDMProgressBar"}},
            "trainer": {"max_epochs": 15, "default_root_dir": str(out)}}


def run(out: Path, model: str = "SASRec", seed: int = 1, shift: float = 0.0, ndcg: np.ndarray | None = None,
        stages: tuple[str, ...] = ("val", "test"), **keys) -> Path:
    """A finished run whose users score ``ndcg``, by default BASE + ``shift`` + noise drawn from (model, keys, seed);
    its coverage@10 is drawn too."""
    rng = np.random.default_rng(zlib.crc32(json.dumps([model, keys, seed], sort_keys=True).encode()))
    ndcg = BASE + shift + rng.normal(0, 0.05, N_USERS) if ndcg is None else ndcg
    per_user = pd.DataFrame({"user_id": np.arange(1, N_USERS + 1), "ndcg@10": ndcg, "recall@10": ndcg / 2,
                             "recall@50": ndcg, "mrr@10": ndcg / 3})
    coverage = {f"{stage}/coverage@10": float(rng.uniform(0.1, 0.5)) for stage in stages}
    return write_run(out, per_user, config(model, seed, out, **keys), stages=stages, metrics=coverage)


def metrics_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_runs_of_a_folder_group_by_config_over_seeds_and_are_named_by_what_sets_them_apart(tmp_path, capsys):
    multirun = tmp_path / "multirun"
    for seed in (1, 2, 3):
        run(multirun / f"h64_s{seed}", seed=seed, hidden=64, layers=2)
        run(multirun / f"h128_s{seed}", seed=seed, hidden=128, layers=2)
    run(multirun / "ease", model="EASE", l2=500.0)
    failed = run(multirun / "crashed", seed=4, hidden=64, layers=2)
    record = json.loads((failed / "run.json").read_text())
    (failed / "run.json").write_text(json.dumps({**record, "status": "failed", "error": "out of memory"}))

    report = compare([str(multirun), "--n-boot", "50"])
    named = {g.name: sorted(g.seeds) for g in report.groups}
    assert named == {"SASRec model.hidden=128": [1, 2, 3], "SASRec model.hidden=64": [1, 2, 3], "EASE": [1]}
    assert report.skipped == {"failed": 1}
    assert "skipped unfinished runs: 1 failed" in capsys.readouterr().err


def test_a_pipeline_is_named_by_its_system_over_its_stage_models():
    cascade = {"model": {"_target_": "marquee.models.sasrec.SASRec"},
               "pipeline": {"system": {"_target_": "marquee.retrieval.cascade.CascadeRecommender"},
                            "stages": {"retriever": {"model": {"_target_": "marquee.retrieval.two_tower.TwoTower"}},
                                       "ranker": {}}}}
    assert system_name(cascade) == "Cascade(TwoTower>SASRec)"
    assert system_name({"model": {"_target_": "marquee.models.baselines.EASE"}, "pipeline": {"system": None}}) == "EASE"


def test_the_ranked_table_is_the_mean_and_sd_of_the_runs_metrics_json(tmp_path):
    folder = tmp_path / "runs"
    seeds = [run(folder / f"s{seed}", seed=seed, shift=0.1, hidden=64) for seed in (1, 2, 3)]
    single = run(folder / "other", seed=1, hidden=32)
    out = tmp_path / "report"
    report = compare([str(folder), "--n-boot", "200", "--out", str(out)])

    summary = report.summary.set_index("name")
    best = summary.loc["SASRec model.hidden=64"]
    assert best["rank"] == 1 and best["runs"] == 3
    for metric in ("ndcg@10", "recall@10", "mrr@10", "coverage@10"):
        recorded = [metrics_json(s)[f"test/{metric}"] for s in seeds]
        assert best[metric] == pytest.approx(statistics.fmean(recorded), rel=1e-12)
        assert best[f"{metric}_sd"] == pytest.approx(statistics.stdev(recorded), rel=1e-12)
    for metric in ("ndcg@10", "coverage@10"):  # one run: its metrics.json number itself
        assert summary.loc["SASRec model.hidden=32", metric] == metrics_json(single)[f"test/{metric}"]
    assert np.isnan(summary.loc["SASRec model.hidden=32", "ndcg@10_sd"])
    # the CI is over users, each user's ndcg@10 averaged over the group's seeds
    pooled = np.mean([pd.read_parquet(s / "per_user_test.parquet")["ndcg@10"] for s in seeds], axis=0)
    _, low, high = bootstrap_ci(pooled, n_boot=200)
    assert (best["ndcg@10_ci_low"], best["ndcg@10_ci_high"]) == pytest.approx((low, high))

    written = pd.read_csv(out / "summary.csv").set_index("name")  # unrounded, as in the table
    assert written.loc["SASRec model.hidden=32", "ndcg@10"] == metrics_json(single)["test/ndcg@10"]
    assert written.loc["SASRec model.hidden=64", "ndcg@10"] == best["ndcg@10"]
    text = (out / "report.md").read_text()
    assert f"{best['ndcg@10']:.4f} ± {best['ndcg@10_sd']:.4f}" in text
    assert "![ndcg@10 against coverage@10](ndcg_vs_coverage.png)" in text
    assert (out / "ndcg_vs_coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_tests_pool_seeds_per_user_and_find_a_planted_difference_but_not_a_null(tmp_path, capsys):
    folder = tmp_path / "runs"
    for seed in (1, 2):
        base_values = pd.read_parquet(run(folder / f"base_{seed}", seed=seed, hidden=64) / "per_user_test.parquet")
        run(folder / f"better_{seed}", seed=seed, shift=0.03, hidden=128)
        # another config, no better: the base run's noise dealt to other users, so the mean difference is 0
        noise = np.random.default_rng(seed).permutation(base_values["ndcg@10"].to_numpy() - BASE)
        run(folder / f"same_{seed}", seed=seed, ndcg=BASE + noise, hidden=256)
    report = compare([str(folder), "--n-boot", "500"])
    label = {g.name: g.label for g in report.groups}
    base, better, same = label["SASRec model.hidden=64"], label["SASRec model.hidden=128"], label["SASRec model.hidden=256"]

    planted = report.pair(base, better).loc["ndcg@10"]
    assert planted["p_ttest"] < 0.05 and planted["p_bootstrap"] < 0.05 and planted["p_holm"] < 0.05
    assert planted["diff_low"] < 0.03 < planted["diff_high"] and planted["n_users"] == N_USERS
    null = report.pair(base, same).loc["ndcg@10"]
    assert null["diff"] == pytest.approx(0, abs=1e-12) and null["p_ttest"] > 0.5 and null["p_bootstrap"] > 0.5
    assert null["diff_low"] < 0 < null["diff_high"]  # the users do differ, the groups do not
    # the paired means are the groups' means: each user averaged over seeds, then over users
    assert planted["mean_a"] == pytest.approx(report.summary.set_index("group").loc[base, "ndcg@10"])
    assert len(report.paired[report.paired["metric"] == "ndcg@10"]) == 3  # every pair of 3 groups
    assert f"{better} vs {base}" in capsys.readouterr().out


def test_more_than_four_groups_are_each_tested_against_the_best(tmp_path):
    folder = tmp_path / "runs"
    for hidden, shift in ((16, 0.0), (32, 0.01), (64, 0.02), (128, 0.06), (256, 0.03)):
        run(folder / f"h{hidden}", shift=shift, hidden=hidden)
    report = compare([str(folder), "--n-boot", "50"])
    assert report.best.name == "SASRec model.hidden=128"
    tested = report.paired[report.paired["metric"] == "ndcg@10"]
    assert set(tested["a"]) == {report.best.label} and len(tested) == 4
    assert (tested["p_holm"] >= tested["p_ttest"]).all()


def test_holm_adjusts_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04; kept non-decreasing: 0.03, 0.06, 0.06
    assert holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])
    assert holm(np.array([0.5, 0.4])) == pytest.approx([0.8, 0.8]) and holm(np.array([0.7, 0.6]))[0] == 1.0


def test_groups_on_other_data_or_a_split_seeded_per_run_are_refused_in_one_line(tmp_path, capsys):
    folder = tmp_path / "runs"
    run(folder / "a1", seed=1, hidden=64)
    run(folder / "a2", seed=2, hidden=64)
    other = tmp_path / "other"
    other_run = run(other / "b", hidden=128)
    record = json.loads((other_run / "run.json").read_text())
    record["data"]["fingerprint"] = "f" * 64
    (other_run / "run.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit) as stopped:
        compare([str(folder), str(other), "--n-boot", "50"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1
    assert f"run A[seed=1] '{folder / 'a1'}' and run B '{other_run}' cannot be paired" in err[0]
    assert f"data fingerprint {FINGERPRINT[:16]} (toy) in A[seed=1], ffffffffffffffff (toy) in B" in err[0]

    for seed in (1, 2):  # a holdout split seeded by ${seed}: each seed tests other users
        record = json.loads((folder / f"a{seed}" / "run.json").read_text())
        record["config"]["data"]["split"] = {"_target_": "marquee.data.splits.UserHoldout", "seed": seed}
        (folder / f"a{seed}" / "run.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit):
        compare([str(folder), "--n-boot", "50"])
    assert "data.split.seed 1 in A[seed=1], 2 in A[seed=2]" in capsys.readouterr().err


def sweep_folder(root: Path) -> Path:
    """A marquee.sweep folder: study.json, trials.csv, val-only trial runs, best.yaml and the winner's seed runs."""
    root.mkdir(parents=True)
    (root / "study.json").write_text(json.dumps({
        "study_name": "sasrec_toy", "metric": "val/ndcg@10", "direction": "maximize", "storage": "optuna.journal",
        "search_space": {"optim.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                         "model.hidden": {"type": "int", "low": 32, "high": 256},
                         "model.loss.name": {"type": "categorical", "choices": ["ce", "bce"]}},
        "overrides": ["experiment=sasrec_toy"]}))
    rng = np.random.default_rng(1)
    trials = pd.DataFrame({"number": range(12), "state": ["COMPLETE"] * 9 + ["PRUNED", "PRUNED", "FAIL"],
                           "value": [*rng.uniform(0.02, 0.08, 11), np.nan], "duration_s": rng.uniform(5, 50, 12),
                           "params_optim.optimizer.lr": 10 ** rng.uniform(-4, -1, 12),
                           "params_model.hidden": rng.integers(32, 257, 12),
                           "params_model.loss.name": rng.choice(["ce", "bce"], 12),
                           "run_dir": [f"trials/{n:04d}" for n in range(12)]})
    trials.to_csv(root / "trials.csv", index=False)
    for n in (0, 1):  # trial runs are evaluated on val only; a test number here must never be read
        trial = run(root / "trials" / f"{n:04d}", stages=("val",), hidden=64 + n)
        (trial / "metrics.json").write_text(json.dumps({**metrics_json(trial), "test/ndcg@10": 999.0}))
    (root / "best.yaml").write_text("optim.optimizer.lr: 0.003\nmodel.hidden: 128\n")
    for seed in (1, 2, 3):
        run(root / "seeds" / f"seed_{seed}", seed=seed, shift=0.02, hidden=128)
    return root


def test_a_sweep_folder_reports_its_best_group_and_plots_its_history_and_parameters(tmp_path):
    sweep = sweep_folder(tmp_path / "sweep")
    baseline = run(tmp_path / "ease", model="EASE")
    out = tmp_path / "report"
    report = compare([str(sweep), str(baseline), "--n-boot", "50", "--out", str(out)])

    assert [g.name for g in report.groups] == ["sasrec_toy best", "EASE"]
    best = report.group("A")
    assert sorted(best.seeds) == [1, 2, 3] and 999.0 not in report.summary["ndcg@10"].to_list()
    for name in ("optimization_history.png", "params.png", "ndcg_vs_coverage.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    text = (out / "report.md").read_text()
    assert "## Sweep `sasrec_toy`" in text and "Best config, re-run over seeds: **A** `sasrec_toy best`" in text
    best_trial = pd.read_csv(sweep / "trials.csv").query("state == 'COMPLETE'").sort_values("value").iloc[-1]
    assert f"best #{int(best_trial['number'])}: val/ndcg@10 {best_trial['value']:.4f}" in text
    assert "![optimization history](optimization_history.png)" in text and "(params.png)" in text
    assert "12 trials (9 complete, 2 pruned, 1 fail)" in text and "model.hidden: 128" in text

    figure = plots.parameters(load_sweep(sweep))
    scales = {ax.get_xlabel(): ax.get_xscale() for ax in figure.axes if ax.get_visible()}
    assert scales == {"optim.optimizer.lr": "log", "model.hidden": "linear", "model.loss.name": "linear"}
    history = plots.optimization_history(load_sweep(sweep))
    running_best = history.axes[0].lines[0].get_ydata()
    assert running_best[-1] == pytest.approx(best_trial["value"]) and np.all(np.diff(running_best) >= 0)


def test_trials_are_compared_on_val_only_when_asked(tmp_path, capsys):
    sweep = sweep_folder(tmp_path / "sweep")
    report = compare([str(sweep), "--trials", "--n-boot", "50"])
    assert report.stage == "val"
    assert [g.name.split(" model.")[0] for g in report.groups] == ["sasrec_toy best", "sasrec_toy #0", "sasrec_toy #1"]
    assert report.summary.set_index("name").loc["sasrec_toy #0 model.hidden=64", "ndcg@10"] == pytest.approx(
        metrics_json(sweep / "trials" / "0000")["val/ndcg@10"])
    with pytest.raises(SystemExit) as stopped:
        compare([str(sweep), "--trials", "--stage", "test"])
    assert stopped.value.code == 2 and "--trials compares on the val stage" in capsys.readouterr().err


def test_a_sweep_still_running_is_read_from_its_optuna_journal_and_plotted_without_seed_runs(tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = sweep_folder(tmp_path / "sweep")
    (sweep / "trials.csv").unlink()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna.journal")))
    study = optuna.create_study(study_name="sasrec_toy", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("optim.optimizer.lr", 1e-4, 1e-1, log=True), n_trials=4)
    loaded = load_sweep(sweep)
    assert loaded.params == ["optim.optimizer.lr"] and list(loaded.trials["state"]) == ["COMPLETE"] * 4
    assert loaded.best_trial()["value"] == pytest.approx(study.best_value)

    shutil.rmtree(sweep / "seeds")  # the winner is not re-run yet: the history is there to look at
    report = compare([str(sweep), "--out", str(tmp_path / "report")])
    assert report.groups == [] and (tmp_path / "report" / "optimization_history.png").is_file()
    assert "has no finished seed re-runs (`seeds/`) yet" in (tmp_path / "report" / "report.md").read_text()
