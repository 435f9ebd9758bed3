"""The service's MMR re-ranking, measured offline: NDCG@10 against intra-list diversity and coverage as its weight grows.

    python scripts/bench_diversity.py            # EASE on ML-100K (leave-one-out test), rows to experiments/serving/
    python scripts/bench_serving.py --render-only   # the table appears in experiments/serving/README.md

Every test member's top 50 (EASE, seen titles masked, the evaluator's own rows and scores) is re-ranked by
``marquee.serving.pipeline.mmr`` (the function the service runs) over genres at each weight; the first 10
are scored with the evaluator's metric functions.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "experiments" / "serving" / "diversity.jsonl"
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
CANDIDATES, K = 50, 10


def main() -> None:
    from hydra import compose, initialize_config_dir

    from marquee.checkpoint import build
    from marquee.config_dir import CONFIG_DIR
    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import prepare_split
    from marquee.evaluation import beyond_accuracy as ba
    from marquee.evaluation.evaluator import Evaluator
    from marquee.evaluation.metrics import accuracy_metrics
    from marquee.evaluation.ranking import catalog_scores
    from marquee.serving.pipeline import mmr

    started, load_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), os.getloadavg()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=ml100k", "model=ease", "paths.output_dir=unused"])
    split = prepare_split(cfg.data)
    catalog = Catalog.from_split(split)
    model = build(cfg.model, catalog=catalog)
    model.fit(split)
    evaluator = Evaluator(progress=False, device="cpu")
    data = evaluator.data(split, model.max_len)
    seen = data.seen("test")
    tops, scores, targets = [], [], []
    with torch.no_grad():
        for batch in data.eval_dataloader("test"):
            s, i = catalog_scores(model, batch, seen).topk(CANDIDATES, dim=1)  # (B, 50)
            tops.append(i.numpy())
            scores.append(s.numpy())
            targets.append(batch["targets"][:, 0].numpy())
    top, score, target = np.concatenate(tops), np.concatenate(scores), np.concatenate(targets)
    genre_table = catalog.item_genres.numpy()  # (n_items + 1, G) genre ids, 0 = none
    genres = [frozenset(int(g) for g in row if g) for row in genre_table]
    csr = split.log.item_genre_ids()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    for weight in WEIGHTS:
        reranked = np.stack([mmr(items, s, [genres[i] for i in items], weight, K)[:K] for items, s in zip(top, score)])
        ranks = np.where(reranked == target[:, None], np.arange(1, K + 1)[None, :], 0).max(axis=1)
        ranks = np.where(ranks == 0, K + 1, ranks)[:, None]  # (U, 1): beyond the list when not in the top 10
        accuracy = accuracy_metrics(ranks, [K])
        row = {"model": "EASE", "data": "ml100k", "stage": "test", "users": len(target), "candidates": CANDIDATES,
               "k": K, "weight": weight, f"ndcg@{K}": float(np.mean(accuracy[f"ndcg@{K}"])),
               f"recall@{K}": float(np.mean(accuracy[f"recall@{K}"])),
               f"diversity@{K}": float(np.mean(ba.intra_list_diversity(reranked, K, csr))),
               f"coverage@{K}": float(ba.coverage(reranked, K, catalog.n_items)),
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "loadavg_start": [round(x, 2) for x in load_start], "git_commit": commit.stdout.strip() or None,
               "started_at": started, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(row)


if __name__ == "__main__":
    main()
