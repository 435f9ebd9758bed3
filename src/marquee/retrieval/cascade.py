"""Retrieval → ranking as one Recommender, so the unchanged Evaluator, saver and exporter treat it as any model.

:class:`CascadeRecommender` asks the retriever for each row's top-N items, skipping the row's
history and its ``exclude`` items (the evaluator passes the items it masks, a service the member's
seen titles), and lets the ranker score only those; every other item scores -inf, so it ranks
below every candidate (the evaluator's pessimistic ties put a target outside the candidates past
N). With no ranker the candidates keep the retriever's scores, and the evaluator's recall@N is the
candidate recall@N. The stages are fitted one after the other by :mod:`marquee.training.pipeline`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from marquee.models.base import Reasons, Recommender


class CascadeRecommender(Recommender):
    """The retriever's top ``n_candidates`` unseen items, re-scored by ``ranker`` (or kept as retrieved).

    ``retriever`` must offer ``retrieve(batch, n) -> (scores, items)`` (the two-tower does).
    Evaluated beside it (:meth:`evaluated_parts`): the retriever alone and the ranker over the full catalog.
    """

    def __init__(self, retriever: Recommender, ranker: Recommender | None = None, n_candidates: int = 200):
        super().__init__(retriever.catalog)
        if not callable(getattr(retriever, "retrieve", None)):
            raise TypeError(f"cascade: the retriever must offer retrieve(batch, n); {type(retriever).__name__} does not")
        if ranker is not None and ranker.n_items != retriever.n_items:
            raise ValueError(f"cascade: retriever has {retriever.n_items} items, ranker {ranker.n_items}")
        if n_candidates < 1:
            raise ValueError(f"cascade: n_candidates must be >= 1, got {n_candidates}")
        self.retriever, self.ranker, self.n_candidates = retriever, ranker, n_candidates
        lengths = [m.max_len for m in (retriever, ranker) if m is not None]
        self.max_len = None if None in lengths else max(lengths)  # each stage cuts the history to its own

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        scores, candidates = self.retriever.retrieve(batch, self.n_candidates)  # (B, N) each, 0 pads
        if self.ranker is not None:
            scores = self.ranker.score(batch, candidates).float().masked_fill(candidates == 0, float("-inf"))
        full = scores.new_full((len(candidates), self.n_items + 1), float("-inf"))  # (B, n_items + 1)
        full.scatter_(1, candidates, scores)
        full[:, 0] = float("-inf")  # padding candidates wrote into column 0
        return self.select(full, items)

    def reasons(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> Reasons:
        """Every item was ``retrieved``; a ranker that can say more (an item-item model) names the history item."""
        ranked = self.ranker.reasons(batch, items) if self.ranker is not None else None
        return Reasons(because=ranked.because if ranked is not None else None, label="retrieved")

    def evaluated_parts(self) -> dict[str, Recommender]:
        if self.ranker is None:
            return {}
        return {"retriever": CascadeRecommender(self.retriever, None, self.n_candidates), "ranker": self.ranker}

    def save_artifacts(self, directory: str | Path) -> None:
        for name, stage in (("retriever", self.retriever), ("ranker", self.ranker)):
            if stage is not None:
                stage.save_artifacts(Path(directory) / name)

    def load_artifacts(self, directory: str | Path) -> None:
        for name, stage in (("retriever", self.retriever), ("ranker", self.ranker)):
            if stage is not None:
                stage.load_artifacts(Path(directory) / name)
