"""marquee's SASRec family beside RecBole 1.2.1's SASRec: quality, time to quality, losses, side inputs.

Each configuration is one ``python -m marquee.train experiment=...`` run under a wall-clock cap
(``trainer.max_time``), followed by ``python -m marquee.eval`` of its best checkpoint with seen items
masked. ML-100K runs validate and test with seen items kept (``evaluation.seen=keep``), as RecBole
does for sequential models, so their validation curve and test numbers compare with RecBole's; the
masked re-evaluation is marquee's own protocol. One JSON line per finished configuration is appended
to ``experiments/sasrec/marquee_results.jsonl``, and the ML-100K runs' per-user test NDCG@10 and Recall@10
(seen kept and masked) to ``experiments/sasrec/per_user_ml100k.csv`` for the paired tests (the run folders
under logs/ are not committed); RecBole's side is written by scripts/recbole_sasrec.py (run it in the RecBole
venv, in the background) into ``experiments/sasrec/recbole/``.

    python scripts/bench_sasrec.py                      # every configuration not yet in the results
    python scripts/bench_sasrec.py --only ml100k_ce     # some of them (two processes may share the file)
    python scripts/bench_sasrec.py --keep-per-user      # copy finished runs' per-user columns into the CSV
    python scripts/bench_sasrec.py --render-only        # rewrite README.md and the PNG from committed files
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from provenance import measured, stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "sasrec"
ROWS = OUT / "marquee_results.jsonl"
RECBOLE = OUT / "recbole"
PER_USER = OUT / "per_user_ml100k.csv"
RUNS_DIR = REPO / "logs" / "bench_sasrec"
KEEP = ("evaluation.seen=keep",)

# id -> (dataset, label, overrides, cap minutes)
CONFIGS: dict[str, tuple[str, str, tuple[str, ...], int]] = {
    "ml100k_ce": ("ml100k", "SASRec, CE", ("experiment=sasrec_ml100k", *KEEP), 15),
    "ml100k_gbce": ("ml100k", "SASRec, gBCE (256 negatives, t=0.75)",
                    ("experiment=sasrec_ml100k", "model.loss.name=gbce", *KEEP), 8),
    "ml100k_sampled": ("ml100k", "SASRec, sampled softmax (256 popularity negatives, logQ)",
                       ("experiment=sasrec_ml100k", "model.loss.name=sampled_softmax",
                        "model.loss.sampling=popularity", *KEEP), 8),
    "ml100k_bce": ("ml100k", "SASRec, BCE (1 negative)", ("experiment=sasrec_ml100k", "model.loss.name=bce", *KEEP), 8),
    "ml100k_time": ("ml100k", "SASRec, CE + time", ("experiment=sasrec_ml100k", "model.side_inputs=[time]", *KEEP), 8),
    "ml100k_genres": ("ml100k", "SASRec, CE + genres",
                      ("experiment=sasrec_ml100k", "model.side_inputs=[genres]", *KEEP), 8),
    "ml100k_bert4rec": ("ml100k", "BERT4Rec", ("experiment=bert4rec_ml100k", *KEEP), 8),
    "video_sasrec": ("video_games", "SASRec, CE", ("experiment=sasrec_video",), 12),
    "video_bert4rec": ("video_games", "BERT4Rec", ("experiment=bert4rec_video",), 12),
    "video_ease": ("video_games", "EASE", ("experiment=video_games_data", "model=ease"), 10),
    "video_pop": ("video_games", "MostPopular", ("experiment=video_games_data", "model=pop"), 5),
}
SIDE_EFFECTS = {"ml100k_time": "time (hour, weekday, gap; target hour and weekday)", "ml100k_genres": "genres"}


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def curve(run_dir: Path) -> list[dict]:
    """Per validation: epoch, wall seconds since fit start (validation included), val NDCG@10 and Recall@10."""
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return []
    frame = pd.read_csv(files[-1])
    if "perf/elapsed_seconds" not in frame:
        return []
    rows = frame.dropna(subset=["perf/elapsed_seconds"])
    return [{"epoch": int(r["epoch"]) + 1, "seconds": float(r["perf/elapsed_seconds"]),
             "ndcg@10": float(r["val/ndcg@10"]), "recall@10": float(r["val/recall@10"])} for _, r in rows.iterrows()]


def epoch_seconds(run_dir: Path) -> float | None:
    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return None
    values = pd.read_csv(files[-1]).get("perf/train_epoch_seconds", pd.Series(dtype=float)).dropna()
    return float(statistics.median(values)) if len(values) else None


def run_config(name: str) -> dict:
    dataset, label, overrides, cap = CONFIGS[name]
    run_dir = RUNS_DIR / name
    env = {**os.environ, "WANDB_MODE": "offline"}
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():
        env.setdefault("MARQUEE_DATA_DIR", str(shared))
    cmd = [sys.executable, "-m", "marquee.train", *overrides, f"hydra.run.dir={run_dir}", "evaluation.progress=false",
           f"+trainer.max_time=00:00:{cap:02d}:00", "torch_threads=1"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"id": name, "dataset": dataset, "label": label, "status": "failed", "error": done.stderr[-2000:]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {"id": name, "dataset": dataset, "label": label, "overrides": list(overrides), "cap_minutes": cap,
           "status": "ok", "wall_seconds": seconds, "curve": curve(run_dir), "epoch_seconds": epoch_seconds(run_dir),
           "test": {k: v for k, v in metrics.items() if k.startswith(("test/", "train/")) and "/slice/" not in k},
           "machine": machine(), **stamp(), "load_average": os.getloadavg()}
    if "evaluation.seen=keep" in overrides:  # marquee's own protocol on the same checkpoint
        masked_dir = run_dir / "eval_masked"
        cmd = [sys.executable, "-m", "marquee.eval", f"run_dir={run_dir}", f"hydra.run.dir={masked_dir}",
               "evaluation.seen=mask", "evaluation.progress=false"]
        ev = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False)
        if ev.returncode == 0:
            masked = json.loads((masked_dir / "metrics.json").read_text())
            row["test_masked"] = {k: v for k, v in masked.items() if k.startswith("test/") and "/slice/" not in k}
        else:
            row["masked_error"] = ev.stderr[-2000:]
        keep_per_user(name)
    return row


def keep_per_user(name: str) -> bool:
    """Copy one finished ML-100K run's per-user test NDCG@10 and Recall@10 (seen kept; masked) into PER_USER.

    The run folders stay under logs/ (not committed); this table is what the README's paired tests read.
    """
    parts = []
    for seen, folder in (("keep", RUNS_DIR / name), ("mask", RUNS_DIR / name / "eval_masked")):
        path = folder / "per_user_test.parquet"
        if path.is_file():
            parts.append(pd.read_parquet(path, columns=["user_id", "ndcg@10", "recall@10"]).assign(id=name, seen=seen))
    if not parts:
        return False
    table = pd.concat(parts)[["id", "seen", "user_id", "ndcg@10", "recall@10"]]
    if PER_USER.is_file():
        old = pd.read_csv(PER_USER)
        table = pd.concat([old[old["id"] != name], table])
    tmp = PER_USER.with_suffix(f".{os.getpid()}.tmp")
    table.sort_values(["id", "seen", "user_id"]).to_csv(tmp, index=False, float_format="%.8g")
    tmp.replace(PER_USER)
    return True


def per_user(name: str, seen: str) -> pd.DataFrame | None:
    """One configuration's committed per-user test metrics (``seen``: keep or mask), indexed by user id."""
    if not PER_USER.is_file():
        return None
    table = pd.read_csv(PER_USER)
    mine = table[(table["id"] == name) & (table["seen"] == seen)]
    return mine.set_index("user_id")[["ndcg@10", "recall@10"]] if len(mine) else None


def append(row: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with ROWS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


# ---- rendering -------------------------------------------------------------------------------------

def ci(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "–"
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"{metrics[key]:.4f} [{low:.4f}, {high:.4f}]" if low is not None else f"{metrics[key]:.4f}"


def recbole_rows() -> tuple[list[dict], dict | None, dict | None]:
    curve_rows = read(RECBOLE / "ml100k_curve.jsonl")
    test = json.loads((RECBOLE / "ml100k_test.json").read_text()) if (RECBOLE / "ml100k_test.json").is_file() else None
    ranks = RECBOLE / "ml100k_test_ranks.csv"
    per_user = None
    if ranks.is_file():
        import numpy as np

        from marquee.evaluation.metrics import accuracy_metrics
        from marquee.evaluation.statistics import bootstrap_cis

        r = pd.read_csv(ranks)["rank"].to_numpy()[:, None]
        acc = accuracy_metrics(r, [10])
        values = np.stack([acc["ndcg@10"], acc["recall@10"]], 1)
        means, lows, highs = bootstrap_cis(values, n_boot=1000, confidence=0.95, seed=0)
        per_user = {"test/ndcg@10": means[0], "test/ndcg@10_ci_low": lows[0], "test/ndcg@10_ci_high": highs[0],
                    "test/recall@10": means[1], "test/recall@10_ci_low": lows[1], "test/recall@10_ci_high": highs[1]}
    return curve_rows, test, per_user


def paired_with_recbole(name: str) -> dict | None:
    """Paired bootstrap of marquee's per-user test NDCG@10 (seen kept) against RecBole's, from its per-user ranks."""
    ranks = RECBOLE / "ml100k_test_ranks.csv"
    ours = per_user(name, "keep")
    if not ranks.is_file() or ours is None:
        return None
    from marquee.evaluation.metrics import accuracy_metrics
    from marquee.evaluation.statistics import compare_runs

    theirs = pd.read_csv(ranks).set_index("user")
    theirs = pd.DataFrame({"ndcg@10": accuracy_metrics(theirs[["rank"]].to_numpy(), [10])["ndcg@10"]},
                          index=theirs.index.rename("user_id"))
    return compare_runs(theirs, ours[["ndcg@10"]], metrics=["ndcg@10"], n_boot=1000).loc["ndcg@10"].to_dict()


def recbole_date(test: dict | None) -> str | None:
    """The date RecBole's run finished (``finished_at``), else the date in its saved checkpoint's name."""
    if test is None:
        return None
    if test.get("finished_at"):
        return test["finished_at"][:10]
    found = re.search(r"-(\w{3}-\d{2}-\d{4})_", test.get("stopped", ""))
    return time.strftime("%Y-%m-%d", time.strptime(found.group(1), "%b-%d-%Y")) if found else None


def first_reach(points: list[dict], target: float) -> float | None:
    return next((p["seconds"] for p in points if p["ndcg@10"] >= target), None)


def plot(rows: dict[str, dict], recbole_curve: list[dict]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in ("ml100k_ce", "ml100k_gbce", "ml100k_sampled", "ml100k_bert4rec"):
        if name in rows and rows[name].get("curve"):
            pts = rows[name]["curve"]
            ax.plot([p["seconds"] / 60 for p in pts], [p["ndcg@10"] for p in pts], marker=".", label=f"marquee {rows[name]['label']}")
    if recbole_curve:
        ax.plot([p["elapsed_seconds"] / 60 for p in recbole_curve], [p["valid_ndcg@10"] for p in recbole_curve],
                marker="o", color="black", label="RecBole 1.2.1 SASRec, CE")
    ax.set_xscale("log")
    ax.set_xlabel("wall-clock minutes since training started (log scale)")
    ax.set_ylabel("validation NDCG@10 (full ranking, seen kept)")
    ax.set_title("ML-100K, leave-one-out: SASRec validation NDCG@10 against time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = OUT / "val_ndcg_vs_time.png"
    fig.savefig(path, dpi=120)
    return path.name


def render() -> None:
    rows = {r["id"]: r for r in read(ROWS) if r.get("status") == "ok"}
    failed = [r for r in read(ROWS) if r.get("status") != "ok" and r["id"] not in rows]
    rb_curve, rb_test, rb_user = recbole_rows()
    machines = sorted({r["machine"] for r in rows.values()})
    loads = [r["load_average"][0] for r in rows.values() if r.get("load_average")]
    lines = ["# SASRec family: marquee beside RecBole 1.2.1", "",
             ("Written by `python scripts/bench_sasrec.py` (marquee) and `scripts/recbole_sasrec.py` (RecBole, in its "
             "own venv, run in the background with every epoch appended to `recbole/ml100k_curve.jsonl`); "
             "`python scripts/bench_sasrec.py --render-only` rewrites this page and its plot from the committed files."),
             (f"Machine recorded by marquee's rows: {'; '.join(machines) or 'none'}"
              + (f"; by RecBole's test file: {rb_test['machine']['cpu']}, {rb_test['machine']['cores']} cores, "
                 f"{rb_test['machine']['mem_gb']} GB RAM" if rb_test and rb_test.get("machine") else "") + ". "
              + (f"Load average (1 min) as each marquee run finished: {min(loads):.1f}–{max(loads):.1f}. " if loads
                 else "The rows record no load average, nor what else ran on the machine. ")
              + "This script runs marquee with `torch_threads=1`"
              + (f"; RecBole's curve records {rb_curve[0]['torch_threads']} torch thread(s)." if rb_curve
                 and "torch_threads" in rb_curve[0] else ".")), ""]
    stamps = [(f"`{name}`", r["finished_at"][:10], r.get("git_commit")) for name, r in rows.items()]
    if recbole_date(rb_test):
        stamps.append(("RecBole's SASRec", recbole_date(rb_test), None))
    lines += measured(stamps, "marquee's rows' `finished_at`; RecBole's from its test file's `finished_at`, else "
                              "from its saved checkpoint's name")
    # ---- ML-100K against RecBole
    lines += ["## MovieLens-100K, leave-one-out, full ranking", "",
              ("RecBole trains and tests on the split `scripts/recbole_export.py` exports from marquee's. "
               + (("RecBole (settings from its test file): " + ", ".join(f"{k} {v}" for k, v in rb_test["params"].items())
                   + "; every prefix of every training sequence as one row. ") if rb_test else "")
               + "marquee: the configuration `experiment=sasrec_ml100k` named in its rows (CE over the full catalog; "
               "every position of each window trained at once); the rows record the overrides, not the resolved "
               "values."), ""]
    rb_best = max((p["valid_ndcg@10"] for p in rb_curve), default=None)
    head = ("| model | test NDCG@10 (seen kept) | test Recall@10 (seen kept) | test NDCG@10 (seen masked) | "
            "test Recall@10 (seen masked) | epochs run (cap) | best val NDCG@10 | wall time to best val | "
            "median s / epoch | time to reach RecBole's best val NDCG@10 |")
    lines += [head, "|" + "---|" * 10]
    for name in ("ml100k_ce", "ml100k_gbce", "ml100k_sampled", "ml100k_bce", "ml100k_bert4rec"):
        if name not in rows:
            continue
        r = rows[name]
        pts = r["curve"]
        best = max(pts, key=lambda p: p["ndcg@10"]) if pts else None
        reach = first_reach(pts, rb_best) if rb_best is not None else None
        masked = r.get("test_masked", {})
        lines.append(
            f"| marquee {r['label']} | {ci(r['test'], 'test/ndcg@10')} | {ci(r['test'], 'test/recall@10')} | "
            f"{ci(masked, 'test/ndcg@10')} | {ci(masked, 'test/recall@10')} | {len(pts)} ({r['cap_minutes']} min cap) | "
            f"{best['ndcg@10']:.4f} (epoch {best['epoch']}) | {best['seconds']:.0f} s | {r['epoch_seconds']:.1f} | "
            f"{f'{reach:.0f} s' if reach is not None else 'not reached'} |" if best else f"| marquee {r['label']} | – |")
    if rb_curve:
        best = max(rb_curve, key=lambda p: p["valid_ndcg@10"])
        test_ndcg = ci(rb_user, "test/ndcg@10") if rb_user else "(run still training)"
        test_recall = ci(rb_user, "test/recall@10") if rb_user else ""
        cap = (f"cap {rb_test['params']['epochs']} epochs; {rb_test.get('stopped', '')}" if rb_test
               else "still training")
        lines.append(
            f"| RecBole 1.2.1 SASRec, CE | {test_ndcg} | {test_recall} | – (RecBole masks nothing for sequential "
            f"models) | – | {len(rb_curve)} ({cap}) | {best['valid_ndcg@10']:.4f} (epoch {best['epoch']}) | "
            f"{best['elapsed_seconds']:.0f} s | {statistics.median(p['train_seconds'] for p in rb_curve):.1f} | "
            f"{best['elapsed_seconds']:.0f} s (its own best) |")
    lines += ["", ("Which number compares with which: RecBole ranks every item for sequential models, already-seen ones "
              "included, so its test NDCG@10 compares with marquee's *seen kept* columns (same protocol, same "
              "checkpoint selection on unmasked validation). The *seen masked* columns re-evaluate the same marquee "
              "checkpoint with the user's train and validation items removed from the ranking, marquee's default. "
              "CIs: 95% percentile bootstrap over test users (1,000 resamples); RecBole's from its per-user test ranks "
              "(`recbole/ml100k_test_ranks.csv`)."), ""]
    if rb_curve and "ml100k_ce" in rows:
        ours = rows["ml100k_ce"]
        reach = first_reach(ours["curve"], rb_best)
        rb_time = max(rb_curve, key=lambda p: p["valid_ndcg@10"])["elapsed_seconds"]
        if reach is not None:
            lines += [(f"Time to RecBole's best validation NDCG@10 ({rb_best:.4f}): marquee CE {reach:.0f} s, RecBole "
                      f"{rb_time:.0f} s — **{rb_time / reach:.1f}×** less wall time (goal: at least 10×)."), ""]
        paired = paired_with_recbole("ml100k_ce")
        if paired is not None:
            lines += [(f"Paired over the same {int(paired['n_users'])} test users (seen kept): marquee CE minus RecBole, "
                      f"NDCG@10 {paired['diff']:+.4f} [{paired['diff_low']:+.4f}, {paired['diff_high']:+.4f}], "
                      f"paired t-test p = {paired['p_ttest']:.2g}."), ""]
        else:
            lines += [(f"No paired test against RecBole: `{PER_USER.name}` holds no per-user columns of `ml100k_ce` "
                       "(the run's folder was not committed; `--keep-per-user` copies them from it, a new run "
                       "writes them)."), ""]
        ep_ours, ep_rb = ours["epoch_seconds"], statistics.median(p["train_seconds"] for p in rb_curve)
        lines += [(f"Median time per epoch: marquee {ep_ours:.1f} s, RecBole {ep_rb:.1f} s ({ep_rb / ep_ours:.0f}×). "
                  "An epoch of each sees every training transition once, RecBole's as one row per prefix, marquee's "
                  "as every position of its windows; neither side records the tokens it processed."), ""]
    png = plot(rows, rb_curve)
    if png:
        lines += [f"![validation NDCG@10 against wall-clock time]({png})", ""]
    # ---- Video Games
    video = [rows[n] for n in ("video_sasrec", "video_bert4rec", "video_ease", "video_pop") if n in rows]
    if video:
        lines += ["## Amazon Video Games, leave-one-out, full ranking, seen items masked", "",
                  "| model | NDCG@10 | Recall@10 | Recall@50 | epochs run (cap) | wall s |", "|---|---|---|---|---|---|"]
        for r in video:
            epochs = f"{len(r['curve'])} ({r['cap_minutes']} min cap)" if r["curve"] else "fitted"
            lines.append(f"| {r['label']} | {ci(r['test'], 'test/ndcg@10')} | {ci(r['test'], 'test/recall@10')} | "
                         f"{ci(r['test'], 'test/recall@50')} | {epochs} | {r['wall_seconds']:.0f} |")
        lines.append("")
    # ---- side inputs
    effects = [n for n in SIDE_EFFECTS if n in rows and "ml100k_ce" in rows]
    if effects:
        from marquee.evaluation.statistics import compare_runs

        base_row = rows["ml100k_ce"]
        best_s = max(base_row["curve"], key=lambda p: p["ndcg@10"])["seconds"] if base_row["curve"] else None
        caps = sorted({rows[n]["cap_minutes"] for n in effects})
        lines += ["## Effect of each side input (ML-100K, test, seen masked)", "",
                  ("Each row: the same SASRec (CE) with one side input switched on (B) against it without (A); no "
                   "configuration here switches on the device input. "
                   f"Caps: {', '.join(f'{c} minutes' for c in caps)} for the side-input runs, "
                   f"{base_row['cap_minutes']} for the CE run"
                   + (f", whose best validation epoch came at {best_s / 60:.1f} minutes." if best_s is not None else ".")),
                  "",
                  "| side input | NDCG@10 without → with | difference [95% CI] | p (paired t) | Recall@10 without → with |",
                  "|---|---|---|---|---|"]
        base = per_user("ml100k_ce", "mask")
        unpaired = False
        for name in effects:
            other = per_user(name, "mask")
            if base is not None and other is not None:
                table = compare_runs(base, other, metrics=["ndcg@10", "recall@10"], n_boot=1000)
                n, rc = table.loc["ndcg@10"], table.loc["recall@10"]
                lines.append(f"| {SIDE_EFFECTS[name]} | {n['mean_a']:.4f} → {n['mean_b']:.4f} | {n['diff']:+.4f} "
                             f"[{n['diff_low']:+.4f}, {n['diff_high']:+.4f}] | {n['p_ttest']:.3g} | "
                             f"{rc['mean_a']:.4f} → {rc['mean_b']:.4f} |")
                continue
            unpaired = True
            a, b = base_row["test_masked"], rows[name]["test_masked"]
            lines.append(f"| {SIDE_EFFECTS[name]} | {ci(a, 'test/ndcg@10')} → {ci(b, 'test/ndcg@10')} | "
                         f"{b['test/ndcg@10'] - a['test/ndcg@10']:+.4f} (unpaired) | – | "
                         f"{a['test/recall@10']:.4f} → {b['test/recall@10']:.4f} |")
        if unpaired:
            lines += ["", (f"Rows marked *unpaired* show each run's own mean and CI: `{PER_USER.name}` holds no "
                           "per-user columns for them, so no paired interval or test is computed.")]
        lines.append("")
    if failed:
        lines += ["## Configurations that failed", ""] + [f"- `{r['id']}`: {r.get('error', '')[-300:]!r}" for r in failed]
    lines += ["## Reproduce", "", "```bash", "bash scripts/recbole_setup.sh   # RecBole's own venv",
              "python scripts/recbole_export.py ml100k",
              ("nohup ../recbole-venv/bin/python scripts/recbole_sasrec.py ../recbole-data/ml100k "
              "--out-dir experiments/sasrec/recbole --max-epochs 20 &"),
              "python scripts/bench_sasrec.py", "python scripts/bench_sasrec.py --render-only   # this page alone",
              "```", ""]
    (OUT / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS))
    parser.add_argument("--render-only", action="store_true", help="rewrite README.md and the plot only")
    parser.add_argument("--keep-per-user", action="store_true",
                        help=f"copy the per-user columns of finished ML-100K runs under {RUNS_DIR.relative_to(REPO)} "
                             f"into {PER_USER.name} (runs measured before the benchmark wrote it), then render")
    args = parser.parse_args(argv)
    if args.keep_per_user:
        kept = [name for name, (_, _, overrides, _) in CONFIGS.items() if KEEP[0] in overrides and keep_per_user(name)]
        print(f"per-user columns kept for: {', '.join(kept) or 'none (no run folders found)'}", flush=True)
    elif not args.render_only:
        done = {r["id"] for r in read(ROWS) if r.get("status") == "ok"}
        for name in args.only or list(CONFIGS):
            if name in done:
                continue
            print(f"running {name} ...", flush=True)
            row = run_config(name)
            append(row)
            print(json.dumps({k: row.get(k) for k in ("id", "status", "wall_seconds")}), flush=True)
            render()
    render()
    return 0


if __name__ == "__main__":
    sys.exit(main())
