"""The one evaluator every model goes through: full-catalog ranking, metrics at many k, slices and CIs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from marquee.data.atomic import update_json, write_parquet
from marquee.data.catalog import Catalog
from marquee.data.evaluation_data import HISTORIES, EvaluationData
from marquee.data.splits import Split
from marquee.errors import ConfigError
from marquee.evaluation import beyond_accuracy as ba
from marquee.evaluation.metrics import accuracy_metrics
from marquee.evaluation.ranked import RankedUsers
from marquee.evaluation.ranking import RankingAccumulator, rank_users
from marquee.evaluation.rerank import Rerank
from marquee.evaluation.sampled import NegativeSampler
from marquee.evaluation.slices import activity_buckets, metadata_labels, popularity_buckets
from marquee.evaluation.statistics import bootstrap_cis
from marquee.models.base import Recommender
from marquee.rank_zero import is_rank_zero

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """One stage's result: per-user metrics (with slice labels), the flat metric dict, and top-k lists."""

    stage: str
    per_user: pd.DataFrame
    metrics: dict[str, float]
    top_items: np.ndarray
    seconds: float

    def save(self, run_dir: str | Path) -> Path:
        """Merge the metrics into ``run_dir/metrics.json`` and write ``per_user_<stage>.parquet``, atomically."""
        run_dir = Path(run_dir)
        write_parquet(self.per_user.reset_index(), run_dir / f"per_user_{self.stage}.parquet")
        return update_json(self.metrics, run_dir / "metrics.json")

    def save_part(self, run_dir: str | Path, part: str) -> Path:
        """Write a part's per-user table as ``per_user_<stage>.<part>.parquet``, so a system can be paired with its
        parts (a cascade with its ranker over the full catalog) over the same users."""
        return write_parquet(self.per_user.reset_index(), Path(run_dir) / f"per_user_{self.stage}.{part}.parquet")

    def table(self) -> str:
        """The main metrics with their confidence intervals, one per line."""
        rows = []
        for key, value in self.metrics.items():
            if key.endswith(("_ci_low", "_ci_high")) or "/slice/" in key:
                continue
            low, high = self.metrics.get(f"{key}_ci_low"), self.metrics.get(f"{key}_ci_high")
            ci = f"[{low:.4f}, {high:.4f}]" if low is not None else ""
            rows.append(f"{key:<32} {value:>12.4f}  {ci}")
        return "\n".join(rows)


@dataclass
class Evaluator:
    """Ranks the full catalog for every evaluated user and scores the lists.

    ``seen`` is ``mask`` (already-seen items cannot be recommended; the default) or ``keep`` (for
    repeat-consumption data). ``item_chunk`` bounds memory by scoring that many items at a time.
    ``sampled`` (e.g. ``{n_negatives: 100, strategy: uniform}``) adds sampled-negative metrics beside
    the full ones, with a warning. ``user_meta_slices`` names user metadata columns to slice by.
    ``batch_size`` users are ranked at a time on ``device`` (``auto``: the GPU when there is one);
    ``history`` is what a model reads (see :class:`~marquee.data.evaluation_data.EvaluationData`).
    ``rerank`` (e.g. ``{name: mmr, weight: 0.5, pool: 50}``) re-ranks each user's top ``pool`` for
    genre variety before every metric (see :mod:`~marquee.evaluation.rerank`); weight 0 or null: off.
    """

    ks: list[int] = field(default_factory=lambda: [10, 20, 50])
    seen: str = "mask"
    item_chunk: int | None = None
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    sampled: dict | None = None
    user_meta_slices: list[str] = field(default_factory=list)
    progress: bool = True
    batch_size: int = 1024
    history: str = "visible"
    device: str = "auto"
    num_workers: int = 0
    rerank: dict | None = None

    def __post_init__(self) -> None:
        if self.history not in HISTORIES:
            raise ConfigError("evaluation.history", f"one of {list(HISTORIES)}, got {self.history!r}")
        if self.seen not in ("mask", "keep"):
            raise ConfigError("evaluation.seen", f"'mask' or 'keep', got {self.seen!r}")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError("evaluation.ks", f"cut-offs are positive integers, got {list(self.ks)}")
        if not 0 < self.confidence < 1:
            raise ConfigError("evaluation.confidence", f"a level in (0, 1), got {self.confidence}")
        if self.batch_size < 1:
            raise ConfigError("evaluation.batch_size", f"a positive integer, got {self.batch_size}")
        self.ks = sorted(int(k) for k in self.ks)
        self.reranker = Rerank.from_config(self.rerank, self.ks)
        if self.reranker is not None and self.sampled:
            raise ConfigError("evaluation.rerank", "sampled-negative metrics cannot be re-ranked; "
                              "set evaluation.sampled=null or evaluation.rerank=null")

    def data(self, split: Split, max_len: int | None) -> EvaluationData:
        """The evaluation rows of ``split`` for a model that reads ``max_len`` history items."""
        return EvaluationData(split, max_len, self.batch_size, self.num_workers, self.history)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def accumulator(self, data: EvaluationData, stage: str) -> RankingAccumulator:
        """The ranking accumulator of ``stage``: validation during training feeds the same one."""
        return RankingAccumulator(data.seen(stage) if self.seen == "mask" else None, max(self.ks), self.item_chunk,
                                  rerank=self.reranker)

    def check_catalog(self, catalog: Catalog) -> None:
        """Refuse, before any training or ranking, a re-ranking the catalog cannot support (no genres)."""
        if self.reranker is not None:
            self.reranker.genres(catalog)

    def accuracy(self, ranked: RankedUsers) -> dict[str, float]:
        """Mean accuracy metrics (``ndcg@10`` ...) of a ranking pass: what validation logs."""
        return {name: float(np.mean(values)) for name, values in accuracy_metrics(ranked.ranks, self.ks).items()}

    def evaluate_stages(self, model: Recommender, data: EvaluationData, stages: list[str],
                        output_dir: str | Path) -> dict[str, float]:
        """Evaluate each stage, save its files into ``output_dir``, print its table; return all metrics.

        A model made of parts (a cascade) has each part evaluated beside it, as ``<part>/<stage>/...``.
        """
        metrics: dict[str, float] = {}
        for stage in stages:
            result = self.evaluate(model, data, stage)  # every rank ranks its share of the users
            if is_rank_zero():  # one process writes and prints
                result.save(output_dir)
                print(result.table())
            metrics.update(result.metrics)
            for name, part in model.evaluated_parts().items():
                evaluated = self.evaluate(part, data, stage)
                if is_rank_zero():
                    evaluated.save_part(output_dir, name)
                metrics.update({f"{name}/{k}": v for k, v in evaluated.metrics.items() if "/slice/" not in k})
        if metrics and is_rank_zero():
            update_json(metrics, Path(output_dir) / "metrics.json")
        return metrics

    def evaluate(self, model: Recommender, data: EvaluationData, stage: str = "test") -> Evaluation:
        """Evaluate ``model`` on ``stage`` ('val' or 'test') of the data's split, on :attr:`device`."""
        split = data.split
        missing = [c for c in self.user_meta_slices if c not in split.log.user_meta]
        if missing:  # checked before ranking, not after it
            raise ValueError(f"evaluation.user_meta_slices: no user metadata column(s) {missing}; "
                             f"have {list(split.log.user_meta.columns)}")
        self.check_catalog(model.catalog)
        seen = data.seen(stage)
        sampler = None
        if self.sampled:
            sampler = NegativeSampler(item_counts=torch.as_tensor(split.item_counts), seed=self.seed, **self.sampled)
        device = self.resolved_device()
        model.to(device)
        started = time.perf_counter()
        progress = self.progress and is_rank_zero()  # one bar, not one per DDP rank
        ranked = rank_users(model, data.eval_dataloader(stage), seen if self.seen == "mask" else None,
                            max(self.ks), self.item_chunk, device, sampler, progress, self.reranker)
        accuracy = accuracy_metrics(ranked.ranks, self.ks)
        rank_seconds = time.perf_counter() - started  # ranking + accuracy metrics: what other frameworks time
        per_user = self._per_user(ranked, accuracy, split, seen)
        metrics = self._flat_metrics(per_user, ranked, split, stage)
        seconds = time.perf_counter() - started
        metrics[f"{stage}/n_users"] = float(len(ranked.users))
        metrics[f"{stage}/rank_seconds"] = rank_seconds
        metrics[f"{stage}/ms_per_user"] = 1000 * rank_seconds / max(len(ranked.users), 1)
        metrics[f"{stage}/seconds"] = seconds
        return Evaluation(stage, per_user, metrics, ranked.top_items, seconds)

    def _per_user(self, ranked: RankedUsers, accuracy: dict[str, np.ndarray], split, seen) -> pd.DataFrame:
        columns = dict(accuracy)
        if ranked.sampled_ranks is not None:
            columns.update({f"sampled_{k}": v for k, v in accuracy_metrics(ranked.sampled_ranks, self.ks).items()})
        n_train_users = int(split.train["user_id"].nunique())
        genres = split.log.item_genre_ids()
        for k in self.ks:
            columns[f"popularity@{k}"] = ba.average_popularity(ranked.top_items, k, split.item_counts)
            columns[f"novelty@{k}"] = ba.novelty(ranked.top_items, k, split.item_counts, n_train_users)
            if len(split.log.genres):
                columns[f"diversity@{k}"] = ba.intra_list_diversity(ranked.top_items, k, genres)
        frame = pd.DataFrame(columns, index=pd.Index(ranked.users, name="user_id"))
        frame["activity"] = activity_buckets(seen.count(ranked.users))
        frame["popularity"] = popularity_buckets(split.item_counts)[ranked.targets[:, 0]]
        for column in self.user_meta_slices:
            frame[column] = metadata_labels(split.log.user_meta[column].reindex(ranked.users))
        return frame

    def _flat_metrics(self, per_user: pd.DataFrame, ranked: RankedUsers, split, stage: str) -> dict[str, float]:
        numeric = per_user.select_dtypes("number")
        means, lows, highs = bootstrap_cis(numeric.to_numpy(np.float64), n_boot=self.n_boot,
                                           confidence=self.confidence, seed=self.seed)
        out: dict[str, float] = {}
        for name, mean, low, high in zip(numeric.columns, means, lows, highs):
            out[f"{stage}/{name}"] = float(mean)
            out[f"{stage}/{name}_ci_low"] = float(low)
            out[f"{stage}/{name}_ci_high"] = float(high)
        n_items = split.log.n_items
        for k in self.ks:
            out[f"{stage}/coverage@{k}"] = float(ba.coverage(ranked.top_items, k, n_items))
            out[f"{stage}/gini@{k}"] = float(ba.gini_exposure(ranked.top_items, k, n_items))
            out[f"{stage}/personalization@{k}"] = float(ba.personalization(ranked.top_items, k, n_items))
        slice_columns = ["activity", "popularity", *self.user_meta_slices]
        for column in slice_columns:
            # grouped by the Series: an array key is first tried as a column name, and that KeyError prints the array
            for label, group in numeric.groupby(per_user[column]):
                for name in (c for c in numeric.columns if not c.startswith("sampled_")):
                    out[f"{stage}/slice/{column}={label}/{name}"] = float(group[name].mean())
                out[f"{stage}/slice/{column}={label}/n_users"] = float(len(group))
        return out
