"""Run directories: one per run even for runs started together, only rank zero writes, every model reports to trackers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from marquee.config_dir import unique_dir


def _tiny_log(tmp_path: Path) -> Path:
    rows = [f"{u},{(u * 7 + i) % 40 + 1},{1000 + i}" for u in range(30) for i in range(8)]
    path = tmp_path / "log.csv"
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    return path


def _command(tmp_path: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "marquee.train", "data=csv_log", f"data.source.path={_tiny_log(tmp_path)}",
            "evaluation.ks=[5]", "evaluation.progress=false", "evaluation.n_boot=20", *overrides]


def test_unique_dir_never_hands_out_a_directory_twice(tmp_path):
    base = str(tmp_path / "runs" / "2026-12-01_10-00-00")
    made = [unique_dir(base) for _ in range(3)]
    assert made == [base, f"{base}_2", f"{base}_3"]
    assert all(Path(p).is_dir() for p in made)


def test_two_runs_started_in_the_same_second_keep_both_results(tmp_path):
    # both runs ask for the very same folder name, as two runs launched together in one second do
    same_second = "hydra.run.dir=${marquee.unique_dir:" + str(tmp_path / "runs" / "same") + "}"
    runs = [subprocess.Popen(_command(tmp_path, "model=pop", same_second, f"seed={seed}"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path) for seed in (1, 2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    printed = sorted(Path(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert printed == [(tmp_path / "runs" / "same").resolve(), (tmp_path / "runs" / "same_2").resolve()]
    seeds = {json.loads((d / "run.json").read_text())["config"]["seed"] for d in printed}
    assert seeds == {1, 2}  # each folder holds its own run's record, metrics and per-user file
    for d in printed:
        assert "test/ndcg@5" in json.loads((d / "metrics.json").read_text())
        assert (d / "per_user_test.parquet").is_file()


def test_a_closed_form_model_reports_to_the_configured_trackers(tmp_path):
    done = subprocess.run(_command(tmp_path, "model=pop", f"hydra.run.dir={tmp_path}/run", "logger=many"),
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"
    frame = pd.read_csv(next(run.glob("csv/version_*/metrics.csv")))
    metrics = json.loads((run / "metrics.json").read_text())
    assert frame["test/ndcg@5"].dropna().iloc[-1] == metrics["test/ndcg@5"]
    assert "train/fit_seconds" in frame
    record = next(run.glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    assert b"test/ndcg@5" in record and b"data_fingerprint" in record


def test_a_tensorboard_run_of_a_baseline_writes_its_events(tmp_path):
    done = subprocess.run(_command(tmp_path, "model=ease", "model.l2=10", f"hydra.run.dir={tmp_path}/run",
                                   "logger=tensorboard"), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "run" / "tensorboard").rglob("events.out.*")).parent))
    events.Reload()
    assert "test/ndcg@5" in events.Tags()["scalars"]


def test_a_process_that_is_not_rank_zero_writes_and_prints_nothing_of_the_run(tmp_path):
    # Lightning's launcher gives every DDP process its rank in the environment; rank 1 must leave the files to rank 0
    env = {**os.environ, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    done = subprocess.run(_command(tmp_path, "model=pop", f"hydra.run.dir={tmp_path}/run"), capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert not written & {"run.json", "metrics.json", "data_summary.json", "per_user_test.parquet", "checkpoints"}
    assert "test/ndcg@5" not in done.stdout
