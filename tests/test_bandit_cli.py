"""The ``python -m marquee.bandit`` command line as a user types it: ``source=`` and ``policies=`` are config groups."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marquee.bandits import write_artwork_log
from marquee.config_dir import CONFIG_DIR

DOC = Path(__file__).resolve().parents[1] / "docs" / "impression_log.md"
# small settings so that a run takes seconds: few bootstrap draws, two estimators
FAST = ["n_boot=20", "estimators=[ips,snips]"]


def bandit(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the entry point in a fresh interpreter, as a user would, with run folders under ``cwd/logs``."""
    return subprocess.run([sys.executable, "-m", "marquee.bandit", *overrides, f"paths.log_dir={cwd / 'logs'}"],
                          cwd=cwd, env=os.environ.copy(), capture_output=True, text=True, timeout=300, check=False)


def run_folder(cwd: Path) -> Path:
    (folder,) = (cwd / "logs" / "bandit" / "runs").iterdir()
    return folder


def test_source_obd_in_the_natural_hydra_form_runs(shared_data, tmp_path):
    done = bandit("source=obd", "policies=obd", "~policies.epsilon_greedy", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "AttributeError" not in done.stderr  # the bug of the bandit/source@source group
    assert "| bernoulli_ts | snips |" in done.stdout and "Offline A/B test on" in done.stdout
    assert "bernoulli_ts" in (run_folder(tmp_path) / "report.md").read_text()


def test_an_unknown_source_names_the_group_and_its_options(tmp_path):
    done = bandit("source=nonsense", cwd=tmp_path)
    options = sorted(p.stem for p in (CONFIG_DIR / "source").glob("*.yaml"))
    assert done.returncode == 2 and options == ["artwork_log", "obd", "simulator"]
    assert done.stderr.strip().splitlines() == [
        "error: source=nonsense: no config 'nonsense' in group 'source' (options: artwork_log, obd, simulator)"]
    assert all(o in done.stderr for o in options), done.stderr
    assert "AttributeError" not in done.stderr and "Traceback" not in done.stderr


def _uniform_log(n: int = 600, k: int = 3, seed: int = 0) -> dict:
    """A uniform-random logger's impressions as plain columns: what a serving system would hand the writer."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(30, 4)).round(3)  # (artworks, f); artwork ids are 100..129
    arms = [rng.choice(30, k, replace=False) + 100 for _ in range(n)]
    return {"impression_id": np.arange(n), "user_id": rng.integers(0, 50, n), "title_id": rng.integers(0, 20, n),
            "context": list(rng.normal(size=(n, 3))), "arms": arms, "arm_features": [features[a - 100] for a in arms],
            "chosen": [a[s] for a, s in zip(arms, rng.integers(0, k, n))], "propensity": np.full(n, 1 / k),
            "reward": rng.binomial(1, 0.3, n)}


def test_the_documented_command_values_policies_on_your_own_log(tmp_path):
    columns = _uniform_log()
    write_artwork_log(columns, tmp_path / "impressions.parquet")
    commands = re.findall(r"^python -m marquee\.bandit source=artwork_log .*$", DOC.read_text(), re.MULTILINE)
    assert commands, f"{DOC} shows no command for source=artwork_log"
    done = bandit(*shlex.split(commands[0])[3:], *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Offline A/B test on impressions.parquet" in done.stdout and "| linucb | snips |" in done.stdout
    report = pd.read_csv(run_folder(tmp_path) / "report.csv", index_col=[0, 1])["value"]
    held_out = columns["reward"][300:].mean()  # train_fraction 0.5: the second half is valued
    assert report[("logging policy", "on-policy")] == pytest.approx(held_out)
    assert report[("uniform", "ips")] == pytest.approx(held_out)  # uniform on a uniform log: weight 1 on every row
