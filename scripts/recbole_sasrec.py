"""Train RecBole 1.2.1's SASRec on marquee's exported leave-one-out split, logging every epoch as it goes.

Runs in the RecBole venv (scripts/recbole_setup.sh), on a folder written by scripts/recbole_export.py:

    ../recbole-venv/bin/python scripts/recbole_sasrec.py ../recbole-data/ml100k \
        --out-dir experiments/sasrec/recbole --max-epochs 30

RecBole's sequential models read "benchmark" files only when they are already augmented, so this
script first writes them beside the export (``<name>-seq/``): one training row per prefix of each
user's train sequence (item_id_list = up to the last 50 earlier items, item_id = the next one; the
same rows RecBole's own data_augmentation makes), one valid row per user (its train sequence -> its
valid item) and one test row (train + valid -> test item). It then fits with validation every epoch.

As it goes it appends to ``<out-dir>/<dataset>_curve.jsonl`` one line per epoch: elapsed wall seconds
since fit started (training and validation both counted), the epoch's train and valid seconds, and
valid NDCG@10 / Recall@10 (RecBole's full ranking; RecBole masks no seen items for sequential models).
A run cut short still leaves its curve, and after every epoch the trainer's whole state (weights,
optimizer, epoch, patience counter, best score) is saved to ``<state-dir>/<tag>-last.pth``: running the same command
again resumes from it, dropping curve lines of epochs after it (the data order's random state is not
restored). At the end it evaluates the best-validation checkpoint on the test rows and writes
``<tag>_test.json`` with RecBole's metrics and ``<tag>_test_ranks.csv``: the 1-based rank of each test
target among all items (ties pessimistic), as RecBole ranks (``rank``, seen items kept) and with the
user's train and validation items removed (``rank_masked``, marquee's default protocol), for per-user
CIs and paired tests. ``<tag>`` is ``--tag`` (default: the dataset's name).

``--patience P`` stops when validation NDCG@10 has not improved for P epochs in a row (RecBole's own
``stopping_step`` counts one more: it stops when its counter exceeds the setting, so it is set to P - 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recbole_run import machine_info, patch_collector_cpu, patch_torch_load, setup_logging

MAX_LEN = 50


def read_inter(path: Path) -> list[tuple[str, str, float]]:
    rows = []
    with path.open() as fh:
        next(fh)
        for line in fh:
            user, item, stamp = line.rstrip("\n").split("\t")
            rows.append((user, item, float(stamp)))
    return rows


def write_augmented(folder: Path) -> Path:
    """Write the prefix-augmented train/valid/test files RecBole's SequentialDataset expects."""
    name = folder.name
    target = folder.parent / f"{name}-seq"
    done = target / "done"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    sequences: dict[str, list[tuple[float, str]]] = {}
    for user, item, stamp in read_inter(folder / f"{name}.train.inter"):
        sequences.setdefault(user, []).append((stamp, item))
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\n"
    with (target / f"{name}-seq.train.inter").open("w") as fh:
        fh.write(header)
        for user, events in sequences.items():
            events.sort()
            items = [item for _, item in events]
            for i in range(1, len(items)):
                history = " ".join(items[max(0, i - MAX_LEN) : i])
                fh.write(f"{user}\t{history}\t{items[i]}\t{events[i][0]}\n")
    for part in ("valid", "test"):
        rows = read_inter(folder / f"{name}.{part}.inter")
        with (target / f"{name}-seq.{part}.inter").open("w") as fh:
            fh.write(header)
            for user, item, stamp in rows:
                history = [i for _, i in sorted(sequences.get(user, []))][-MAX_LEN:]
                fh.write(f"{user}\t{' '.join(history)}\t{item}\t{stamp}\n")
        if part == "valid":  # the test row's history includes the valid item
            for user, item, stamp in rows:
                sequences.setdefault(user, []).append((stamp, item))
    done.write_text("ok\n")
    return target


def build_config(folder: Path, args):
    from recbole.config import Config

    params = {
        "data_path": str(folder.parent),
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        "load_col": {"inter": ["user_id", "item_id_list", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "rm_dup_inter": None,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "Hit", "MRR"],
        "topk": [10, 50],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 10,
        "epochs": args.max_epochs,
        "stopping_step": args.patience - 1,  # RecBole stops once its counter exceeds stopping_step
        "eval_step": 1,
        "train_batch_size": args.batch_size,
        "eval_batch_size": 4096,
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "hidden_dropout_prob": args.dropout,
        "attn_dropout_prob": args.dropout,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": args.layers,
        "n_heads": 2,
        "device": "cpu",
        "use_gpu": False,
        "gpu_id": "",
        "reproducibility": True,
        "seed": args.seed,
        "show_progress": False,
        "log_wandb": False,
        "save_dataset": False,
        "save_dataloaders": False,
        "checkpoint_dir": str(Path.cwd() / "saved"),
    }
    return Config(model="SASRec", dataset=folder.name, config_dict=params)


def seen_items(folder: Path) -> dict[str, set[str]]:
    """Each user's train and validation items (raw tokens), from the export: what marquee masks at test."""
    seen: dict[str, set[str]] = {}
    for part in ("train", "valid"):
        for user, item, _ in read_inter(folder / f"{folder.name}.{part}.inter"):
            seen.setdefault(user, set()).add(item)
    return seen


def test_ranks(model, test_data, seen: dict[str, set[str]]) -> list[tuple[int, int, int]]:
    """(user token, rank kept, rank masked) per test row: the 1-based pessimistic rank of the test target over all
    real items, as RecBole ranks them, and with the user's train and validation items removed."""
    import torch

    out = []
    model.eval()
    dataset = test_data._dataset
    with torch.no_grad():
        for interaction, _, _, positive_i in test_data:
            scores = model.full_sort_predict(interaction)  # (B, n_items + 1), column 0 = [PAD]
            scores[:, 0] = -torch.inf
            target = scores.gather(1, positive_i.view(-1, 1))  # (B, 1)
            ranks = (scores >= target).sum(1)  # (B,) the target itself counts once: ties go against it
            users = interaction[model.USER_ID] if model.USER_ID in interaction else None  # noqa: SIM401 (no .get)
            for row, rank in enumerate(ranks.tolist()):
                token = dataset.id2token(dataset.uid_field, int(users[row])) if users is not None else str(row)
                ids = [dataset.token2id(dataset.iid_field, item) for item in seen.get(str(token), ())
                       if item in dataset.field2token_id[dataset.iid_field]]
                hidden = torch.tensor(ids, dtype=torch.long)
                target_id = int(positive_i[row])
                above = scores[row, hidden] >= target[row]  # seen items that ranked at or above the target
                masked = rank - int(above[hidden != target_id].sum())
                out.append((int(token), int(rank), masked))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better validation NDCG@10")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.5, help="hidden and attention dropout (RecBole's: 0.5)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tag", default=None, help="names this run's files (default: the dataset's name)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="where the best and the last epoch's checkpoints go (default: <out-dir>/state)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--log-dir", type=Path, default=Path(__file__).resolve().parents[2] / "recbole-logs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine two threads spin against other work)")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv too

    folder, out_dir = args.folder.resolve(), args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    seq_folder = write_augmented(folder)
    tag = args.tag or folder.name
    curve_path = out_dir / f"{tag}_curve.jsonl"
    if (out_dir / f"{tag}_test.json").is_file():
        print(f"{tag} has finished ({out_dir / f'{tag}_test.json'}); delete that file to train it again", flush=True)
        return 0
    logger = setup_logging(args.log_dir / f"sasrec-{tag}-{time.strftime('%Y%m%dT%H%M%S')}.log")
    work = args.log_dir / "workdir"
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    patch_torch_load()
    patch_collector_cpu()

    import recbole
    import torch

    torch.set_num_threads(args.threads)
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = build_config(seq_folder, args)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    logger.info("%s", dataset)
    model = get_model("SASRec")(config, train_data._dataset).to("cpu")
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
    n_params = sum(p.numel() for p in model.parameters())
    state_dir = (args.state_dir or out_dir / "state").resolve()  # committed between sessions: a cut run resumes
    state_dir.mkdir(parents=True, exist_ok=True)
    best_file, last_file = state_dir / f"{tag}-best.pth", state_dir / f"{tag}-last.pth"
    trainer.saved_model_file = str(best_file)
    save_checkpoint = trainer._save_checkpoint

    def save_without_paths(epoch_idx: int, verbose: bool = True, **kwargs) -> None:
        # RecBole stores its whole config, this machine's data and log paths included, in every checkpoint; the state
        # is committed between sessions, so keep only the model name its resume_checkpoint compares
        save_checkpoint(epoch_idx, verbose=verbose, **kwargs)
        path = kwargs.get("saved_model_file") or trainer.saved_model_file
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        checkpoint["config"] = {"model": config["model"]}
        torch.save(checkpoint, path)

    trainer._save_checkpoint = save_without_paths

    curve: list[dict] = []
    if last_file.is_file() and curve_path.is_file():  # a run of this tag was cut: go on from its last epoch
        trainer.resume_checkpoint(last_file)
        trainer.saved_model_file = str(best_file)  # resume_checkpoint points it at the last epoch's file
        curve = [json.loads(line) for line in curve_path.read_text().splitlines()][: trainer.start_epoch]
        print(f"resuming {tag} at epoch {trainer.start_epoch + 1}", flush=True)
    else:
        last_file.unlink(missing_ok=True)
        best_file.unlink(missing_ok=True)
    curve_path.write_text("".join(json.dumps(row) + "\n" for row in curve))
    offset = curve[-1]["elapsed_seconds"] if curve else 0.0  # wall time of the epochs run before a cut

    started = time.perf_counter()
    state = {"epoch": trainer.start_epoch}
    original_train_epoch, original_valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def train_epoch(*a, **kw):
        t0 = time.perf_counter()
        loss = original_train_epoch(*a, **kw)
        state["train_seconds"] = time.perf_counter() - t0
        return loss

    def valid_epoch(*a, **kw):
        t0 = time.perf_counter()
        score, result = original_valid_epoch(*a, **kw)
        row = {
            "epoch": state["epoch"] + 1,
            "elapsed_seconds": round(offset + time.perf_counter() - started, 3),
            "train_seconds": round(state["train_seconds"], 3),
            "valid_seconds": round(time.perf_counter() - t0, 3),
            "valid_ndcg@10": float(result["ndcg@10"]),
            "valid_recall@10": float(result["recall@10"]),
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg()[0],
        }
        state["epoch"] += 1
        with curve_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return score, result

    def save_last(epoch_idx: int, _score: float) -> None:
        # after the early-stopping update, so the patience counter and best score saved are this epoch's
        trainer._save_checkpoint(epoch_idx, verbose=False, saved_model_file=str(last_file))

    trainer._train_epoch, trainer._valid_epoch = train_epoch, valid_epoch
    best_score, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=save_last)
    fit_seconds = offset + time.perf_counter() - started
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    ranks = test_ranks(trainer.model, test_data, seen_items(folder))
    with (out_dir / f"{tag}_test_ranks.csv").open("w") as fh:
        fh.write("user,rank,rank_masked\n")
        fh.writelines(f"{u},{r},{m}\n" for u, r, m in ranks)
    curve = [json.loads(line) for line in curve_path.read_text().splitlines()]
    best = max(curve, key=lambda r: r["valid_ndcg@10"])
    summary = {
        "framework": "recbole",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "model": "SASRec",
        "dataset": folder.name,
        "tag": tag,
        "seed": args.seed,
        "params": {k: config[k] for k in ("hidden_size", "inner_size", "n_layers", "n_heads", "MAX_ITEM_LIST_LENGTH",
                                          "hidden_dropout_prob", "attn_dropout_prob", "learning_rate",
                                          "train_batch_size", "weight_decay", "loss_type", "epochs",
                                          "stopping_step")},
        "patience": args.patience,
        "n_parameters": n_params,
        "epochs_run": len(curve),
        "best_epoch": best["epoch"],
        "best_valid_ndcg@10": float(best_score),
        "seconds_to_best": best["elapsed_seconds"],
        "fit_seconds": round(fit_seconds, 3) if fit_seconds is not None else None,
        "stopped": "early stop" if len(curve) < args.max_epochs else "max epochs",
        "median_train_epoch_seconds": sorted(r["train_seconds"] for r in curve)[len(curve) // 2],
        "test": {k: float(v) for k, v in test_result.items()},
        "test_ndcg@10_from_ranks": sum(1 / math.log2(r + 1) for _, r, _ in ranks if r <= 10) / len(ranks),
        "test_ndcg@10_masked_from_ranks": sum(1 / math.log2(m + 1) for _, _, m in ranks if m <= 10) / len(ranks),
        "machine": machine_info(),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out_dir / f"{tag}_test.json").write_text(json.dumps(summary, indent=2) + "\n")
    best_file.unlink()  # finished: the checkpoints were only kept to resume a cut run
    last_file.unlink(missing_ok=True)
    print(json.dumps(summary["test"]), flush=True)
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
