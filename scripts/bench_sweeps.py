"""Hyperparameter studies on ML-100K under the protocol: choose on validation, freeze, then read test over seeds.

Every step resumes where it stopped, and what it measured stays under experiments/sweeps/:

    python scripts/bench_sweeps.py study sasrec --workers 2 --threads 1   # the 40-trial SASRec study, then its
                                                       # winner over 5 seeds
    python scripts/bench_sweeps.py study two_tower     # the 20-trial two-tower study, then its winner over 5 seeds
    python scripts/bench_sweeps.py study ease          # EASE's 20-trial study (the two-tower's rival, same trials)
    python scripts/bench_sweeps.py default sasrec      # the default config (experiment=sasrec_ml100k) over 5 seeds
    python scripts/bench_sweeps.py workers             # wall time of one fixed study with 1 and with 2 workers
    python scripts/bench_sweeps.py render              # experiments/sweeps/README.md and its plots

A study's journal (optuna.journal), trials.csv, best.yaml and each seed's run.json, metrics.json and
per-user files are committed; the trials' own run folders are not (checkpoints), see .gitignore.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "sweeps"
WORKER_ROWS = OUT / "workers.jsonl"
SEEDS = [0, 1, 2, 3, 4]
QUIET = ["evaluation.progress=false", "~callbacks.progress_bar", "+trainer.enable_progress_bar=false"]
STUDIES = {  # name -> (hparams_search file, n_trials, the overrides that are its default config)
    "sasrec": ("sasrec_ml100k", 40, ("experiment=sasrec_ml100k",)),
    "two_tower": ("two_tower_ml100k", 20, ("experiment=two_tower_ml100k",)),
    # EASE, the two-tower's rival in experiments/retrieval, gets the two-tower's number of trials
    "ease": ("ease_ml100k", 20, ("model=ease",)),
}


def environment() -> dict[str, str]:
    """This process's environment with the data directory relative to the repository, so that the run records
    this benchmark commits name no path of this machine."""
    env = dict(os.environ)
    data = Path(env.get("MARQUEE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    env["MARQUEE_DATA_DIR"] = os.path.relpath(data, REPO)
    return env


def relative(path: Path) -> str:
    return os.path.relpath(path, REPO)


def sweep(args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "marquee.sweep", *args], cwd=REPO, check=True, env=environment())


def run_study(name: str, threads: int, workers: int) -> None:
    """Run (or resume) the study into experiments/sweeps/<name>/, then re-run its winner with every seed."""
    search, n_trials, _ = STUDIES[name]
    # takeover: this benchmark is the study's only worker, so a trial left "running" was cut by a session's end
    sweep([f"hparams_search={search}", f"n_trials={n_trials}", f"seeds={SEEDS}".replace(" ", ""),
           f"study_dir={relative(OUT / name)}", f"torch_threads={threads}", f"n_workers={workers}", "takeover=true",
           *QUIET])


def run_default(name: str, threads: int) -> None:
    """The study's default config, untuned, once per seed (finished seeds are kept)."""
    _, _, default = STUDIES[name]
    for seed in SEEDS:
        train_seed(default, seed, OUT / name / "default" / f"seed_{seed}", threads, check=True)


def train_seed(overrides: tuple[str, ...] | list[str], seed: int, out: Path, threads: int, check: bool = False) -> str:
    """``marquee.train`` with ``overrides`` and ``seed`` into the committed run folder ``out`` (kept if it already
    finished); returns what happened, with the error's tail when it failed (raised instead with ``check``)."""
    record = out / "run.json"
    if record.is_file() and json.loads(record.read_text()).get("status") == "finished":
        return f"{relative(out)}: kept"
    done = subprocess.run([sys.executable, "-m", "marquee.train", *overrides, f"seed={seed}",
                           f"torch_threads={threads}", f"hydra.run.dir={relative(out)}",
                           f"paths.output_dir={relative(out)}", *QUIET],
                          cwd=REPO, env=environment(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if check:
            raise RuntimeError(f"{relative(out)} failed:\n{done.stderr[-3000:]}")
        return f"{relative(out)}: FAILED\n{done.stderr[-1500:]}"
    relative_record(record)
    return f"{relative(out)}: finished"


def relative_record(path: Path) -> None:
    """Write the repository's absolute path in a committed run record as relative to it (the run's folder and its
    checkpoints are named by Hydra's absolute output dir), so no path of this machine goes into the repo."""
    text = path.read_text()
    if str(REPO) in text:
        path.write_text(text.replace(f"{REPO}/", "").replace(str(REPO), "."))


def time_workers(repeats: int) -> None:
    """Wall time of the same 12-trial EASE study with 1 worker (2 threads) and 2 workers (1 thread each),
    interleaved, ``repeats`` times; nothing else should run meanwhile."""
    scratch = REPO / "logs" / "bench_sweeps_workers"
    for repeat in range(repeats):
        for workers in (1, 2):
            shutil.rmtree(scratch, ignore_errors=True)
            threads = 2 // workers
            started = time.perf_counter()
            sweep(["hparams_search=ease_ml100k", "n_trials=12", "seeds=[]", f"n_workers={workers}",
                   f"study_dir={relative(scratch)}", f"torch_threads={threads}", *QUIET])
            seconds = time.perf_counter() - started
            row = {"repeat": repeat, "workers": workers, "threads_per_worker": threads, "trials": 12,
                   "study": "ease_ml100k", "wall_seconds": round(seconds, 2), "machine": machine(),
                   "measured": datetime.now().isoformat(timespec="seconds")}
            with WORKER_ROWS.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(row)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["study", "default", "workers", "render"])
    parser.add_argument("name", nargs="?", choices=sorted(STUDIES), default="sasrec")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="worker processes of a study")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.step == "study":
        run_study(args.name, args.threads, args.workers)
    elif args.step == "default":
        run_default(args.name, args.threads)
    elif args.step == "workers":
        time_workers(args.repeats)
    else:
        from render_sweeps import render  # scripts/render_sweeps.py: the README from committed files only

        render(OUT)


if __name__ == "__main__":
    main()
