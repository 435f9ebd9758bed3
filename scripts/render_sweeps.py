"""Write experiments/sweeps/README.md and its plots from the committed study files only.

    python scripts/render_sweeps.py          # (also: python scripts/bench_sweeps.py render)

Reads each study's study.json, trials.csv and best.yaml, the winner's and the default config's seed
folders (metrics.json, per_user_test.parquet) and workers.jsonl; prints nothing it did not read there.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import yaml

from marquee.reports import plots
from marquee.reports.markdown import markdown_table
from marquee.reports.plots import save
from marquee.reports.report import build_report
from marquee.reports.sweeps import load_sweep
from marquee.reports.tables import pairs_text, summary_text

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "sweeps"
METRIC = "ndcg@10"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def training_budget(overrides: list[str]) -> tuple[str, int]:
    """Epoch cap and early-stopping patience of the study's trials, as its committed configs compose them:
    the sentence, and the cap."""
    from marquee.sweeps.study import compose_train

    cfg = compose_train([*overrides, "paths.output_dir=unused"])
    stopping = (cfg.get("callbacks") or {}).get("early_stopping")
    patience = f"early stopping on {stopping.monitor}, patience {stopping.patience}" if stopping else "no early stopping"
    return f"each trial at most {cfg.trainer.max_epochs} epochs, {patience}", int(cfg.trainer.max_epochs)


def study_section(folder: Path) -> list[str]:
    study = json.loads((folder / "study.json").read_text())
    trials = load_sweep(folder).trials
    n_trials = study["spec"]["n_trials"]
    counts = trials["state"].value_counts().to_dict()
    budget, cap = training_budget(study["overrides"])
    trained = "validations" in trials and bool((trials["validations"] > 0).any())
    if not trained:  # a closed-form model (EASE): fitted once, no epochs, nothing for early stopping to watch
        budget = "each trial one closed-form fit (no epochs)"
    lines = [f"## {study['study_name']}", "",
             (f"Search space (`configs/hparams_search/{study['study_name']}.yaml`), TPE seeded "
             f"{study['spec']['sampler_seed']}, median pruning {study['spec']['pruner']}, objective "
             f"`{study['metric']}` ({study['direction']}). Shared overrides: `{' '.join(study['overrides'])}`; "
             f"{budget}."), "",
             f"Trials so far: {len(trials)} of {n_trials} (" + ", ".join(f"{v} {k.lower()}" for k, v in
                                                                     sorted(counts.items())) + "); "
             f"trial time {duration(trials['duration_s'].sum())} in all.", ""]
    if "optimize" in study:
        lines += [(f"Wall time of the last optimization run: {duration(study['optimize']['wall_seconds'])} with "
                  f"{study['optimize']['workers']} worker(s); the study records no machine load, so this is "
                  "not a speed figure (the timed comparison of one and two workers is the last section)."), ""]
    if trained:
        done = trials[trials["state"] == "COMPLETE"]
        capped = int((done["validations"] >= cap).sum())
        lines += [(f"{capped} of {len(done)} completed trials ran to the {cap}-epoch cap without stopping early "
                   "(validation still improving within the patience)."), ""]
    params = [c for c in trials.columns if c.startswith("params_")]
    repeated = trials[trials.duplicated(params, keep=False) & trials["state"].eq("COMPLETE")]
    if len(repeated):
        lines += ["Trials drawn with identical parameters: " + ", ".join(map(str, repeated["number"])) + ".", ""]
    name = folder.name
    sweep = load_sweep(folder)
    if not sweep.complete().empty:  # the figures marquee.compare draws for a sweep
        save(plots.optimization_history(sweep), folder / "optimization_history.png")
        save(plots.parameters(sweep), folder / "params.png")
        lines += [f"![optimization history]({name}/optimization_history.png)", "",
                  f"![each hyperparameter]({name}/params.png)", ""]
    best_file = folder / "best.yaml"
    if best_file.is_file():
        best = yaml.safe_load(best_file.read_text())
        params = ", ".join(f"`{k}={v:.4g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in best["params"].items())
        lines += [(f"Frozen winner (`{name}/best.yaml`): trial {best['trial']}, {best['metric']} "
                  f"{best['value']:.4f}; {params}."), ""]
    else:
        lines += ["No winner is frozen yet: the study has not reached its trial count.", ""]
    lines += seeds_section(folder)
    return lines


def seeds_section(folder: Path) -> list[str]:
    """The frozen winner's seeds against the default config's, as ``marquee.compare`` reads and pairs them."""
    winner = [p for p in (folder / "seeds").glob("seed_*") if (p / "metrics.json").is_file()]
    default = [p for p in (folder / "default").glob("seed_*") if (p / "metrics.json").is_file()]
    if not winner or not default:
        return [(f"Test, read once after freezing: not yet (winner seeds run: {len(winner)}, default seeds run: "
                 f"{len(default)})."), ""]
    report = build_report([folder / "default", folder], stage="test", metric="ndcg@10")
    return [("Test (full catalog, seen masked), each config over its seeds (mean ± sd of the runs' metrics.json; "
            "CI over users of the seed-averaged per-user values):"), "",
            markdown_table(summary_text(report.summary, report.metrics)), "",
            "Paired over the same test users, each user averaged over a config's seeds:", "",
            markdown_table(pairs_text(report.paired)), ""]


def workers_section() -> list[str]:
    path = OUT / "workers.jsonl"
    if not path.is_file():
        return ["## One worker or two", "", "Not measured yet (`python scripts/bench_sweeps.py workers`).", ""]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by = {w: [r["wall_seconds"] for r in rows if r["workers"] == w] for w in sorted({r["workers"] for r in rows})}
    lines = ["## One worker or two", "",
             (f"The same {rows[0]['trials']}-trial `{rows[0]['study']}` study, run {len(by[1])} times with each "
             f"worker count, interleaved, on {rows[0]['machine']} (threads per worker: 2 for one worker, 1 each "
             "for two):"), "", "| workers | wall s, each run | mean |", "|---|---|---|"]
    lines += [f"| {w} | {', '.join(f'{s:.1f}' for s in v)} | {statistics.mean(v):.1f} |" for w, v in by.items()]
    if 1 in by and 2 in by:
        ratios = [a / b for a, b in zip(by[1], by[2])]
        lines += ["", f"Ratio one/two workers per interleaved pair: {', '.join(f'{r:.2f}' for r in ratios)}."]
    return [*lines, ""]


def render(out: Path = OUT) -> Path:
    lines = ["# Hyperparameter studies", "",
             ("Written by `python scripts/render_sweeps.py` from the files in this folder; the studies run with "
             "`python scripts/bench_sweeps.py study sasrec --workers 2 --threads 1` (and `two_tower`; `ease` with "
             "`--workers 1 --threads 2`), the default configs' seeds with `python scripts/bench_sweeps.py default "
             "sasrec` (and `two_tower`, `ease`). Protocol: trials are chosen on validation only "
             "(they never evaluate test); the winner is frozen to `best.yaml`, then it and the default config "
             "run with seeds 0-4 and only those runs read test."), ""]
    for folder in sorted(p for p in out.iterdir() if (p / "study.json").is_file()):
        lines += study_section(folder)
    lines += workers_section()
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
