"""Which process of a run writes its files and prints its tables: the only one, or global rank zero under DDP."""

from __future__ import annotations

import logging

from pytorch_lightning.utilities import rank_zero_only


def is_rank_zero() -> bool:
    """True in a single process and on global rank zero (Lightning sets the rank from the launcher's env)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def quiet_other_ranks() -> None:
    """On a rank other than zero: no log file, and only errors on the console.

    Every rank loads and splits the same data, so the others' log lines repeat rank zero's. The file
    handler opens at its first record (``hydra/default.yaml``), so dropping it here leaves no file.
    """
    if is_rank_zero():
        return
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.ERROR)
