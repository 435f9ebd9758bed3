"""Next-item losses over sequence states: full softmax, sampled softmax (uniform or popularity, logQ-corrected),
BCE with one negative (the original SASRec) and gBCE (gSASRec, Petrov & Macdonald 2023).

Every loss takes the states of all trained positions at once, ``states`` (N, d), their target ids
``targets`` (N,), and the output item table ``items`` (n_items + 1, d) whose row 0 is padding.
Written here because each is a few lines over that table and no maintained library ships them for
arbitrary item tables.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSSES = ("ce", "sampled_softmax", "bce", "gbce")


class NextItemLoss:
    """The configured loss; ``item_counts`` (n_items + 1,) train counts, needed by popularity sampling only."""

    def __init__(self, name: str = "ce", n_negatives: int = 256, sampling: str = "uniform", gbce_t: float = 0.75,
                 item_counts: torch.Tensor | None = None, n_items: int = 0):
        if name not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
        if sampling not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', got {sampling!r}")
        if sampling == "popularity" and item_counts is None:
            raise ValueError("popularity sampling needs the training item counts")
        if name != "ce" and not 1 <= n_negatives:
            raise ValueError(f"n_negatives must be at least 1, got {n_negatives}")
        self.name, self.n_negatives, self.sampling, self.gbce_t, self.n_items = name, n_negatives, sampling, gbce_t, n_items
        if sampling == "popularity":
            q = item_counts.double().clone()
            q[0] = 0.0
            q[1:] += 1.0  # an item unseen in training can still be drawn
            self.q = (q / q.sum()).float()  # (n_items + 1,) sampling probabilities
        else:
            q = torch.full((n_items + 1,), 1.0 / n_items)
            q[0] = 0.0
            self.q = q

    def sample(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Negative item ids 1..n_items of ``shape``, from the sampling distribution."""
        if self.sampling == "uniform":
            return torch.randint(1, self.n_items + 1, shape, device=device)
        flat = torch.multinomial(self.q.to(device), math.prod(shape), replacement=True)
        return flat.view(shape)

    def __call__(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        if self.name == "ce":
            logits = states @ items.T  # (N, n_items + 1)
            logits[:, 0] = float("-inf")
            return F.cross_entropy(logits, targets)
        if self.name == "sampled_softmax":
            return self._sampled_softmax(states, targets, items)
        return self._binary(states, targets, items)

    def _sampled_softmax(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Softmax over the positive and negatives shared by the batch, each logit minus log(M q(item))."""
        negatives = self.sample((self.n_negatives,), states.device)  # (M,)
        q = self.q.to(states.device)
        log_mq = torch.log(self.n_negatives * q)
        positive = (states * items[targets]).sum(-1) - log_mq[targets]  # (N,)
        negative = states @ items[negatives].T - log_mq[negatives]  # (N, M)
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))  # accidental hits
        logits = torch.cat([positive[:, None], negative], 1)  # (N, 1 + M)
        return F.cross_entropy(logits, torch.zeros_like(targets))

    def _binary(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """BCE with one negative per position, or gBCE with ``n_negatives`` and its calibrated positive term."""
        k = 1 if self.name == "bce" else self.n_negatives
        negatives = self.sample((len(targets), k), states.device)  # (N, k)
        positive = (states * items[targets]).sum(-1)  # (N,)
        negative = torch.einsum("nd,nkd->nk", states, items[negatives])  # (N, k)
        beta = 1.0
        if self.name == "gbce":
            alpha = k / (self.n_items - 1)
            beta = alpha * (self.gbce_t * (1 - 1 / alpha) + 1 / alpha)
        negative_loss = F.softplus(negative).masked_fill(negatives == targets[:, None], 0.0).sum(1)  # -log(1 - sigma)
        return (-beta * F.logsigmoid(positive) + negative_loss).mean()
