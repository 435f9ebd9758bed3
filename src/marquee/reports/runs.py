"""Finished run directories under the folders a report is given, and the ``marquee.sweep`` studies among them.

A folder given on the command line is one run when it holds ``run.json`` (or a ``marquee.eval``
output's ``eval.json``); such a run must have finished. Any other folder is searched: every run
directory below it whose ``run.json`` says ``finished`` is taken (runs still running, failed,
interrupted or pruned are skipped and counted), and a folder with ``study.json`` is a sweep, whose
``seeds/`` runs are its best config re-run per seed and whose ``trials/`` runs are read only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marquee.reports.protocol import NotComparable, RunProtocol, read_json, read_record
from marquee.reports.sweeps import Sweep, load_sweep


@dataclass(frozen=True)
class Run:
    """One finished run: where it is, its resolved config and protocol, and where it was found.

    ``source`` is empty for a plain run, ``'<study> best'`` for a sweep's seed re-run of its winner and
    ``'<study> #<n>'`` for its trial ``n``; ``argument`` is the index of the command-line folder it came from.
    """

    path: Path
    config: dict[str, Any]
    protocol: RunProtocol
    argument: int = 0
    source: str = ""

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def metrics(self) -> dict[str, float]:
        """The run's ``metrics.json``: flat ``<stage>/<metric>`` keys."""
        path = self.path / "metrics.json"
        if not path.is_file():
            raise NotComparable(f"no metrics at '{path}': the run was not evaluated")
        return read_json(path)


@dataclass
class Found:
    """What one command-line folder holds: its finished runs, its sweeps and what was skipped."""

    runs: list[Run] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # status -> number of run directories skipped


def _is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "eval.json").is_file()


def _status(path: Path) -> str:
    """A run directory's status; a ``marquee.eval`` output is read through its record."""
    return read_json(path / "run.json").get("status", "finished") if (path / "run.json").is_file() else "finished"


def _take(path: Path, found: Found, argument: int, source: str) -> None:
    status = _status(path)
    if status != "finished":
        found.skipped[status] = found.skipped.get(status, 0) + 1
        return
    record, protocol = read_record(path)
    found.runs.append(Run(path, record["config"], protocol, argument, source))


def _search(folder: Path, found: Found, argument: int, trials: bool, source: str = "") -> None:
    """Add the run directories under ``folder`` (sorted by path) to ``found``; a sweep adds its own."""
    if _is_run_dir(folder):
        _take(folder, found, argument, source)
        return
    if (folder / "study.json").is_file() and not source:
        sweep = load_sweep(folder)
        found.sweeps.append(sweep)
        _search(folder / "seeds", found, argument, trials, f"{sweep.name} best")
        if trials and (folder / "trials").is_dir():
            for trial in sorted((folder / "trials").iterdir(), key=lambda p: (not p.name.isdigit(), p.name.zfill(9))):
                number = int(trial.name) if trial.name.isdigit() else trial.name  # trials/0007 is trial 7
                _search(trial, found, argument, trials, f"{sweep.name} #{number}")
        return
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                _search(child, found, argument, trials, source)


def find_runs(folder: str | Path, argument: int = 0, trials: bool = False) -> Found:
    """The finished runs and sweeps in one command-line folder; refused when it holds neither.

    A folder that is itself a run is read strictly (a failed run is refused with its reason).
    ``trials=True`` also takes every sweep's trial runs, each as its own source.
    """
    folder, found = Path(folder), Found()
    if _is_run_dir(folder) or not folder.is_dir():
        record, protocol = read_record(folder)
        found.runs.append(Run(folder, record["config"], protocol, argument))
        return found
    _search(folder, found, argument, trials)
    if not found.runs and not found.sweeps:  # a sweep without seed runs yet still has trials to plot
        if not found.skipped:
            raise NotComparable(f"'{folder}' is not a marquee run directory: no run.json in it or below it")
        counts = ", ".join(f"{n} {status}" for status, n in sorted(found.skipped.items()))
        raise NotComparable(f"'{folder}' holds no finished run: {counts}")
    return found
