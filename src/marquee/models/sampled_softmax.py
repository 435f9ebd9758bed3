"""The one sampled softmax with logQ correction and accidental-hit masking, shared by every model that samples.

Each query row scores its own positive against a set of candidates shared by all rows: the sampled
negatives of a sequence model, or the other rows' positives (plus any uniform negatives) of a
two-tower model. Both need the same three fixes, so they live here once: subtract each logit's log
sampling probability (logQ, Yi et al., RecSys 2019) so the sampled softmax estimates the full one;
mask a candidate that is the row's own positive item (an accidental hit), which would otherwise be
pushed down as a negative; and weigh rows, where a row whose event is "not positive" (a skip, say)
asks for its item to be less likely instead (unlikelihood, Welleck et al., ICLR 2020).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_softmax_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    positive_ids: torch.Tensor,
    candidates: torch.Tensor,
    candidate_ids: torch.Tensor,
    *,
    temperature: float | torch.Tensor = 1.0,
    positive_log_q: torch.Tensor | None = None,
    candidate_log_q: torch.Tensor | None = None,
    remove_accidental_hits: bool = True,
    own_candidate: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    positive: torch.Tensor | None = None,
    reduce: bool = True,
) -> torch.Tensor:
    """Cross-entropy of each row's positive (column 0) against the shared ``candidates`` (columns 1..M).

    ``queries``, ``positives`` (N, d) and ``positive_ids`` (N,) are the rows; ``candidates`` (M, d)
    and ``candidate_ids`` (M,) are shared by all of them. A logit is ``q . v / temperature`` minus
    ``positive_log_q`` (N,) or ``candidate_log_q`` (M,) when given. ``remove_accidental_hits`` masks
    candidates with the row's positive id; ``own_candidate`` (N,) long names the candidate column
    that *is* the row's positive (in-batch negatives) and is always masked, so it is counted once.
    ``positive`` (N,) bool, default all True: a False row gets the unlikelihood term
    ``-log(1 - p)`` of its item's softmax probability ``p`` instead of ``-log p``.
    ``weights`` (N,) >= 0, default all 1: the result is ``sum(w * term) / sum(w)``, a zero still
    in the graph when ``sum(w) == 0``; ``reduce=False`` returns the per-row terms (N,) unweighted.
    """
    n, m = len(queries), len(candidates)
    pos = (queries * positives).sum(-1) / temperature  # (N,)
    neg = queries @ candidates.T / temperature  # (N, M)
    if positive_log_q is not None:
        pos = pos - positive_log_q
    if candidate_log_q is not None:
        neg = neg - candidate_log_q[None, :]
    masked = torch.zeros(n, m, dtype=torch.bool, device=queries.device)  # (N, M)
    if remove_accidental_hits:
        masked = candidate_ids[None, :] == positive_ids[:, None]  # the row's own item drawn again
    if own_candidate is not None:
        columns = torch.arange(m, device=queries.device)
        masked = masked | (columns[None, :] == own_candidate[:, None])  # the positive itself, already column 0
    neg = neg.masked_fill(masked, float("-inf"))
    logits = torch.cat([pos[:, None], neg], 1)  # (N, 1 + M)
    terms = F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=queries.device), reduction="none")
    if positive is not None:
        # -log(1 - p) = logsumexp(all) - logsumexp(all but the positive): no 1 - p to round to 0
        empty = masked.all(1)  # (N,) no candidate left: p is 1 whatever the scores, nothing to learn
        others = torch.logsumexp(neg.masked_fill(empty[:, None], 0.0), 1)  # (N,) finite, for clean gradients
        not_wanted = torch.where(empty, torch.zeros_like(others), torch.logsumexp(logits, 1) - others)
        terms = torch.where(positive, terms, not_wanted)
    if not reduce:
        return terms
    return weighted_mean(terms, weights)


def weighted_mean(terms: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum(w * terms) / sum(w)`` over (N,) terms (the mean without ``weights``); a graph-linked 0 if sum(w) is 0."""
    if weights is None:
        return terms.mean()
    # where, not w * terms: a weight-0 row must not turn an inf term into nan
    total = weights.sum()
    weighted = torch.where(weights > 0, weights * terms, torch.zeros_like(terms)).sum()
    return weighted / torch.where(total > 0, total, torch.ones_like(total))  # no host sync on the check
