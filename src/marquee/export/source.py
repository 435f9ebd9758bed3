"""Which finished run a ``run_dir`` names, and what it recorded: a run, a pipeline run, or a study's frozen winner.

A study folder (``study.json``) names its winner's seed runs ``seeds/seed_<s>/``; without ``seed`` the
one with the best validation score on the study's own metric is taken (never a test score: the
winner was chosen on validation, and so is the run that serves).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marquee.checkpoint import MODEL_FILE
from marquee.errors import ConfigError


@dataclass
class RunSource:
    """A finished run folder with its ``run.json`` and ``metrics.json``; ``study`` says how a study's seed was chosen."""

    path: Path
    record: dict[str, Any]
    metrics: dict[str, Any]
    study: dict[str, Any] | None = field(default=None)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / MODEL_FILE


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _finished_run(path: Path) -> RunSource:
    record_path = path / "run.json"
    if not record_path.is_file():
        raise ConfigError("run_dir", f"'{path}' is not a marquee run or study folder: no run.json or study.json in it")
    record = _read_json(record_path)
    if record.get("status") != "finished":
        raise ConfigError("run_dir", f"'{path}' did not finish (status '{record.get('status', 'unknown')}'"
                          + (f": {record['error']}" if record.get("error") else "") + "); export a finished run")
    if not (path / "checkpoints" / MODEL_FILE).is_file():
        raise ConfigError("run_dir", f"'{path}' has no saved model (checkpoints/{MODEL_FILE}): it trained no model")
    return RunSource(path, record, _read_json(path / "metrics.json"))


def resolve_run(run_dir: str | Path, seed: int | None = None) -> RunSource:
    """The run to export: ``run_dir`` itself, or a study's seed run (``seed``, else the best on validation)."""
    path = Path(run_dir).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError("run_dir", f"'{path}' does not exist")
    study = _read_json(path / "study.json")
    if not study:
        if seed is not None:
            raise ConfigError("seed", f"'{path}' is a run, not a study: seed= picks a study's seed run")
        return _finished_run(path)
    if seed is not None:
        chosen = _finished_run(path / "seeds" / f"seed_{seed}")
        chosen.study = {"study_dir": str(path), "seed": seed, "chosen_by": "seed="}
        return chosen
    metric, sign = study["metric"], (1 if study.get("direction", "maximize") == "maximize" else -1)
    candidates = []
    for folder in sorted((path / "seeds").glob("seed_*")):
        if _read_json(folder / "run.json").get("status") == "finished":
            value = _read_json(folder / "metrics.json").get(metric)
            if isinstance(value, int | float) and math.isfinite(value):
                candidates.append((sign * value, -int(folder.name.removeprefix("seed_")), folder))
    if not candidates:
        raise ConfigError("run_dir", f"study '{path}' has no finished seed run with {metric} (seeds/seed_<s>/): "
                          "run the study to its end, or name one with seed=")
    _, negative_seed, best = max(candidates)
    chosen = _finished_run(best)
    chosen.study = {"study_dir": str(path), "seed": -negative_seed,
                    "chosen_by": f"best {metric} ({study.get('direction', 'maximize')}) over its seed runs"}
    return chosen
