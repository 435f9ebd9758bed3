"""Retrieval → ranking as one Recommender, so the unchanged Evaluator measures the whole cascade.

:class:`CascadeRecommender` asks the retriever for each user's top-N unseen items and lets the
ranker score only those; every other item scores -inf, so it ranks below every candidate (the
evaluator's pessimistic ties put a target outside the candidates past N). With no ranker the
candidates keep the retriever's scores, and the evaluator's recall@N is the candidate recall@N.
:func:`run` trains both stages and evaluates the retriever, the ranker over the full catalog and
the cascade on the same users.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from marquee.data.atomic import update_json
from marquee.data.datamodules import EvaluationDataModule
from marquee.data.seen import SeenItems
from marquee.data.splits import Split
from marquee.evaluation.evaluator import Evaluator
from marquee.models.base import Recommender
from marquee.retrieval.two_tower import TwoTower

log = logging.getLogger(__name__)


class CascadeRecommender(Recommender):
    """The retriever's top ``n_candidates`` unseen items, re-scored by ``ranker`` (or kept as retrieved).

    ``seen`` (set per evaluated stage) adds the split's seen items to each row's history as items
    the retriever must not spend candidates on; the evaluator masks the same items.
    """

    def __init__(self, retriever: TwoTower, ranker: Recommender | None, n_candidates: int = 200,
                 seen: SeenItems | None = None):
        super().__init__(retriever.n_items)
        if ranker is not None and ranker.n_items != retriever.n_items:
            raise ValueError(f"cascade: retriever has {retriever.n_items} items, ranker {ranker.n_items}")
        if n_candidates < 1:
            raise ValueError(f"cascade: n_candidates must be >= 1, got {n_candidates}")
        self.retriever, self.ranker, self.n_candidates, self.seen = retriever, ranker, n_candidates, seen

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        scores, candidates = self.retriever.retrieve(batch, self.n_candidates, self.seen)  # (B, N) each, 0 pads
        if self.ranker is not None:
            scores = self.ranker.score(batch, candidates).float().masked_fill(candidates == 0, float("-inf"))
        full = scores.new_full((len(candidates), self.n_items + 1), float("-inf"))  # (B, n_items + 1)
        full.scatter_(1, candidates, scores)
        full[:, 0] = float("-inf")  # padding candidates wrote into column 0
        return self.select(full, items)


def scoring_seconds(model: Recommender, datamodule: EvaluationDataModule, stage: str) -> float:
    """Wall time of ``model.score`` over every evaluation row of ``stage`` (no ranking or metrics)."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for batch in datamodule.eval_dataloader(stage):
            started = time.perf_counter()
            model.score(batch)
            total += time.perf_counter() - started
    return total


def evaluate_cascade(retriever: TwoTower, ranker: Recommender, datamodule: EvaluationDataModule, evaluator: Evaluator,
                     n_candidates: int, stages: list[str], output_dir: str | Path | None = None) -> dict[str, float]:
    """The cascade, the retriever alone (candidate recall@N) and the ranker over the full catalog, per stage.

    Metric names: ``{stage}/...`` for the cascade, ``retriever/{stage}/...`` and ``ranker/{stage}/...``;
    ``{stage}/candidate_recall@N``; ``{stage}/ms_per_user`` (cascade scoring) beside
    ``ranker/{stage}/ms_per_user`` (full-catalog scoring) and ``retriever/{stage}/ms_per_user``.
    """
    ks = sorted(set(evaluator.ks) | {n_candidates})
    metrics: dict[str, float] = {}
    for stage in stages:
        seen = datamodule.seen(stage)
        n_users = len(datamodule.evaluation_users(stage))
        systems = {"": CascadeRecommender(retriever, ranker, n_candidates, seen),
                   "retriever/": CascadeRecommender(retriever, None, n_candidates, seen), "ranker/": ranker}
        for prefix, model in systems.items():
            result = replace(evaluator, ks=ks if prefix == "retriever/" else evaluator.ks).evaluate(
                model, datamodule, stage)
            if prefix == "" and output_dir is not None:
                result.save(output_dir)
            metrics.update({prefix + k: v for k, v in result.metrics.items() if "/slice/" not in k})
            metrics[f"{prefix}{stage}/ms_per_user"] = 1000 * scoring_seconds(model, datamodule, stage) / n_users
        metrics[f"{stage}/candidate_recall@{n_candidates}"] = metrics[f"retriever/{stage}/recall@{n_candidates}"]
        full, cascade = metrics[f"ranker/{stage}/ndcg@10"], metrics[f"{stage}/ndcg@10"]
        metrics[f"{stage}/ndcg@10_vs_full_catalog"] = cascade / full if full else float("nan")
    if output_dir is not None:
        update_json(metrics, Path(output_dir) / "metrics.json")
    return metrics


def run(cfg: DictConfig, split: Split, output_dir: str | Path) -> dict[str, float]:
    """Train the retriever (``cfg.model`` on ``cfg.datamodule``) and the ranker (``cfg.cascade.ranker`` on
    ``cfg.cascade.ranker_datamodule``), each in its own folder under ``output_dir``; save the index beside the
    retriever's checkpoint; evaluate the cascade on the ranker's evaluation rows. Returns and saves the metrics.

    ``cfg.cascade.ranker_train`` (optional) overrides ``optim`` / ``trainer`` for the ranker only.
    """
    from marquee.training.fit import train_model  # Lightning is only needed here

    output_dir = Path(output_dir)
    stages = {"retriever": (cfg.model, cfg.datamodule, {}),
              "ranker": (cfg.cascade.ranker, cfg.cascade.ranker_datamodule, cfg.cascade.get("ranker_train") or {})}
    trained: dict[str, Recommender] = {}
    datamodule = None
    for name, (model_cfg, datamodule_cfg, overrides) in stages.items():
        stage_cfg = cfg.copy()
        OmegaConf.set_struct(stage_cfg, False)  # ranker_train may name groups this run left out (callbacks=none)
        stage_cfg.merge_with(overrides)
        stage_cfg.paths.output_dir = str(output_dir / name)  # checkpoints and logs of the two stages apart
        datamodule = instantiate(datamodule_cfg)(split=split)
        trained[name], _, loggers = train_model(stage_cfg, model_cfg, datamodule, split, output_dir / name)
        for logger in loggers:
            logger.finalize("success")
    retriever, ranker = trained["retriever"], trained["ranker"]
    if not isinstance(retriever, TwoTower):
        raise TypeError(f"cascade: the retriever (cfg.model) must be a TwoTower, got {type(retriever).__name__}")
    retriever.eval()
    retriever.build_index()
    retriever.save_artifacts(output_dir / "retriever" / "checkpoints")
    n = int(cfg.cascade.n_candidates)
    metrics = evaluate_cascade(retriever, ranker, datamodule, instantiate(cfg.evaluation), n, list(cfg.stages),
                               output_dir)
    for stage in cfg.stages:
        log.info("%s: cascade ndcg@10 %.4f, ranker over the full catalog %.4f, candidate recall@%d %.4f", stage,
                 metrics[f"{stage}/ndcg@10"], metrics[f"ranker/{stage}/ndcg@10"], n,
                 metrics[f"{stage}/candidate_recall@{n}"])
    return metrics
