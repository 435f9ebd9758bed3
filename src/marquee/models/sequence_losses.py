"""Next-item losses over sequence states: full softmax, sampled softmax (uniform or popularity, logQ-corrected),
BCE with one negative (the original SASRec) and gBCE (gSASRec, Petrov & Macdonald 2023).

Every loss takes the states of all trained positions at once, ``states`` (N, d), their target ids
``targets`` (N,), and the output item table ``items`` (n_items + 1, d) whose row 0 is padding;
optionally a weight per position and which positions are "not positive" events (a skip, say),
whose target is pushed down instead of up. Written here because each is a few lines over that table
and no maintained library ships them for arbitrary item tables; the sampled softmax is the one in
:mod:`marquee.models.sampled_softmax`, shared with two-tower retrieval.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from marquee.models import sampled_softmax as core

LOSSES = ("ce", "sampled_softmax", "bce", "gbce")
CHUNK_ELEMENTS = 4 * 2**20  # logits per chunk of the full softmax: 16 MB of float32


class CatalogCrossEntropy(torch.autograd.Function):
    """(n,) cross-entropy of ``states`` (n, d) over every row of ``items`` (C, d) but row 0 (padding).

    ``F.cross_entropy`` keeps the log-probabilities for its backward pass, then builds the gradient of the
    target pick as another dense (n, C) block and reads both to make the softmax's gradient; here the kept
    log-probabilities become that gradient in place (softmax minus one-hot): two fewer passes over the largest
    tensor of a SASRec step (on Amazon Video Games, 414 positions x 23,716 items per step). Written by hand
    because the fused kernels that do this (Liger's, cut-cross-entropy) are Triton, for GPUs. Its backward
    runs once.
    """

    @staticmethod
    def forward(ctx, states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = states @ items.T  # (n, C)
        logits[:, 0] = float("-inf")
        # log_softmax, not logsumexp: torch's CPU logsumexp makes several temporaries (measured slower here)
        log_probs = torch.log_softmax(logits, 1)  # (n, C)
        ctx.save_for_backward(states, items, targets, log_probs)
        ctx.spent = False
        return -log_probs.gather(1, targets[:, None]).squeeze(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if ctx.spent:
            raise RuntimeError("CatalogCrossEntropy's backward turns its saved log-probabilities into the gradient: "
                               "it runs once")
        ctx.spent = True
        states, items, targets, log_probs = ctx.saved_tensors
        probs = log_probs.exp_()  # (n, C) softmax, in place: the log-probabilities are not needed again
        probs[torch.arange(len(targets), device=targets.device), targets] -= 1.0  # minus the one-hot target
        grad_states = (probs @ items) * grad[:, None] if ctx.needs_input_grad[0] else None  # (n, d)
        grad_items = probs.T @ (states * grad[:, None]) if ctx.needs_input_grad[1] else None  # (C, d)
        return grad_states, grad_items, None


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

    def __call__(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                 weights: torch.Tensor | None = None, positive: torch.Tensor | None = None) -> torch.Tensor:
        """``sum(w * term) / sum(w)`` over positions; ``weights`` (N,) default 1, ``positive`` (N,) bool default True.

        A positive position's term is the configured loss; a not-positive one (a skip, say) asks for
        its target to be less likely: unlikelihood ``-log(1 - p)`` over the same logits for the
        softmax losses, ``softplus(score)`` (the target as a negative) for bce and gbce.
        """
        if self.name == "ce":
            terms = self._full_softmax(states, targets, items, positive)
        elif self.name == "sampled_softmax":
            terms = self._sampled_softmax(states, targets, items, positive)
        else:
            terms = self._binary(states, targets, items, positive)
        return core.weighted_mean(terms, weights)

    def _full_softmax(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                      positive: torch.Tensor | None) -> torch.Tensor:
        """(N,) cross-entropy over the whole catalog, padding excluded; unlikelihood at not-positive positions.

        Computed in row chunks whose logits stay under glibc's largest mmap threshold (32 MB): a
        larger block is mapped and unmapped at every step, and the page faults of re-zeroing it
        took half the loss's time on CPU. The unlikelihood term is computed only if some position
        is not positive (it would cost two more catalog-wide logsumexps for nothing).
        """
        if positive is not None and bool(positive.all()):
            positive = None
        rows = max(1, CHUNK_ELEMENTS // len(items))
        return torch.cat([self._full_softmax_chunk(states[a : a + rows], targets[a : a + rows], items,
                                                   None if positive is None else positive[a : a + rows])
                          for a in range(0, len(targets), rows)]) if len(targets) else states.sum(-1)

    @staticmethod
    def _full_softmax_chunk(states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                            positive: torch.Tensor | None) -> torch.Tensor:
        if positive is None and not torch.is_autocast_enabled(states.device.type):  # mixed precision: F's casts
            return CatalogCrossEntropy.apply(states, items, targets)  # (n,)
        logits = states @ items.T  # (n, n_items + 1)
        logits[:, 0] = float("-inf")
        terms = F.cross_entropy(logits, targets, reduction="none")  # (n,)
        if positive is None:
            return terms
        # -log(1 - p) = logsumexp(all) - logsumexp(all but the target): no 1 - p to round to 0
        others = logits.scatter(1, targets[:, None], float("-inf"))  # (n, n_items + 1)
        not_wanted = torch.logsumexp(logits, 1) - torch.logsumexp(others, 1)  # (n,)
        if len(items) < 3:  # a one-item catalog: p is 1 whatever the scores, nothing to learn
            not_wanted = torch.zeros_like(terms)
        return torch.where(positive, terms, not_wanted)

    def _sampled_softmax(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                         positive: torch.Tensor | None) -> torch.Tensor:
        """(N,) softmax over the target and negatives shared by the batch, each logit minus log(M q(item))."""
        negatives = self.sample((self.n_negatives,), states.device)  # (M,)
        log_mq = torch.log(self.n_negatives * self.q.to(states.device))  # (n_items + 1,)
        return core.sampled_softmax_loss(
            states, items[targets], targets, items[negatives], negatives,
            positive_log_q=log_mq[targets], candidate_log_q=log_mq[negatives],
            remove_accidental_hits=True, positive=positive, reduce=False)

    @staticmethod
    def _negative_scores(states: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """(N, k) scores of each position's own negatives: the same dot products computed the cheaper way.

        Gathering the negatives' vectors moves N * k * d numbers (and scatters as many back in the
        backward pass); when the catalog has fewer rows than k * d, scoring it whole and picking the
        columns moves fewer (gBCE on ML-100K: 1,683 rows against 256 * 64 = 16,384; the negatives' scores
        and their gradients took 40 ms instead of 439 per step of 1,300 positions, one thread, median of
        5 interleaved repeats on the shared 2-core machine).
        """
        if len(items) < negatives.shape[1] * states.shape[1]:
            return (states @ items.T).gather(1, negatives)  # (N, n_items + 1) -> (N, k)
        return torch.einsum("nd,nkd->nk", states, items[negatives])

    def _binary(self, states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor,
                positive: torch.Tensor | None) -> torch.Tensor:
        """(N,) BCE with one negative per position, or gBCE with ``n_negatives`` and its calibrated positive term.

        A not-positive position's term is ``softplus(score)``, the target as a negative; its sampled
        negatives are left out, since nothing there is contrasted with them.
        """
        k = 1 if self.name == "bce" else self.n_negatives
        negatives = self.sample((len(targets), k), states.device)  # (N, k)
        score = (states * items[targets]).sum(-1)  # (N,)
        negative = self._negative_scores(states, items, negatives)  # (N, k)
        beta = 1.0
        if self.name == "gbce":
            alpha = k / (self.n_items - 1)
            beta = alpha * (self.gbce_t * (1 - 1 / alpha) + 1 / alpha)
        negative_loss = F.softplus(negative).masked_fill(negatives == targets[:, None], 0.0).sum(1)  # -log(1 - sigma)
        terms = -beta * F.logsigmoid(score) + negative_loss  # (N,)
        if positive is None:
            return terms
        return torch.where(positive, terms, F.softplus(score))
