"""Labels that slice per-user metrics: user activity, target popularity, and user metadata columns.

Activity buckets are tertiles of the evaluated users' history lengths (cold / medium / heavy).
Popularity buckets split the catalog, sorted by training popularity, into three parts that each
hold a third of the training interactions (head / torso / tail); a user falls in the bucket of
their first target. Numeric metadata with more than ten values is cut into quartiles.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def activity_buckets(history_lengths: np.ndarray) -> np.ndarray:
    """'cold' / 'medium' / 'heavy' by tertiles of ``history_lengths`` (U,)."""
    low, high = np.quantile(history_lengths, [1 / 3, 2 / 3])
    return np.where(history_lengths <= low, "cold", np.where(history_lengths <= high, "medium", "heavy"))


def popularity_buckets(item_counts: np.ndarray) -> np.ndarray:
    """'head' / 'torso' / 'tail' per item id (index 0 unused), by equal thirds of training interactions."""
    order = np.argsort(-item_counts[1:], kind="stable") + 1  # most popular first
    share = np.cumsum(item_counts[order]) / max(item_counts.sum(), 1)
    labels = np.empty(len(item_counts), dtype=object)
    labels[0] = "padding"
    # an item belongs to the third in which its interactions start
    start = share - item_counts[order] / max(item_counts.sum(), 1)
    labels[order] = np.where(start < 1 / 3, "head", np.where(start < 2 / 3, "torso", "tail"))
    return labels


def metadata_labels(values: pd.Series) -> np.ndarray:
    """Metadata values as slice labels; numeric columns with many values become quartile ranges."""
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 10:
        return pd.qcut(values, 4, duplicates="drop").astype(str).to_numpy()
    return values.astype("string").fillna("unknown").to_numpy(dtype=object)
