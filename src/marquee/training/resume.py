"""Resuming from an earlier run's checkpoint continues in the new run's folder and leaves the earlier run untouched."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def relocate_state(state: dict[str, Any], old: Path, new: Path, copy: bool) -> None:
    """Point a ModelCheckpoint's saved bookkeeping at copies of its files in ``new`` (copied when ``copy``)."""
    new.mkdir(parents=True, exist_ok=True)

    def moved(path: str) -> str:
        if not path or Path(path).parent.resolve() != old.resolve():
            return path
        target = new / Path(path).name
        if copy and Path(path).is_file() and not target.exists():
            shutil.copy2(path, target)
        return str(target)

    for key in PATH_KEYS:
        if state.get(key):
            state[key] = moved(state[key])
    if state.get("best_k_models"):
        state["best_k_models"] = {moved(p): score for p, score in state["best_k_models"].items() if Path(p).is_file()}
    state["dirpath"] = str(new)


class ResumeInNewRun(pl.Callback):
    """Before the checkpoint callbacks restore their state, move that state into this run's checkpoint folder.

    Lightning restores a ModelCheckpoint's best score, top-k and last path only when its ``dirpath``
    is unchanged; otherwise it warns, keeps just a best path inside the earlier run, and pruning the
    top-k would then delete the earlier run's files. Copying the named checkpoints here first (rank
    zero copies) and rewriting the paths lets Lightning restore everything, and every later write or
    deletion happens in this run. Written by hand: Lightning has no option for resuming into a new folder.
    """

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
                           ) -> None:
        states = checkpoint.get("callbacks", {})
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            if state is None or not callback.dirpath or not state.get("dirpath"):
                continue
            old, new = Path(state["dirpath"]), Path(callback.dirpath)
            if old.resolve() != new.resolve():
                relocate_state(state, old, new, copy=trainer.is_global_zero)
                log.info("resuming: the checkpoints of %s continue in %s", old, new)
