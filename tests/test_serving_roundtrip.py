"""The loop closed, end to end: a trained run, exported, served as an A/B test in its own process, members
answering with plays; the service killed and restarted; the log compacted; the bandit and the A/B readout read it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from marquee.compare import main as compare
from marquee.serving.ab import ab_readout
from marquee.serving.impressions import EVENTS, IMPRESSIONS, compact, read_impressions, read_lines
from tests.helpers import free_port
from tests.test_serving import N_HISTORIES, _start, bundle, bundle_dir, histories, run_dir  # noqa: F401
from tests.test_serving_ab import bundle_b  # noqa: F401


def _serve(bundle_a: Path, bundle_other: Path, history_file: Path, log_dir: Path, port: int) -> subprocess.Popen:
    return _start(bundle_a, log_dir, port, f"variant_b={bundle_other}", "split=0.5", f"histories={history_file}",
                  "seed=0")


def _visit(url: str, members: range, rng: np.random.Generator, play_b: float, play_a: float) -> tuple[int, int]:
    """Each member opens their page; the first title of each row is played with the variant's probability."""
    shown = played = 0
    for member in members:
        page = httpx.post(f"{url}/recommend", json={"user_id": str(member), "k": 4, "rows": 2}, timeout=30).json()
        rate = play_b if page["variant"] == "B" else play_a
        for row in page["rows"]:
            for item in row["items"]:
                shown += 1
            if rng.random() < rate:
                answer = httpx.post(f"{url}/events", json={"impression_id": row["items"][0]["impression_id"],
                                                           "event": "play", "value": 0.9}, timeout=30)
                assert answer.status_code == 200, answer.text
                played += 1
    return shown, played


@pytest.mark.slow
def test_train_export_serve_log_kill_restart_and_the_bandit_and_ab_readout_read_it(
        bundle_dir, bundle_b, histories, tmp_path):  # noqa: F811
    log_dir, rng = tmp_path / "log", np.random.default_rng(0)
    port = free_port()
    first = _serve(bundle_dir, bundle_b, histories, log_dir, port)
    shown, played = _visit(f"http://127.0.0.1:{port}", range(1, N_HISTORIES // 2 + 1), rng, 0.9, 0.1)
    os.killpg(first.pid, signal.SIGKILL)  # no shutdown: only what was fsynced before each answer survives
    first.wait()
    second = _serve(bundle_dir, bundle_b, histories, log_dir, port := free_port())
    more = _visit(f"http://127.0.0.1:{port}", range(N_HISTORIES // 2 + 1, N_HISTORIES + 1), rng, 0.9, 0.1)
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()

    impressions, events = list(read_impressions(log_dir / IMPRESSIONS)), list(read_lines(log_dir / EVENTS))
    assert len(impressions) == shown + more[0] and len(events) == played + more[1]  # every acknowledged line

    readout = ab_readout(log_dir)
    arms = {arm.variant: arm for arm in readout.arms}
    assert set(arms) == {"A", "B"} and sum(a.impressions for a in arms.values()) == len(impressions)
    assert sum(a.plays for a in arms.values()) == len({e["impression_id"] for e in events})
    assert arms["B"].play_rate > arms["A"].play_rate  # the planted difference: B's members play far more often
    assert compare([str(log_dir)]).table() == readout.table()  # python -m marquee.compare LOG_DIR: the same readout

    paths = compact(log_dir, tmp_path / "compacted")
    joined = pd.read_parquet(paths["joined"])
    assert len(joined) == len(impressions) and int(joined["played"].sum()) == len({e["impression_id"] for e in events})
    done = subprocess.run([sys.executable, "-m", "marquee.bandit", "source=artwork_log",
                           f"source.path={paths['artwork_log']}", "n_boot=20", "estimators=[ips,snips]",
                           "reward_folds=2", f"paths.log_dir={tmp_path / 'bandit'}"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(next((tmp_path / "bandit").rglob("run.json")).read_text())
    assert record["status"] == "finished" and record["data"]["rows"] == len(impressions)
    report = pd.read_csv(next((tmp_path / "bandit").rglob("report.csv")))
    assert len(report) > 0 and report["value"].notna().all()
