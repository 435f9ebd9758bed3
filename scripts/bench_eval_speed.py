"""Full-catalog evaluation of all test users: marquee against RecBole 1.2.1, interleaved, and against the hardware.

Two parts, each appending rows to a file under experiments/scale/ as it goes:

    python scripts/bench_eval_speed.py measure --dataset video_games --models EASE ItemKNN --rounds 5 --repeats 3
    python scripts/bench_eval_speed.py roofline --dataset video_games --models EASE

``measure`` runs, per round, one fresh process of each framework (the order alternates between rounds, so
drift in the machine's state hits both alike); each fits the model once and evaluates the test set
``--repeats`` times, and its row keeps every repeat's seconds (RecBole's ``trainer.evaluate``; marquee's
ranking plus accuracy metrics, ``test/rank_seconds``, which is what RecBole's evaluation computes too).
RecBole runs in its own venv (``bash scripts/recbole_setup.sh``) on the split ``scripts/recbole_export.py``
writes from marquee's. ``roofline`` measures this machine's memory bandwidth and matmul peak and counts the
bytes and FLOPs the evaluation cannot avoid, so the README can say how far each framework is from the
hardware's floor. Nothing else should run meanwhile: each row records the 1-minute load before and after.
The section in experiments/scale/README.md is rendered by ``python scripts/bench_scale.py --render-only``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "scale"
SPEED_ROWS, ROOFLINE_ROWS = OUT / "eval_speed.jsonl", OUT / "eval_roofline.jsonl"
RECBOLE_PYTHON = REPO.parent / "recbole-venv" / "bin" / "python"
MODELS = {"EASE": "ease", "ItemKNN": "itemknn", "Pop-exact": "pop"}  # RecBole's name -> marquee's model config
KS = [10, 50]
EVAL_BATCH = 1024  # users per scoring batch: marquee's evaluation.batch_size and recbole_run's --eval-users-per-batch


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def marquee_split(dataset: str):
    """The dataset's leave-one-out split as marquee.train prepares it, and its catalog."""
    from hydra import compose, initialize_config_dir

    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import prepare_split

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={dataset}", "paths.output_dir=unused"])
    split = prepare_split(cfg.data)
    return split, Catalog.from_split(split)


def marquee_model(name: str, split, catalog):
    from hydra import compose, initialize_config_dir

    from marquee.checkpoint import build

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        model_cfg = compose("train", overrides=[f"model={MODELS[name]}", "paths.output_dir=unused"]).model
    model = build(model_cfg, catalog=catalog)
    model.fit(split)
    return model


def marquee_child(dataset: str, model_name: str, repeats: int, threads: int) -> dict:
    """Fit once, evaluate the test set ``repeats`` times with RecBole's view of history (training rows only)."""
    import torch

    from marquee.evaluation.evaluator import Evaluator

    torch.set_num_threads(threads)
    split, catalog = marquee_split(dataset)
    model = marquee_model(model_name, split, catalog)
    evaluator = Evaluator(ks=KS, n_boot=100, progress=False, history="train")  # CIs are not timed
    data = evaluator.data(split, model.max_len)
    results = [evaluator.evaluate(model, data, "test") for _ in range(repeats)]
    m = results[-1].metrics
    return {"seconds_repeats": [round(r.metrics["test/rank_seconds"], 4) for r in results],
            "n_test_users": int(m["test/n_users"]), "ndcg@10": m["test/ndcg@10"], "torch_threads": threads}


def recbole_child(dataset: str, model_name: str, repeats: int, export_dir: Path) -> dict:
    """RecBole's fit and ``repeats`` test evaluations of the same split, in its venv and a fresh process."""
    if not RECBOLE_PYTHON.is_file():
        raise SystemExit(f"no RecBole venv at {RECBOLE_PYTHON}: run `bash scripts/recbole_setup.sh` first")
    if not (export_dir / dataset / f"{dataset}.train.inter").is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "recbole_export.py"), dataset, "--out",
                        str(export_dir)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.jsonl"
        subprocess.run([str(RECBOLE_PYTHON), str(REPO / "scripts" / "recbole_run.py"), str(export_dir / dataset),
                        "--models", model_name, "--eval-repeats", str(repeats), "--in-process", "--out", str(out)],
                       check=True)
        row = json.loads(out.read_text().splitlines()[-1])
    if row.get("status") != "ok":
        raise RuntimeError(f"RecBole {model_name} on {dataset}: {row}")
    return {"seconds_repeats": row["eval_seconds_repeats"], "n_test_users": row["n_test_users"],
            "ndcg@10": row["NDCG@10"], "torch_threads": row.get("torch_threads")}


def measure(args: argparse.Namespace) -> None:
    """Interleaved rounds: each round one fresh process per framework, the order flipped every round."""
    commit = stamp()["git_commit"]  # a round measured by other code is measured again
    done = {(r["dataset"], r["model"], r["framework"], r["round"]) for r in read(SPEED_ROWS)
            if r.get("series") == args.series and r.get("git_commit") == commit}
    for model_name in args.models:
        for round_ in range(args.rounds):
            order = ["marquee", "recbole"] if round_ % 2 == 0 else ["recbole", "marquee"]
            for framework in order:
                if (args.dataset, model_name, framework, round_) in done:
                    continue
                load_before = os.getloadavg()[0]
                command = [sys.executable, __file__, "marquee-child", "--dataset", args.dataset, "--models",
                           model_name, "--repeats", str(args.repeats), "--threads", str(args.threads)]
                if framework == "marquee":
                    result = json.loads(subprocess.run(command, check=True, capture_output=True,
                                                       text=True).stdout.splitlines()[-1])
                else:
                    result = recbole_child(args.dataset, model_name, args.repeats, args.export_dir)
                row = {"series": args.series, "dataset": args.dataset, "model": model_name, "framework": framework,
                       "round": round_, "position": order.index(framework), **result,
                       "median_seconds": statistics.median(result["seconds_repeats"]),
                       "load_before": load_before, "load_after": os.getloadavg()[0], "machine": machine(), **stamp()}
                append(SPEED_ROWS, row)
                print(json.dumps(row), flush=True)


def bandwidth(threads: int, gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes per second a large copy moves (read + write), the best of ``repeats``: the memory's ceiling here."""
    import torch

    torch.set_num_threads(threads)
    n = int(gib * 2**30) // 4
    src, dst = torch.ones(n), torch.empty(n)
    dst.copy_(src)  # touch every page before timing
    best = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
    return 2 * 4 * n / best


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache of core 0 as the kernel reports it (None where it does not)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        text = (index / "size").read_text().strip() if (index / "size").is_file() else ""
        if text[:-1].isdigit():
            sizes.append(int(text[:-1]) * {"K": 2**10, "M": 2**20}.get(text[-1], 1))
    return max(sizes) if sizes else None


def roofline(args: argparse.Namespace) -> None:
    """The bytes and FLOPs of batched scoring and top-k over this machine's measured bandwidth and matmul peak.

    Both frameworks score a batch of users against all ``I`` items, then take its top-k and the targets'
    ranks from the scores. For a batch that means reading the model rows of the items in its users'
    histories (EASE's ``B``, ItemKNN's similarities: ``I`` floats per distinct item), writing ``b x I``
    scores and reading them back twice (top-k, ranks); the sparse-dense product costs ``2 |h_u| I`` FLOPs
    per user (popularity reads no history: only the score passes count). Masking and the metrics are left out. Where a batch's working set fits in the
    last-level cache these bytes need not reach memory, and the floor overstates what the hardware needs.
    """
    import torch

    from marquee.training.throughput import measured_matmul_peak

    torch.set_num_threads(args.threads)
    split, _ = marquee_split(args.dataset)
    users = sorted(split.targets("test")["user_id"].unique())
    history = split.train[split.train["user_id"].isin(users)]  # RecBole's view: training rows only
    nnz, n_users, n_items = int(len(history)), len(users), int(split.log.n_items)
    batch = {u: i // EVAL_BATCH for i, u in enumerate(users)}  # the evaluators' batches of users, in id order
    distinct = history.assign(batch=history["user_id"].map(batch)).groupby("batch")["item_id"].nunique()
    bw, peak, cache = bandwidth(args.threads), measured_matmul_peak(torch.device("cpu")), last_level_cache_bytes()
    for model_name in args.models:
        rows_read = 0 if model_name == "Pop-exact" else 1  # popularity scores are one row, the same for everyone
        bytes_min = 4 * n_items * (rows_read * int(distinct.sum()) + 3 * n_users)
        working_set = 4 * n_items * (rows_read * int(distinct.max()) + min(EVAL_BATCH, n_users))
        flops = rows_read * 2 * nnz * n_items
        row = {"dataset": args.dataset, "model": model_name, "n_test_users": n_users, "n_items": n_items,
               "history_nnz": nnz, "user_batch": EVAL_BATCH, "bytes_min": bytes_min, "flops": flops,
               "batch_working_set_bytes": working_set, "last_level_cache_bytes": cache,
               "bandwidth_bytes_per_s": bw, "peak_flops_per_s": peak,
               "floor_seconds": max(bytes_min / bw, flops / peak),
               "threads": args.threads, "load_before": os.getloadavg()[0], "machine": machine(), **stamp()}
        append(ROOFLINE_ROWS, row)
        print(json.dumps(row), flush=True)


def eval_speed_section() -> str:
    """The README section: per (dataset, model) the rounds' medians, RecBole ÷ marquee per round, and the floor."""
    rows, floors = read(SPEED_ROWS), {(r["dataset"], r["model"]): r for r in read(ROOFLINE_ROWS)}
    head = "## Evaluation speed: marquee against RecBole 1.2.1 and against the hardware\n\n"
    if not rows:
        return head + f"No rows in `{SPEED_ROWS.name}` yet (`python scripts/bench_eval_speed.py measure`).\n"
    lines = [head + (
        "All test users ranked against the full catalog, RecBole's view of history (training rows), the same split "
        "(`scripts/recbole_export.py`). Each round runs one fresh process per framework, the order flipped every "
        "round; each process fits once and evaluates several times, and its median is the round's figure. marquee's "
        "time is ranking plus the accuracy metrics; *code* is marquee's commit that ran the round (`test/rank_seconds`), RecBole's its `trainer.evaluate`. The floor "
        "is the larger of the bytes batched scoring and top-k move (the history's model rows per batch, the scores "
        "written once and read twice) over the measured copy bandwidth, and the FLOPs over the measured matmul peak "
        "(`python scripts/bench_eval_speed.py roofline`); where a batch's working set fits in the last-level cache, "
        "those bytes need not reach memory and the floor overstates the hardware's limit."), "",
        "| code | dataset | model | rounds | marquee s (median, range) | RecBole s (median, range) | RecBole ÷ marquee "
        "(median of rounds, range) | floor s | marquee ÷ floor | NDCG@10 marquee / RecBole | 1-min load (range) | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = {}
    for r in rows:  # code versions in the order they were first measured
        order.setdefault(r.get("git_commit"), len(order))
    keys = sorted({(r.get("git_commit"), r["series"], r["dataset"], r["model"]) for r in rows},
                  key=lambda k: (order[k[0]], *k[1:]))
    for commit, series, dataset, model in keys:
        same = [r for r in rows if (r.get("git_commit"), r["series"], r["dataset"], r["model"]) ==
                (commit, series, dataset, model)]
        mine = {r["round"]: r for r in same if r["framework"] == "marquee"}
        theirs = {r["round"]: r for r in same if r["framework"] == "recbole"}
        both = sorted(set(mine) & set(theirs))
        if not both:
            continue
        m = [mine[i]["median_seconds"] for i in both]
        t = [theirs[i]["median_seconds"] for i in both]
        ratios = [b / a for a, b in zip(m, t)]
        loads = [x for i in both for r in (mine[i], theirs[i]) for x in (r["load_before"], r["load_after"])]
        floor = floors.get((dataset, model))
        floor_cells = (f"{floor['floor_seconds']:.3f}", f"{statistics.median(m) / floor['floor_seconds']:.1f}×") \
            if floor else ("not measured", "–")
        machines = sorted({mine[i]["machine"] for i in both} | {theirs[i]["machine"] for i in both})
        lines.append(f"| {(commit or 'not recorded')[:7]} | {dataset} | {model} | {len(both)} | {statistics.median(m):.3f} ({min(m):.3f}–{max(m):.3f}) | "
                     f"{statistics.median(t):.3f} ({min(t):.3f}–{max(t):.3f}) | **{statistics.median(ratios):.1f}×** "
                     f"({min(ratios):.1f}–{max(ratios):.1f}) | {floor_cells[0]} | {floor_cells[1]} | "
                     f"{mine[both[-1]]['ndcg@10']:.4f} / {theirs[both[-1]]['ndcg@10']:.4f} | "
                     f"{min(loads):.2f}–{max(loads):.2f} | {'; '.join(machines)} |")
    if floors:
        lines += ["", "Floors: " + "; ".join(
            f"{d} {m}: {r['n_test_users']:,} users × {r['n_items']:,} items, {r['history_nnz']:,} history rows, "
            f"{r['bytes_min'] / 1e9:.2f} GB at {r['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, "
            f"{r['flops'] / 1e9:.1f} GFLOP at {r['peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({r['threads']} thread(s)); "
            f"a batch's working set {r['batch_working_set_bytes'] / 2**20:.0f} MiB against a last-level cache of "
            + (f"{r['last_level_cache_bytes'] / 2**20:.0f} MiB" if r.get("last_level_cache_bytes") else "unknown size")
            for (d, m), r in sorted(floors.items()))]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["measure", "roofline", "marquee-child"])
    parser.add_argument("--dataset", default="video_games", choices=["ml100k", "video_games"])
    parser.add_argument("--models", nargs="+", default=["EASE"], choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="evaluations per process; its median is the figure")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="marquee's torch threads (RecBole's "
                        "own default is every core)")
    parser.add_argument("--series", default="interleaved", help="a name for this set of rounds (a row key)")
    parser.add_argument("--export-dir", type=Path, default=REPO.parent / "recbole-data")
    parser.add_argument("--out-dir", type=Path, default=OUT, help="where the rows go (a scratch folder for a try)")
    args = parser.parse_args(argv)
    shared = REPO.parent / "shared" / "data"  # the real data sets beside the repository, where this workplace keeps them
    if shared.is_dir():
        os.environ.setdefault("MARQUEE_DATA_DIR", str(shared))
    global SPEED_ROWS, ROOFLINE_ROWS
    SPEED_ROWS, ROOFLINE_ROWS = args.out_dir / SPEED_ROWS.name, args.out_dir / ROOFLINE_ROWS.name
    if args.step == "marquee-child":
        print(json.dumps(marquee_child(args.dataset, args.models[0], args.repeats, args.threads)), flush=True)
    elif args.step == "measure":
        measure(args)
    else:
        roofline(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
