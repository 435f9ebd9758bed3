"""Which process of a run writes its files and prints its tables: the only one, or global rank zero under DDP."""

from __future__ import annotations

from pytorch_lightning.utilities import rank_zero_only


def is_rank_zero() -> bool:
    """True in a single process and on global rank zero (Lightning sets the rank from the launcher's env)."""
    return getattr(rank_zero_only, "rank", 0) == 0
