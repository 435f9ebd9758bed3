"""What a ranking pass yields per user, and gathering it across DDP ranks so metrics cover every user exactly once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.distributed as dist


@dataclass
class RankedUsers:
    """What one ranking pass over evaluation users yields, on CPU."""

    users: np.ndarray  # (U,) user ids
    targets: np.ndarray  # (U, T) target item ids, 0 for padding
    ranks: np.ndarray  # (U, T) pessimistic target ranks, k_max + 1 for any rank beyond k_max, 0 for padding
    top_items: np.ndarray  # (U, k_max) best-first item ids
    sampled_ranks: np.ndarray | None = None  # (U, T) ranks among sampled negatives, when asked for


def gather_ranked(ranked: RankedUsers) -> RankedUsers:
    """All ranks' users in one RankedUsers (sorted by user, duplicates from sampler padding dropped); a no-op without DDP."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ranked
    parts: list[RankedUsers | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, ranked)
    return merge_ranked([p for p in parts if p is not None])


def merge_ranked(parts: list[RankedUsers]) -> RankedUsers:
    """Concatenate shards, keep each user once, order by user id."""
    users = np.concatenate([p.users for p in parts])
    _, first = np.unique(users, return_index=True)  # DistributedSampler repeats users to even out shards

    def stack(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        if arrays[0] is None:
            return None
        width = max(a.shape[1] for a in arrays)
        return np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrays])[first]

    return RankedUsers(users=users[first], targets=stack("targets"), ranks=stack("ranks"),
                       top_items=stack("top_items"), sampled_ranks=stack("sampled_ranks"))
