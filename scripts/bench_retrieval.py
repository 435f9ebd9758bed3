"""Two-tower retrieval measured: accuracy against EASE and popularity, the negatives' accuracy-coverage trade-off,
HNSW against exact search at 1M items, the retrieval -> ranking cascade, and cold items and users.

Under the protocol: every model is its study's frozen winner (experiments/sweeps/*/best.yaml). Accuracy, negatives
and the cascade are seed groups trained by ``python -m marquee.train`` into experiments/retrieval/runs/<group>/seed_<n>
(run.json, metrics.json and per-user files committed) and compared as ``marquee.compare`` compares runs; the
two-tower's and EASE's own seed groups are the studies'. HNSW and the cold-start splits are measured in process
through ``marquee.training.pipeline.fit_pipeline`` and the one Evaluator, appended to results.jsonl as they finish,
tagged with the run id; the README shows each part's newest run. Timings are single-threaded (torch and FAISS
searches on one thread; the HNSW build says its threads).

    python scripts/bench_retrieval.py                          # every part
    python scripts/bench_retrieval.py --parts groups           # the seed groups only (accuracy, negatives, cascade)
    python scripts/bench_retrieval.py --parts cold_items --resume RUN_ID   # finish a cut-short run of row parts
    python scripts/bench_retrieval.py --render-only            # rewrite the README from the committed files
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from provenance import measured, run_id_date, stamp

from marquee.models.base import Recommender

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "experiments" / "retrieval"
ROWS = OUT_DIR / "results.jsonl"
PARTS = ("groups", "hnsw", "cold_items", "cold_users")
DATASETS = {"ml100k": ("two_tower_ml100k", "MovieLens-100K"), "video_games": ("two_tower_video", "Amazon Video Games")}
KS = [10, 50, 100, 200]
SWEEPS = REPO / "experiments" / "sweeps"
GROUPS_DIR = OUT_DIR / "runs"  # the seed groups this benchmark trains (run.json, metrics, per-user files committed)
SEEDS = [0, 1, 2]
HNSW = {"n": 1_000_000, "d": 64, "M": 32, "ef_construction": 80, "ef_search": (100, 200, 400, 800),
        "k": 100, "queries": 1000, "single_queries": 200, "build_threads": 2}
# "isotropic" (standard Gaussian directions, the hardest case for a graph index) is supported too; its 1M build
# took over 15 minutes on the shared 2-core machine, so the default run measures the clustered catalog only
HNSW_VECTORS = ("clustered",)
QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
         "torch_threads=1", "evaluation.progress=false"]


# ---- plumbing ----------------------------------------------------------------------------------

def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM"


def read() -> list[dict]:
    return [json.loads(line) for line in ROWS.read_text().splitlines()] if ROWS.is_file() else []


def append(row: dict) -> None:
    with ROWS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"[{row['part']}] {row.get('dataset', '')} {row['name']}: "
          + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k in ("ndcg@10", "recall@50", "recall@100",
                                                                        "overlap@100", "ms_per_query")), flush=True)


class Bench:
    """One run: its id, its working folder (trained models), and the rows it already has."""

    def __init__(self, run_id: str, work: Path):
        self.run_id, self.work = run_id, work
        self.done = {(r["part"], r.get("dataset"), r["name"]) for r in read() if r["run_id"] == run_id}

    def has(self, part: str, dataset: str | None, name: str) -> bool:
        return (part, dataset, name) in self.done

    def add(self, part: str, dataset: str | None, name: str, **values) -> None:
        append({"run_id": self.run_id, "part": part, "dataset": dataset, "name": name, "machine": machine(),
                **stamp(), **values})
        self.done.add((part, dataset, name))


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def train(cfg, split, output_dir: Path):
    """Fit ``cfg``'s pipeline as the train entry point does; returns (system, seconds, training metrics)."""
    from hydra.utils import instantiate

    from marquee.data.catalog import Catalog
    from marquee.training.pipeline import fit_pipeline

    cfg.paths.output_dir = str(output_dir)
    started = time.perf_counter()
    system, fitted = fit_pipeline(cfg, split, Catalog.from_split(split), instantiate(cfg.evaluation), output_dir)
    for logger in fitted.loggers:
        logger.finalize("success")
    return system.eval(), time.perf_counter() - started, fitted.metrics


def evaluate(model, split, stage: str = "test", ks=KS, parts: bool = False) -> dict[str, float]:
    """Metrics of ``stage`` without the stage prefix, slices left out; with ``parts``, the system's parts too."""
    from marquee.evaluation.evaluator import Evaluator

    evaluator = Evaluator(ks=list(ks), n_boot=1000, progress=False)
    data = evaluator.data(split, model.max_len)
    systems = {"": model, **({f"{k}/": m for k, m in model.evaluated_parts().items()} if parts else {})}
    out = {}
    for prefix, system in systems.items():
        metrics = evaluator.evaluate(system, data, stage).metrics
        out.update({prefix + k.split("/", 1)[1]: v for k, v in metrics.items() if "/slice/" not in k})
    return out


def baseline(name: str, split, **params):
    from marquee.checkpoint import build
    from marquee.data.catalog import Catalog

    cfg = compose([f"model={name}", "paths.output_dir=unused"])
    return build(cfg.model, catalog=Catalog.from_split(split), **params).fit(split).eval()


def two_tower(bench: Bench, dataset: str, name: str, overrides: list[str] = (), split=None, study: str = ""):
    """The two-tower of this dataset's experiment (plus overrides), trained once per run and reloaded after.

    ``split`` replaces the experiment's own split (cold-start studies, kept apart by ``study``).
    """
    from marquee.checkpoint import load_system
    from marquee.data.pipeline import prepare_split

    cfg = compose([f"experiment={DATASETS[dataset][0]}", *QUIET, *overrides, "paths.output_dir=unused"])
    split = split if split is not None else prepare_split(cfg.data)
    out = bench.work / (dataset + study) / name.replace(" ", "_").replace("+", "plus")
    checkpoint = out / "checkpoints" / "model.pt"
    if checkpoint.is_file() and (out / "train.json").is_file():
        model, _ = load_system(checkpoint)
        info = json.loads((out / "train.json").read_text())
        return model.eval(), info, split
    model, seconds, metrics = train(cfg, split, out)
    info = {"train_seconds": seconds, "epochs": metrics.get("train/epochs"),
            "best_val_ndcg@10": metrics.get("train/best_val_score")}
    (out / "train.json").write_text(json.dumps(info))
    return model, info, split


# ---- parts -------------------------------------------------------------------------------------

def frozen(study: str) -> list[str]:
    """The overrides of a study's frozen winner (``experiments/sweeps/<study>/best.yaml``): its search file and
    the winning parameters, as the study's seed runs had them."""
    import yaml

    best = yaml.safe_load((SWEEPS / study / "best.yaml").read_text())
    return [f"hparams_search={best['study']}", *(f"{k}={v}" for k, v in best["params"].items())]


def stage_overrides(study: str, stage: str) -> list[str]:
    """A study's winning parameters applied to one stage of a pipeline (``pipeline.stages.<stage>.<key>``)."""
    return [f"pipeline.stages.{stage}.{o}" for o in frozen(study)[1:]]


def groups() -> dict[str, tuple[str, str, tuple[str, ...], list[int]]]:
    """name -> (part, label, overrides, seeds): the seed groups trained here. The frozen winners' own seed groups
    (two-tower, EASE, SASRec) are the studies' and are read from experiments/sweeps/, not re-run."""
    tower = frozen("two_tower")
    return {
        "pop": ("accuracy", "MostPopular", ("model=pop",), [0]),  # deterministic: one run
        "in_batch": ("negatives", "in-batch", (*tower, "model.log_q=false"), SEEDS),
        "mixed": ("negatives", "+ logQ + mixed", (*tower, "model.uniform_negatives=1024"), SEEDS),
        # the two winners as the cascade's stages: the two-tower's top 200 re-scored by SASRec
        "cascade": ("cascade", "two-tower top 200 -> SASRec",
                    ("experiment=cascade_ml100k", *frozen("sasrec")[1:], *stage_overrides("two_tower", "retriever")),
                    SEEDS),
    }


def part_groups(names: list[str] | None = None, threads: int = 1) -> None:
    """Train every seed of the seed groups (finished seeds are kept)."""
    from bench_sweeps import train_seed

    for name, (_, _, overrides, seeds) in groups().items():
        if names and name not in names:
            continue
        for seed in seeds:
            print(train_seed(overrides, seed, GROUPS_DIR / name / f"seed_{seed}", threads), flush=True)


def part_hnsw(bench: Bench) -> None:
    """HNSW against exact inner-product search on 1M synthetic unit vectors of dimension 64."""
    from marquee.retrieval.index import ItemIndex

    p = HNSW
    rng = np.random.default_rng(0)
    for dist in HNSW_VECTORS:
        names = ["exact", *(f"hnsw ef={ef}" for ef in p["ef_search"])]
        if all(bench.has("hnsw", dist, n) for n in names):
            continue
        vectors, queries = synthetic_vectors(rng, dist, p["n"], p["d"], p["queries"])
        ids = np.arange(1, p["n"] + 1)
        exact = ItemIndex("flat", threads=1).build(vectors, ids)
        truth, batch_s, single_s = timed_search(exact, queries, p["k"], p["single_queries"])
        if not bench.has("hnsw", dist, "exact"):
            bench.add("hnsw", dist, "exact", overlap=1.0, ms_per_query=1000 * single_s,
                      ms_per_query_batched=1000 * batch_s, build_seconds=0.0, threads=1, **p_meta(p))
        started = time.perf_counter()
        hnsw = ItemIndex("hnsw", M=p["M"], ef_construction=p["ef_construction"], threads=p["build_threads"])
        hnsw.build(vectors, ids)
        build = time.perf_counter() - started
        hnsw.threads = 1
        for ef in p["ef_search"]:
            name = f"hnsw ef={ef}"
            if bench.has("hnsw", dist, name):
                continue
            hnsw.ef_search = ef
            found, batch_s, single_s = timed_search(hnsw, queries, p["k"], p["single_queries"])
            overlap = float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(found, truth)]) / p["k"])
            bench.add("hnsw", dist, name, overlap=overlap, ms_per_query=1000 * single_s,
                      ms_per_query_batched=1000 * batch_s, build_seconds=build, build_threads=p["build_threads"],
                      threads=1, ef_search=ef, **p_meta(p))
        del hnsw, exact, vectors


def p_meta(p: dict) -> dict:
    return {"n_items": p["n"], "dim": p["d"], "M": p["M"], "ef_construction": p["ef_construction"], "k": p["k"]}


def synthetic_vectors(rng, dist: str, n: int, d: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit item and query vectors: around 1,000 centres (as trained embeddings cluster), or isotropic Gaussian."""
    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    if dist == "isotropic":
        return unit(rng.standard_normal((n, d), dtype=np.float32)), unit(rng.standard_normal((n_queries, d)))
    centres = rng.standard_normal((1000, d), dtype=np.float32)
    items = centres[rng.integers(0, 1000, n)] + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    queries = centres[rng.integers(0, 1000, n_queries)] + 0.5 * rng.standard_normal((n_queries, d))
    return unit(items), unit(queries)


def timed_search(index, queries: np.ndarray, k: int, n_single: int) -> tuple[np.ndarray, float, float]:
    """Result ids of every query, and seconds per query in one batch and one query at a time (the serving case)."""
    started = time.perf_counter()
    _, found = index.search(queries, k)
    batched = (time.perf_counter() - started) / len(queries)
    started = time.perf_counter()
    for q in queries[:n_single]:
        index.search(q[None], k)
    single = (time.perf_counter() - started) / n_single
    return found, batched, single


def part_cold_items(bench: Bench, dataset: str) -> None:
    """10% of the items never train; test users rank the held-out test items among themselves."""
    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import load_log
    from marquee.data.splits import ItemHoldout
    from marquee.evaluation.restricted import RestrictedCatalog
    from marquee.models.baselines import GenrePopularity, RandomRecommender

    cfg = compose([f"experiment={DATASETS[dataset][0]}", "paths.output_dir=unused"])
    log = load_log(cfg.data)
    split = ItemHoldout(val_fraction=0.1, test_fraction=0.1, seed=0)(log)
    cold = ItemHoldout.items(split, "test")
    # validation would rank the cold validation items against the whole warm catalog: train a fixed number of epochs
    fixed = ["~callbacks.model_checkpoint", "~callbacks.early_stopping", "+trainer.limit_val_batches=0",
             "trainer.max_epochs=25"]
    scorers, info = {}, {}
    for seed in SEEDS:  # the two-tower study's frozen winner, its id dropout set as each row names
        for name, dropout in (("Two-tower (content tower)", 0.1), ("Two-tower, 50% id dropout", 0.5)):
            row = f"{name} seed={seed}"
            scorers[row], info[row], _ = two_tower(
                bench, dataset, f"two-tower-id-dropout-{dropout}-seed-{seed}",
                [*frozen("two_tower")[1:], *fixed, f"model.id_dropout={dropout}", f"seed={seed}"], split=split,
                study="-cold-items")
    catalog = Catalog.from_split(split)
    popularity_on_targets = torch.zeros(log.n_items + 1)  # leaks the answers: a ceiling for any popularity
    popularity_on_targets.index_add_(0, torch.as_tensor(split.test["item_id"].to_numpy(np.int64)),
                                     torch.ones(len(split.test)))
    scorers["Genre popularity"] = GenrePopularity(catalog).fit(split)
    scorers["Random"] = RandomRecommender(catalog).fit(split)
    scorers["Popularity among test targets (oracle)"] = _Fixed(catalog, popularity_on_targets)
    for name, scorer in scorers.items():
        if not bench.has("cold_items", dataset, name):
            bench.add("cold_items", dataset, name, n_cold_items=len(cold), **info.get(name, {}),
                      **evaluate(RestrictedCatalog(scorer, torch.from_numpy(cold)), split, ks=[10, 50]))


def part_cold_users(bench: Bench, dataset: str) -> None:
    """10% of the users never train; each keeps three onboarding picks as history, the rest are targets."""
    from marquee.data.pipeline import load_log
    from marquee.data.splits import UserHoldout

    cfg = compose([f"experiment={DATASETS[dataset][0]}", "paths.output_dir=unused"])
    split = UserHoldout(val_fraction=0.1, test_fraction=0.1, fold_in=3, seed=0)(load_log(cfg.data))
    import yaml

    l2 = yaml.safe_load((SWEEPS / "ease" / "best.yaml").read_text())["params"]["model.l2"]
    rows, info = {}, {}
    for seed in SEEDS:  # the two-tower study's frozen winner
        model, info[seed], _ = two_tower(bench, dataset, f"two-tower-seed-{seed}",
                                         [*frozen("two_tower")[1:], f"seed={seed}"], split=split, study="-cold-users")
        rows[f"Two-tower (picks + metadata + context) seed={seed}"] = (model, info[seed])
        rows[f"Two-tower (metadata + context, no picks) seed={seed}"] = (_NoHistory(model), info[seed])
    rows |= {"EASE (picks)": (baseline("ease", split, l2=l2), {}), "MostPopular": (baseline("pop", split), {}),
             "Random": (baseline("random", split), {})}
    for name, (scorer, trained) in rows.items():
        if not bench.has("cold_users", dataset, name):
            bench.add("cold_users", dataset, name, **trained, **evaluate(scorer, split, ks=[10, 50]))


class _Fixed(Recommender):
    """One fixed score per item, the same for every user."""

    def __init__(self, catalog, scores: torch.Tensor):
        super().__init__(catalog)
        self.register_buffer("scores", scores)  # (n_items + 1,)

    def score(self, batch, items=None):
        return self.select(self.scores.expand(len(batch["user"]), -1), items).clone()


class _NoHistory(Recommender):
    """The two-tower with the history blanked: what a member's metadata and the request context alone give."""

    def __init__(self, model: Recommender):
        super().__init__(model.catalog)
        self.model, self.max_len = model, model.max_len

    def score(self, batch, items=None):
        return self.model.score({**batch, "items": torch.zeros_like(batch["items"][:, -1:])}, items)


# ---- README ------------------------------------------------------------------------------------

def render() -> None:
    rows = [r for r in read() if r["part"] in PARTS]  # the row parts; the seed groups are read from their folders
    newest = {}  # each part's rows from the newest run that measured it
    for row in rows:
        newest.setdefault((row["part"], row.get("dataset")), {}).setdefault(row["run_id"], []).append(row)
    by_part: dict[str, list[dict]] = {}
    for (part, _), runs in newest.items():
        latest = {r["name"]: r for r in runs[max(runs)]}  # within the run, a repeated row's later measurement
        by_part.setdefault(part, []).extend(latest.values())
    shown = [r for part in by_part.values() for r in part]
    machines = sorted({r["machine"] for r in shown})
    lines = [
        "# Two-tower retrieval, the cascade, and cold start",
        "",
        ("Reproduce: `python scripts/bench_retrieval.py` (the seed groups under `runs/`, the HNSW and cold-start "
         "rows in `results.jsonl`); this page from the committed files with `python scripts/bench_retrieval.py "
         "--render-only`. Protocol: every two-tower, EASE and SASRec here is its study's frozen winner "
         "(`experiments/sweeps/`: hyperparameters chosen on validation only), trained until validation NDCG@10 "
         "stops improving; test is read from finished runs. Leave-one-out by time, full-catalog ranking with seen "
         "items masked, every test user; 95% percentile bootstrap CIs over users (1,000 resamples)."),
        "",
    ]
    lines += render_accuracy()
    lines += render_negatives()
    lines += render_cascade()
    if shown:
        stamps = sorted({(f"{r['part']} (run `{r['run_id']}`)", row_date(r), r.get("git_commit")) for r in shown})
        lines += ["## Rows measured in process (HNSW, cold start)", "",
                  (f"Machine recorded by the rows: {'; '.join(machines)}; the rows record no load. Timings are "
                  "single-threaded: `torch.set_num_threads(1)` and FAISS searches on one thread (the HNSW build used "
                  "the threads it names)."), "",
                  *measured(stamps, "each row's `finished_at`, else the start date its run id names")]
    lines += render_hnsw(by_part.get("hnsw", []))
    lines += render_cold(by_part.get("cold_items", []), by_part.get("cold_users", []))
    lines += ["## Amazon Video Games", "",
              ("Not measured under the protocol (no study of either model on it). The single untuned runs this page "
               "showed before are withdrawn."), "", "Tests of the parts measured here: `tests/test_retrieval_*.py`.", ""]
    (OUT_DIR / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT_DIR / 'README.md'}")


def row_date(row: dict) -> str:
    """The day a row was measured: its ``finished_at``, else (older rows) the start date its run id names."""
    return row["finished_at"][:10] if row.get("finished_at") else run_id_date(row["run_id"])


def _span(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if key in r]
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:.4f}" if low == high else f"{low:.4f}–{high:.4f}"


def ci(row: dict, key: str) -> str:
    if key + "_ci_low" not in row:
        return f"{row[key]:.4f}"
    return f"{row[key]:.4f} [{row[key + '_ci_low']:.4f}, {row[key + '_ci_high']:.4f}]"


def group_folder(name: str) -> Path:
    return GROUPS_DIR / name


def finished(folder: Path) -> bool:
    return any((p / "metrics.json").is_file() for p in folder.glob("seed_*"))


def report_lines(folders: list[Path], metric: str, metrics: list[str]) -> list[str]:
    """The ranked table (mean ± sd over seeds, CI over users) and the paired tests of ``marquee.compare``."""
    from marquee.reports.markdown import markdown_table
    from marquee.reports.report import build_report
    from marquee.reports.tables import pairs_text, summary_text

    report = build_report(folders, stage="test", metric=metric, metrics=metrics)
    lines = [markdown_table(summary_text(report.summary, report.metrics)), ""]
    if not report.paired.empty:
        lines += ["Paired over the same test users (each user averaged over a config's seeds; B vs A is B − A):", "",
                  markdown_table(pairs_text(report.paired)), ""]
    return lines


def render_accuracy() -> list[str]:
    folders = [SWEEPS / "ease" / "seeds", SWEEPS / "two_tower" / "seeds", group_folder("pop")]
    if not all(finished(f) for f in folders):
        return ["## Retrieval accuracy", "", ("Not measured yet under the protocol (`python scripts/bench_retrieval.py "
                "--parts groups`)."), ""]
    return ["## Retrieval accuracy: two-tower against EASE and MostPopular (MovieLens-100K)", "",
            ("Both sides tuned on validation with the same budget (20 TPE trials each, `experiments/sweeps/`), then "
             "frozen: the two-tower's winner (`experiments/sweeps/two_tower/best.yaml`) trained with seeds 0-4, EASE's "
             "(`experiments/sweeps/ease/best.yaml`; closed form, so its seeds give one result), and MostPopular. "
             "Recall@50 is the share of test targets a candidate set of 50 would hold."), "",
            *report_lines(folders, "ndcg@10", ["recall@10", "recall@50"])]


def render_negatives() -> list[str]:
    folders = [group_folder("in_batch"), SWEEPS / "two_tower" / "seeds", group_folder("mixed")]
    if not all(finished(f) for f in folders):
        return ["## Negatives", "", "Not measured yet under the protocol.", ""]
    lines = ["## Negatives: the accuracy–coverage trade-off (MovieLens-100K)", "",
             ("The two-tower study's frozen winner (in-batch sampled softmax with the logQ correction, accidental "
              "hits removed) against the same config without logQ (in-batch only) and with 1,024 uniformly drawn "
              "negatives beside the in-batch ones (mixed); the winner's seeds 0-4 from `experiments/sweeps/two_tower/"
              "seeds`, the other two with seeds 0-2, each trained until validation stops improving. Coverage@50: the "
              "share of the catalog in at least one test user's top 50. The names show `model.cross_rank_negatives` "
              "because the two-tower's config gained that key after the winner's seeds ran; it shares negatives "
              "across DDP ranks and does nothing in a single process, as every run here is."), "",
             *report_lines(folders, "recall@50", ["ndcg@10"])]
    plot_negatives(folders)
    return [*lines, "![recall@50 against coverage@50, one point per run](negatives_tradeoff.png)", ""]


def plot_negatives(folders: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for folder, label in zip(folders, ("in-batch", "+ logQ (the winner)", "+ logQ + mixed")):
        runs = [json.loads((p / "metrics.json").read_text()) for p in sorted(folder.glob("seed_*"))
                if (p / "metrics.json").is_file()]
        ax.scatter([m["test/coverage@50"] for m in runs], [m["test/recall@50"] for m in runs], label=label)
    ax.set(xlabel="coverage@50 (test)", ylabel="recall@50 (test)", title="Two-tower negatives, one point per seed")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT_DIR / "negatives_tradeoff.png", dpi=120)
    plt.close(fig)


def render_cascade() -> list[str]:
    import pandas as pd

    from marquee.evaluation.statistics import compare_runs

    folder = group_folder("cascade")
    runs = sorted(p for p in folder.glob("seed_*") if (p / "metrics.json").is_file())
    if not runs:
        return ["## The cascade", "", "Not measured yet under the protocol.", ""]
    record = json.loads((runs[0] / "run.json").read_text())["config"]
    n = record["pipeline"]["system"]["n_candidates"]
    rows = []
    for run in runs:
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"seed": run.name.split("_")[1], f"candidate recall@{n}": f"{m[f'retriever/test/recall@{n}']:.4f}",
                     "NDCG@10 cascade": f"{m['test/ndcg@10']:.4f}", "NDCG@10 SASRec, full catalog":
                     f"{m['ranker/test/ndcg@10']:.4f}", "cascade ÷ full": m["test/ndcg@10"] / m["ranker/test/ndcg@10"],
                     "ms / user cascade": f"{m['test/ms_per_user']:.3f}",
                     "ms / user full": f"{m['ranker/test/ms_per_user']:.3f}"})
    ratios = np.array([r["cascade ÷ full"] for r in rows])
    for r in rows:
        r["cascade ÷ full"] = f"{r['cascade ÷ full']:.3f}"
    columns = ["user_id", "ndcg@10", "recall@10"]
    whole = pd.concat([pd.read_parquet(r / "per_user_test.parquet", columns=columns) for r in runs])
    ranker = pd.concat([pd.read_parquet(r / "per_user_test.ranker.parquet", columns=columns) for r in runs])
    paired = compare_runs(ranker.groupby("user_id").mean(), whole.groupby("user_id").mean(), ["ndcg@10", "recall@10"],
                          n_boot=1000, labels=("SASRec alone", "cascade")).loc["ndcg@10"]
    from marquee.reports.markdown import markdown_table

    within = ratios.mean() >= 0.98
    return ["## The cascade: two-tower top-N → SASRec, against SASRec over the full catalog (MovieLens-100K)", "",
            (f"`experiment=cascade_ml100k` with both studies' frozen winners as its stages: the two-tower retrieves "
             f"its top {n} unseen items (HNSW index), SASRec re-scores only those, and the evaluator ranks the cascade "
             "as any model; the same run evaluates SASRec over the whole catalog beside it. Seeds 0-2; ms / user: "
             "the evaluator's ranking time per test user, one thread; the runs record no machine load, so these "
             "columns are not a speed figure."), "",
            markdown_table(pd.DataFrame(rows)), "",
            (f"Cascade ÷ full catalog over the {len(runs)} seeds: {ratios.mean():.3f} ± {ratios.std(ddof=1):.3f}. "
             f"Paired over users (each averaged over the seeds), cascade − SASRec alone, NDCG@10: "
             f"{paired['diff']:+.4f} [{paired['diff_low']:+.4f}, {paired['diff_high']:+.4f}], p(t) "
             f"{paired['p_ttest']:.3g}."), "",
            (f"Goal (NDCG@10 within 2% of the full catalog) at N = {n}: **{'met' if within else 'not met'}** on the "
             f"seeds' mean ratio; met by {int((ratios >= 0.98).sum())} of {len(runs)} seeds."), ""]


def render_hnsw(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    p = rows[0]
    build_threads = max(r.get("build_threads", 1) for r in rows)
    out = [f"## HNSW against exact search: {p['n_items']:,} items of dimension {p['dim']}", "",
           f"Synthetic unit vectors, inner product, top-{p['k']}. `clustered`: items and queries drawn around 1,000",
           "random centres with noise of half their scale; `isotropic` (when measured): standard Gaussian directions.",
           f"HNSW: M={p['M']}, efConstruction={p['ef_construction']}, built with {build_threads}",
           "threads; every search on 1 thread. Overlap: the share of the exact top-100 that HNSW returns, over",
           "1,000 queries. Latency: one query at a time (a serving request), mean over 200 queries; batched: 1,000",
           "queries in one call. FAISS searches with max(efSearch, k) candidates, so efSearch starts at k = 100.", "",
           "| vectors | search | overlap@100 | ms / query | × faster than exact | ms / query, batched | build s |",
           "|---|---|---|---|---|---|---|"]
    verdicts = []
    for dist in HNSW_VECTORS:
        mine = [r for r in rows if r["dataset"] == dist]
        exact = next((r for r in mine if r["name"] == "exact"), None)
        for r in sorted(mine, key=lambda r: r.get("ef_search", 0)):
            speed = f"{exact['ms_per_query'] / r['ms_per_query']:.0f}×" if exact and r is not exact else ""
            out.append(f"| {dist} | {r['name']} | {r['overlap']:.4f} | {r['ms_per_query']:.3f} | {speed} | "
                       f"{r['ms_per_query_batched']:.3f} | {r['build_seconds']:.0f} |")
        good = [r for r in mine if exact and r is not exact and r["overlap"] >= 0.98
                and exact["ms_per_query"] >= 10 * r["ms_per_query"]]
        if exact:
            best = max(good, key=lambda r: exact["ms_per_query"] / r["ms_per_query"], default=None)
            verdicts.append(f"Goal (overlap ≥ 0.98 at ≥ 10× lower latency), {dist}: " + (
                f"**met** at {best['name']}: overlap {best['overlap']:.4f}, "
                f"{exact['ms_per_query'] / best['ms_per_query']:.0f}× faster per query." if best else "**not met**."))
    return [*out, "", *verdicts, ""]


def render_cold(items: list[dict], users: list[dict]) -> list[str]:
    out = []
    if items:
        r0 = items[0]
        out += ["## Cold items: new titles through the content tower", "",
                f"{DATASETS[r0['dataset']][1]}: 10% of the items (and another 10% for validation) never appear in",
                "training; the test users' interactions with them are the targets, and each user ranks the",
                f"{r0['n_cold_items']} held-out test items among themselves (a launch competes with launches). The",
                "two-tower embeds them from genres, title words and year alone (their ids map to the shared",
                "unknown row; id dropout in training: 10% in the first row, 50% in the second). Genre",
                "popularity: the training interactions per item of the item's genres. The oracle counts the test",
                "interactions themselves, so it sees the answers.", "",
                "| model | runs | Recall@50 | NDCG@10 |", "|---|---|---|---|"]
        out += seed_rows(items)
        out.append("")
    if users:
        r0 = users[0]
        out += ["## Cold users: new members from onboarding picks, metadata and context", "",
                f"{DATASETS[r0['dataset']][1]}, user holdout: 10% of the members never train; their first three",
                "interactions are the onboarding picks (their history), all later ones the targets; the whole",
                "catalog is ranked with the picks masked. The two-tower reads the picks, the member's metadata",
                "(age bucket, gender, occupation) and the request context (hour, weekday); the second row blanks",
                "the picks. EASE scores from the picks as from any history.", "",
                "| model | runs | Recall@50 | NDCG@10 |", "|---|---|---|---|"]
        out += seed_rows(users)
        best = {k: max(users, key=lambda r: r[k])["name"].split(" seed=")[0] for k in ("ndcg@10", "recall@50")}
        out += ["", "Recall@50 divides the hits by all of a member's later interactions; NDCG@10 looks at the top ten",
                f"only. Highest single run: NDCG@10 {best['ndcg@10']}, Recall@50 {best['recall@50']}; read the",
                "rows against each other with their intervals and spread over seeds.", ""]
    return out


def seed_rows(rows: list[dict]) -> list[str]:
    """One table row per model: a model trained with several seeds (rows named ``... seed=N``) as mean ± sd over
    them with the range of their CIs' ends; a model without seeds as its one run with its CI."""
    grouped: dict[str, list[dict]] = {}
    for r in rows:
        grouped.setdefault(r["name"].split(" seed=")[0], []).append(r)
    out = []
    for name, runs in grouped.items():
        if len(runs) == 1:
            out.append(f"| {name} | 1 | {ci(runs[0], 'recall@50')} | {ci(runs[0], 'ndcg@10')} |")
            continue
        cells = [f"{np.mean([r[k] for r in runs]):.4f} ± {np.std([r[k] for r in runs], ddof=1):.4f}"
                 for k in ("recall@50", "ndcg@10")]
        out.append(f"| {name} | {len(runs)} seeds | {cells[0]} | {cells[1]} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--groups", nargs="+", help="only these seed groups (default: all)")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run of the row parts that was cut short")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "marquee" / "bench_retrieval",
                        help="where the row parts keep trained models between parts and resumes")
    args = parser.parse_args()
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():  # the benchmark data sets live beside the repository
        os.environ.setdefault("MARQUEE_DATA_DIR", str(shared))
    if not args.render_only:
        if "groups" in args.parts:
            part_groups(args.groups)
        rows = [p for p in args.parts if p != "groups"]
        if rows:
            torch.set_num_threads(1)
            run_id = args.resume or time.strftime("%Y%m%d-%H%M%S")
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            bench = Bench(run_id, args.work / run_id)
            for part in rows:  # ML-100K: the only data set with item content and member metadata
                part_hnsw(bench) if part == "hnsw" else globals()[f"part_{part}"](bench, "ml100k")
    render()


if __name__ == "__main__":
    main()
