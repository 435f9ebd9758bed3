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


TONES = ("bright", "dark", "close-up")


def artwork_policy(bundle, kind: str = "linear", epsilon: float = 0.2, theta=None, name: str = "test policy",
                   skip: int = 0) -> dict:
    """A ``marquee-artwork-policy`` over a bundle's titles (all but the last ``skip``): each title's artworks
    show its genres, then two tones. ``theta`` defaults to 0 but a liking for the tone "dark" at night."""
    import numpy as np

    meta = bundle.item_metadata(np.arange(1, bundle.n_items + 1))
    genres = sorted({g for gs in meta["genres"] for g in gs})
    features = [f"genre:{g}" for g in genres] + [f"tone:{t}" for t in TONES]
    titles = {str(raw): [genres.index(g) for g in sorted(gs)][:2] + [len(genres) + 1, len(genres)]
              for raw, gs in list(zip(meta["raw_id"], meta["genres"], strict=True))[: bundle.n_items - skip]}
    d, f = len(genres) + 4, len(features)
    if theta is None:
        theta = np.zeros((d + 1, f))
        theta[1 + len(genres) + 0, len(genres) + 1] = 1.0  # context "hour:night" x arm "tone:dark"
    policy = {"format": "marquee-artwork-policy", "version": 1, "name": name, "kind": kind,
              "layout": {"genres": genres, "taste_mean": [0.1] * len(genres), "taste_std": [0.2] * len(genres),
                         "hour_buckets": ["night", "morning", "afternoon", "evening"], "arm_features": features,
                         "titles": titles}}
    if kind == "linear":
        policy |= {"epsilon": epsilon, "theta": np.asarray(theta, dtype=float).ravel().tolist()}
    return policy


def write_policy(path: Path, policy: dict) -> Path:
    import json

    path.write_text(json.dumps(policy))
    return path


def minimal_policy(kind: str = "uniform") -> dict:
    """A valid ``marquee-artwork-policy`` with two genres and one title (raw id "1")."""
    features = ["genre:a", "genre:b", *(f"tone:{t}" for t in TONES)]
    policy = {"format": "marquee-artwork-policy", "version": 1, "name": "minimal", "kind": kind,
              "layout": {"genres": ["a", "b"], "taste_mean": [0.5, 0.5], "taste_std": [0.1, 0.1],
                         "hour_buckets": ["night", "morning", "afternoon", "evening"], "arm_features": features,
                         "titles": {"1": [0, 2, 3]}}}
    if kind == "linear":
        policy |= {"epsilon": 0.1, "theta": [float(i) for i in range(7 * len(features))]}
    return policy


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a service or a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gloo_group(rank: int, world: int, port: int):
    """Context manager: this process as rank ``rank`` of a ``world``-process gloo group on loopback, torn down after."""
    import contextlib
    import os

    import torch.distributed as dist

    @contextlib.contextmanager
    def group():
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        try:
            yield
        finally:
            dist.destroy_process_group()

    return group()
