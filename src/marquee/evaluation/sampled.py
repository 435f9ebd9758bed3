"""Sampled-negative ranking, only for comparing with older papers: it is known to mislead.

Krichene & Rendle (KDD 2020) show sampled metrics can reorder models; marquee computes them only
behind an explicit flag and warns every time.
"""

from __future__ import annotations

import logging

import torch

from marquee.evaluation.ranking import NEG_INF, column_ranks

log = logging.getLogger(__name__)

WARNING = ("sampled-negative metrics requested: they are known to mislead (Krichene & Rendle, KDD 2020) "
           "and are reported beside, never instead of, full-catalog metrics")


def sample_negatives(seen_mask: torch.Tensor, targets: torch.Tensor, n: int, weights: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """(B, n) negatives per row, without replacement, never seen, never a target, never padding."""
    w = weights.float().expand(seen_mask.shape).clone()  # (B, N + 1)
    w[seen_mask] = 0.0
    w[:, 0] = 0.0
    w.scatter_(1, targets, 0.0)
    available = (w > 0).sum(1)
    if (available < n).any():
        raise ValueError(f"a user has only {int(available.min())} candidate negatives, fewer than {n}")
    return torch.multinomial(w, n, replacement=False, generator=generator)


def sampled_ranks(scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Pessimistic ranks of each target among itself, the other targets and the ``negatives`` (B, n).

    ``scores`` are full-catalog (B, N + 1); the candidate set is ``[targets, negatives]``.
    """
    candidates = torch.cat([targets, negatives], 1)  # (B, T + n)
    cand_scores = scores.gather(1, candidates).masked_fill(candidates == 0, NEG_INF)
    positions = torch.arange(targets.shape[1], device=targets.device).expand_as(targets)
    return column_ranks(cand_scores, positions).masked_fill(targets == 0, 0)


class NegativeSampler:
    """Callable for ``rank_users``: ranks of targets among ``n`` fresh negatives per user, drawn uniformly or by popularity."""

    def __init__(self, n_negatives: int, item_counts: torch.Tensor, strategy: str = "uniform", seed: int = 0):
        if strategy not in ("uniform", "popularity"):
            raise ValueError(f"sampled.strategy must be 'uniform' or 'popularity', got {strategy!r}")
        log.warning(WARNING)
        self.n = n_negatives
        self.weights = torch.ones_like(item_counts, dtype=torch.float32) if strategy == "uniform" else item_counts.float()
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, scores: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        negatives = sample_negatives(mask.cpu(), targets.cpu(), self.n, self.weights, self.generator)
        return sampled_ranks(scores, targets, negatives.to(scores.device))
