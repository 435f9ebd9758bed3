"""Other ranks' in-batch positives as extra negatives, so a DDP two-tower sees its global batch's candidates.

Under DDP each rank's in-batch softmax would see only its own rows: with the global batch split over W
ranks, each query meets 1/W of the negatives a one-process run gives it, and the model learns a weaker
contrast (measured: a two-tower on 2 CPU processes trailed one process on every seed tried). Gathering
the item vectors through ``torch.distributed.nn.functional.all_gather`` keeps them in the autograd graph,
so each rank's loss also pushes the other ranks' item vectors, and DDP's gradient average then equals the
gradient of the global batch's mean loss. Written here because no maintained library offers this for
Lightning's DDP with uneven row counts per rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn


def distributed() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def other_ranks_rows(vectors: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every other rank's ``vectors`` (n_r, d) and ``ids`` (n_r,), concatenated in rank order: ((M, d), (M,)).

    Rows per rank may differ (padded for the collective, then dropped). Gradients flow back to the rank
    that owns each row. Every rank must call this at the same point of its step.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([len(ids)], dtype=torch.long, device=ids.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    width = int(torch.cat(sizes).max())
    padded = torch.cat([vectors, vectors.new_zeros(width - len(vectors), vectors.shape[1])])  # (width, d)
    padded_ids = torch.cat([ids, ids.new_full((width - len(ids),), -1)])  # (width,), -1 = padding
    all_vectors = dist_fn.all_gather(padded)  # world x (width, d), in the autograd graph
    all_ids = [torch.empty_like(padded_ids) for _ in range(world)]
    dist.all_gather(all_ids, padded_ids)
    others = [r for r in range(world) if r != rank]
    rows = torch.cat([all_vectors[r][: int(sizes[r])] for r in others])  # (M, d)
    row_ids = torch.cat([all_ids[r][: int(sizes[r])] for r in others])  # (M,)
    return rows, row_ids
