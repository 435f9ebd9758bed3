"""Refit the ML-100K baselines with today's code and print their stored test metrics beside today's.

A change that should not move a published figure is checked here without re-running the whole
baseline benchmark (which also times RecBole): ``python scripts/recheck_baselines.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "experiments" / "baselines" / "marquee_results.jsonl"
MODELS = {"MostPopular": "pop", "EASE": "ease", "ItemKNN": "itemknn", "RecentPopular": "recent_pop",
          "Random": "random"}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=[*overrides, "paths.output_dir=unused"])


def main() -> None:
    os.environ.setdefault("MARQUEE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    from marquee.checkpoint import build
    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import prepare_split
    from marquee.evaluation.evaluator import Evaluator

    latest = {}
    for line in ROWS.read_text().splitlines():
        row = json.loads(line)
        if row["dataset"] == "ml100k":
            latest[row["model"]] = row  # later rows win
    split = prepare_split(compose(["data=ml100k"]).data)
    for label, row in latest.items():
        name = MODELS.get(label.split(" (")[0])
        if name is None:
            continue
        model = build(compose([f"model={name}"]).model, catalog=Catalog.from_split(split)).fit(split)
        evaluator = Evaluator(ks=[10, 20, 50], n_boot=1000, progress=False, history=row["eval_history"])
        now = evaluator.evaluate(model, evaluator.data(split, model.max_len), "test").metrics
        print(f"{label:30s} ndcg@10 stored {row['ndcg@10']:.6f} now {now['test/ndcg@10']:.6f}   "
              f"recall@50 stored {row['recall@50']:.6f} now {now['test/recall@50']:.6f}")


if __name__ == "__main__":
    main()
