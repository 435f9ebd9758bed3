"""Studies: failures and pruning recorded while the study goes on, a killed study resumes, test never read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from marquee.errors import ConfigError
from marquee.evaluation.evaluator import Evaluator
from marquee.models.baselines import EASE
from marquee.sweeps.space import as_overrides, check_space
from marquee.sweeps.study import Study, StudySpec, validation_value


def _tiny_log(tmp_path: Path) -> Path:
    rows = [f"{u},{(u * 7 + i * (1 + u % 3)) % 40 + 1},{1000 + i}" for u in range(40) for i in range(10)]
    path = tmp_path / "log.csv"
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    return path


def _base(tmp_path: Path) -> list[str]:
    return ["data=csv_log", f"data.source.path={_tiny_log(tmp_path)}", "evaluation.ks=[5,10]", "evaluation.n_boot=20",
            "evaluation.progress=false"]


def _ease_study(tmp_path: Path, n_trials: int = 3, seeds: list[int] | None = None) -> Study:
    spec = StudySpec(name="ease_tiny", overrides=[*_base(tmp_path), "model=ease"], n_trials=n_trials,
                     space=check_space({"model.l2": {"type": "float", "low": 1.0, "high": 1000.0, "log": True}}),
                     seeds=seeds or [])
    return Study(tmp_path / "study", spec)


def _states(study: Study) -> list[str]:
    return [t.state.name for t in sorted(study.study().trials, key=lambda t: t.number)]


def test_a_failing_trial_is_recorded_failed_and_the_study_completes_the_others(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = EASE.fit

    def second_fit_fails(self, split):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("planted failure")
        return original(self, split)

    monkeypatch.setattr(EASE, "fit", second_fit_fails)
    study = _ease_study(tmp_path)
    study.optimize()
    assert _states(study) == ["COMPLETE", "FAIL", "COMPLETE"]
    failed = json.loads((study.dir / "trials" / "0001" / "run.json").read_text())
    assert failed["status"] == "failed" and "planted failure" in failed["error"]
    table = pd.read_csv(study.dir / "trials.csv")
    assert table["state"].tolist() == ["COMPLETE", "FAIL", "COMPLETE"]
    # each completed trial's value is its run's validation metric, as metrics.json holds it
    for row in table[table["state"] == "COMPLETE"].itertuples():
        assert row.value == json.loads((study.dir / row.run_dir / "metrics.json").read_text())["val/ndcg@10"]


def test_a_search_never_evaluates_test_and_only_the_winners_seeds_do(tmp_path, monkeypatch):
    stages: list[tuple[str, str]] = []
    original = Evaluator.evaluate
    phase = {"now": "search"}

    def recording(self, model, data, stage="test"):
        stages.append((phase["now"], stage))
        return original(self, model, data, stage)

    monkeypatch.setattr(Evaluator, "evaluate", recording)
    study = _ease_study(tmp_path, n_trials=3, seeds=[0, 1])
    optuna_study = study.optimize()
    phase["now"] = "seeds"
    frozen = study.freeze_best(optuna_study)
    study.run_seeds(frozen)
    assert {s for p, s in stages if p == "search"} == {"val"}
    assert [s for p, s in stages if p == "seeds"].count("test") == 2
    assert not list((study.dir / "trials").glob("*/per_user_test.parquet"))
    best = yaml.safe_load((study.dir / "best.yaml").read_text())
    assert best["value"] == max(t.value for t in optuna_study.trials)
    assert f"model.l2={best['params']['model.l2']!r}" in best["overrides"]
    for seed in (0, 1):
        record = json.loads((study.dir / "seeds" / f"seed_{seed}" / "run.json").read_text())
        assert record["status"] == "finished" and record["config"]["seed"] == seed
        assert record["config"]["model"]["l2"] == best["params"]["model.l2"]


def test_a_pruned_trial_is_recorded_pruned_in_the_study_and_its_run(tmp_path, monkeypatch):
    monkeypatch.setattr(optuna.Trial, "should_prune", lambda self: self.number == 1)
    spec = StudySpec(name="sasrec_tiny", n_trials=2, seeds=[],
                     overrides=[*_base(tmp_path), "model=sasrec", "datamodule=sequences", "model.hidden=16",
                                "model.layers=1", "model.heads=1", "model.inner=32", "model.max_len=10",
                                "trainer.max_epochs=3", "callbacks=none", "logger=csv", "+trainer.enable_progress_bar=false"],
                     space=check_space({"optim.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}))
    study = Study(tmp_path / "study", spec)
    study.optimize()
    assert _states(study) == ["COMPLETE", "PRUNED"]
    pruned = study.study().trials[1]
    assert list(pruned.intermediate_values) == [0]  # reported after its first validation, then stopped
    record = json.loads((study.dir / "trials" / "0001" / "run.json").read_text())
    assert record["status"] == "pruned" and not (study.dir / "trials" / "0001" / "FAILED").exists()


def test_a_killed_study_resumes_where_it_stopped(tmp_path):
    study_dir = tmp_path / "study"
    # 12 quick trials: the kill, right after the first one finishes, lands well before the last
    command = [sys.executable, "-m", "marquee.sweep", "hparams_search=ease_ml100k", *_base(tmp_path), "n_trials=12",
               "seeds=[]", f"study_dir={study_dir}"]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it once a trial has finished
        trials = study_dir / "trials.csv"
        if trials.is_file() and (pd.read_csv(trials)["state"] == "COMPLETE").any():
            break
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = Study(study_dir).study().trials
    kept = {t.number: t.value for t in before if t.state.name == "COMPLETE"}
    assert kept and len(before) < 12

    again = subprocess.run(command, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    after = Study(study_dir).study().trials
    assert len(after) == 12 and not [t for t in after if t.state.name == "RUNNING"]  # a killed trial: failed
    assert {t.number: t.value for t in after if t.number in kept} == kept  # finished trials are kept, not re-run
    assert (study_dir / "best.yaml").is_file()


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    command = [sys.executable, "-m", "marquee.sweep", "hparams_search=ease_ml100k", *_base(tmp_path), "n_trials=6",
               "seeds=[]", "n_workers=2", f"study_dir={tmp_path / 'study'}"]
    done = subprocess.run(command, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = Study(tmp_path / "study").study().trials
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes ran trials
    assert 6 <= len(trials) <= 7  # each worker stops once the study holds n_trials; one may be finishing
    assert json.loads((tmp_path / "study" / "study.json").read_text())["optimize"]["workers"] == 2


def test_the_objective_is_a_validation_metric_only():
    with pytest.raises(ConfigError, match="sweep.metric"):
        StudySpec(name="x", overrides=[], space={}, metric="test/ndcg@10")
    with pytest.raises(ConfigError, match="validation only"):
        validation_value({"test/ndcg@10": 0.5}, "test/ndcg@10")
    assert validation_value({"val/ndcg@10": 0.25}, "val/ndcg@10") == 0.25


def test_search_spaces_are_checked_and_become_overrides():
    with pytest.raises(ConfigError, match=r"sweep.params.model.l2: needs low < high"):
        check_space({"model.l2": {"type": "float", "low": 5, "high": 1}})
    with pytest.raises(ConfigError, match="type one of"):
        check_space({"model.l2": {"type": "gaussian"}})
    assert as_overrides({"model.hidden": 64, "model.loss.name": "ce", "optim.optimizer.lr": 0.001}) == [
        "model.hidden=64", "model.loss.name='ce'", "optim.optimizer.lr=0.001"]


def test_the_sweep_command_without_a_search_space_exits_2_naming_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "marquee.sweep", "n_trials=3"], check=False, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: hparams_search: name a search space")


def test_wandb_files_each_trial_and_seed_under_the_study(tmp_path):
    spec = StudySpec(name="ease_tiny", overrides=[*_base(tmp_path), "model=ease", "logger=wandb"], n_trials=1,
                     space=check_space({"model.l2": {"type": "float", "low": 1.0, "high": 1000.0}}), seeds=[3])
    study = Study(tmp_path / "study", spec)
    study.run_seeds(study.freeze_best(study.optimize()))
    trial = next((study.dir / "trials" / "0000").glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    seed = next((study.dir / "seeds" / "seed_3").glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    assert b"ease_tiny" in trial and b"trial_0" in trial
    assert b"ease_tiny" in seed and b"seed_3" in seed and b"trial_0" not in seed


def test_a_trial_left_running_elsewhere_is_failed_only_on_takeover(tmp_path):
    from marquee.sweeps.study import fail_stale_trials, open_study

    study = open_study(tmp_path / "optuna.journal", "s", StudySpec(name="s", overrides=[], space={}))
    elsewhere = study.ask()
    elsewhere.set_user_attr("host", "another-machine")
    elsewhere.set_user_attr("pid", 1)
    here_dead = study.ask()
    here_dead.set_user_attr("host", __import__("socket").gethostname())
    here_dead.set_user_attr("pid", 2 ** 22 + 12345)  # above any pid this machine hands out
    assert fail_stale_trials(study) == 1  # only this machine's dead worker
    assert [t.state.name for t in study.trials] == ["RUNNING", "FAIL"]
    assert fail_stale_trials(study, takeover=True) == 1
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]


def test_a_resumed_study_reads_back_its_own_space_exactly(tmp_path):
    space = {"optim.optimizer.weight_decay": {"type": "float", "low": 1.0e-6, "high": 1.0e-2, "log": True},
             "model.hidden": {"type": "categorical", "choices": [32, 64]}}
    Study(tmp_path / "study", StudySpec(name="s", overrides=["model=ease"], space=check_space(space)))
    again = Study(tmp_path / "study")  # from study.json, as a resumed or joining worker reads it
    assert again.spec.space == space  # 1e-06 stays a float (YAML would have read it as a string)
    trial = again.study().ask()
    assert 1e-6 <= suggest_values(trial, again.spec.space)["optim.optimizer.weight_decay"] <= 1e-2


def suggest_values(trial, space):
    from marquee.sweeps.space import suggest

    return suggest(trial, space)


def test_a_resumed_study_does_not_replay_its_first_draws(tmp_path):
    study = _ease_study(tmp_path, n_trials=2)
    study.optimize()
    study.spec.n_trials = 4  # resume for two more trials
    resumed = Study(study.dir, study.spec)
    resumed.optimize()
    values = [t.params["model.l2"] for t in resumed.study().trials]
    assert len(values) == 4 and len(set(values)) == 4  # the same seed from the start would repeat trial 0's draw


def test_a_joining_worker_sets_only_how_it_runs(tmp_path):
    study = _ease_study(tmp_path)
    joined = Study(study.dir, runtime=["torch_threads=1", "model.l2=5", "evaluation.device=cpu"])
    assert joined.runtime == ["torch_threads=1", "evaluation.device=cpu"]  # never what a trial trains
    assert joined.spec.overrides == study.spec.overrides
