"""Every mistake a user can make on the command line ends with one line naming the key, and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from marquee.errors import ConfigError
from marquee.preflight import check_ks, check_stages


def _tiny_log(tmp_path: Path) -> Path:
    """20 users, 6 events each, over 25 items: small enough that every run below takes seconds."""
    rows = [f"{u},{(u + i) % 30 + 1},{1000 + i}" for u in range(20) for i in range(6)]
    path = tmp_path / "log.csv"
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    return path


def _train(tmp_path: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "marquee.train", f"hydra.run.dir={tmp_path}/run", "data=csv_log",
           f"data.source.path={_tiny_log(tmp_path)}", "evaluation.ks=[5]", "evaluation.progress=false",
           "evaluation.n_boot=20", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, **(env or {})})


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Error executing job" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    return errors[0]


MISTAKES = [
    # (overrides, what the one line must say)
    (["data.split=nonsense"], ["data.split", "data/split=<one of", "temporal"]),
    (["model=sasrec", "datamodule=sequences", "model.hiden=3"], ["model.hiden: no such key", "did you mean 'hidden'"]),
    (["model=sasrc"], ["model=sasrc", "did you mean 'sasrec'"]),
    (["model=pop", "stages=[val,tset]"], ["stages: ['tset'] unknown"]),
    (["model=sasrec", "datamodule=sequences", "evaluation.ks=[0]"], ["evaluation.ks", "positive integers"]),
    (["model=pop", "evaluation.ks=[5000]"], ["evaluation.ks: [5000] exceed the catalog's 25 items"]),
    (["model=sasrec", "datamodule=sequences", "model.side_inputs=[device]"],
     ["model.side_inputs: 'device' needs a device column"]),
    (["model=pop", "evaluation.seen=drop"], ["evaluation.seen", "'mask' or 'keep'"]),
    (["model=pop", "data.source.sep=;"], ["'data.source.sep=;'", "quote", "'data.source.sep=\";\"'"]),
]


@pytest.mark.parametrize(("overrides", "says"), MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_a_mistake_exits_2_with_one_line_naming_the_key_before_any_training(tmp_path, overrides, says):
    line = _one_error_line(_train(tmp_path, *overrides))
    for part in says:
        assert part in line, line
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before fitting anything


def test_a_failed_run_is_marked_failed_with_its_reason_and_the_traceback_in_its_log(tmp_path):
    line = _one_error_line(_train(tmp_path, "model=pop", "stages=[val,tset]"))
    run = tmp_path / "run"
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == line.removeprefix("error: ")
    assert record["started"] <= record["ended"]
    assert (run / "FAILED").read_text().strip() == record["error"]
    log = (run / "train.log").read_text()
    assert "Traceback" in log and "ConfigError" in log


def test_debug_flag_shows_the_traceback_on_the_screen(tmp_path):
    done = _train(tmp_path, "model=pop", "stages=[val,tset]", env={"MARQUEE_DEBUG": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_a_run_without_a_model_or_with_one_records_finished(tmp_path):
    done = _train(tmp_path, "model=pop")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "finished" and record["started"] <= record["ended"]
    assert not (tmp_path / "run" / "FAILED").exists()


def test_eval_of_a_directory_that_is_no_run_exits_2_naming_run_dir(tmp_path):
    cmd = [sys.executable, "-m", "marquee.eval", f"run_dir={tmp_path}", f"hydra.run.dir={tmp_path}/eval"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert _one_error_line(done).startswith(f"error: run_dir: '{tmp_path}' is not a marquee run directory")


def test_eval_without_run_dir_names_the_missing_key(tmp_path):
    cmd = [sys.executable, "-m", "marquee.eval", f"hydra.run.dir={tmp_path}/eval"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert _one_error_line(done).startswith("error: run_dir: required")


def test_the_checks_themselves():
    assert check_stages(["test", "val"]) == ["test", "val"]
    with pytest.raises(ConfigError, match="stages"):
        check_stages(["val", "tset"])
    check_ks([10, 30], 30)  # k equal to the catalog is allowed
    with pytest.raises(ConfigError, match=r"\[31\] exceed"):
        check_ks([10, 31], 30)
