"""The main command end to end: load, split, record the run, print the summary and the run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from marquee.data.vocab import Vocabulary


def _run(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "marquee.train", f"hydra.run.dir={tmp_path}/run", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy(), cwd=tmp_path)


def test_main_command_summarizes_ml100k_and_records_the_run(shared_data, tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    run_dir = Path(lines[-1])
    assert run_dir == (tmp_path / "run").resolve()
    table = dict(line.split(None, 1) for line in lines[:-1])
    assert table["users"] == "943" and table["items"] == "1,682" and table["interactions"] == "100,000"
    assert table["val_interactions"] == "943" and table["test_interactions"] == "943"
    assert table["items_with_genres"] == "1,682"

    record = json.loads((run_dir / "run.json").read_text())
    assert len(record["data"]["fingerprint"]) == 64
    assert record["data"]["fingerprint"].startswith(table["fingerprint"])
    assert record["config"]["data"]["name"] == "ml100k"
    assert "git_commit" in record["code"]
    items = Vocabulary.load(run_dir / "vocab" / "items.parquet")
    assert len(items) == 1682 and items.decode([1]).tolist() == [1]
    meta = pd.read_parquet(run_dir / "vocab" / "item_meta.parquet")
    assert meta.loc[meta.id == 1, "title"].item().startswith("Toy Story")


def test_same_data_gives_the_same_fingerprint_across_runs(shared_data, tmp_path):
    first = _run(tmp_path / "a")
    second = _run(tmp_path / "b", "data/split=temporal")
    fingerprints = [json.loads((Path(r.stdout.strip().splitlines()[-1]) / "run.json").read_text())["data"]["fingerprint"]
                    for r in (first, second)]
    assert fingerprints[0] == fingerprints[1]


@pytest.mark.slow
def test_main_command_runs_other_data_sets(shared_data, tmp_path):
    done = _run(tmp_path, "experiment=video_games_data")
    assert done.returncode == 0, done.stderr
    table = dict(line.split(None, 1) for line in done.stdout.strip().splitlines()[:-1])
    assert table["users"] == "31,013" and table["time"].startswith("ordinal")
    small = ("data.source.n_users=300", "data.source.n_items=200", "data.source.n_interactions=6000")
    done = _run(tmp_path / "synthetic", "data=synthetic", *small)
    assert done.returncode == 0, done.stderr
    table = dict(line.split(None, 1) for line in done.stdout.strip().splitlines()[:-1])
    assert table["interactions"] == "6,000" and table["context"] == "hour, dow, device"


def test_a_bad_override_fails_with_a_message_naming_it(shared_data, tmp_path):
    done = _run(tmp_path, "data.filters.dedup=sometimes")
    # checked while Hydra builds the filters, so the error arrives wrapped: still one line and exit code 2
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: filters.dedup must be one of")


def test_a_data_error_exits_with_code_2_and_one_line_naming_it(tmp_path):
    missing = tmp_path / "none.csv"
    done = _run(tmp_path, "data=csv_log", f"data.source.path={missing}")
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"'{missing}' not found" in last
    assert "Traceback" not in done.stderr


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("model", ["pop", "ease"])
def test_train_then_eval_reproduces_the_test_metrics(shared_data, tmp_path, model):
    done = _run(tmp_path, f"model={model}", "evaluation.n_boot=200")
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    trained = _metrics(run_dir)
    for key in ("val/ndcg@10", "test/ndcg@10", "test/ndcg@10_ci_low", "test/ndcg@10_ci_high", "test/recall@10",
                "test/recall@50", "test/coverage@10", "train/fit_seconds"):
        assert key in trained, key
    assert trained["test/n_users"] == 943
    per_user = pd.read_parquet(run_dir / "per_user_test.parquet")
    assert per_user["ndcg@10"].mean() == pytest.approx(trained["test/ndcg@10"])

    cmd = [sys.executable, "-m", "marquee.eval", f"run_dir={run_dir}", f"hydra.run.dir={tmp_path}/eval",
           "evaluation.n_boot=200"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    evaluated = _metrics(Path(again.stdout.strip().splitlines()[-1]))
    for key, value in trained.items():
        if key.startswith("test/") and not key.endswith(("seconds", "ms_per_user")):  # timings differ run to run
            assert evaluated[key] == value, key


def test_ease_beats_popularity_on_ml100k_in_the_paired_readout(shared_data, tmp_path):
    from marquee.compare import main as compare

    runs = {m: _run(tmp_path / m, f"model={m}", "evaluation.n_boot=200", "stages=[test]") for m in ("pop", "ease")}
    dirs = {m: Path(r.stdout.strip().splitlines()[-1]) for m, r in runs.items()}
    ndcg = {m: _metrics(d) for m, d in dirs.items()}
    assert ndcg["ease"]["test/ndcg@10_ci_low"] > ndcg["pop"]["test/ndcg@10_ci_high"]
    report = compare([str(dirs["pop"]), str(dirs["ease"]), "--out", str(tmp_path / "ab")])
    row = report.pair("A", "B").loc["ndcg@10"]  # B (EASE) against A (MostPopular)
    assert row["diff"] == pytest.approx(ndcg["ease"]["test/ndcg@10"] - ndcg["pop"]["test/ndcg@10"])
    assert row["diff_low"] > 0 and row["p_ttest"] < 0.01 and row["n_users"] == 943
    paired = pd.read_csv(tmp_path / "ab" / "paired.csv")
    assert paired.set_index("metric").loc["ndcg@10", "diff"] == pytest.approx(row["diff"])


def test_eval_refuses_a_run_whose_data_changed(shared_data, tmp_path):
    done = _run(tmp_path, "model=pop", "evaluation.n_boot=10", "stages=[test]")
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["data"]["filters"]["user_core"] = 30  # as if the data had been filtered differently
    (run_dir / "run.json").write_text(json.dumps(record))
    cmd = [sys.executable, "-m", "marquee.eval", f"run_dir={run_dir}", f"hydra.run.dir={tmp_path}/eval"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode != 0 and "the data changed" in again.stderr
