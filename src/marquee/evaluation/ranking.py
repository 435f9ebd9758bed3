"""Full-catalog ranking in bounded memory: pessimistic target ranks and top-k lists, chunked over users and items.

Tie rule (pessimistic): a target's rank is 1 + the number of other unmasked items whose score is
greater than or equal to its own, so a tie always counts against the target and a model that
scores everything equally lands at the bottom, not the top. Masked (already seen) items and the
padding id 0 score -inf and never enter a list; a masked target therefore ranks last.

Every metric at k <= k_max needs a rank only when it is at most k_max, so full-catalog ranking
reads exact ranks off the top-k_max list and reports any rank beyond it as k_max + 1; only a
target tied with the k_max-th score needs a count over the whole catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from marquee.data.seen import SeenItems
from marquee.evaluation.ranked import RankedUsers, gather_ranked
from marquee.evaluation.rerank import Rerank
from marquee.models.base import Recommender

NEG_INF = float("-inf")


def column_ranks(scores: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Pessimistic 1-based ranks of the entries at ``columns`` (B, T) within each row of ``scores`` (B, M)."""
    column_scores = scores.gather(1, columns)  # (B, T)
    ranks = torch.empty_like(columns)
    for j in range(columns.shape[1]):  # one (B, M) comparison per column keeps memory at B x M
        ranks[:, j] = (scores >= column_scores[:, j : j + 1]).sum(1)  # counts the entry itself once
    return ranks


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Ranks (1-based) of ``targets`` (B, T) among full-catalog ``scores`` (B, N + 1); 0 where the target is padding.

    The tie rule by its definition, counted over the whole catalog: the reference that the fast
    :func:`ranks_from_top` is tested against.
    """
    return column_ranks(scores, targets).masked_fill(targets == 0, 0)


def ranks_from_top(scores: torch.Tensor, targets: torch.Tensor, top_scores: torch.Tensor) -> torch.Tensor:
    """Pessimistic ranks of ``targets`` (B, T), exact up to k_max = ``top_scores.shape[1]`` and k_max + 1 beyond.

    ``top_scores`` (B, k_max) are each row's best scores, descending. A target scoring above the
    k_max-th score has all its competitors inside the list; one scoring below it ranks beyond k_max;
    only a tie with the k_max-th score is counted over the whole row.
    """
    k_max = top_scores.shape[1]
    target_scores = scores.gather(1, targets)  # (B, T)
    in_top = (top_scores[:, None, :] >= target_scores[:, :, None]).sum(-1)  # (B, T) list entries >= target
    ranks = torch.where(target_scores > top_scores[:, -1:], in_top, torch.full_like(in_top, k_max + 1))
    boundary = (target_scores == top_scores[:, -1:]) & (targets > 0)
    if boundary.any():
        rows = boundary.any(1).nonzero().squeeze(1)
        exact = column_ranks(scores[rows], targets[rows]).clamp(max=k_max + 1)
        ranks[rows] = torch.where(boundary[rows], exact, ranks[rows])
    return ranks.masked_fill(targets == 0, 0)


def count_at_least(scores: torch.Tensor, item_ids: torch.Tensor, targets: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """For an item chunk: per target, how many chunk items other than the target score >= the target's score.

    ``scores`` (B, C) are the chunk's scores for ``item_ids`` (C,); ``targets`` and ``target_scores`` are (B, T).
    """
    counts = torch.zeros_like(targets)
    for j in range(targets.shape[1]):
        is_target = item_ids[None, :] == targets[:, j : j + 1]  # (B, C)
        counts[:, j] = ((scores >= target_scores[:, j : j + 1]) & ~is_target).sum(1)
    return counts


def merge_top_k(best_scores: torch.Tensor | None, best_items: torch.Tensor | None, scores: torch.Tensor,
                item_ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge a chunk's ``scores`` (B, C) over ``item_ids`` (C,) into the running top-``k`` (B, k) lists."""
    chunk_k = min(k, scores.shape[1])
    values, idx = scores.topk(chunk_k, dim=1)
    items = item_ids[idx]
    if best_scores is not None:
        values, items = torch.cat([best_scores, values], 1), torch.cat([best_items, items], 1)
        values, idx = values.topk(min(k, values.shape[1]), dim=1)
        items = items.gather(1, idx)
    return values, items


def apply_mask(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Scores as float32 with masked entries (and padding, which the mask covers) set to -inf."""
    scores = scores.float()
    return scores.masked_fill(mask, NEG_INF) if mask is not None else scores


def _owned_float(scores: torch.Tensor) -> torch.Tensor:
    """Float32 scores the ranking may overwrite: a view (an expanded row, a slice) is copied first."""
    scores = scores.float()
    return scores if scores._base is None and scores.is_contiguous() else scores.clone()


def catalog_scores(model: Recommender, batch: dict[str, torch.Tensor], seen: SeenItems | None) -> torch.Tensor:
    """The model's float32 scores of the whole catalog (B, N + 1), padding and ``seen`` items of each row at -inf.

    What every full-catalog list of marquee is cut from: the evaluator's and the recommendations'.
    """
    scores = _owned_float(model.score(batch))  # (B, N + 1)
    scores[:, 0] = NEG_INF  # padding is never an item
    if seen is not None:  # scattering -inf costs the seen items, a boolean mask the whole catalog
        scores.index_put_(seen.pairs(batch["user"]), torch.tensor(NEG_INF, device=scores.device))
    return scores


def check_finite_top(top_scores: torch.Tensor, k_max: int, what: str = "the largest k") -> None:
    """Refuse NaN scores (topk puts NaN first, so the list shows them) and lists padded with masked items."""
    if torch.isnan(top_scores).any():
        raise ValueError("the model produced NaN scores; the ranking would be meaningless")
    if (top_scores == NEG_INF).any():
        raise ValueError(f"k_max={k_max} exceeds the number of unseen items of some user; lower {what}")


class RankingAccumulator:
    """Streams user batches through :func:`rank_batch` and keeps what the metrics need, on CPU.

    The one ranking path of marquee: validation during training and the final evaluation both feed
    it, so the two cannot disagree. ``seen`` masks each user's already-seen items (None keeps them)
    and is handed to the model as each row's ``exclude`` items; ``item_chunk`` scores that many items
    at a time; ``sampler`` adds sampled-negative ranks; ``rerank`` reorders each list before the ranks are
    read (``evaluation.rerank``). :meth:`result` gathers every DDP rank's users.
    """

    def __init__(self, seen: SeenItems | None, k_max: int, item_chunk: int | None = None,
                 sampler: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 rerank: Rerank | None = None):
        self.seen, self.k_max, self.item_chunk, self.sampler = seen, k_max, item_chunk, sampler
        self.rerank = rerank
        self._parts: dict[str, list[torch.Tensor]] = {"users": [], "targets": [], "ranks": [], "top": [], "sampled": []}

    def add(self, model: Recommender, batch: dict[str, torch.Tensor]) -> None:
        """Rank one batch (already on the model's device); call under ``torch.inference_mode()``, model in eval mode."""
        if self.seen is not None:
            batch = {**batch, "exclude": self.seen.padded(batch["user"])}
        ranks, top, sampled = rank_batch(model, batch, self.seen, self.k_max, self.item_chunk, self.sampler,
                                         self.rerank)
        for name, value in (("users", batch["user"]), ("targets", batch["targets"]), ("ranks", ranks), ("top", top),
                            ("sampled", sampled)):
            if value is not None:
                self._parts[name].append(value.cpu())

    @property
    def n_batches(self) -> int:
        return len(self._parts["users"])

    def result(self) -> RankedUsers:
        """Every user ranked so far (all ranks' under DDP), sorted by user id there."""
        parts = self._parts
        if not parts["users"]:
            raise ValueError("no evaluation rows were ranked: the stage has no evaluated users")
        return gather_ranked(RankedUsers(
            users=torch.cat(parts["users"]).numpy(),
            targets=_cat_right_padded(parts["targets"]),
            ranks=_cat_right_padded(parts["ranks"]),
            top_items=torch.cat(parts["top"]).numpy(),
            sampled_ranks=_cat_right_padded(parts["sampled"]) if parts["sampled"] else None,
        ))


def rank_users(
    model: Recommender,
    loader: Iterable[dict[str, torch.Tensor]],
    seen: SeenItems | None,
    k_max: int,
    item_chunk: int | None = None,
    device: torch.device | str = "cpu",
    sampler: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    rerank: Rerank | None = None,
) -> RankedUsers:
    """Rank the whole catalog for every user ``loader`` yields on ``device`` (see :class:`RankingAccumulator`)."""
    accumulator = RankingAccumulator(seen, k_max, item_chunk, sampler, rerank)
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc="ranking", unit="batch", disable=not progress, leave=False):
            accumulator.add(model, {k: v.to(device) for k, v in batch.items()})
    return accumulator.result()


def rank_batch(
    model: Recommender,
    batch: dict[str, torch.Tensor],
    seen: SeenItems | None,
    k_max: int,
    item_chunk: int | None = None,
    sampler: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    rerank: Rerank | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One user batch: target ranks (B, T), top-k_max items (B, k_max) and sampled ranks (or None).

    With ``rerank``, the top ``rerank.pool`` items are listed and re-ranked, and the ranks read off the
    re-ranked list. Call under ``torch.inference_mode()`` with the model in eval mode (as
    :func:`rank_users` and validation during training do).
    """
    users, targets = batch["user"], batch["targets"]
    n_items = model.n_items
    depth, what = (k_max, "the largest k") if rerank is None else (rerank.pool, "evaluation.rerank.pool")
    sampled = None
    if item_chunk is None or item_chunk >= n_items:
        scores = catalog_scores(model, batch, seen)  # (B, N + 1)
        top_scores, top = scores.topk(depth, dim=1)
        check_finite_top(top_scores, depth, what)
        ranks = ranks_from_top(scores, targets, top_scores)
        if sampler is not None:
            sampled = sampler(scores, scores == NEG_INF, targets)
    else:
        mask = seen.mask(users) if seen is not None else torch.zeros(len(users), n_items + 1, dtype=torch.bool,
                                                                    device=targets.device)
        mask[:, 0] = True  # padding is never an item
        ranks, top_scores, top = _rank_in_item_chunks(model, batch, mask, targets, depth, item_chunk)
        check_finite_top(top_scores, depth, what)
    if rerank is not None:
        ranks, top = rerank(model.catalog, top_scores, top, targets, ranks, k_max)
    return ranks, top, sampled


def _cat_right_padded(parts: list[torch.Tensor]) -> np.ndarray:
    """Concatenate (B_i, T_i) batches into (sum B_i, max T_i), padding with 0 on the right."""
    width = max(p.shape[1] for p in parts)
    return torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]).numpy()


def _rank_in_item_chunks(model: Recommender, batch: dict[str, torch.Tensor], mask: torch.Tensor,
                         targets: torch.Tensor, k_max: int, item_chunk: int):
    """Ranks and top-k of one user batch, scoring ``item_chunk`` items at a time."""
    target_scores = model.score(batch, items=targets).float()  # (B, T)
    target_scores = target_scores.masked_fill(mask.gather(1, targets), NEG_INF)
    counts = torch.zeros_like(targets)
    best_scores = best_items = None
    for start in range(1, model.n_items + 1, item_chunk):
        ids = torch.arange(start, min(start + item_chunk, model.n_items + 1), device=targets.device)
        scores = apply_mask(model.score(batch, items=ids), mask[:, ids])  # (B, C)
        counts += count_at_least(scores, ids, targets, target_scores)
        best_scores, best_items = merge_top_k(best_scores, best_items, scores, ids, k_max)
    ranks = (counts + 1).clamp(max=k_max + 1).masked_fill(targets == 0, 0)
    return ranks, best_scores, best_items
