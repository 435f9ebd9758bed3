"""Refit the ML-100K baselines with today's code and print their stored test metrics beside today's.

A refactor that should not change a figure is checked here instead of re-running the whole
benchmark (which also times RecBole): ``python scripts/recheck_baselines.py``.
"""

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MARQUEE_DATA_DIR", str(REPO.parent / "shared" / "data"))

from hydra import compose, initialize_config_dir  # noqa: E402
from marquee.checkpoint import build
from marquee.data.catalog import Catalog
from marquee.data.pipeline import prepare_split
from marquee.evaluation.evaluator import Evaluator
rows = [json.loads(l) for l in open(REPO / "experiments" / "baselines" / "marquee_results.jsonl")]
latest = {}
for r in rows:
    if r["dataset"] == "ml100k": latest[r["model"]] = r
names = {"MostPopular": "pop", "EASE": "ease", "ItemKNN": "itemknn", "RecentPopular": "recent_pop", "Random": "random"}
with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
    cfg = compose("train", overrides=["data=ml100k", "paths.output_dir=/tmp/bench"])
split = prepare_split(cfg.data)
for label, r in latest.items():
    base = label.split(" (")[0]
    if base not in names: continue
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        mcfg = compose("train", overrides=[f"model={names[base]}", "paths.output_dir=/tmp/bench"]).model
    model = build(mcfg, catalog=Catalog.from_split(split)).fit(split)
    ev = Evaluator(ks=[10, 20, 50], n_boot=1000, progress=False, history=r["eval_history"])
    m = ev.evaluate(model, ev.data(split, None), "test").metrics
    print(f"{label:30s} stored ndcg@10 {r['ndcg@10']:.6f} now {m['test/ndcg@10']:.6f}  recall@50 {r['recall@50']:.6f} now {m['test/recall@50']:.6f}")
