"""A model whose memory grows with the square of the catalog stops before allocating, with a message a person can act on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_ease_over_a_stated_memory_limit_stops_with_one_clear_line_and_exit_code_2(shared_data, tmp_path):
    # ML-100K's 1,682 items: EASE needs ~56 MiB (float32 weights, float64 factor and inverse); 20 MB is too little
    env = {**os.environ, "MARQUEE_MEMORY_LIMIT": "20MB"}
    cmd = [sys.executable, "-m", "marquee.train", "model=ease", f"hydra.run.dir={tmp_path}/run"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: EASE on 1,682 items needs about 5") and "MiB" in message
    assert "MARQUEE_MEMORY_LIMIT has 20 MiB available" in message
    assert "data.filters.item_core" in message and "model=itemknn" in message
    assert "Traceback" in (tmp_path / "run" / "train.log").read_text()  # the details stay in the run's log
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was fitted or written

    env["MARQUEE_MEMORY_LIMIT"] = "1GB"
    done = subprocess.run([*cmd[:-1], f"hydra.run.dir={tmp_path}/fits", "stages=[test]", "evaluation.n_boot=10"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
