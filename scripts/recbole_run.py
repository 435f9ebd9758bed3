"""Fit and evaluate RecBole 1.2.1 baselines on a split exported by scripts/recbole_export.py.

Runs in the separate RecBole venv (scripts/recbole_setup.sh), not in marquee's:

    ../recbole-venv/bin/python scripts/recbole_run.py ../recbole-data/ml100k \
        --models Pop ItemKNN EASE --out experiments/baselines/recbole_results.jsonl

For every model it builds RecBole's Config in code (no quick_start: that module imports ray, which
the venv leaves out), loads the three benchmark files, fits, evaluates the valid and test sets with
full-sort ranking, and appends one JSON line per (dataset, model) to ``--out``. RecBole's own log
goes to ``--log-dir`` (default ../recbole-logs, outside the repo), never to the console. Each model
runs in a fresh child process (``--in-process`` to avoid that), so its memory and time are its own and an
OOM kill or ``--timeout-min`` is still recorded as a row (status "killed" / "timeout", with peak RSS).

Timings (time.perf_counter, seconds):
  dataset_seconds     create_dataset: read the three files, remap tokens
  dataloader_seconds  data_preparation: split into the three files' datasets, build samplers and the
                      per-user positive/history tables of the full-sort loaders
  fit_seconds         model construction + trainer.fit. ItemKNN and EASE compute their whole model in
                      __init__ (similarity / EASE's inverse) and "train" a dummy epoch; Pop counts in
                      its one epoch. Validation is NOT run inside fit (valid_data=None).
  eval_seconds        trainer.evaluate(test_data, load_best_model=False): all test users, all items
  eval_seconds_repeats  the same, each of --eval-repeats evaluations in this process (the first is eval_seconds)
  valid_eval_seconds  the same on the validation set (reported, not part of fit)

What RecBole masks (read from recbole/data/dataloader/general_dataloader.py, FullSortEvalDataLoader,
and recbole/sampler/sampler.py, Sampler.get_used_ids, in the installed 1.2.1): for each phase the
sampler's used_ids are the union of the user's items in all files up to and including that phase
(train; train+valid; train+valid+test). The full-sort loader's history_item = used_ids[phase] minus
the user's positives in that phase, and those get score -inf. So at TEST time RecBole masks the
user's train + valid items (except an item that is itself a test target); at VALID time, train items
(except valid targets). marquee masks history("test") = train + valid and history("val") = train.
They differ only when a target was also seen earlier (repeat consumption); the export's split.json
counts those pairs (0 for ml100k and video_games), and this script checks the masked-pair count.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import resource
import signal
import subprocess
import sys
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KS = (10, 50)
METRICS = ["Recall", "NDCG", "Hit", "MRR", "ItemCoverage"]
MODEL_PARAMS = {
    "Pop": {},
    "ItemKNN": {"k": 100, "shrink": 0.0},
    "EASE": {"reg_weight": 500.0},
}


def patch_torch_load() -> None:
    """Workaround: torch >= 2.6 defaults torch.load(weights_only=True).

    RecBole 1.2.1 calls torch.load without weights_only on its own checkpoints (trainer.evaluate with
    load_best_model=True, resume_checkpoint, load_data_and_model), which hold its Config and numpy
    arrays and so fail to unpickle under weights_only=True. The files are RecBole's own, written in
    this run, so the old default (False) is restored for calls that do not pass it. This runner itself
    avoids the path (fit(saved=False), evaluate(load_best_model=False)); the patch only keeps other
    RecBole code paths working.
    """
    import torch

    original = torch.load
    if getattr(original, "_recbole_patched", False):
        return

    @functools.wraps(original)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    load._recbole_patched = True  # type: ignore[attr-defined]
    torch.load = load


def patch_collector_cpu() -> None:
    """Workaround: RecBole 1.2.1's Collector.get_data_struct calls ``.cpu()`` on every collected entry.

    With ItemCoverage (or any metric needing ``data.num_items`` / ``data.num_users``) the collector
    stores a plain int from trainer.fit's data_collect, and evaluate() then fails with
    "AttributeError: 'int' object has no attribute 'cpu'". Same method, but only tensors are moved.
    """
    import copy

    import torch
    from recbole.evaluator.collector import Collector

    def get_data_struct(self):
        for key in self.data_struct._data_dict:
            value = self.data_struct._data_dict[key]
            if isinstance(value, torch.Tensor):
                self.data_struct._data_dict[key] = value.cpu()
        returned_struct = copy.deepcopy(self.data_struct)
        for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
            if key in self.data_struct:
                del self.data_struct[key]
        return returned_struct

    Collector.get_data_struct = get_data_struct


def patch_pop_exact_counts() -> None:
    """Variant "Pop-exact" only: make RecBole's Pop count every training interaction.

    RecBole 1.2.1's Pop.calculate_loss does ``item_cnt[item, :] = item_cnt[item, :] + 1`` per batch;
    with an item repeated in a batch that index-assignment adds 1 once, not once per occurrence, so
    its "popularity" is the number of training batches that contain the item. This replaces it by an
    accumulating index_put_ (true counts). Used with train_neg_sample_args=None, so the sampled
    negatives that RecBole's pointwise loader adds to each batch are not counted either.
    """
    import torch
    from recbole.model.general_recommender.pop import Pop

    def calculate_loss(self, interaction):
        item = interaction[self.ITEM_ID]
        ones = torch.ones(len(item), 1, dtype=self.item_cnt.dtype, device=self.item_cnt.device)
        self.item_cnt.index_put_((item,), ones, accumulate=True)
        self.max_cnt = torch.max(self.item_cnt, dim=0)[0]
        return torch.nn.Parameter(torch.zeros(1)).to(self.device)

    Pop.calculate_loss = calculate_loss


def machine_info() -> dict:
    cpu, cores = "unknown", os.cpu_count()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpu": cpu, "cores": cores, "mem_gb": mem_gb, "python": platform.python_version()}


def setup_logging(log_file: Path) -> logging.Logger:
    """RecBole logs through the root logger; send it (and Python warnings) to a file only."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s  %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    return root


def build_config(model: str, folder: Path, seed: int, eval_users_per_batch: int, n_items_hint: int):
    from recbole.config import Config

    variant = model
    base = "Pop" if model == "Pop-exact" else model
    params = {
        "data_path": str(folder.parent),  # RecBole reads <data_path>/<dataset>/<dataset>.<part>.inter
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # no filtering of any kind (RecBole skips _data_filtering with benchmark files anyway)
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "rm_dup_inter": None,
        # split is unused with benchmark files (the three files ARE the split); order TO, full ranking
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": METRICS,
        "topk": list(KS),
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 10,  # RecBole rounds metrics to 4 places by default
        "epochs": 1,  # Pop/ItemKNN/EASE are fitted in one epoch (TraditionalTrainer forces 1 anyway)
        "device": "cpu",
        "use_gpu": False,
        "gpu_id": "",
        "reproducibility": True,
        "seed": seed,
        "show_progress": False,
        "log_wandb": False,
        "save_dataset": False,
        "save_dataloaders": False,
        # full-sort eval takes eval_batch_size // item_num users per batch (RecBole's default 4096
        # would be one user per batch on Video Games); the users per batch are recorded
        "eval_batch_size": eval_users_per_batch * (n_items_hint + 1),
        "checkpoint_dir": str(Path.cwd() / "saved"),
        **MODEL_PARAMS[base],
    }
    if variant == "Pop-exact":
        params["train_neg_sample_args"] = None
    return Config(model=base, dataset=folder.name, config_dict=params)


def run_one(model: str, folder: Path, split_info: dict, args, logger: logging.Logger) -> dict:
    import numpy as np
    import recbole
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = build_config(model, folder, args.seed, args.eval_users_per_batch, split_info["n_items"])
    init_seed(config["seed"], config["reproducibility"])
    logger.info("==== %s on %s ====\n%s", model, folder.name, config)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    t1 = time.perf_counter()
    train_data, valid_data, test_data = data_preparation(config, dataset)
    t2 = time.perf_counter()
    logger.info("%s", dataset)

    # both frameworks must see the same split: users, targets and masked pairs
    n_test_users = len(test_data.uid_list)
    n_valid_users = len(valid_data.uid_list)
    test_targets = int(test_data.uid2items_num.sum())
    masked_test = int(sum(len(h) for h in test_data.uid2history_item if h is not None))
    masked_valid = int(sum(len(h) for h in valid_data.uid2history_item if h is not None))
    checks = {
        "n_items_recbole": int(dataset.item_num - 1),  # RecBole's item_num counts [PAD]
        "n_users_recbole": int(dataset.user_num - 1),
        "n_test_targets": test_targets,
        "masked_pairs_test": masked_test,
        "masked_pairs_valid": masked_valid,
    }
    expected = {
        "n_items_recbole": split_info["n_items"],
        "n_users_recbole": split_info["n_users"],
        "n_test_targets": split_info["test_interactions"],
        "masked_pairs_test": split_info["masked_pairs_test_stage"] - split_info["test_targets_in_train_or_valid"],
        "masked_pairs_valid": split_info["masked_pairs_valid_stage"] - split_info["valid_targets_in_train"],
    }
    mismatch = {k: (checks[k], expected[k]) for k in checks if checks[k] != expected[k]}
    if n_test_users != split_info["test_users"] or n_valid_users != split_info["valid_users"]:
        mismatch["users"] = ((n_test_users, n_valid_users), (split_info["test_users"], split_info["valid_users"]))
    if mismatch:
        raise AssertionError(f"RecBole's view of the split differs from marquee's: {mismatch}")

    if model == "Pop-exact":
        patch_pop_exact_counts()
    t3 = time.perf_counter()
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    t4 = time.perf_counter()
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.fit(train_data, valid_data=None, saved=False, show_progress=False)
    t5 = time.perf_counter()

    t6 = time.perf_counter()
    valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
    t7 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    t8 = time.perf_counter()
    repeats = [t8 - t7]  # the same evaluation again, for timings that are medians of a process's repeats
    for _ in range(args.eval_repeats - 1):
        started = time.perf_counter()
        trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        repeats.append(time.perf_counter() - started)
    logger.info("valid: %s", dict(valid_result))
    logger.info("test: %s", dict(test_result))

    row = {
        "framework": "recbole",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "model": model,
        "dataset": folder.name,
        "params": MODEL_PARAMS["Pop" if model == "Pop-exact" else model],
        "seed": args.seed,
        "n_users": split_info["n_users"],
        "n_items": split_info["n_items"],
        "n_test_users": n_test_users,
        "n_valid_users": n_valid_users,
        **{f"{k}": v for k, v in checks.items()},
        "eval_users_per_batch": args.eval_users_per_batch,
        "eval_batch_size": config["eval_batch_size"],
        "status": "ok",
    }
    for name in METRICS:
        for k in KS:
            row[f"{name}@{k}"] = float(test_result[f"{name.lower()}@{k}"])
    for name in METRICS:
        for k in KS:
            row[f"valid_{name}@{k}"] = float(valid_result[f"{name.lower()}@{k}"])
    # RecBole's ItemCoverage divides by item_num, which counts [PAD]; the same coverage over real items:
    for k in KS:
        row[f"ItemCoverage_real_items@{k}"] = (
            row[f"ItemCoverage@{k}"] * (split_info["n_items"] + 1) / split_info["n_items"]
        )
    row.update(
        {
            "dataset_seconds": round(t1 - t0, 3),
            "dataloader_seconds": round(t2 - t1, 3),
            "model_init_seconds": round(t4 - t3, 3),
            "train_epoch_seconds": round(t5 - t4, 3),
            "fit_seconds": round(t5 - t3, 3),
            "eval_seconds": round(t8 - t7, 3),
            "eval_seconds_repeats": [round(t, 4) for t in repeats],
            "torch_threads": torch.get_num_threads(),
            "valid_eval_seconds": round(t7 - t6, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )
    if model == "Pop-exact":
        row["note"] = (
            "RecBole Pop patched to count every training interaction (index_put_ accumulate) "
            "and trained without sampled negatives; not RecBole as shipped"
        )
    elif model == "Pop":
        row["note"] = (
            "RecBole Pop as shipped: counts an item once per training batch it appears in, "
            "sampled negatives (train_neg_sample_args default uniform x1) included"
        )
    return row


def append_row(out: Path, row: dict) -> None:
    row["machine"] = machine_info()
    row["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    summary = {
        k: row.get(k)
        for k in (
            "model",
            "dataset",
            "status",
            "NDCG@10",
            "Recall@10",
            "Recall@50",
            "ItemCoverage@10",
            "fit_seconds",
            "eval_seconds",
            "peak_rss_mb",
            "error",
        )
    }
    print(json.dumps(summary), file=sys.stderr, flush=True)


def run_in_process(model: str, folder: Path, out: Path, log_file: Path, args) -> int:
    """Fit and evaluate one model in this process and append its row (or its Python error)."""
    split_info = json.loads((folder / f"{folder.name}.split.json").read_text())
    logger = setup_logging(log_file)
    # RecBole writes ./log_tensorboard (and would write ./log, ./saved) relative to the working dir
    work = log_file.parent / "workdir"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    patch_torch_load()
    patch_collector_cpu()
    started = time.perf_counter()
    try:
        row = run_one(model, folder, split_info, args, logger)
    except Exception as exc:  # noqa: BLE001 -- any Python-level failure (MemoryError too) is the result
        logger.error("%s on %s failed:\n%s", model, folder.name, traceback.format_exc())
        row = {
            "framework": "recbole",
            "model": model,
            "dataset": folder.name,
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}"[:500],
            "seconds_until_failure": round(time.perf_counter() - started, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    append_row(out, row)
    return 0 if row["status"] == "ok" else 1


def run_in_child(model: str, folder: Path, out: Path, log_file: Path, args) -> int:
    """Run one model in a fresh interpreter, so memory and time are its own and a kill by the kernel's
    OOM killer (which no Python handler sees) is still recorded, with the child's peak RSS."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        str(folder),
        "--models",
        model,
        "--out",
        str(out),
        "--log-file",
        str(log_file),
        "--seed",
        str(args.seed),
        "--eval-users-per-batch",
        str(args.eval_users_per_batch),
        "--eval-repeats",
        str(args.eval_repeats),
        "--in-process",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    timed_out = False
    while True:
        pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if args.timeout_min and time.perf_counter() - started > 60 * args.timeout_min and not timed_out:
            proc.kill()  # our own child, by its pid
            timed_out = True
        time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(wait_status)
    if proc.returncode >= 0:
        return proc.returncode
    sig = -proc.returncode
    if timed_out:
        status, error = "timeout", f"stopped after --timeout-min {args.timeout_min} minutes"
    else:
        reason = " (SIGKILL: most likely the kernel OOM killer; see dmesg)" if sig == signal.SIGKILL else ""
        status, error = "killed", f"killed by signal {sig}{reason}"
    append_row(
        out,
        {
            "framework": "recbole",
            "model": model,
            "dataset": folder.name,
            "status": status,
            "error": error,
            "seconds_until_failure": round(time.perf_counter() - started, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),
        },
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="an exported dataset folder, e.g. ../recbole-data/ml100k")
    parser.add_argument("--models", nargs="+", default=["Pop", "ItemKNN", "EASE"], choices=[*MODEL_PARAMS, "Pop-exact"])
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "baselines" / "recbole_results.jsonl")
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=REPO.parent / "recbole-logs",
        help="RecBole's log and its working folder (log_tensorboard/), kept out of the repo",
    )
    parser.add_argument("--log-file", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--eval-users-per-batch", type=int, default=1024)
    parser.add_argument("--eval-repeats", type=int, default=1, help="evaluate the test set this many times")
    parser.add_argument(
        "--timeout-min",
        type=float,
        default=None,
        help="stop a model's child process after this many minutes and record a timeout row",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the models in this process (default: one fresh child process per model)",
    )
    args = parser.parse_args(argv)
    # RecBole's Config also parses sys.argv ("--key=value" would override the config built here)
    sys.argv = sys.argv[:1]

    folder, out = args.folder.resolve(), args.out.resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_file = (args.log_file or args.log_dir / f"{folder.name}-{stamp}.log").resolve()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    run = run_in_process if args.in_process else run_in_child
    status = 0
    for model in args.models:
        status |= run(model, folder, out, log_file, args)
    return status


if __name__ == "__main__":
    sys.exit(main())
