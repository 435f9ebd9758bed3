"""Event kinds take effect: a skipped title is learned as not wanted, and only positive events are targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from marquee import train
from marquee.checkpoint import load_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.pipeline import prepare_split

N_USERS, STEPS = 300, 8


def _skip_log(tmp_path: Path) -> Path:
    """Every member plays a title X in 1..10, starts X + 10 and skips it, then plays X + 20; then the next X.

    After a play of X the next event is always the skip of X + 10: a model that takes every event for a
    positive learns to recommend X + 10 there; one that knows skips learns that nobody wanted it.
    """
    rng = np.random.default_rng(0)
    rows = []
    for user in range(N_USERS):
        t = 1_700_000_000
        # 0-2 plays first; with max_len 10 (not a multiple of 3) training windows end at every phase of the triples
        for item in rng.integers(21, 31, rng.integers(0, 3)):
            rows.append((user, int(item), t, "play"))
            t += 3600
        for _ in range(rng.integers(STEPS - 2, STEPS + 3)):
            x = int(rng.integers(1, 11))
            for item, event in ((x, "play"), (x + 10, "skip"), (x + 20, "play")):
                rows.append((user, item, t, event))
                t += 3600
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user", "item", "ts", "action"]).to_csv(path, index=False)
    return path


def _cfg(csv: Path, out: Path, skip: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[
            "data=csv_log", f"data.source.path={csv}", "+data.source.columns.event=action",
            "~data.events.types", f"+data.events.types={{play: 1.0, skip: {skip}}}", "model=sasrec", "datamodule=sequences",
            "model.max_len=10", "model.hidden=32", "model.layers=1", "model.heads=1", "model.inner=64",
            "model.dropout=0.1", "datamodule.windows=all", "datamodule.batch_size=32", "optim.optimizer.lr=0.005",
            "trainer.max_epochs=10", "callbacks=none", "logger=csv", "evaluation.n_boot=20",
            "evaluation.progress=false", "evaluation.ks=[1,5]", "+trainer.enable_progress_bar=false",
            "trainer.check_val_every_n_epoch=10", f"paths.output_dir={out}"])


def _rank_of_skipped_title(run_dir: Path, csv: Path) -> float:
    """Mean rank, over members, of the title they went on to skip, right after their last play of an X."""
    model, _ = load_system(run_dir / "checkpoints" / "model.pt")
    model.eval()
    frame = pd.read_csv(csv)
    lasts = [torch.from_numpy(s.to_numpy()[-2 - model.max_len : -2]) for _, s in frame.groupby("user")["item"]]
    history = torch.stack(lasts)  # (U, max_len): each member's events up to the last play of an X
    skipped = history[:, -1:] + 10  # (U, 1) the ids are the raw ids: every title 1..30 occurs
    with torch.no_grad():
        scores = model.score({"user": torch.arange(1, len(history) + 1), "items": history})  # (U, n_items + 1)
    scores[:, 0] = float("-inf")
    return float((scores > scores.gather(1, skipped)).sum(1).add(1).float().mean())


@pytest.mark.slow
def test_a_skipped_title_is_learned_as_not_wanted_and_is_never_a_target(tmp_path):
    csv = _skip_log(tmp_path)
    knows = _cfg(csv, tmp_path / "skip_negative", "{weight: 1.0, positive: false}")
    split = prepare_split(knows.data)
    assert set(split.targets("test")["event"]) == {"play"} and set(split.targets("val")["event"]) == {"play"}
    assert (split.test["event"] == "skip").sum() == 0  # every member's last event is a play
    train.run(knows)
    blind = _cfg(csv, tmp_path / "skip_positive", "1.0")
    train.run(blind)
    # taken for a positive, the skip is the one certain next event: it ranks first
    assert _rank_of_skipped_title(tmp_path / "skip_positive", csv) < 1.5
    # declared not positive with a weight, it is pushed below most of the 30 titles
    assert _rank_of_skipped_title(tmp_path / "skip_negative", csv) > 15
