"""The contract every retrieval or ranking model keeps, so one evaluator, one saver and one fitter serve all of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from marquee.data.catalog import Catalog
from marquee.data.splits import Split


@dataclass(frozen=True)
class Reasons:
    """Why a model recommends a row's items: ``because`` (B, K) holds, per item, the history item that
    contributes most to its score (0 where none does); ``label`` names how the other items came (``retrieved``)."""

    because: torch.Tensor | None = None
    label: str | None = None


class Recommender(nn.Module):
    """A model that scores items for a batch of evaluation rows.

    Built from the data's :class:`~marquee.data.catalog.Catalog` (passed explicitly, saved with the
    model). ``score(batch, items=None)`` returns ``(B, n_items + 1)`` scores over the whole catalog
    (column 0 is padding and is ignored), or, given candidate ``items`` as a ``(C,)`` tensor shared by
    the batch or a ``(B, C)`` tensor per row, ``(B, C)`` scores for those. The returned tensor belongs
    to the caller, who may overwrite it (the evaluator writes -inf over seen items): never return a
    buffer of the model itself; views are copied. ``batch`` is what
    :class:`marquee.data.datasets.EvaluationUsers` yields: ``user`` (B,), the left-padded history
    ``items`` (B, L) with its side features, the target context (``target_hour`` ...) and, when the
    evaluator masks them, ``exclude`` (B, E): items the row must not be shown (0 pads).
    ``max_len`` is how many of the latest history items the model reads (None: all of them); the
    data it trains and is evaluated on is cut to it.
    """

    max_len: int | None = None

    def __init__(self, catalog: Catalog):
        super().__init__()
        self.catalog = catalog
        self.n_items = catalog.n_items

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def select(scores: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """Cut full-catalog ``(B, n_items + 1)`` scores down to candidate ``items`` ((C,) or (B, C))."""
        if items is None:
            return scores
        if items.dim() == 1:
            return scores[:, items]
        return scores.gather(1, items)

    def reasons(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> Reasons | None:
        """Why each of the row's recommended ``items`` (B, K) is there, for :mod:`marquee.recommendations`;
        None (the default) where the model cannot say."""
        return None

    def evaluated_parts(self) -> dict[str, Recommender]:
        """Parts of a composed system worth measuring beside it (a cascade's retriever alone); most have none."""
        return {}

    def save_artifacts(self, directory: str | Path) -> None:
        """Write what the state dict cannot hold (an ANN index) into ``directory``; most models have nothing."""

    def load_artifacts(self, directory: str | Path) -> None:
        """Read back what :meth:`save_artifacts` wrote."""


class FittedRecommender(Recommender):
    """A model fitted in closed form or by counting (the baselines), with no gradient training."""

    def fit(self, split: Split) -> FittedRecommender:
        """Learn from ``split.train`` only; return self."""
        raise NotImplementedError


class TrainableRecommender(Recommender):
    """A model trained by gradient descent; :class:`marquee.training.module.RecommenderModule` drives it.

    ``training_loss(batch)`` returns a scalar loss for one batch of the configured datamodule's
    ``train_dataloader`` (or a dict with a ``loss`` entry and other scalars to log); it changes no
    state of the model, so it may be called again (to count FLOPs) without effect. State that
    follows the data seen in training (a streaming frequency estimate, which items were trained)
    is updated in :meth:`observe`, called once after every training step.
    """

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError

    def observe(self, batch: dict[str, torch.Tensor]) -> None:
        """Record a training batch that has just been stepped on; most models keep no such state."""
