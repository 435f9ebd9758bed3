"""Write experiments/sasrec/README.md and its plot from the committed files only.

    python scripts/render_sasrec.py

Reads the CE seed groups of experiments/sweeps/sasrec (default config, frozen winner), the variant seed groups
under experiments/sasrec/ml100k/ and RecBole's curves, test files and per-user ranks under experiments/sasrec/recbole/.
Every figure it prints comes from those files; where a run is missing it says so.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sasrec import OUT, PATIENCE, RECBOLE, REFERENCE, RUNS, TUNED, VARIANTS, VIDEO, VIDEO_GROUPS
from bench_sweeps import QUIET

from marquee.evaluation.metrics import accuracy_metrics
from marquee.evaluation.statistics import bootstrap_cis, compare_runs, holm
from marquee.reports.markdown import markdown_table
from marquee.reports.report import build_report
from marquee.reports.tables import pairs_text

METRICS = ["ndcg@10", "recall@10"]
RECBOLE_TAGS = {"defaults": "RecBole's defaults", "marquee_best": "the SASRec study's frozen winner"}


def seed_runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("seed_*") if (p / "metrics.json").is_file())


def run_facts(folder: Path) -> dict:
    """Mean epochs, wall minutes and epoch cap of a seed group, from each run's metrics.json and run.json."""
    epochs, minutes, caps, patience = [], [], set(), set()
    for run in seed_runs(folder):
        record = json.loads((run / "run.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        epochs.append(metrics.get("train/epochs", np.nan))
        minutes.append((datetime.fromisoformat(record["ended"]) - datetime.fromisoformat(record["started"]))
                       .total_seconds() / 60)
        caps.add(record["config"]["trainer"]["max_epochs"])
        patience.add((record["config"].get("callbacks") or {}).get("early_stopping", {}).get("patience"))
    best = [json.loads((r / "metrics.json").read_text()).get("train/best_val_score", np.nan) for r in seed_runs(folder)]
    return {"runs": len(epochs), "epochs": epochs, "minutes": minutes, "caps": caps, "patience": patience, "best": best,
            "threads": {json.loads((r / "run.json").read_text())["config"]["torch_threads"] for r in seed_runs(folder)}}


def pooled(folder: Path) -> pd.DataFrame:
    """Each test user's metrics averaged over the group's seeds (index: raw user id)."""
    frames = [pd.read_parquet(run / "per_user_test.parquet", columns=["user_id", *METRICS]) for run in seed_runs(folder)]
    return pd.concat(frames).groupby("user_id")[METRICS].mean()


# ---- RecBole ------------------------------------------------------------------------------------------

def recbole_files(tag: str) -> tuple[list[dict], dict | None, pd.DataFrame | None]:
    curve_path, test_path = RECBOLE / f"ml100k_{tag}_curve.jsonl", RECBOLE / f"ml100k_{tag}_test.json"
    ranks_path = RECBOLE / f"ml100k_{tag}_test_ranks.csv"
    curve = [json.loads(line) for line in curve_path.read_text().splitlines()] if curve_path.is_file() else []
    test = json.loads(test_path.read_text()) if test_path.is_file() else None
    ranks = pd.read_csv(ranks_path) if ranks_path.is_file() and test is not None else None
    return curve, test, ranks


def recbole_per_user(ranks: pd.DataFrame, column: str) -> pd.DataFrame:
    """RecBole's per-user NDCG@10 and Recall@10 from its 1-based test ranks (``rank`` kept, ``rank_masked``)."""
    values = accuracy_metrics(ranks[[column]].to_numpy(), [10])
    return pd.DataFrame({m: values[m] for m in METRICS}, index=pd.Index(ranks["user"], name="user_id"))


def with_ci(frame: pd.DataFrame) -> dict[str, str]:
    means, lows, highs = bootstrap_cis(frame[METRICS].to_numpy(), n_boot=1000, confidence=0.95, seed=0)
    return {m: f"{means[i]:.4f} [{lows[i]:.4f}, {highs[i]:.4f}]" for i, m in enumerate(METRICS)}


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def recbole_section() -> tuple[list[str], dict]:
    lines = ["## marquee's SASRec against RecBole 1.2.1's", ""]
    marquee = {"marquee, default config": REFERENCE, "marquee, the study's frozen winner": TUNED}
    rows, per_user, curves = [], {}, {}
    for name, folder in marquee.items():
        facts = run_facts(folder)
        if not facts["runs"]:
            continue
        table = pooled(folder)
        per_user[name] = table
        metrics = [json.loads((r / "metrics.json").read_text()) for r in seed_runs(folder)]
        ci = with_ci(table)
        rows.append({"system": name, "runs": f"{facts['runs']} (seeds)",
                     "test NDCG@10": f"{mean_sd([m['test/ndcg@10'] for m in metrics])} {ci['ndcg@10'].split(' ', 1)[1]}",
                     "test Recall@10": f"{mean_sd([m['test/recall@10'] for m in metrics])} "
                                       f"{ci['recall@10'].split(' ', 1)[1]}",
                     "test NDCG@10, seen kept": "not measured",
                     "epochs run": f"{np.mean(facts['epochs']):.1f} (cap {max(facts['caps'])})",
                     "stop": f"patience {', '.join(map(str, sorted(facts['patience'])))}",
                     "wall min / run": f"{np.mean(facts['minutes']):.1f} ({', '.join(map(str, sorted(facts['threads'])))}"
                                       " thread(s); load not recorded)"})
    for tag, label in RECBOLE_TAGS.items():
        curve, test, ranks = recbole_files(tag)
        curves[tag] = curve
        name = f"RecBole, {label}"
        if test is None:
            state = (f"running or cut: {len(curve)} epoch(s) in its curve, best validation NDCG@10 "
                     f"{max(r['valid_ndcg@10'] for r in curve):.4f} (seen kept)" if curve else "not run yet")
            rows.append({"system": name, "runs": "–", "test NDCG@10": state, "test Recall@10": "–",
                         "test NDCG@10, seen kept": "–", "epochs run": str(len(curve)), "stop": "–",
                         "wall min / run": "–"})
            continue
        masked = recbole_per_user(ranks, "rank_masked")
        kept = recbole_per_user(ranks, "rank")
        per_user[name] = masked
        ci, ci_kept = with_ci(masked), with_ci(kept)
        loads = [r["load_average"] for r in curve if "load_average" in r]
        rows.append({"system": name, "runs": f"1 (seed {test['seed']})" if "seed" in test else "1", "test NDCG@10": ci["ndcg@10"],
                     "test Recall@10": ci["recall@10"], "test NDCG@10, seen kept": ci_kept["ndcg@10"],
                     "epochs run": f"{test['epochs_run']} (cap {test['params']['epochs']}; best {test['best_epoch']})",
                     "stop": f"patience {test['patience']} ({test['stopped']})",
                     "wall min / run": (f"{test['fit_seconds'] / 60:.1f} ({curve[-1]['torch_threads']} thread(s); "
                                        f"1-min load {min(loads):.1f}–{max(loads):.1f})" if loads else
                                        f"{test['fit_seconds'] / 60:.1f}")})
    lines += [("Test on ML-100K's leave-one-out split (RecBole trains and tests on the split "
               "`scripts/recbole_export.py` exports from marquee's), full catalog, each user's train and validation "
               "items removed from the ranking (marquee's protocol; RecBole's own test ranks everything, its number is "
               "the *seen kept* column). marquee: mean ± sd over seeds; then the 95% CI over users of the "
               "seed-averaged per-user values. RecBole: one run, CI over users. Every run stops when validation "
               "NDCG@10 has not improved for the patience named (RecBole's `stopping_step` is set to one less, "
               "since it stops when its counter exceeds it), its best validation epoch restored."), "",
              markdown_table(pd.DataFrame(rows)), ""]
    tests = []
    for a, b in (("marquee, default config", "RecBole, RecBole's defaults"),
                 ("marquee, the study's frozen winner", "RecBole, the SASRec study's frozen winner"),
                 ("marquee, the study's frozen winner", "RecBole, RecBole's defaults")):
        if a in per_user and b in per_user:
            table = compare_runs(per_user[a], per_user[b], METRICS, n_boot=1000, labels=(a, b))
            tests.append(table.reset_index().assign(a=a, b=b, confidence=0.95))
    if tests:
        paired = pd.concat(tests, ignore_index=True)
        paired["p_holm"] = paired.groupby("metric")["p_ttest"].transform(lambda p: holm(p.to_numpy()))
        lines += ["Paired over the same test users (seen masked; marquee's users averaged over its seeds):", "",
                  markdown_table(pairs_text(paired)), ""]
    else:
        lines += ["No paired test yet: RecBole has not finished a run.", ""]
    mapping = next((t for t in (recbole_files("marquee_best")[1],) if t), None)
    if mapping:
        p = mapping["params"]
        lines += [(f"The winner on RecBole's names: learning_rate {p['learning_rate']:.6g}, weight_decay "
                   f"{p['weight_decay']:.4g}, n_layers {p['n_layers']}, hidden and attention dropout "
                   f"{p['hidden_dropout_prob']:.4g}, train_batch_size {p['train_batch_size']} rows (marquee's batch "
                   "of windows times the mean training targets in one window, since RecBole's batch counts one row "
                   "per target). Both sides: hidden 64, 2 heads, inner 256, max length 50, full-catalog CE."), ""]
    lines += epoch_time_lines(curves)
    plot_curves(curves)
    lines += ["![RecBole's validation NDCG@10 per epoch](recbole_validation.png)", ""]
    return lines, per_user


BUSY_MARGIN = 0.5  # load above a run's own threads by more than this means something else ran


def epoch_time_lines(curves: dict[str, list[dict]]) -> list[str]:
    lines = []
    for tag, curve in curves.items():
        if not curve:
            continue
        train = sorted(r["train_seconds"] for r in curve)
        loads = [r["load_average"] for r in curve if "load_average" in r]
        lines.append(f"RecBole ({RECBOLE_TAGS[tag]}): median training epoch {train[len(train) // 2]:.0f} s over "
                     f"{len(curve)} epochs, {curve[-1]['torch_threads']} thread(s)"
                     + (f", 1-minute load average {min(loads):.1f}–{max(loads):.1f} at the epochs' ends." if loads
                        else "."))
        busy = [r["epoch"] for r in curve if r.get("load_average", 0) > r["torch_threads"] + BUSY_MARGIN]
        if loads:
            lines.append(f"  Epochs whose end saw a 1-minute load above the run's own {curve[-1]['torch_threads']} "
                         f"thread(s) + {BUSY_MARGIN} (other work on the machine): "
                         + (", ".join(map(str, busy)) if busy else "none") + ".")
    if lines:
        lines += ["", ("marquee's seed runs recorded no machine load, so the wall-time column is not a speed "
                       "comparison between the two frameworks."), ""]
    return lines


def plot_curves(curves: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for tag, curve in curves.items():
        if curve:
            ax.plot([r["epoch"] for r in curve], [r["valid_ndcg@10"] for r in curve], marker=".",
                    label=f"RecBole, {RECBOLE_TAGS[tag]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10 (RecBole's, seen kept)")
    ax.set_title("ML-100K: RecBole 1.2.1 SASRec, validation per epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "recbole_validation.png", dpi=110)
    plt.close(fig)


# ---- variants -----------------------------------------------------------------------------------------

def variants_section() -> list[str]:
    lines = ["## Losses, side inputs and BERT4Rec", ""]
    finished = [n for n in VARIANTS if seed_runs(RUNS / n)]
    if not finished or not seed_runs(REFERENCE):
        return [*lines, "No variant has finished a run yet.", ""]
    rows, tests = [], []
    for name in finished:
        kind, label, overrides = VARIANTS[name]
        facts = run_facts(RUNS / name)
        report = build_report([REFERENCE, RUNS / name], stage="test", metric="ndcg@10", metrics=["recall@10"])
        mine = report.summary.set_index("group").loc["B"]
        rows.append({"kind": kind, "variant": label, "runs": facts["runs"],
                     "NDCG@10": f"{mine['ndcg@10']:.4f} ± {mine['ndcg@10_sd']:.4f}",
                     "Recall@10": f"{mine['recall@10']:.4f} ± {mine['recall@10_sd']:.4f}",
                     "epochs run (mean)": f"{np.mean(facts['epochs']):.1f}",
                     "best val NDCG@10 (mean)": f"{np.mean(facts['best']):.4f}",
                     "stop": f"patience {', '.join(map(str, sorted(facts['patience'])))}, cap {max(facts['caps'])}",
                     "overrides": " ".join(f"`{o}`" for o in overrides)})
        tests.append(report.paired.assign(b=label, a="CE"))
    reference = run_facts(REFERENCE)
    base = build_report([REFERENCE], stage="test", metric="ndcg@10", metrics=["recall@10"]).summary.iloc[0]
    rows.insert(0, {"kind": "reference", "variant": "CE over the full catalog (the default config)",
                    "runs": reference["runs"], "NDCG@10": f"{base['ndcg@10']:.4f} ± {base['ndcg@10_sd']:.4f}",
                    "Recall@10": f"{base['recall@10']:.4f} ± {base['recall@10_sd']:.4f}",
                    "epochs run (mean)": f"{np.mean(reference['epochs']):.1f}",
                    "best val NDCG@10 (mean)": f"{np.mean(reference['best']):.4f}",
                    "stop": f"patience {', '.join(map(str, sorted(reference['patience'])))}, "
                            f"cap {max(reference['caps'])}",
                    "overrides": "`experiment=sasrec_ml100k`"})
    paired = pd.concat(tests, ignore_index=True)
    paired["p_holm"] = paired.groupby("metric")["p_ttest"].transform(lambda p: holm(p.to_numpy()))
    lines += [("Each variant is the default SASRec config (`experiment=sasrec_ml100k`, CE) with the overrides named, "
               "untuned: every variant gets the same budget, the default config's hyperparameters and training "
               "until validation NDCG@10 stops improving (the patience named), with seeds 0-2; the reference is the "
               "default config's seeds in `experiments/sweeps/sasrec/default`. Test, full catalog, seen masked; "
               "mean ± sd over seeds."), "", markdown_table(pd.DataFrame(rows)), "",
              ("Each variant against the reference, paired over the same test users (each user averaged over a "
               "config's seeds); Holm's correction over the variants:"), "", markdown_table(pairs_text(paired)), ""]
    missing = [n for n in VARIANTS if n not in finished]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    return lines


# what bench_sweeps.train_seed appends to every run's overrides (its seed, threads, folder and QUIET)
RUN_SPECIFIC = ("seed=", "torch_threads=", "hydra.run.dir=", "paths.output_dir=", *QUIET)


def recorded_overrides(folder: Path) -> list[str]:
    """The overrides the group's runs were started with (their run.json commands), less what differs per run."""
    commands = {tuple(o for o in json.loads((run / "run.json").read_text())["command"][1:]
                      if not o.startswith(RUN_SPECIFIC)) for run in seed_runs(folder)}
    if len(commands) != 1:
        raise SystemExit(f"the runs under {folder} were started with different overrides: {sorted(commands)}")
    return list(commands.pop())


def video_section() -> list[str]:
    """Amazon Video Games: SASRec and BERT4Rec trained to convergence over seeds, each paired against EASE."""
    lines = ["## Amazon Video Games", ""]
    groups = {name: VIDEO / name for name in VIDEO_GROUPS if seed_runs(VIDEO / name)}
    if "ease" not in groups or len(groups) < 2:
        return [*lines, ("Not measured under this protocol yet (`python scripts/bench_sasrec.py video`). The rows this "
                         "page showed before (SASRec and BERT4Rec stopped by a wall-clock cap after 2-3 epochs, beside "
                         "a fully fitted EASE) were undertrained and are withdrawn."), ""]
    rows, tests = [], []
    for name, folder in groups.items():
        label, overrides = VIDEO_GROUPS[name][0], recorded_overrides(folder)
        facts = run_facts(folder)
        summary = build_report([folder], stage="test", metric="ndcg@10", metrics=["recall@10"]).summary.iloc[0]
        spread = (lambda m: f" ± {summary[f'{m}_sd']:.4f}") if facts["runs"] > 1 else (lambda m: "")
        trained = name != "ease"
        rows.append({"model": label, "runs": f"{facts['runs']} (seeds)" if trained else "1 (deterministic)",
                     "NDCG@10": f"{summary['ndcg@10']:.4f}{spread('ndcg@10')}",
                     "Recall@10": f"{summary['recall@10']:.4f}{spread('recall@10')}",
                     "epochs run (mean)": f"{np.mean(facts['epochs']):.1f}" if trained else "–",
                     "best val NDCG@10 (mean)": f"{np.mean(facts['best']):.4f}" if trained else "–",
                     "stop": (f"patience {', '.join(map(str, sorted(facts['patience'])))}, cap {max(facts['caps'])}"
                              if trained else "closed form"),
                     "wall min / run": f"{np.mean(facts['minutes']):.1f} ({', '.join(map(str, sorted(facts['threads'])))}"
                                       " thread(s))",
                     "overrides": " ".join(f"`{o}`" for o in overrides)})
        if trained:
            report = build_report([groups["ease"], folder], stage="test", metric="ndcg@10", metrics=["recall@10"])
            tests.append(report.paired.assign(a=VIDEO_GROUPS["ease"][0], b=label))
    lines += [("Every model at its default config (none was tuned on this data set), trained until validation "
               "NDCG@10 has not improved for the patience named; test over the full catalog, seen items masked; "
               "mean ± sd over seeds."), "", markdown_table(pd.DataFrame(rows)), ""]
    if tests:
        paired = pd.concat(tests, ignore_index=True)
        paired["p_holm"] = paired.groupby("metric")["p_ttest"].transform(lambda p: holm(p.to_numpy()))
        lines += ["Each trained model against EASE, paired over the same test users (each user averaged over the "
                  "model's seeds); Holm's correction over the models:", "", markdown_table(pairs_text(paired)), ""]
    missing = [VIDEO_GROUPS[n][0] for n in VIDEO_GROUPS if n not in groups]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)}.", ""]
    short = {VIDEO_GROUPS[n][0]: sorted(set(VIDEO_GROUPS[n][2]) - {int(p.name.split("_")[1]) for p in seed_runs(f)})
             for n, f in groups.items()}
    short = {label: seeds for label, seeds in short.items() if seeds}
    if short:
        lines += ["Planned seeds not finished yet, so the rows above hold fewer runs than the protocol's three: "
                  + "; ".join(f"{label}: seed(s) {', '.join(map(str, seeds))}" for label, seeds in short.items())
                  + ".", ""]
    return lines


def profile_section() -> list[str]:
    """The step profiles of scripts/profile_sasrec.py: where the time goes and the share of the matmul peak."""
    path = OUT / "profile.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    lines = ["## Where a training step's time goes", ""]
    if not rows:
        return [*lines, "Not profiled yet (`python scripts/profile_sasrec.py`).", ""]
    from profile_sasrec import PARTS

    table = []
    best_peak = max(r["peak_gflops"] for r in rows)
    for r in rows:
        total = sum(r["seconds"].values())
        peaks = r.get("peak_gflops_before_after")
        steps_per_epoch = -(-r["windows_per_epoch"] // r["batch_size"])
        epoch = steps_per_epoch * r["unprofiled_step_seconds"]
        table.append({"experiment": r["experiment"] + (f" ({r['label']})" if r["label"] else ""),
                      "threads": r["threads"], "tokens / step": f"{r['tokens_per_step']:.0f}",
                      "padded positions": f"{r['padding_share']:.0%}" if "padding_share" in r else "not measured",
                      **{part: f"{100 * r['seconds'][part] / total:.0f}%" for part in PARTS},
                      "ms / step": f"{1000 * r['unprofiled_step_seconds']:.1f}",
                      "GFLOP/s (peak)": f"{r['achieved_gflops']:.1f} ({r['peak_gflops']:.1f}"
                                        + (f"; {peaks[0]:.1f} before, {peaks[1]:.1f} after" if peaks else "") + ")",
                      "share of peak": f"{r['peak_share']:.1%}",
                      "epoch s (FLOP floor s)": f"{epoch:.1f} ({epoch * r['peak_share']:.1f})",
                      "epoch / floor": f"{1 / r['peak_share']:.1f}×",
                      f"epoch / floor at {best_peak:.1f} GFLOP/s": f"{best_peak / r['achieved_gflops']:.1f}×",
                      "load before / after": f"{r['load_before']:.2f} / {r['load_after']:.2f}"})
    machines = sorted({r["machine"] for r in rows})
    return [*lines, (f"`python scripts/profile_sasrec.py --experiment E --threads T` on {'; '.join(machines)}: "
                     "training steps by hand as `marquee.train` builds them, under `torch.profiler`; forward ops are "
                     "assigned to the module they ran in, backward nodes to the forward op that made them (autograd's "
                     "sequence number). Shares are of the profiled steps' time; *other* holds layer norms, the target "
                     "context, autograd's bookkeeping and the profiler's own overhead. ms / step, GFLOP/s and the share "
                     "of peak come from the same number of unprofiled steps: FLOPs counted by `FlopCounterMode` over "
                     "those very batches (rows whose padded positions say *not measured* counted one batch of them and "
                     "scaled it per token), the peak the best float32 2048² matmul on the same threads. The epoch's FLOP "
                     "floor is its FLOPs at that peak (rows measuring it before and after their unprofiled stretch take the "
                     f"higher). The peak of this shared machine drifts: {min(r['peak_gflops'] for r in rows):.1f} to "
                     f"{best_peak:.1f} GFLOP/s across these rows, so the last column also divides each step's rate into "
                     "the highest peak measured here."), "", markdown_table(pd.DataFrame(table)), ""]


def render() -> Path:
    lines = ["# The SASRec family on MovieLens-100K, and RecBole's SASRec beside it", "",
             ("Written by `python scripts/render_sasrec.py` from the files in this folder and in "
              "`experiments/sweeps/sasrec/`; the runs by `python scripts/bench_sasrec.py variants` and "
              "`python scripts/bench_sasrec.py recbole defaults|marquee_best` (RecBole in its own venv: "
              "`bash scripts/recbole_setup.sh`, then `python scripts/recbole_export.py ml100k --out ../recbole-data`)."),
             "", (f"Protocol: hyperparameters are chosen on validation only (the SASRec study, "
                  f"`experiments/sweeps/README.md`); every run trains until validation stops improving; test is read "
                  f"from finished runs only. RecBole's runs stop after {PATIENCE} epochs without a gain."), ""]
    section, _ = recbole_section()
    lines += section
    lines += variants_section()
    lines += profile_section()
    lines += video_section()
    path = OUT / "README.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(render())
