"""Contiguous integer ids for raw user and item ids, with 0 reserved for padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from marquee.data.atomic import write_parquet
from marquee.data.errors import DataError


class Vocabulary:
    """A bijection between raw ids and ids ``1..n``; id 0 is padding and maps to no raw id.

    Ids follow the sorted order of the raw ids, so they never depend on how often an id occurs
    (frequency-ordered ids would carry test statistics into a model's inputs).
    """

    def __init__(self, raw_ids: pd.Index):
        if raw_ids.has_duplicates:
            raise DataError(f"vocabulary has duplicate raw ids, e.g. {raw_ids[raw_ids.duplicated()][:3].tolist()}")
        self.raw_ids = raw_ids  # position k holds the raw id of id k + 1

    @classmethod
    def fit(cls, raw: pd.Series | pd.Index | np.ndarray) -> Vocabulary:
        """Build a vocabulary over the distinct values of ``raw``, in sorted order."""
        return cls(pd.Index(pd.unique(np.asarray(raw))).sort_values())

    def __len__(self) -> int:
        """Number of real ids (padding excluded)."""
        return len(self.raw_ids)

    @property
    def size(self) -> int:
        """Rows an embedding table needs: real ids plus padding."""
        return len(self.raw_ids) + 1

    def encode(self, raw: pd.Series | np.ndarray, strict: bool = True) -> np.ndarray:
        """Map raw ids to ids; unknown raw ids raise (``strict``) or map to 0."""
        codes = self.raw_ids.get_indexer(np.asarray(raw))
        if strict and (codes < 0).any():
            missing = np.asarray(raw)[codes < 0][:5].tolist()
            raise DataError(f"ids not in the vocabulary: {missing}")
        return (codes + 1).astype(np.int32)

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Map ids ``1..n`` back to raw ids."""
        ids = np.asarray(ids)
        if ((ids < 1) | (ids > len(self))).any():
            raise DataError(f"ids outside 1..{len(self)} cannot be decoded (0 is padding)")
        return self.raw_ids.to_numpy()[ids - 1]

    def save(self, path: str | Path) -> Path:
        """Write ``raw_id, id`` rows to Parquet atomically."""
        frame = pd.DataFrame({"raw_id": self.raw_ids.to_numpy(), "id": np.arange(1, len(self) + 1, dtype=np.int32)})
        return write_parquet(frame, path)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`, checking its ids are ``1..n`` in order."""
        frame = pd.read_parquet(path)
        if list(frame.columns) != ["raw_id", "id"] or not np.array_equal(frame["id"], np.arange(1, len(frame) + 1)):
            raise DataError(f"file '{path}': not a marquee vocabulary (expected columns raw_id, id with ids 1..n)")
        return cls(pd.Index(frame["raw_id"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.raw_ids.equals(other.raw_ids)

    def __repr__(self) -> str:
        return f"Vocabulary(n={len(self)})"
