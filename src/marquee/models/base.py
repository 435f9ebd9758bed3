"""The contract every retrieval or ranking model keeps, so one evaluator serves all of them."""

from __future__ import annotations

import torch
from torch import nn

from marquee.data.splits import Split


class Recommender(nn.Module):
    """A model that scores items for a batch of evaluation rows.

    ``score(batch, items=None)`` returns ``(B, n_items + 1)`` scores over the whole catalog (column 0
    is padding and is ignored), or, given candidate ``items`` as a ``(C,)`` tensor shared by the
    batch or a ``(B, C)`` tensor per row, ``(B, C)`` scores for those. The returned tensor belongs to
    the caller, who may overwrite it (the evaluator writes -inf over seen items): never return a
    buffer of the model itself; views are copied. ``batch`` is what
    :class:`marquee.data.datasets.EvaluationUsers` yields: ``user`` (B,), the left-padded history
    ``items`` (B, L) with its side features, and the target context (``target_hour`` ...).
    """

    def __init__(self, n_items: int):
        super().__init__()
        self.n_items = n_items

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


class FittedRecommender(Recommender):
    """A model fitted in closed form or by counting (the baselines), with no gradient training."""

    def fit(self, split: Split) -> FittedRecommender:
        """Learn from ``split.train`` only; return self."""
        raise NotImplementedError


class TrainableRecommender(Recommender):
    """A model trained by gradient descent; :class:`marquee.training.module.RecommenderModule` drives it.

    ``training_loss(batch)`` returns a scalar loss for one batch of the configured datamodule's
    ``train_dataloader`` (or a dict with a ``loss`` entry and other scalars to log).
    """

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        raise NotImplementedError
