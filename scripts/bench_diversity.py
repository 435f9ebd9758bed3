"""The evaluator's MMR re-ranking (``evaluation.rerank``): NDCG@10 against intra-list diversity and coverage as its weight grows.

    python scripts/bench_diversity.py            # EASE on ML-100K (leave-one-out test), rows to experiments/serving/
    python scripts/bench_serving.py --render-only   # the table appears in experiments/serving/README.md

One EASE fit; for each weight the evaluator, composed from ``configs/evaluation`` with
``evaluation.rerank.weight=<w>`` and ``evaluation.ks=[10]``, re-ranks every test member's top 50
(seen titles masked) with ``marquee.diversity.mmr`` (the function the service runs) over genres
and scores the first 10 with all its metrics.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "experiments" / "serving" / "diversity.jsonl"
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
POOL, K = 50, 10


def main() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from marquee.checkpoint import build
    from marquee.config_dir import CONFIG_DIR
    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import prepare_split

    started, load_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.getloadavg()
    base = ["data=ml100k", "model=ease", "paths.output_dir=unused", f"evaluation.ks=[{K}]",
            f"evaluation.rerank.pool={POOL}", "evaluation.device=cpu", "evaluation.progress=false"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=base)
        evaluations = {w: compose("train", overrides=[*base, f"evaluation.rerank.weight={w}"]).evaluation
                       for w in WEIGHTS}
    split = prepare_split(cfg.data)
    catalog = Catalog.from_split(split)
    model = build(cfg.model, catalog=catalog)
    model.fit(split)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    for weight, evaluation in evaluations.items():
        evaluator = instantiate(evaluation)
        m = evaluator.evaluate(model, evaluator.data(split, model.max_len), "test").metrics
        row = {"model": "EASE", "data": "ml100k", "stage": "test", "users": int(m["test/n_users"]),
               "candidates": POOL, "k": K, "weight": weight,
               "rerank": OmegaConf.to_container(evaluation.rerank), "via": "evaluation.rerank",
               **{f"{name}@{K}": m[f"test/{name}@{K}"] for name in ("ndcg", "recall", "diversity", "coverage")},
               f"ndcg@{K}_ci": [m[f"test/ndcg@{K}_ci_low"], m[f"test/ndcg@{K}_ci_high"]],
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "loadavg_start": [round(x, 2) for x in load_start], "git_commit": commit.stdout.strip() or None,
               "started_at": started, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(row)


if __name__ == "__main__":
    main()
