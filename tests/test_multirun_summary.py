"""A --multirun of marquee.train ends with the ranked comparison of its jobs, written beside them."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd


def test_a_multirun_ends_with_a_summary_whose_numbers_are_its_jobs_metrics(tmp_path):
    rows = [f"{u},{(u * 7 + i * (1 + u % 3)) % 40 + 1},{1000 + i}" for u in range(40) for i in range(10)]
    (tmp_path / "log.csv").write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "marquee.train", "-m", "data=csv_log", f"data.source.path={tmp_path / 'log.csv'}",
           "model=pop,ease", "evaluation.ks=[5,10]", "evaluation.progress=false", "evaluation.n_boot=50",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert f"summary: {tmp_path / 'sweep' / 'summary' / 'report.md'}" in done.stdout
    summary = pd.read_csv(tmp_path / "sweep" / "summary" / "summary.csv").set_index("name")
    for job in ("0", "1"):
        record = json.loads((tmp_path / "sweep" / job / "run.json").read_text())
        name = {"marquee.models.baselines.MostPopular": "MostPopular",
                "marquee.models.baselines.EASE": "EASE"}[record["config"]["model"]["_target_"]]
        metrics = json.loads((tmp_path / "sweep" / job / "metrics.json").read_text())
        assert summary.loc[name, "ndcg@10"] == metrics["test/ndcg@10"]
    assert list(summary.index) == ["EASE", "MostPopular"]  # ranked, best first
