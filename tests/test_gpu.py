"""The GPU path: training on CUDA in bf16 mixed precision, and evaluation on the device agreeing with the CPU's.

These run only where a CUDA device is present (a lent GPU machine); elsewhere they skip and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU path (bf16 "
                                "training, evaluation on the device) runs only on a machine with one")

SMALL = ["data=synthetic", "data.source.n_users=300", "data.source.n_items=120", "data.source.n_interactions=9000",
         "model.max_len=20", "evaluation.n_boot=10", "evaluation.progress=false", "~callbacks.progress_bar",
         "+trainer.enable_progress_bar=false"]


def _run(module: str, *overrides: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", module, *overrides], capture_output=True, text=True, timeout=600,
                          env=os.environ.copy(), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_sasrec_trains_on_the_gpu_in_bf16_and_its_evaluation_matches_the_cpus(tmp_path: Path):
    run = tmp_path / "gpu"
    _run("marquee.train", "experiment=sasrec_ml100k", *SMALL, "trainer=gpu", "trainer.max_epochs=3",
         "evaluation.device=cuda", f"hydra.run.dir={run}")
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["trainer"]["precision"] == "bf16-mixed" and record["status"] == "finished"
    on_gpu = json.loads((run / "metrics.json").read_text())
    assert on_gpu["train/epochs"] == 3 and on_gpu["test/ndcg@10"] > 0
    cpu = tmp_path / "cpu_eval"
    _run("marquee.eval", f"run_dir={run}", "evaluation.device=cpu", f"hydra.run.dir={cpu}")
    on_cpu = json.loads((cpu / "metrics.json").read_text())
    # the same float32 weights scored on two devices: sums in another order may swap near-tied items, no more
    for key in ("test/ndcg@10", "test/recall@10", "test/mrr@10"):
        assert on_cpu[key] == pytest.approx(on_gpu[key], abs=2e-3), key
