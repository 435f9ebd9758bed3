"""Small logs built in memory for tests, and training runs in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from marquee.data.build import build_log
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from marquee.data.log import InteractionLog
from marquee.data.raw import RawLog


def make_raw(rows: list[tuple], name: str = "toy", **extra_columns: list) -> RawLog:
    """A RawLog from ``(user, item, timestamp)`` or ``(user, item, timestamp, event, value)`` tuples."""
    rows = [r if len(r) == 5 else (*r, "interaction", 1.0) for r in rows]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event", "value"])
    for column, values in extra_columns.items():
        frame[column] = values
    return RawLog(name=name, interactions=frame, source=f"{name}.csv", line_offset=2)


def make_log(rows: list[tuple], events: EventSchema | None = None, filters: Filters | None = None,
             **extra_columns: list) -> InteractionLog:
    """An InteractionLog built from tuples through the real build path."""
    return build_log(make_raw(rows, **extra_columns), events, filters)


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``python -m marquee.train`` into ``run_dir`` with Hydra overrides, run from ``run_dir``'s parent, one thread."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "marquee.train", f"hydra.run.dir={run_dir}", "torch_threads=1", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=run_dir.parent, check=False)
