"""``marquee.compare`` pairs two runs only when they share data, split and evaluation protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marquee.compare import main as compare
from tests.helpers import train

FINGERPRINT = "0123456789abcdef" * 4
LEAVE_ONE_OUT = {"_target_": "marquee.data.splits.LeaveOneOut", "min_interactions": 3}
EVALUATION = {"ks": [10, 20, 50], "seen": "mask", "history": "visible", "sampled": None, "n_boot": 1000}


def write_run(run_dir: Path, per_user: pd.DataFrame, config: dict | None = None, fingerprint: str = FINGERPRINT,
              split: dict | None = None, stages: tuple[str, ...] = ("test",), metrics: dict | None = None,
              status: str | None = "finished", **evaluation) -> Path:
    """A run directory as marquee.train leaves it, as far as compare reads it: run.json (``config`` merged into its
    config), per_user_<stage>.parquet per stage, and metrics.json with their per-user means plus ``metrics``."""
    run_dir.mkdir(parents=True)
    record = {"config": {**(config or {}), "data": {"name": "toy", "split": split or LEAVE_ONE_OUT},
                         "evaluation": {**EVALUATION, **evaluation}},
              "data": {"name": "toy", "fingerprint": fingerprint, "users": len(per_user)}}
    if status is not None:  # records from before run status existed have none
        record["status"] = status
    (run_dir / "run.json").write_text(json.dumps(record))
    means = per_user.drop(columns="user_id").select_dtypes("number").mean()
    recorded = {}
    for stage in stages:
        per_user.to_parquet(run_dir / f"per_user_{stage}.parquet")
        recorded.update({f"{stage}/{metric}": float(value) for metric, value in means.items()})
    recorded.update(metrics or {})
    (run_dir / "metrics.json").write_text(json.dumps(recorded))
    return run_dir


def _fake_run(run_dir: Path, fingerprint: str = FINGERPRINT, split: dict | None = None, users: range = range(1, 61),
              shift: float = 0.0, **evaluation) -> Path:
    """A run with no status in its record, random per-user metrics (the same for the same users) plus ``shift``."""
    rng = np.random.default_rng(len(users))  # the same base values for every run over the same users
    per_user = pd.DataFrame({"user_id": list(users), "ndcg@10": rng.random(len(users)) + shift,
                             "recall@10": rng.random(len(users)), "recall@50": rng.random(len(users)),
                             "mrr@10": rng.random(len(users)), "activity": "1-5"})
    return write_run(run_dir, per_user, fingerprint=fingerprint, split=split, status=None, **evaluation)


def _refusal(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The one stderr line of a refused comparison (exit code 2)."""
    with pytest.raises(SystemExit) as stopped:
        compare([*argv, "--n-boot", "50"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_runs_on_the_same_data_split_and_protocol_are_paired(tmp_path, capsys):
    a = _fake_run(tmp_path / "a")
    # ks, n_boot and other settings that leave the per-user numbers alone may differ
    b = _fake_run(tmp_path / "b", shift=0.25, ks=[10], n_boot=200)
    table = compare([str(a), str(b), "--metrics", "ndcg@10", "recall@10", "--n-boot", "50"]).pair("A", "B")
    assert table.loc["ndcg@10", "diff"] == pytest.approx(0.25) and table.loc["recall@10", "diff"] == 0
    assert table.loc["ndcg@10", "n_users"] == 60
    assert "paired comparison over 60 users" in capsys.readouterr().out


def test_runs_on_different_data_are_refused_naming_both_runs_and_fingerprints(tmp_path, capsys):
    a = _fake_run(tmp_path / "pop_ml100k")
    b = _fake_run(tmp_path / "ease_other", fingerprint="fedcba9876543210" * 4)  # same user ids, other log
    line = _refusal(capsys, str(a), str(b))
    assert f"run A '{a}'" in line and f"run B '{b}'" in line
    assert "data fingerprint 0123456789abcdef (toy) in A, fedcba9876543210 (toy) in B" in line


@pytest.mark.parametrize("split, named", [
    ({**LEAVE_ONE_OUT, "min_interactions": 5}, "data.split.min_interactions 3 in A, 5 in B"),
    ({"_target_": "marquee.data.splits.TemporalSplit", "val_quantile": 0.8, "test_quantile": 0.9},
     ("data.split._target_ 'marquee.data.splits.LeaveOneOut' in A, 'marquee.data.splits.TemporalSplit' in B; "
      "data.split.min_interactions 3 in A, absent in B; data.split.test_quantile absent in A, 0.9 in B")),
])
def test_runs_split_differently_are_refused(tmp_path, capsys, split, named):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b", split=split)
    line = _refusal(capsys, str(a), str(b))
    assert named in line and "cannot be paired" in line


def test_runs_evaluated_under_another_protocol_are_refused(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b", seen="keep", history="train")
    line = _refusal(capsys, str(a), str(b))
    assert "evaluation.seen 'mask' in A, 'keep' in B" in line
    assert "evaluation.history 'visible' in A, 'train' in B" in line
    c = _fake_run(tmp_path / "c", sampled={"n_negatives": 100, "strategy": "uniform"})
    assert ("evaluation.sampled None in A, {'n_negatives': 100, 'strategy': 'uniform'} in B"
            in _refusal(capsys, str(a), str(c)))


def test_an_eval_output_is_read_through_the_run_it_evaluated_with_its_overrides(tmp_path, capsys):
    trained = _fake_run(tmp_path / "trained")
    evaluated = _fake_run(tmp_path / "eval", shift=0.1)
    (evaluated / "run.json").unlink()  # marquee.eval writes eval.json and Hydra's overrides instead
    (evaluated / "eval.json").write_text(json.dumps({"evaluated_run": str(trained), "stages": ["test"]}))
    (evaluated / ".hydra").mkdir()
    (evaluated / ".hydra" / "overrides.yaml").write_text(f"- run_dir={trained}\n- evaluation.n_boot=10\n")
    report = compare([str(trained), str(evaluated), "--n-boot", "50"])
    assert report.pair("A", "B").loc["ndcg@10", "diff"] == pytest.approx(0.1)

    (evaluated / ".hydra" / "overrides.yaml").write_text(f"- run_dir={trained}\n- evaluation.seen=keep\n")
    assert "evaluation.seen 'mask' in A, 'keep' in B" in _refusal(capsys, str(trained), str(evaluated))


def test_a_folder_without_run_json_or_per_user_metrics_is_refused_in_one_line(tmp_path, capsys):
    a = _fake_run(tmp_path / "a")
    (tmp_path / "empty").mkdir()
    line = _refusal(capsys, str(a), str(tmp_path / "empty"))
    assert f"'{tmp_path / 'empty'}' is not a marquee run directory: no run.json in it" in line
    assert "is not a directory" in _refusal(capsys, str(a), str(tmp_path / "missing"))

    b = _fake_run(tmp_path / "b")
    (b / "per_user_test.parquet").unlink()
    assert f"no per-user metrics at '{b / 'per_user_test.parquet'}'" in _refusal(capsys, str(a), str(b))

    (b / "run.json").write_text("{not json")
    assert f"'{b / 'run.json'}' is not valid JSON" in _refusal(capsys, str(a), str(b))


def test_a_run_that_failed_is_refused_with_its_reason(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b")
    record = json.loads((b / "run.json").read_text())
    (b / "run.json").write_text(json.dumps({**record, "status": "failed", "error": "out of memory"}))
    assert f"'{b}' did not finish: failed: out of memory" in _refusal(capsys, str(a), str(b))
    (b / "run.json").write_text(json.dumps({**record, "status": "finished"}))
    assert compare([str(a), str(b), "--n-boot", "50"]).pair("A", "B").loc["ndcg@10", "diff"] == 0


def test_other_users_are_refused_in_one_line(tmp_path, capsys):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b", users=range(3, 63))
    assert "2 only in run A, 2 only in run B" in _refusal(capsys, str(a), str(b))


def test_the_command_exits_with_code_2_and_no_traceback(tmp_path):
    a, b = _fake_run(tmp_path / "a"), _fake_run(tmp_path / "b", fingerprint="f" * 64)
    done = subprocess.run([sys.executable, "-m", "marquee.compare", str(a), str(b)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: run A") and "ffffffffffffffff (toy) in B" in done.stderr


@pytest.mark.slow
def test_real_runs_pair_on_the_same_split_are_refused_on_another_and_report_their_metrics_json(tmp_path, capsys):
    tiny = ("data=synthetic", "data.source.n_users=200", "data.source.n_items=100", "data.source.n_interactions=3000",
            "model=pop", "evaluation.n_boot=10", "evaluation.progress=false", "stages=[test]")
    runs = {"seeds/s42": (), "seeds/s7": ("seed=7",), "temporal": ("data/split=temporal",)}
    for name, overrides in runs.items():
        done = train(tmp_path / name, *tiny, *overrides)
        assert done.returncode == 0, done.stderr
    loo = tmp_path / "seeds" / "s42"
    table = compare([str(loo), str(loo), "--n-boot", "50"]).pair("A", "B")  # what marquee.train records pairs with itself
    assert table.loc["ndcg@10", "n_users"] == json.loads((loo / "metrics.json").read_text())["test/n_users"]
    line = _refusal(capsys, str(loo), str(tmp_path / "temporal"))
    assert "data.split._target_ 'marquee.data.splits.LeaveOneOut' in A, 'marquee.data.splits.TemporalSplit' in B" in line
    assert "data fingerprint" not in line  # the same log, split another way

    # two seeds of one config (their recorded paths, loggers and ${seed} copies differ) are one group, and the
    # report's numbers are their metrics.json numbers
    report = compare([str(tmp_path / "seeds"), "--n-boot", "50", "--out", str(tmp_path / "report")])
    assert [(g.name, sorted(g.seeds)) for g in report.groups] == [("MostPopular", [7, 42])]
    recorded = [json.loads((tmp_path / "seeds" / s / "metrics.json").read_text()) for s in ("s42", "s7")]
    written = pd.read_csv(tmp_path / "report" / "summary.csv").iloc[0]
    for metric in report.metrics:
        values = [r[f"test/{metric}"] for r in recorded]
        assert written[metric] == report.summary.loc[0, metric] == pytest.approx(np.mean(values), rel=1e-12)
        if values[0] == values[1]:  # popularity does not depend on the seed: the mean is the number itself
            assert written[metric] == values[0]
    assert f"| 1 | A | MostPopular | 2 | {written['ndcg@10']:.4f} ± 0.0000 |" in (tmp_path / "report" / "report.md").read_text()
