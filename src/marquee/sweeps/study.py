"""One Optuna study over ``marquee.train`` runs: its folder, its storage, its trials, and the winner's seeds.

A study folder holds ``study.json`` (what the study is), ``optuna.journal`` (Optuna's JournalFileBackend:
several worker processes, or machines sharing the filesystem, work on it at once, and a killed study
resumes from it), ``trials/<number>/`` (each trial a normal run folder, evaluated on validation only),
``trials.csv``, ``best.yaml`` (the frozen winner) and ``seeds/seed_<s>/`` (the winner re-run per seed:
the only runs of a study that evaluate test).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from marquee.config_dir import CONFIG_DIR
from marquee.data.atomic import atomic_path, update_json, write_json
from marquee.errors import ConfigError
from marquee.sweeps.space import as_overrides, check_space, suggest

log = logging.getLogger(__name__)

STUDY_FILE, JOURNAL, BEST_FILE, TRIALS_CSV = "study.json", "optuna.journal", "best.yaml", "trials.csv"
# how a worker runs, not what it trains: a resumed or joining worker may set these for itself
RUNTIME_KEYS = ("torch_threads", "trainer.accelerator", "trainer.devices", "evaluation.device", "evaluation.progress",
                "evaluation.num_workers", "datamodule.num_workers")


@dataclass
class StudySpec:
    """What a study searches: the train overrides every trial shares, the space, the validation metric."""

    name: str
    overrides: list[str]
    space: dict[str, dict[str, Any]]
    metric: str = "val/ndcg@10"
    direction: str = "maximize"
    n_trials: int = 20
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    sampler_seed: int = 0
    pruner: dict[str, int] = field(default_factory=lambda: {"n_startup_trials": 5, "n_warmup_steps": 2})

    def __post_init__(self) -> None:
        if not self.metric.startswith("val/"):  # selection on validation only: a search never optimizes test
            raise ConfigError("sweep.metric", f"a validation metric (val/...), got {self.metric!r}")
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError("sweep.direction", f"maximize or minimize, got {self.direction!r}")


def compose_train(overrides: list[str]) -> DictConfig:
    """The ``marquee.train`` config these overrides compose (a mistake raises Hydra's error, naming the key)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def spec_from_config(overrides: list[str], **given: Any) -> StudySpec:
    """The study the ``hparams_search`` file (its ``sweep`` node) and the command's own settings describe."""
    cfg = compose_train(overrides)
    sweep = cfg.get("sweep")
    if sweep is None:
        raise ConfigError("hparams_search", "the chosen file has no 'sweep' node (metric, direction, params)")
    settings = {k: v for k, v in OmegaConf.to_container(sweep, resolve=True).items() if k != "params"}
    settings.update({k: v for k, v in given.items() if v is not None})
    name = settings.pop("name", None) or next(o.split("=", 1)[1] for o in overrides if o.startswith("hparams_search="))
    metric = settings.get("metric", StudySpec.metric)
    k = metric.rpartition("@")[2]
    if k.isdigit() and int(k) not in cfg.evaluation.ks:  # else every trial would end without its objective
        raise ConfigError("sweep.metric", f"{metric} needs k={k} in evaluation.ks, which is {list(cfg.evaluation.ks)}")
    return StudySpec(name=name, overrides=list(overrides), space=check_space(sweep.params), **settings)


def open_study(storage_path: str | Path, study_name: str, spec: StudySpec | None = None, worker: int = 0,
               pruner: dict[str, int] | None = None) -> optuna.Study:
    """Load the study from its journal (with ``pruner``'s settings: Optuna does not store them), or create it
    there from ``spec``; TPE seeded per worker."""
    storage = JournalStorage(JournalFileBackend(str(storage_path)))
    if spec is None:
        return optuna.load_study(study_name=study_name, storage=storage,
                                 pruner=optuna.pruners.MedianPruner(**(pruner or {})))
    # constant liar: parallel workers do not all sample next to the same running trial
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed + worker, constant_liar=True)
    pruner = optuna.pruners.MedianPruner(**spec.pruner)
    return optuna.create_study(study_name=study_name, storage=storage, direction=spec.direction, sampler=sampler,
                               pruner=pruner, load_if_exists=True)


def validation_value(metrics: Mapping[str, float], metric: str) -> float:
    """The objective of a trial: a validation metric, NaN when the run produced none (Optuna records a failure)."""
    if not metric.startswith("val/"):
        raise ConfigError("sweep.metric", f"trials are chosen on validation only, got {metric!r}")
    value = metrics.get(metric)
    return float(value) if value is not None else math.nan


def fail_stale_trials(study: optuna.Study, takeover: bool = False) -> int:
    """Mark as failed the running trials of this host whose process is gone (a study killed mid-trial);
    with ``takeover``, every running trial (no other worker is alive, e.g. the study moved machines)."""
    host, stale = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        dead = trial.user_attrs.get("host") == host and pid is not None and not _alive(int(pid))
        if takeover or dead:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            stale += 1
    if stale:
        log.warning("%d trial(s) of a killed worker marked failed", stale)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_training(overrides: list[str], output_dir: Path, extra_callbacks: dict | None = None,
                 group: str | None = None, tags: list[str] | None = None) -> dict[str, float]:
    """One ``marquee.train`` run into ``output_dir`` (with its own ``train.log``), in this process.

    A wandb tracker, where configured, files the run under ``group`` (the study) with ``tags`` (trial, seed).
    """
    from marquee import train  # imported late: the study module is imported by the pruning callback

    cfg = compose_train([*overrides, f"paths.output_dir={output_dir}"])
    OmegaConf.set_struct(cfg, False)
    if extra_callbacks:
        cfg.callbacks = {**(OmegaConf.to_container(cfg.callbacks) if cfg.get("callbacks") else {}), **extra_callbacks}
    wandb = (cfg.get("logger") or {}).get("wandb")
    if wandb is not None and group:
        wandb.group = group
        wandb.tags = [*(wandb.get("tags") or []), *(tags or [])]
    output_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output_dir / "train.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        return train.run(cfg)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


class Study:
    """A study folder and the work on it: optimize (any number of workers), freeze the winner, re-run it per seed."""

    def __init__(self, directory: str | Path, spec: StudySpec | None = None, runtime: list[str] | None = None):
        """``runtime``: overrides of how this worker runs (threads, device), which change no result."""
        self.dir = Path(directory)
        self.runtime = [o for o in (runtime or []) if o.split("=", 1)[0].lstrip("+~") in RUNTIME_KEYS]
        if spec is None:
            if not (self.dir / STUDY_FILE).is_file():
                raise ConfigError("study_dir", f"'{self.dir}' holds no {STUDY_FILE}: not a study folder")
            recorded = json.loads((self.dir / STUDY_FILE).read_text())  # JSON: YAML would read 1e-06 as a string
            spec = StudySpec(**recorded["spec"])
        elif not (self.dir / STUDY_FILE).is_file():
            write_json({"study_name": spec.name, "metric": spec.metric, "direction": spec.direction,
                        "storage": JOURNAL, "search_space": spec.space, "overrides": spec.overrides,
                        "spec": asdict(spec)}, self.dir / STUDY_FILE, sort_keys=False)
        self.spec = spec

    @property
    def journal(self) -> Path:
        return self.dir / JOURNAL

    def study(self, worker: int = 0) -> optuna.Study:
        return open_study(self.journal, self.spec.name, self.spec, worker)

    def optimize(self, worker: int = 0, takeover: bool = False) -> optuna.Study:
        """Run trials until the study holds ``n_trials`` (any state, all workers together); failures go on."""
        study = self.study(worker)
        # a resumed worker must not replay the random draws it made before: seed by the study's size too
        study.sampler = optuna.samplers.TPESampler(seed=self.spec.sampler_seed + worker + 7919 * len(study.trials),
                                                   constant_liar=True)
        fail_stale_trials(study, takeover)
        remaining = self.spec.n_trials - len(study.trials)
        if remaining > 0:
            stop = optuna.study.MaxTrialsCallback(self.spec.n_trials, states=None)
            started = time.perf_counter()
            study.optimize(self._objective, n_trials=remaining, catch=(Exception,),
                           callbacks=[stop, lambda s, _t: self.write_trials(s)])
            log.info("worker %d: %.0f s of trials", worker, time.perf_counter() - started)
        self.write_trials(study)
        return study

    def _objective(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = suggest(trial, self.spec.space)
        output_dir = self.dir / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run_dir", str(output_dir.relative_to(self.dir)))  # the study folder can move
        pruning = {"optuna_pruning": {"_target_": "marquee.sweeps.pruning.OptunaPruning", "storage": str(self.journal),
                                      "study_name": self.spec.name, "trial_number": trial.number,
                                      "monitor": self.spec.metric, "pruner": self.spec.pruner}}
        # validation only: a trial never evaluates (so can never read) test
        metrics = run_training([*self.spec.overrides, *self.runtime, *as_overrides(params), "stages=[val]"], output_dir,
                               pruning,
                               group=self.spec.name, tags=[f"trial_{trial.number}"])
        return validation_value(metrics, self.spec.metric)

    def write_trials(self, study: optuna.Study) -> Path:
        """``trials.csv``: number, state, value, duration, params, run folder (relative to the study folder)."""
        rows = []
        for t in study.get_trials(deepcopy=False):
            duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
            duration = t.user_attrs.get("duration_s", duration)  # a trial carried over from another journal
            rows.append({"number": t.number, "state": t.state.name, "value": t.value, "duration_s": duration,
                         "validations": len(t.intermediate_values),  # epochs a Lightning trial reported
                         **{f"params_{k}": v for k, v in t.params.items()}, "run_dir": self._relative(t.user_attrs.get("run_dir"))})
        import pandas as pd

        with atomic_path(self.dir / TRIALS_CSV) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        return self.dir / TRIALS_CSV

    def _relative(self, run_dir: str | None) -> str | None:
        """A trial's run folder relative to the study folder (no machine's path in a committed trials.csv)."""
        if run_dir and Path(run_dir).is_absolute() and Path(run_dir).is_relative_to(self.dir.resolve()):
            return str(Path(run_dir).relative_to(self.dir.resolve()))
        return run_dir

    def freeze_best(self, study: optuna.Study) -> dict[str, Any]:
        """Write ``best.yaml``: the winning trial's params and the full override list that re-creates it."""
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not completed:
            raise ConfigError("n_trials", f"no trial of study '{self.spec.name}' completed; nothing to freeze")
        best = study.best_trial
        frozen = {"study": self.spec.name, "trial": best.number, "metric": self.spec.metric, "value": best.value,
                  "params": best.params, "overrides": [*self.spec.overrides, *as_overrides(best.params)]}
        with atomic_path(self.dir / BEST_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(frozen, sort_keys=False))
        return frozen

    def run_seeds(self, frozen: dict[str, Any]) -> dict[int, dict[str, float]]:
        """Re-run the frozen winner once per seed, evaluating val and test; finished seeds are kept, not re-run."""
        results = {}
        for seed in self.spec.seeds:
            output_dir = self.dir / "seeds" / f"seed_{seed}"
            record = output_dir / "run.json"
            if record.is_file() and json.loads(record.read_text()).get("status") == "finished":
                log.info("seed %d: finished earlier", seed)
                continue
            results[seed] = run_training([*frozen["overrides"], *self.runtime, f"seed={seed}", "stages=[val,test]"],
                                         output_dir,
                                         group=self.spec.name, tags=["best", f"seed_{seed}"])
        return results

    def record_wall_time(self, workers: int, seconds: float) -> None:
        update_json({"optimize": {"workers": workers, "wall_seconds": seconds}}, self.dir / STUDY_FILE,
                    sort_keys=False)
