"""Per-user sets of already-seen items in CSR form, so evaluation can mask them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class SeenItems:
    """Items each user interacted with: ``indices[indptr[u]:indptr[u + 1]]`` are user ``u``'s, sorted, unique."""

    indptr: np.ndarray  # (n_users + 2,) over user ids 0..n_users
    indices: np.ndarray  # (nnz,) item ids
    n_items: int

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, n_users: int, n_items: int) -> SeenItems:
        """Collect the distinct (user, item) pairs of ``frame``."""
        pairs = np.unique(frame[["user_id", "item_id"]].to_numpy(np.int64), axis=0)  # sorted by user, then item
        counts = np.bincount(pairs[:, 0], minlength=n_users + 1) if len(pairs) else np.zeros(n_users + 1, np.int64)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return cls(indptr=indptr, indices=pairs[:, 1].astype(np.int64), n_items=n_items)

    def items_of(self, user: int) -> np.ndarray:
        """Sorted item ids that ``user`` has seen."""
        return self.indices[self.indptr[user] : self.indptr[user + 1]]

    def count(self, users: np.ndarray | None = None) -> np.ndarray:
        """Number of seen items per user id (all users, or those given)."""
        counts = np.diff(self.indptr)
        return counts if users is None else counts[users]

    def pairs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row, item) coordinates of every seen item of ``users`` (row = position in ``users``), on their device."""
        users_np = users.cpu().numpy()
        starts, ends = self.indptr[users_np], self.indptr[users_np + 1]
        lengths = ends - starts
        rows = np.repeat(np.arange(len(users_np)), lengths)
        # flat positions of every seen item of every requested user, gathered without a Python loop
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = self.indices[np.repeat(starts, lengths) + offsets]
        return torch.from_numpy(rows).to(users.device), torch.from_numpy(cols).to(users.device)

    def mask(self, users: torch.Tensor) -> torch.Tensor:
        """Boolean ``(len(users), n_items + 1)`` mask, True where a user has seen the item; column 0 is padding."""
        out = torch.zeros(len(users), self.n_items + 1, dtype=torch.bool, device=users.device)
        out[self.pairs(users)] = True
        return out

    def padded(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), E)`` seen item ids of each user, right-padded with 0: what a retriever must skip."""
        rows, cols = self.pairs(users)
        counts = torch.bincount(rows, minlength=len(users))
        out = torch.zeros(len(users), max(int(counts.max()) if len(users) else 0, 1), dtype=torch.long,
                          device=users.device)
        within = torch.arange(len(rows), device=users.device) - (torch.cumsum(counts, 0) - counts)[rows]
        out[rows, within] = cols
        return out
