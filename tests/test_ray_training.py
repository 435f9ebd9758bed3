"""Training on a Ray cluster (``launcher=ray``): Ray Train's TorchTrainer with 2 CPU workers on a Ray started for the run.

The run finishes, Ray's checkpoints lie in the storage path, the best one's weights are the saved model,
and that model evaluated again in one process (``marquee.eval``) gives exactly the run's test metrics.
Without Ray, or with a trainer that starts processes itself, ``launcher=ray`` stops with one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from marquee.checkpoint import MODEL_FILE, load_system
from marquee.config_dir import CONFIG_DIR
from marquee.errors import ConfigError
from marquee.training.ray_launch import check_launcher
from tests.helpers import train
from tests.test_ddp_training import MODELS, SMALL, TIMINGS

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='Ray Train is an optional extra, not installed here: pip install "marquee[ray]"')


def _metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


@needs_ray
@pytest.mark.slow
def test_two_ray_workers_train_sasrec_and_the_checkpoint_evaluates_like_a_normal_run(tmp_path):
    overrides, batch = MODELS["sasrec"]
    run_dir = tmp_path / "run"
    # two workers, each a DDP rank with half of the one-process batch (the same global batch)
    done = train(run_dir, *SMALL, *overrides, f"datamodule.batch_size={batch // 2}", "launcher=ray",
                 "launcher.num_workers=2", "trainer.max_epochs=2")
    assert done.returncode == 0, done.stderr[-6000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["launcher"]["kind"] == "ray"
    assert "world_rank=0" in done.stderr and "world_rank=1" in done.stderr  # Ray started both ranks
    assert "Failed to query Ray Train Controller" not in done.stderr  # no warning a second without the dashboard

    # Ray Train's checkpoints lie in the storage path (by default under the run); the best and the last are copied
    # into the run's checkpoints folder under a one-process run's names
    reported = sorted((run_dir / "ray").glob("*/checkpoint_*/checkpoint.ckpt"))
    assert reported
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(best) == 1 and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert torch.load(best[0], map_location="cpu", weights_only=False)["state_dict"].keys() == \
        torch.load(reported[-1], map_location="cpu", weights_only=False)["state_dict"].keys()

    # the saved model is the best epoch's: its weights, and the driver's validation equals what the workers logged
    metrics = _metrics(run_dir)
    assert metrics["train/epochs"] == 2 and metrics["train/seconds"] > 0
    assert metrics["val/ndcg@10"] == pytest.approx(metrics["train/best_val_score"], rel=1e-5)
    system, _ = load_system(run_dir / "checkpoints" / MODEL_FILE)
    weights = torch.load(best[0], map_location="cpu", weights_only=False)["state_dict"]
    for name, value in system.state_dict().items():
        assert torch.equal(value, weights[f"net.{name}"]), name

    # the workers' curves reach the run's own trackers (replayed by the driver): a loss for each epoch
    curves = pd.read_csv(run_dir / "csv" / "version_0" / "metrics.csv")
    assert curves.dropna(subset=["train/loss_epoch"])["epoch"].tolist() == [0, 1]

    # evaluated again in one process, the saved model scores exactly the run's test metrics
    command = [sys.executable, "-m", "marquee.eval", f"run_dir={run_dir}", f"hydra.run.dir={tmp_path}/eval",
               "stages=[test]"]
    again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    reevaluated = _metrics(tmp_path / "eval")
    compared = [k for k in reevaluated if k.startswith("test/") and not k.endswith(TIMINGS)]
    assert "test/ndcg@10" in compared
    assert {k: reevaluated[k] for k in compared} == {k: metrics[k] for k in compared}
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "eval" / "per_user_test.parquet"),
                                  pd.read_parquet(run_dir / "per_user_test.parquet"))


# ---- refusals ---------------------------------------------------------------------------------------------------


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=["experiment=sasrec_ml100k", "paths.output_dir=/tmp", *overrides])


def test_launcher_ray_refuses_a_trainer_that_starts_its_own_processes():
    for trainer in ("ddp_cpu", "ddp"):
        with pytest.raises(ConfigError, match="^launcher: .*drop trainer=ddp"):
            check_launcher(_cfg("launcher=ray", f"trainer={trainer}"))
    check_launcher(_cfg("trainer=ddp_cpu"))  # the local launcher runs DDP as before


def test_launcher_ray_without_ray_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")] + ["ray"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import ray...` fails as if it were not installed
    with pytest.raises(ConfigError, match=r'^launcher: launcher=ray needs Ray Train.*pip install "marquee\[ray\]"'):
        check_launcher(_cfg("launcher=ray"))


@pytest.mark.slow
def test_launcher_ray_without_ray_stops_the_command_with_one_line(tmp_path):
    hidden = tmp_path / "hide" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named ray (hidden by the test)')\n")
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "marquee.train", f"hydra.run.dir={run_dir}", "experiment=sasrec_ml100k",
               "data=synthetic", "launcher=ray"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: launcher: launcher=ray needs Ray Train") and 'pip install "marquee[ray]"' in last
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("launcher:")
