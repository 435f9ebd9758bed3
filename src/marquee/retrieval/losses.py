"""Sampled-softmax losses of two-tower retrieval: in-batch negatives, logQ correction, mixed negatives, accidental hits.

In-batch softmax treats the other rows' positives as negatives, so popular items are negatives far
more often than a full softmax would weigh them; the logQ correction (Yi et al., RecSys 2019)
subtracts the log of each candidate's sampling probability, estimated here by streaming as the
paper does. Mixed negatives (Yang et al., WWW 2020) add items drawn uniformly from the catalog, so
the long tail and fresh items are negatives too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from marquee.models import sampled_softmax as core


class StreamingFrequency(nn.Module):
    """Per item, a moving average of the number of training steps between its appearances (Yi et al. 2019).

    ``1 / interval`` estimates how often an item is among a batch's positives, without a pass over
    the data and tracking drift: ``interval <- (1 - alpha) * interval + alpha * gap``. Unlike the
    paper's one appearance per step, an item that is ``c`` positives of one step counts as ``c``
    appearances ``gap / c`` apart, so ``1 / interval`` is the expected count per batch and does not
    saturate at 1 for items more popular than the batch is large. An item's first appearance sets
    its interval to the steps since training began.
    """

    def __init__(self, n_items: int, alpha: float = 0.01):
        super().__init__()
        if not 0 < alpha <= 1:
            raise ValueError(f"frequency alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_step", torch.zeros(n_items + 1, dtype=torch.long))  # (n_items + 1,), 0 = never
        self.register_buffer("interval", torch.zeros(n_items + 1))  # (n_items + 1,) steps between appearances

    @torch.no_grad()
    def update(self, items: torch.Tensor) -> None:
        """Record one training step whose positives are ``items`` (any shape; 0 is padding and ignored)."""
        self.step += 1
        ids, counts = items[items > 0].unique(return_counts=True)
        gap = (self.step - self.last_step[ids]).float() / counts
        seen = self.last_step[ids] > 0
        self.interval[ids] = torch.where(seen, (1 - self.alpha) * self.interval[ids] + self.alpha * gap, gap)
        self.last_step[ids] = self.step

    def log_probability(self, items: torch.Tensor) -> torch.Tensor:
        """log of the expected count per batch of ``items`` (any shape); an item never seen counts as seen once so far."""
        interval = self.interval[items]
        never = torch.full_like(interval, float(self.step.clamp(min=1)))
        return -torch.log(torch.where(interval > 0, interval, never))


def sampled_softmax_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    positive_ids: torch.Tensor,
    temperature: float | torch.Tensor,
    negatives: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
    log_q: torch.Tensor | None = None,
    remove_accidental_hits: bool = True,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of each query's positive against every other candidate of the batch.

    ``queries`` and ``positives`` are (N, d) rows of pairs; the candidates are all N positives plus
    the optional ``negatives`` (M, d). ``log_q`` (N + M,) is subtracted from every candidate's logit
    (the positive's too). With ``remove_accidental_hits`` a candidate with the same item id as the
    row's positive, other than the positive itself, is masked out instead of pushed down.
    ``weights`` (N,) >= 0 makes it ``sum(w * ce) / sum(w)``. In-batch case of :func:`core.sampled_softmax_loss`.
    """
    candidates, ids = positives, positive_ids
    if negatives is not None:
        candidates, ids = torch.cat([positives, negatives]), torch.cat([positive_ids, negative_ids])  # (N + M, d)
    n = len(queries)
    return core.sampled_softmax_loss(
        queries, positives, positive_ids, candidates, ids, temperature=temperature,
        positive_log_q=None if log_q is None else log_q[:n], candidate_log_q=log_q,
        remove_accidental_hits=remove_accidental_hits,
        own_candidate=torch.arange(n, device=queries.device),  # row i's positive is candidate i
        weights=weights)


def uniform_log_q(n_negatives: int, n_items: int) -> float:
    """log of the expected number of times one item is among ``n_negatives`` uniform draws from the catalog."""
    return math.log(n_negatives / n_items)
