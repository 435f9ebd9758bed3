"""MostPopular, ItemKNN and EASE on ML-100K and Video Games, marquee beside RecBole 1.2.1 on the same split.

One invocation is one measured run: it exports marquee's leave-one-out split for RecBole, runs
RecBole's Pop, ItemKNN and EASE (scripts/recbole_run.py, in the RecBole venv made by
scripts/recbole_setup.sh), then fits and evaluates marquee's baselines on the same data, and
renders experiments/baselines/README.md from that run's rows (plus the 100k x 100k scale rows of
scripts/bench_eval_scale.py). Rows are appended to jsonl files as they come, tagged with the run id.

    python scripts/bench_baselines.py                    # everything (Video Games EASE takes minutes)
    python scripts/bench_baselines.py --resume RUN_ID    # finish a cut-short run: skip rows it already has
    python scripts/bench_baselines.py --render-only      # rewrite the README from the latest rows
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import measured, run_id_date, stamp

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "experiments" / "baselines"
MARQUEE_ROWS = OUT_DIR / "marquee_results.jsonl"
RECBOLE_ROWS = OUT_DIR / "recbole_results.jsonl"
SCALE_ROWS = OUT_DIR / "eval_scale.jsonl"
DATASETS = {"ml100k": "MovieLens-100K", "video_games": "Amazon Video Games"}
MODELS = {"pop": ("MostPopular", "Pop-exact"), "itemknn": ("ItemKNN", "ItemKNN"), "ease": ("EASE", "EASE")}
KS = [10, 50]
TRAIN_HISTORY = " (train history)"


def run_marquee(dataset: str, models: list[str], repeats: int, run_id: str) -> None:
    """Fit each baseline once, evaluate its test set ``repeats`` times, and append one row per model."""
    done = {r["model"] for r in read(MARQUEE_ROWS) if r["run_id"] == run_id and r["dataset"] == dataset}
    models = [m for m in models if not {MODELS[m][0], MODELS[m][0] + TRAIN_HISTORY} <= done]
    if not models:
        return
    from hydra import compose, initialize_config_dir

    from marquee.checkpoint import build
    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import prepare_split
    from marquee.evaluation.evaluator import Evaluator

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={dataset}", "paths.output_dir=unused"])
    split = prepare_split(cfg.data)
    for name in models:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            model_cfg = compose("train", overrides=[f"model={name}", "paths.output_dir=unused"]).model
        model = build(model_cfg, catalog=Catalog.from_split(split))
        started = time.perf_counter()
        model.fit(split)
        fit_seconds = time.perf_counter() - started
        # visible: the model reads train + validation rows at test time; train: training rows only, as RecBole
        for history, suffix in (("visible", ""), ("train", TRAIN_HISTORY)):
            evaluator = Evaluator(ks=KS, n_boot=1000, progress=False, history=history)
            data = evaluator.data(split, model.max_len)
            results = [evaluator.evaluate(model, data, "test") for _ in range(repeats)]
            m = results[-1].metrics
            row = {
                "run_id": run_id, "framework": "marquee", "dataset": dataset, "model": MODELS[name][0] + suffix,
                "eval_history": history, "n_test_users": int(m["test/n_users"]), "fit_seconds": round(fit_seconds, 3),
                "rank_seconds": statistics.median(r.metrics["test/rank_seconds"] for r in results),
                "eval_seconds": statistics.median(r.metrics["test/seconds"] for r in results),
                "repeats": repeats, "machine": machine(), **stamp(), "load_average": os.getloadavg(),
                **{k.removeprefix("test/"): v for k, v in m.items() if "/slice/" not in k and "sampled" not in k},
            }
            append(MARQUEE_ROWS, row)
            print(f"marquee {dataset} {row['model']}: ndcg@10 {row['ndcg@10']:.4f} rank {row['rank_seconds']:.3f}s")


def run_recbole(dataset: str, python: Path, run_id: str) -> None:
    """Export the split and run RecBole's three models on it in its own venv."""
    if any(r.get("run_id") == run_id and r["dataset"] == dataset for r in read(RECBOLE_ROWS)):
        return  # measured already in this run
    export_dir = Path(tempfile.gettempdir()) / "marquee-recbole-data"
    subprocess.run([sys.executable, str(REPO / "scripts" / "recbole_export.py"), dataset, "--out", str(export_dir)],
                   check=True)
    tmp = OUT_DIR / f".recbole_{run_id}_{dataset}.jsonl"
    subprocess.run([str(python), str(REPO / "scripts" / "recbole_run.py"), str(export_dir / dataset), "--models",
                    "Pop", "Pop-exact", "ItemKNN", "EASE", "--out", str(tmp)], check=True)
    for line in tmp.read_text().splitlines():
        append(RECBOLE_ROWS, {**json.loads(line), "run_id": run_id})
    tmp.unlink()


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def ci(row: dict, key: str) -> str:
    return f"{row[key]:.4f} [{row[key + '_ci_low']:.4f}, {row[key + '_ci_high']:.4f}]"


def machines_line(ours: list[dict], theirs: list[dict]) -> str:
    """The machines (and, where recorded, the load) the rows name."""
    mine = sorted({r["machine"] for r in ours})
    other = sorted({f"{m['cpu']}, {m['cores']} cores, {m['mem_gb']} GB RAM" for r in theirs if (m := r.get("machine"))})
    loads = [r["load_average"][0] for r in ours if r.get("load_average")]
    return (f"Machine recorded by marquee's rows: {'; '.join(mine)}; by RecBole's: {'; '.join(other) or 'none'}. "
            + (f"Load average (1 min) after each marquee row: {min(loads):.1f}–{max(loads):.1f}." if loads else
               "The rows record no load average, nor what else ran on the machine."))


def agreement(ours: dict, theirs: dict) -> list[str]:
    """marquee (train history) against RecBole at the printed digits, and what the visible history changes."""
    keys = (("NDCG@10", "ndcg@10"), ("Recall@10", "recall@10"), ("Recall@50", "recall@50"))
    same, visible = [], []
    for dataset, title in DATASETS.items():
        for name, (ours_name, theirs_name) in MODELS.items():
            train, seen = ours.get((dataset, ours_name + TRAIN_HISTORY)), ours.get((dataset, ours_name))
            other = theirs.get((dataset, theirs_name))
            if name == "pop" or not train:  # popularity reads no history
                continue
            if other and other.get("status", "ok") == "ok":
                differ = [label for label, key in keys if f"{train[key]:.4f}" != f"{other[label]:.4f}"]
                same.append(f"{ours_name} on {title} " + (f"differs in {', '.join(differ)}" if differ else "equal"))
            if seen:
                visible.append(f"{ours_name} on {title} {seen['ndcg@10'] - train['ndcg@10']:+.4f}")
    out = []
    if same:
        out.append("marquee *(train history)* against RecBole at the four printed decimals of NDCG@10, Recall@10 and "
                   f"Recall@50: {'; '.join(same)}.")
    if visible:
        out.append(f"NDCG@10 of marquee's visible-history rows minus its train-history rows: {'; '.join(visible)}.")
    return [*out, ""] if out else []


def render() -> None:
    """Write the README from the latest run's marquee rows, the RecBole rows of the same run, and scale rows."""
    rows = read(MARQUEE_ROWS)
    if not rows:
        raise SystemExit(f"no rows in {MARQUEE_ROWS}; run without --render-only first")
    # per data set, the latest run that measured marquee, and RecBole's rows from that same run
    run_of = {r["dataset"]: r["run_id"] for r in rows}
    ours = {(r["dataset"], r["model"]): r for r in rows if r["run_id"] == run_of[r["dataset"]]}
    theirs = {(r["dataset"], r["model"]): r for r in read(RECBOLE_ROWS) if r.get("run_id") == run_of.get(r["dataset"])}
    lines = [
        "# Baselines: MostPopular, ItemKNN, EASE — marquee beside RecBole 1.2.1",
        "",
        "Leave-one-out by time (last interaction = test, second last = validation), full-catalog ranking,",
        "items the user has already seen (train + validation) masked, every test user evaluated. RecBole",
        "reads marquee's exported split (`scripts/recbole_export.py`: the same train/valid/test rows as",
        "benchmark files) and masks the same items at test time (train + valid; checked by the masked-pair",
        "count), so the rows of one dataset are comparable number for number.",
        "",
        "Reproduce: `python scripts/bench_baselines.py` (RecBole's venv: `bash scripts/recbole_setup.sh`);",
        "`python scripts/bench_baselines.py --render-only` rewrites this page from the committed rows.",
        f"Runs {', '.join(f'`{run}` ({name})' for name, run in run_of.items())} (a run cut short is finished with",
        "`--resume`, which keeps what it had). " + machines_line(list(ours.values()), list(theirs.values())),
        "Confidence intervals: 95% percentile bootstrap over users (1,000 resamples).",
        "",
        *measured([*(("marquee " + r["dataset"], r["finished_at"][:10] if r.get("finished_at") else
                      run_id_date(r["run_id"]), r.get("git_commit")) for r in ours.values()),
                   *(("RecBole " + r["dataset"], r["finished_at"][:10], None) for r in theirs.values()),
                   *(("scale (last section)", r["date"], r.get("git_commit")) for r in read(SCALE_ROWS))],
                  "marquee's rows' `finished_at`, else the start date their run id names; RecBole's `finished_at`; "
                  "the scale rows' `date`"),
    ]
    for dataset, title in DATASETS.items():
        lines += [f"## {title}", "", ("| model | framework | NDCG@10 | Recall@10 | Recall@50 | coverage@10 | "
                                      "fit s | evaluate all test users, s | RecBole ÷ marquee |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, (ours_name, theirs_name) in MODELS.items():
            other = theirs.get((dataset, theirs_name))
            for label in (ours_name, ours_name + TRAIN_HISTORY):
                mine = ours.get((dataset, label))
                if not mine or (name == "pop" and label != ours_name):  # popularity reads no history
                    continue
                ratio = f"**{other['eval_seconds'] / mine['rank_seconds']:.1f}×**" if other else ""
                lines.append(f"| {label} | marquee | {ci(mine, 'ndcg@10')} | {ci(mine, 'recall@10')} | "
                             f"{ci(mine, 'recall@50')} | {mine['coverage@10']:.4f} | {mine['fit_seconds']:.2f} | "
                             f"{mine['rank_seconds']:.3f} ({mine['eval_seconds']:.3f} with CIs, slices, beyond-accuracy) | {ratio} |")
            for label in ([theirs_name, "Pop"] if name == "pop" else [theirs_name]):
                other = theirs.get((dataset, label))
                if other and other.get("status", "ok") == "ok":
                    lines.append(f"| {label} | RecBole 1.2.1 | {other['NDCG@10']:.4f} | {other['Recall@10']:.4f} | "
                                 f"{other['Recall@50']:.4f} | {other['ItemCoverage@10']:.4f} | "
                                 f"{other['fit_seconds']:.2f} | {other['eval_seconds']:.3f} | |")
                elif other:
                    lines.append(f"| {label} | RecBole 1.2.1 | {other.get('status')}: {other.get('error', '')[:80]} "
                                 "| | | | | | |")
        lines.append("")
    repeats = ", ".join(str(n) for n in sorted({r["repeats"] for r in ours.values()}))
    lines += [
        "Timing: *evaluate all test users* is ranking the whole catalog for every test user plus the",
        f"accuracy metrics — what RecBole's `trainer.evaluate` does — median of {repeats} repeats for marquee,",
        "one evaluation for RecBole, both in the run named above; the ratio divides RecBole's time by",
        "marquee's. In brackets, marquee's full evaluation including 1,000 bootstrap resamples of every",
        "per-user metric, the activity/popularity slices and the beyond-accuracy metrics.",
        "",
        "RecBole's Pop as shipped counts an item once per training batch it appears in (not once per",
        "interaction) and trains on sampled negatives; `Pop-exact` is the same model patched to count every",
        "training interaction (see `scripts/recbole_run.py`), the fair partner of marquee's MostPopular.",
        "Ties: marquee counts a tie against the target (a constant score ranks last); RecBole breaks them by",
        "`torch.topk`'s order.",
        "",
        "What each reads at test time differs in one row per user: by default marquee scores a test user from",
        "the history visible at test time (train + validation interaction, as sequential evaluation does), while",
        "RecBole's ItemKNN and EASE score from the user's row of the *training* matrix built at fit time, so the",
        "validation interaction never reaches them. Both fit on the same training rows and mask the same items.",
        "The rows marked *(train history)* run marquee with `evaluation.history=train`, RecBole's protocol.",
        "",
        *agreement(ours, theirs),
    ]
    scale = read(SCALE_ROWS)
    if scale:
        lines += [(f"## Scale: up to {max(r['users_evaluated'] for r in scale):,} users × "
                   f"{max(r['items'] for r in scale):,}-item catalog (synthetic), CPU"), "",
                  "`python scripts/bench_eval_scale.py [--item-chunk N]`: a 64-d dot-product model over a synthetic log;",
                  "peak RSS of the whole process (data generation included), measured in a fresh process. Every",
                  "run is a row, dated.", "",
                  ("| date | users | items | batch | item chunk | threads | evaluate s | users/s | RSS before eval MB | "
                   "peak RSS MB | machine |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in scale:
            lines.append(f"| {r['date']} | {r['users_evaluated']:,} | {r['items']:,} | {r['eval_batch']} | "
                         f"{r['item_chunk'] or 'none'} | {r['torch_threads']} | {r['eval_seconds']:.1f} | "
                         f"{r['users_per_second']:,} | {r['rss_before_eval_mb']:,} | {r['peak_rss_mb']:,} | {r['machine']} |")
        lines.append("")
    (OUT_DIR / "README.md").write_text("\n".join(lines))
    print(f"wrote {OUT_DIR / 'README.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recbole-python", type=Path, default=REPO.parent / "recbole-venv" / "bin" / "python")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run that was cut short")
    args = parser.parse_args()
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():  # the benchmark data sets live beside the repository
        os.environ.setdefault("MARQUEE_DATA_DIR", str(shared))
    if not args.render_only:
        run_id = args.resume or time.strftime("%Y%m%d-%H%M%S")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            if not args.skip_recbole and args.recbole_python.is_file():
                run_recbole(dataset, args.recbole_python, run_id)
            run_marquee(dataset, args.models, args.repeats, run_id)
    render()


if __name__ == "__main__":
    main()
