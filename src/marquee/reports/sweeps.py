"""A ``marquee.sweep`` study as a report reads it: ``study.json``, its trials, and the frozen winner.

A sweep folder holds ``study.json`` (study name, the metric, its direction, the search space and the
Optuna storage file), ``trials.csv`` (one row per trial: ``number, state, value, duration_s,
params_<key>..., run_dir``), ``trials/<number>/`` (runs evaluated on validation only), ``best.yaml``
and ``seeds/seed_<s>/`` (the winner re-run per seed, validation and test). The trials come from
``trials.csv``, or from the Optuna journal while the sweep has not written it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from marquee.reports.protocol import NotComparable, read_json

STUDY_KEYS = ("study_name", "metric", "direction")


@dataclass(frozen=True)
class Sweep:
    """One sweep folder: its study's name, metric and direction, search space, trials and ``best.yaml`` text."""

    path: Path
    name: str
    metric: str  # e.g. val/ndcg@10
    direction: str  # maximize or minimize
    search_space: dict[str, Any]
    trials: pd.DataFrame  # number, state, value, duration_s, params_<key> ...
    best_yaml: str | None

    @property
    def params(self) -> list[str]:
        """The searched config keys, in the order of the trial table's ``params_`` columns."""
        return [c.removeprefix("params_") for c in self.trials.columns if c.startswith("params_")]

    def complete(self) -> pd.DataFrame:
        """The trials that finished with a value, by trial number."""
        done = self.trials[(self.trials["state"] == "COMPLETE") & self.trials["value"].notna()]
        return done.sort_values("number")

    def best_trial(self) -> pd.Series | None:
        """The complete trial with the best value in the study's direction (None before any completes)."""
        done = self.complete()
        if done.empty:
            return None
        values = done["value"] if self.direction == "maximize" else -done["value"]
        return done.loc[values.idxmax()]


def _journal_trials(path: Path, study: dict[str, Any]) -> pd.DataFrame:
    """The trial table from the sweep's Optuna journal, as ``trials.csv`` would hold it."""
    import optuna  # only for a sweep that has not written trials.csv yet

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    loaded = optuna.load_study(study_name=study["study_name"], storage=storage)
    frame = loaded.trials_dataframe(attrs=("number", "value", "state", "duration", "params"))
    if frame.empty:
        return pd.DataFrame(columns=["number", "state", "value", "duration_s"])
    frame["duration_s"] = pd.to_timedelta(frame.pop("duration")).dt.total_seconds()  # None while a trial runs
    return frame


def load_sweep(folder: str | Path) -> Sweep:
    """Read a sweep folder; a ``study.json`` without its keys or without any trial table is refused naming the file."""
    folder = Path(folder)
    study = read_json(folder / "study.json")
    missing = [key for key in STUDY_KEYS if key not in study]
    if missing:
        raise NotComparable(f"'{folder / 'study.json'}' has no {missing} entries: it is not a marquee.sweep study")
    table, journal = folder / "trials.csv", folder / study.get("storage", "optuna.journal")
    if table.is_file():
        trials = pd.read_csv(table)
    elif journal.is_file():
        trials = _journal_trials(journal, study)
    else:
        raise NotComparable(f"sweep '{folder}' has neither trials.csv nor its Optuna journal '{journal.name}'")
    absent = [c for c in ("number", "state", "value") if c not in trials.columns]
    if absent:
        raise NotComparable(f"'{table}' has no column(s) {absent}; it has {list(trials.columns)}")
    best = folder / "best.yaml"
    return Sweep(folder, str(study["study_name"]), str(study["metric"]), str(study["direction"]),
                 study.get("search_space") or {}, trials, best.read_text() if best.is_file() else None)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_line(sweep: Sweep) -> str:
    """``<n> trials (<k> complete, ...); best #<n>: <metric> <value> (<params>)`` for the report."""
    counts = sweep.trials["state"].value_counts()
    states = ", ".join(f"{n} {state.lower()}" for state, n in counts.items())
    line = f"{len(sweep.trials)} trials ({states})"
    best = sweep.best_trial()
    if best is not None:
        params = ", ".join(f"{p}={_short(best[f'params_{p}'])}" for p in sweep.params)
        line += f"; best #{int(best['number'])}: {sweep.metric} {best['value']:.4f} ({params})"
    return line
