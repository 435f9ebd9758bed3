"""``python -m marquee.sweep hparams_search=NAME n_trials=N [train overrides]``: a hyperparameter study.

Runs an Optuna study (TPE, seeded; median pruning on the validation curve) whose trials are
``marquee.train`` runs evaluated on validation only, freezes the winner to ``best.yaml``, and re-runs
it with every seed in ``seeds`` (val and test). Settings of the study itself:

  n_trials=40        trials in the study, all workers together (a resumed study counts what it has)
  seeds=[0,1,2,3,4]  the winner's seeds; seeds=[] skips them
  n_workers=2        worker processes on this machine (more machines: the same command with study_dir=)
  study_dir=DIR      resume a killed study, or join one as another worker; default: a new folder under
                     <paths.log_dir>/sweep/<name>/
  takeover=true      on resuming, mark every trial still "running" failed (no other worker is alive: the
                     study moved machines); a dead worker's trials on this machine are marked without it
  sampler_seed=0

Every other argument is a ``marquee.train`` override shared by all trials (e.g. ``trainer.max_epochs=30``).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml

from marquee.cli import exit_if_user_error
from marquee.config_dir import unique_dir
from marquee.errors import ConfigError
from marquee.sweeps.study import Study, compose_train, fail_stale_trials, spec_from_config

log = logging.getLogger("marquee.sweep")

STUDY_KEYS = {"n_trials": int, "seeds": list, "n_workers": int, "study_dir": str, "sampler_seed": int, "worker": int,
              "takeover": bool}


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """Split the arguments into the study's settings and the train overrides every trial shares."""
    settings, overrides = {}, []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key in STUDY_KEYS:
            parsed = yaml.safe_load(value)
            if not isinstance(parsed, STUDY_KEYS[key]) or (isinstance(parsed, bool) and STUDY_KEYS[key] is not bool):
                raise ConfigError(key, f"expected {STUDY_KEYS[key].__name__}, got {value!r}")
            settings[key] = parsed
        else:
            overrides.append(arg)
    if not any(o.startswith("hparams_search=") for o in overrides) and "study_dir" not in settings:
        raise ConfigError("hparams_search", "name a search space: hparams_search=<file in configs/hparams_search/>")
    return settings, overrides


def run(argv: list[str]) -> Path:
    """Optimize, then (worker 0) freeze the winner and run its seeds; returns the study folder."""
    settings, overrides = parse(argv)
    worker, n_workers = settings.pop("worker", 0), settings.pop("n_workers", 1)
    takeover = settings.pop("takeover", False)
    study_dir = settings.pop("study_dir", None)
    if study_dir and Path(study_dir, "study.json").is_file():
        study = Study(study_dir, runtime=overrides)  # resume or join: the study's settings, this worker's threads
    else:
        spec = spec_from_config(overrides, **settings)
        log_dir = compose_train(overrides).paths.log_dir
        study_dir = study_dir or unique_dir(str(Path(log_dir) / "sweep" / spec.name / datetime.now().strftime(
            "%Y-%m-%d_%H-%M-%S")))
        study = Study(study_dir, spec)
    log.info("study %s in %s (worker %d of %d)", study.spec.name, study.dir, worker, n_workers)
    if takeover and worker == 0:  # before any other worker starts a trial of its own
        fail_stale_trials(study.study(), takeover=True)
    helpers = [subprocess.Popen([sys.executable, "-m", "marquee.sweep", *overrides, f"study_dir={study.dir}",
                                 f"worker={i}"]) for i in range(1, n_workers)] if worker == 0 else []
    started = time.perf_counter()
    optuna_study = study.optimize(worker)
    for helper in helpers:
        helper.wait()
    if worker != 0:
        return study.dir
    study.record_wall_time(n_workers, time.perf_counter() - started)
    optuna_study = study.study()
    study.write_trials(optuna_study)
    frozen = study.freeze_best(optuna_study)
    log.info("best trial %d: %s %.4f with %s", frozen["trial"], frozen["metric"], frozen["value"], frozen["params"])
    study.run_seeds(frozen)
    print(study.dir.resolve())
    return study.dir


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        run(argv)
    except Exception as error:
        exit_if_user_error(error, "train")  # one line and exit 2 for a user's mistake; a bug raises on
        raise


if __name__ == "__main__":
    main()
