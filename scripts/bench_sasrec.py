"""The SASRec family on MovieLens-100K (and Amazon Video Games) under the protocol, beside RecBole 1.2.1's SASRec.

Every configuration trains to convergence (early stopping on validation NDCG@10; the patience is each
experiment config's) and runs with several seeds; only test metrics of those finished runs are read.
Each step resumes where it stopped, and what it measured stays under experiments/sasrec/:

    python scripts/bench_sasrec.py variants [--jobs 2]   # each loss, side input and BERT4Rec, seeds 0-2
    python scripts/bench_sasrec.py video [sasrec ...]     # Amazon Video Games: EASE, SASRec and BERT4Rec seeds
    python scripts/bench_sasrec.py recbole defaults       # RecBole's SASRec at its defaults (its own venv)
    python scripts/bench_sasrec.py recbole marquee_best   # ... at the SASRec study's frozen winner
    python scripts/bench_sasrec.py render                 # README.md and its plot from the committed files

marquee's CE SASRec at the default config and at the study's winner are the seed groups of
``experiments/sweeps/sasrec`` (scripts/bench_sweeps.py), read here, not re-run. Each variant's run.json,
metrics.json and per-user files are committed; its checkpoints are not (see .gitignore). RecBole's runs
append their validation curve per epoch to ``recbole/<tag>_curve.jsonl`` and resume from their last epoch
when the same command runs again (scripts/recbole_sasrec.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweeps import relative, train_seed

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "sasrec"
RUNS = OUT / "ml100k"
RECBOLE = OUT / "recbole"
SWEEP = REPO / "experiments" / "sweeps" / "sasrec"
REFERENCE, TUNED = SWEEP / "default", SWEEP / "seeds"  # CE at the default config; the study's frozen winner
SEEDS = [0, 1, 2]
BASE = ("experiment=sasrec_ml100k",)

# id -> (kind, label, overrides): each against the default CE config it differs from by those overrides
VARIANTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sampled": ("loss", "sampled softmax (256 popularity negatives, logQ)",
                (*BASE, "model.loss.name=sampled_softmax", "model.loss.sampling=popularity")),
    "gbce": ("loss", "gBCE (256 negatives, t=0.75)", (*BASE, "model.loss.name=gbce")),
    "bce": ("loss", "BCE (1 negative)", (*BASE, "model.loss.name=bce")),
    "genres": ("side input", "genres", (*BASE, "model.side_inputs=[genres]")),
    "time": ("side input", "time (hour, weekday, gap; target hour and weekday)", (*BASE, "model.side_inputs=[time]")),
    "bert4rec": ("model", "BERT4Rec (bidirectional, masked items)", ("experiment=bert4rec_ml100k",)),
}
# Amazon Video Games, every model at its default config (none tuned there), trained until validation NDCG@10 has
# not improved for PATIENCE epochs (cap 200), against EASE at its default l2 (closed form, one run: no seed in it)
VIDEO = OUT / "video_games"
VIDEO_GROUPS: dict[str, tuple[str, tuple[str, ...], list[int]]] = {
    "ease": ("EASE (l2 500, closed form)", ("experiment=video_games_data", "model=ease"), [0]),
    "sasrec": ("SASRec (full-catalog CE)", ("experiment=sasrec_video", "trainer.max_epochs=200",
                                           "callbacks.early_stopping.patience=5"), [0, 1, 2]),
    # BERT4Rec's batches are grouped by length (each padded to its longest window, not to 50: most windows hold a
    # few items), which SASRec's three seeds predate; same windows, same loss per batch, batches of like lengths
    "bert4rec": ("BERT4Rec", ("experiment=bert4rec_video", "trainer.max_epochs=200",
                              "callbacks.early_stopping.patience=5", "datamodule.length_grouping=100"), [0, 1, 2]),
}
RECBOLE_EXPORT = REPO.parent / "recbole-data" / "ml100k"
RECBOLE_PYTHON = REPO.parent / "recbole-venv" / "bin" / "python"
RECBOLE_SEED = 2020  # RecBole's own default seed
PATIENCE = 5


def run_variant(name: str, seed: int, threads: int) -> str:
    """Train one variant with one seed into RUNS/<name>/seed_<seed> (kept if it already finished)."""
    return train_seed(VARIANTS[name][2], seed, RUNS / name / f"seed_{seed}", threads)


def run_variants(names: list[str], jobs: int, threads: int) -> None:
    """Every (variant, seed), ``jobs`` at a time with ``threads`` torch threads each."""
    work = [(name, seed) for name in names for seed in SEEDS]
    with ThreadPoolExecutor(jobs) as pool:
        for message in pool.map(lambda job: run_variant(*job, threads=threads), work):
            print(message, flush=True)


def targets_per_window() -> float:
    """Mean training targets in one of marquee's windows on the export RecBole reads (``windows=all``, max_len 50:
    ceil((n - 1) / 50) windows for a user with n train events), to express marquee's batch in RecBole's rows."""
    train = pd.read_csv(RECBOLE_EXPORT / "ml100k.train.inter", sep="\t")
    lengths = train.groupby(train.columns[0]).size().to_numpy()
    targets = np.maximum(lengths - 1, 0)
    return float(targets.sum() / np.where(lengths >= 2, -(-targets // 50), 0).sum())


def run_video(names: list[str], threads: int) -> None:
    """Video Games seed groups one run at a time (nothing beside them: their epoch times are reported)."""
    for name in names:
        label, overrides, seeds = VIDEO_GROUPS[name]
        for seed in seeds:
            print(train_seed(overrides, seed, VIDEO / name / f"seed_{seed}", threads), flush=True)


def recbole_arguments(tag: str) -> list[str]:
    """RecBole's command line for one tag: its defaults, or the SASRec study's winner mapped onto RecBole's names."""
    if tag == "defaults":
        return []
    params = yaml.safe_load((SWEEP / "best.yaml").read_text())["params"]
    rows = round(params["datamodule.batch_size"] * targets_per_window())  # RecBole's batch counts (prefix) rows
    return ["--lr", str(params["optim.optimizer.lr"]), "--weight-decay", str(params["optim.optimizer.weight_decay"]),
            "--layers", str(params["model.layers"]), "--dropout", str(params["model.dropout"]),
            "--batch-size", str(rows)]


def run_recbole(tag: str, threads: int) -> None:
    """RecBole's SASRec on marquee's exported split until validation has not improved for PATIENCE epochs."""
    if not RECBOLE_PYTHON.is_file():
        raise SystemExit(f"no RecBole venv at {RECBOLE_PYTHON}: run `bash scripts/recbole_setup.sh` first")
    if not (RECBOLE_EXPORT / "ml100k.train.inter").is_file():
        raise SystemExit(f"no export at {RECBOLE_EXPORT}: run `python scripts/recbole_export.py ml100k` first")
    subprocess.run([str(RECBOLE_PYTHON), "scripts/recbole_sasrec.py", str(RECBOLE_EXPORT), "--out-dir",
                    relative(RECBOLE), "--tag", f"ml100k_{tag}", "--max-epochs", "200", "--patience", str(PATIENCE),
                    "--seed", str(RECBOLE_SEED), "--threads", str(threads), *recbole_arguments(tag)],
                   cwd=REPO, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["variants", "video", "recbole", "render"])
    parser.add_argument("names", nargs="*", help="variants or Video Games groups (default: all), or one RecBole tag")
    parser.add_argument("--jobs", type=int, default=1, help="variant runs at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    args = parser.parse_args(argv)
    if args.step == "variants":
        unknown = set(args.names) - set(VARIANTS)
        if unknown:
            parser.error(f"unknown variant(s) {sorted(unknown)}; known: {sorted(VARIANTS)}")
        run_variants(args.names or list(VARIANTS), args.jobs, args.threads)
    elif args.step == "video":
        unknown = set(args.names) - set(VIDEO_GROUPS)
        if unknown:
            parser.error(f"unknown Video Games group(s) {sorted(unknown)}; known: {sorted(VIDEO_GROUPS)}")
        run_video(args.names or list(VIDEO_GROUPS), args.threads)
    elif args.step == "recbole":
        if len(args.names) != 1 or args.names[0] not in ("defaults", "marquee_best"):
            parser.error("recbole takes one tag: defaults or marquee_best")
        run_recbole(args.names[0], args.threads)
    from render_sasrec import render

    print(render(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
