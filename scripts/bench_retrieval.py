"""Two-tower retrieval measured: accuracy against EASE and popularity, the negatives' accuracy-coverage trade-off,
HNSW against exact search at 1M items, the retrieval -> ranking cascade, and cold items and users.

Every model trains through ``marquee.training.pipeline.fit_pipeline`` (the path ``python -m marquee.train`` takes,
with the Catalog it builds: member metadata included) and every list is scored by the one Evaluator. Rows are appended to experiments/retrieval/results.jsonl as they
finish, tagged with the run id; the README and plots are rendered from the latest row of each measurement.
Timings are single-threaded (torch and FAISS searches on one thread; the HNSW build says its threads).

    python scripts/bench_retrieval.py                          # every part (about an hour on 2 cores)
    python scripts/bench_retrieval.py --parts hnsw cascade     # some parts
    python scripts/bench_retrieval.py --resume RUN_ID          # finish a cut-short run: skip rows it has
    python scripts/bench_retrieval.py --render-only            # rewrite the README from the rows
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
PARTS = ("accuracy", "negatives", "hnsw", "cascade", "cold_items", "cold_users")
DATASETS = {"ml100k": ("two_tower_ml100k", "MovieLens-100K"), "video_games": ("two_tower_video", "Amazon Video Games")}
KS = [10, 50, 100, 200]
NEGATIVES = {"in-batch": {"model.log_q": False, "model.uniform_negatives": 0},
             "+ logQ": {"model.log_q": True, "model.uniform_negatives": 0},
             "+ logQ + mixed": {"model.log_q": True, "model.uniform_negatives": 1024}}
# Video Games trains ~1 minute an epoch here: its three variants get 10 epochs each
NEGATIVES_BUDGET = {"video_games": ["trainer.max_epochs=10"]}
CANDIDATES = (50, 100, 200, 400, 800)
SEEDS = {"ml100k": (1, 2)}  # extra training seeds of the two-tower (the configs' seed is 42)
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

def part_accuracy(bench: Bench, dataset: str) -> None:
    """Two-tower (the experiment config) against EASE and MostPopular, full-catalog ranking, test users."""
    model, info, split = two_tower(bench, dataset, "two-tower")
    if not bench.has("accuracy", dataset, "Two-tower"):
        bench.add("accuracy", dataset, "Two-tower", **info, **evaluate(model, split))
    for seed in SEEDS.get(dataset, ()):  # the same config trained again: how much a training run varies
        name = f"Two-tower seed={seed}"
        if not bench.has("accuracy", dataset, name):
            model, info, _ = two_tower(bench, dataset, name, [f"seed={seed}"], split=split)
            bench.add("accuracy", dataset, name, seed=seed, **info, **evaluate(model, split))
    for name, label in (("ease", "EASE"), ("pop", "MostPopular")):
        if bench.has("accuracy", dataset, label):
            continue
        started = time.perf_counter()
        fitted = baseline(name, split)
        bench.add("accuracy", dataset, label, train_seconds=time.perf_counter() - started, **evaluate(fitted, split))
        del fitted


def part_negatives(bench: Bench, dataset: str) -> None:
    """In-batch only, + logQ, + logQ + mixed negatives: recall@100 against coverage@100 (test users)."""
    budget = NEGATIVES_BUDGET.get(dataset, [])
    for name, switches in NEGATIVES.items():
        if bench.has("negatives", dataset, name):
            continue
        overrides = [f"{k}={str(v).lower()}" for k, v in switches.items()] + budget
        # "+ logQ" is the experiment's own config: without a budget of its own, the accuracy part's model
        same = name == "+ logQ" and not budget
        model, info, split = two_tower(bench, dataset, "two-tower" if same else name, overrides)
        bench.add("negatives", dataset, name, **info, **evaluate(model, split))


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


def part_cascade(bench: Bench, dataset: str) -> None:
    """Two-tower top-N (HNSW) -> ranker, against the ranker over the full catalog, for several N."""
    from marquee.retrieval.cascade import CascadeRecommender

    retriever, _, split = two_tower(bench, dataset, "two-tower")
    retriever.build_index()
    for ranker_name in ("EASE", "SASRec"):
        if all(bench.has("cascade", dataset, f"{ranker_name} N={n}") for n in CANDIDATES):
            continue
        ranker, train_seconds = cascade_ranker(bench, dataset, ranker_name, split)
        for n in CANDIDATES:
            name = f"{ranker_name} N={n}"
            if bench.has("cascade", dataset, name):
                continue
            m = evaluate(CascadeRecommender(retriever, ranker, n), split, ks=[10, 20, 50, n], parts=True)
            kept = {k: v for k, v in m.items() if any(key in k for key in ("ndcg@10", "recall@", "ms_per_user",
                                                                           "n_users"))}
            kept[f"candidate_recall@{n}"] = m[f"retriever/recall@{n}"]
            kept["ndcg@10_vs_full_catalog"] = m["ndcg@10"] / m["ranker/ndcg@10"]
            bench.add("cascade", dataset, name, ranker=ranker_name, n_candidates=n, ranker_train_seconds=train_seconds,
                      index=retriever.index.kind, **kept)


def cascade_ranker(bench: Bench, dataset: str, name: str, split):
    """The ranker of the cascade: EASE (whole histories) or SASRec (last 50 events), and its training seconds."""
    if name == "EASE":
        started = time.perf_counter()
        return baseline("ease", split), time.perf_counter() - started
    experiment = f"sasrec_{dataset}"  # the ranker issue's tuned config, when it has one
    base = ([f"experiment={experiment}"] if (REPO / "configs" / "experiment" / f"{experiment}.yaml").is_file()
            else ["model=sasrec", "datamodule=sequences", f"data={dataset}"])
    cfg = compose([*base, *QUIET, "paths.output_dir=unused"])
    model, seconds, _ = train(cfg, split, bench.work / dataset / "sasrec")
    return model, seconds


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
    for name, dropout in (("Two-tower (content tower)", 0.1), ("Two-tower, 50% id dropout", 0.5)):
        scorers[name], info[name], _ = two_tower(
            bench, dataset, f"two-tower-id-dropout-{dropout}", [*fixed, f"model.id_dropout={dropout}"], split=split,
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
    model, info, _ = two_tower(bench, dataset, "two-tower", split=split, study="-cold-users")
    rows = {"Two-tower (picks + metadata + context)": model,
            "Two-tower (metadata + context, no picks)": _NoHistory(model),
            "EASE (picks)": baseline("ease", split),
            "MostPopular": baseline("pop", split),
            "Random": baseline("random", split)}
    for name, scorer in rows.items():
        if not bench.has("cold_users", dataset, name):
            bench.add("cold_users", dataset, name, **(info if "Two-tower" in name else {}),
                      **evaluate(scorer, split, ks=[10, 50]))


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
    rows = read()
    if not rows:
        raise SystemExit(f"no rows in {ROWS}; run without --render-only first")
    latest = {(r["part"], r.get("dataset"), r["name"]): r for r in rows}  # later rows win
    by_part: dict[str, list[dict]] = {}
    for row in latest.values():
        by_part.setdefault(row["part"], []).append(row)
    runs = sorted({r["run_id"] for r in latest.values()})
    machines = sorted({r["machine"] for r in latest.values()})
    lines = [
        "# Two-tower retrieval, the cascade, and cold start",
        "",
        "Reproduce: `python scripts/bench_retrieval.py` (rows in `results.jsonl`, this page from them with",
        f"`python scripts/bench_retrieval.py --render-only`). Runs {', '.join(f'`{r}`' for r in runs)}; machine",
        f"recorded by the rows: {'; '.join(machines)}. The rows record no load. **Timings are single-threaded**:",
        "`torch.set_num_threads(1)` and FAISS searches on one thread (the HNSW build used the threads it names).",
        "Leave-one-out by time, full-catalog ranking with seen items masked, every test user; 95% percentile",
        "bootstrap CIs over users (1,000 resamples). The two-tower trains through `marquee.training.pipeline.fit_pipeline`",
        "(what `python -m marquee.train` runs) with the experiment configs `two_tower_ml100k` / `two_tower_video`",
        "(validation NDCG@10 every epoch, early stopping, best epoch restored). The user tower reads member",
        "metadata where the data has it (ML-100K: age, gender, occupation), from the Catalog every model receives.",
        "",
        *render_provenance(rows, latest),
        "Tests of the parts measured here: `tests/test_retrieval_*.py`.",
        "",
    ]
    lines += render_accuracy(by_part.get("accuracy", []), [r for r in rows if r["part"] == "accuracy"])
    lines += render_negatives(by_part.get("negatives", []))
    lines += render_hnsw(by_part.get("hnsw", []))
    lines += render_cascade(by_part.get("cascade", []))
    lines += render_cold(by_part.get("cold_items", []), by_part.get("cold_users", []))
    (OUT_DIR / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT_DIR / 'README.md'}")


def row_date(row: dict) -> str:
    """The day a row was measured: its ``finished_at``, else (older rows) the start date its run id names."""
    return row["finished_at"][:10] if row.get("finished_at") else run_id_date(row["run_id"])


def render_provenance(rows: list[dict], latest: dict) -> list[str]:
    """When and with what code each shown row was measured, and every earlier measurement of the same row."""
    stamps = sorted((f"{r['part']} ({r['dataset']}, run `{r['run_id']}`)", row_date(r), r.get("git_commit"))
                    for r in latest.values())
    out = ["Each row shows its latest measurement.", "",
           *measured(stamps, "each row's `finished_at`, else the start date its run id names")]
    changed, same = [], 0
    for key, new in latest.items():
        before = [r for r in rows if (r["part"], r.get("dataset"), r["name"]) == key and not r.get("git_commit")
                  and "ndcg@10" in r]
        if before and new.get("git_commit") and "ndcg@10" in new:
            same += all(r["ndcg@10"] == new["ndcg@10"] and r.get("recall@50") == new.get("recall@50") for r in before)
            dates = sorted({row_date(r) for r in before})
            changed.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(before)} ({' to '.join(dict.fromkeys([dates[0], dates[-1]]))}) | "
                           f"{_span(before, 'ndcg@10')} | {new['ndcg@10']:.4f} | {_span(before, 'recall@50')} | "
                           f"{new.get('recall@50', float('nan')):.4f} |")
    if changed:
        machines = sorted({r["machine"] for r in rows})
        out += ["The latest measurement of each row whose code commit is recorded, beside every earlier measurement",
                "of the same row (same part, data and row name; a range where it ran more than once). The earlier rows",
                "record no commit, so the code and configuration that measured them are not known from the rows.",
                f"Machine recorded by all of them: {'; '.join(machines)}.", "",
                ("| part | data | row | earlier runs (dates) | NDCG@10 earlier | NDCG@10 now | Recall@50 earlier | "
                 "Recall@50 now |"),
                "|---|---|---|---|---|---|---|---|",
                *changed, "",
                f"{same} of {len(changed)} rows are identical to every earlier measurement (NDCG@10 and Recall@50).", ""]
    return out


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


def render_accuracy(rows: list[dict], history: list[dict]) -> list[str]:
    """The latest accuracy rows; ``history``, every accuracy row stored, for the two-tower against EASE run by run."""
    if not rows:
        return []
    out = ["## Retrieval accuracy: two-tower against EASE and MostPopular", "",
           "Recall@N is the share of test targets a candidate set of N would hold. The two-tower as configured",
           "(`configs/model/two_tower.yaml`: attention pooling, in-batch softmax with logQ correction and",
           "accidental hits removed, no uniform negatives); EASE and MostPopular read whole histories.", ""]
    for dataset, (_, title) in DATASETS.items():
        mine = [r for r in rows if r["dataset"] == dataset]
        if not mine:
            continue
        out += [f"### {title}", "", "| model | Recall@50 | Recall@100 | Recall@200 | NDCG@10 | coverage@100 | train s |",
                "|---|---|---|---|---|---|---|"]
        main = [r for r in mine if "seed=" not in r["name"]]
        for r in sorted(main, key=lambda r: ["Two-tower", "EASE", "MostPopular"].index(r["name"])):
            out.append(f"| {r['name']} | {ci(r, 'recall@50')} | {ci(r, 'recall@100')} | {ci(r, 'recall@200')} | "
                       f"{ci(r, 'ndcg@10')} | {r['coverage@100']:.4f} | {r['train_seconds']:.0f} |")
        runs = [r for r in mine if r["name"].startswith("Two-tower")]
        if len(runs) > 1:
            seeds = ", ".join(str(r.get("seed", 42)) for r in runs)
            spread = ", ".join(f"{k} {np.mean([r[k] for r in runs]):.4f} ± {np.std([r[k] for r in runs], ddof=1):.4f}"
                               for k in ("ndcg@10", "recall@50", "recall@100", "recall@200"))
            out += ["", f"The two-tower trained with seeds {seeds} (mean ± sd over the runs): {spread}."]
        ease = {r["run_id"]: r for r in history if r["dataset"] == dataset and r["name"] == "EASE"}
        towers = [r for r in history if r["dataset"] == dataset and r["name"].startswith("Two-tower")
                  and r["run_id"] in ease]
        if towers:
            above = sum(r["ndcg@10"] > ease[r["run_id"]]["ndcg@10"] for r in towers)
            out += ["", (f"Every two-tower measurement stored in `results.jsonl` for {title} ({len(towers)}, over "
                         f"{len({r['run_id'] for r in towers})} runs, seeds included) against EASE's of the same run: "
                         f"test NDCG@10 above EASE's in {above} of {len(towers)}; two-tower "
                         f"{_span(towers, 'ndcg@10')}, EASE {_span(list(ease.values()), 'ndcg@10')}.")]
        out.append("")
    return out


def render_negatives(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ["## Negatives: the accuracy–coverage trade-off", "",
           "The same two-tower trained three ways: in-batch sampled softmax only; with the logQ correction",
           "(streaming frequency estimate); with logQ and 1,024 uniformly drawn negatives beside the in-batch",
           "ones (mixed negatives). Accidental hits are removed in all three. Coverage@100: the share of the",
           "catalog that appears in at least one test user's top 100. "
           + " ".join(f"{DATASETS[d][1]}: every variant trained with `{' '.join(o)}`."
                      for d, o in NEGATIVES_BUDGET.items() if any(r["dataset"] == d for r in rows)), "",
           "| data | negatives | Recall@100 | coverage@100 | NDCG@10 | Recall@50 |", "|---|---|---|---|---|---|"]
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(10, 4))
    notes: list[str] = []
    for ax, (dataset, (_, title)) in zip(np.atleast_1d(axes), DATASETS.items()):
        mine = sorted((r for r in rows if r["dataset"] == dataset), key=lambda r: list(NEGATIVES).index(r["name"]))
        for i, r in enumerate(mine):
            out.append(f"| {title} | {r['name']} | {ci(r, 'recall@100')} | {r['coverage@100']:.4f} | "
                       f"{ci(r, 'ndcg@10')} | {ci(r, 'recall@50')} |")
            ax.errorbar(r["coverage@100"], r["recall@100"], fmt="o",
                        yerr=[[r["recall@100"] - r["recall@100_ci_low"]], [r["recall@100_ci_high"] - r["recall@100"]]])
            ax.annotate(r["name"], (r["coverage@100"], r["recall@100"]), textcoords="offset points",
                        xytext=(6, 6 if i % 2 else -14))
        if len(mine) == len(NEGATIVES):
            plain, log_q, mixed = mine
            overlap = mixed["recall@100_ci_low"] <= log_q["recall@100_ci_high"] and \
                log_q["recall@100_ci_low"] <= mixed["recall@100_ci_high"]
            notes.append(f"{title}: logQ moves recall@100 {plain['recall@100']:.3f} → {log_q['recall@100']:.3f} and "
                         f"coverage@100 {plain['coverage@100']:.3f} → {log_q['coverage@100']:.3f}; mixed negatives "
                         f"then give {mixed['recall@100']:.3f} at coverage {mixed['coverage@100']:.3f} (recall@100 "
                         f"intervals of logQ and mixed {'overlap' if overlap else 'do not overlap'}).")
        ax.set(title=title, xlabel="coverage@100", ylabel="recall@100")
    fig.tight_layout()
    fig.savefig(OUT_DIR / "negatives_tradeoff.png", dpi=120)
    plt.close(fig)
    return out + ["", *notes, "", "In-batch negatives are the batch's other positives, so they are drawn by",
                  "popularity; the logQ correction subtracts each item's log sampling probability from its logit;",
                  "uniform negatives are drawn from the whole catalog.",
                  "", "![recall@100 against coverage@100](negatives_tradeoff.png)", ""]


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


def render_cascade(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    out = ["## The cascade: two-tower top-N → ranker, against the ranker over the full catalog", "",
           "The retriever's top N unseen items come from its HNSW index; the ranker re-scores only those; every",
           "other item scores −∞, so the unchanged evaluator ranks the cascade. Candidate recall@N: the share of",
           "test targets among the N candidates. ms / user: "
           + ("the evaluator's ranking time per test user (scoring, seen masking and top-k;"
              if all(r.get("git_commit") for r in rows) else "`score()` time per test user (")
           + " retrieval + re-scoring for the cascade; the whole catalog for the ranker alone), one thread.", "",
           ("| data | ranker | N | candidate recall@N | NDCG@10 cascade | NDCG@10 full catalog | cascade ÷ full | "
            "ms / user cascade | ms / user full |"), "|---|---|---|---|---|---|---|---|---|"]
    rows = sorted(rows, key=lambda r: (r["dataset"], r["ranker"], r["n_candidates"]))
    for r in rows:
        n = r["n_candidates"]
        out.append(f"| {DATASETS[r['dataset']][1]} | {r['ranker']} | {n} | {r[f'candidate_recall@{n}']:.4f} | "
                   f"{ci(r, 'ndcg@10')} | {ci(r, 'ranker/ndcg@10')} | {r['ndcg@10_vs_full_catalog']:.3f} | "
                   f"{r['ms_per_user']:.3f} | {r['ranker/ms_per_user']:.3f} |")
    out.append("")
    for ranker in sorted({r["ranker"] for r in rows}):
        mine = [r for r in rows if r["ranker"] == ranker]
        within = [r["n_candidates"] for r in mine if r["ndcg@10_vs_full_catalog"] >= 0.98]
        out.append(f"Goal (NDCG@10 within 2% of the full catalog), {ranker}: " + (
            f"**met** at N = {', '.join(map(str, within))} of the {len(mine)} N measured." if within
            else "**not met** at any N measured."))
        above = [r for r in mine if r["ndcg@10_vs_full_catalog"] > 1.02]
        if above:
            overlap = sum(r["ndcg@10_ci_low"] <= r["ranker/ndcg@10_ci_high"] for r in above)
            out.append(f"The cascade's NDCG@10 is more than 2% above {ranker}'s over the full catalog at N = "
                       f"{', '.join(str(r['n_candidates']) for r in above)} (up to "
                       f"{max(r['ndcg@10_vs_full_catalog'] for r in above):.3f}×); the two 95% intervals overlap at "
                       f"{overlap} of these {len(above)}.")
        slower = sum(r["ms_per_user"] > r["ranker/ms_per_user"] for r in mine)
        out.append(f"ms / user, {ranker}: the cascade took longer than the full catalog at {slower} of the "
                   f"{len(mine)} N measured.")
    return out + ["", "The cascade's time adds the user tower and the index search (which fetches N plus the user's",
                  "seen items, so none of the N is spent on a seen item) to the ranker's scoring of the N candidates.", ""]


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
                "| model | Recall@50 | NDCG@10 |", "|---|---|---|"]
        for r in items:
            out.append(f"| {r['name']} | {ci(r, 'recall@50')} | {ci(r, 'ndcg@10')} |")
        out.append("")
    if users:
        r0 = users[0]
        out += ["## Cold users: new members from onboarding picks, metadata and context", "",
                f"{DATASETS[r0['dataset']][1]}, user holdout: 10% of the members never train; their first three",
                "interactions are the onboarding picks (their history), all later ones the targets; the whole",
                "catalog is ranked with the picks masked. The two-tower reads the picks, the member's metadata",
                "(age bucket, gender, occupation) and the request context (hour, weekday); the second row blanks",
                "the picks. EASE scores from the picks as from any history.", "",
                "| model | Recall@50 | NDCG@10 |", "|---|---|---|"]
        for r in users:
            out.append(f"| {r['name']} | {ci(r, 'recall@50')} | {ci(r, 'ndcg@10')} |")
        best = {k: max(users, key=lambda r: r[k])["name"] for k in ("ndcg@10", "recall@50")}
        out += ["", "Recall@50 divides the hits by all of a member's later interactions; NDCG@10 looks at the top ten",
                f"only. Highest point estimate: NDCG@10 {best['ndcg@10']}, Recall@50 {best['recall@50']}; read the",
                "rows against each other with their intervals.", ""]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a run that was cut short")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "marquee" / "bench_retrieval",
                        help="where trained models are kept between parts and resumes")
    args = parser.parse_args()
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():  # the benchmark data sets live beside the repository
        os.environ.setdefault("MARQUEE_DATA_DIR", str(shared))
    if not args.render_only:
        torch.set_num_threads(1)
        run_id = args.resume or time.strftime("%Y%m%d-%H%M%S")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        bench = Bench(run_id, args.work / run_id)
        for dataset in args.datasets:  # ML-100K's parts, the 1M-item index, then Video Games's parts
            for part in args.parts:
                # Video Games has no item content or user metadata: its retrieval and negatives only
                if part != "hnsw" and (dataset == "ml100k" or part in ("accuracy", "negatives")):
                    globals()[f"part_{part}"](bench, dataset)
            if "hnsw" in args.parts and dataset == args.datasets[0]:
                part_hnsw(bench)
    render()


if __name__ == "__main__":
    main()
