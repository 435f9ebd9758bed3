"""Joint features of a member context and each candidate arm, the input of reward models and linear policies."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FeatureMap = Callable[[np.ndarray, np.ndarray], np.ndarray]


def concat_features(context: np.ndarray, arms: np.ndarray) -> np.ndarray:
    """``[context, arm]`` for every candidate: (n, d) and (n, K, f) give (n, K, d + f).

    Cheap at many arms (OBD's 80 items); a model on it learns interactions only if it has hidden layers.
    """
    n, k, _ = arms.shape
    return np.concatenate([np.broadcast_to(context[:, None, :], (n, k, context.shape[1])), arms], axis=2)


def cross_features(context: np.ndarray, arms: np.ndarray) -> np.ndarray:
    """``[1, context] ⊗ arm`` for every candidate: (n, d) and (n, K, f) give (n, K, (d + 1) f).

    The arm's own features plus every context-by-arm product (taste for a genre × an artwork showing
    that genre), so a linear model can personalize; context-only terms are left out as they cannot
    change which arm is best.
    """
    n = context.shape[0]
    with_bias = np.concatenate([np.ones((n, 1), dtype=context.dtype), context], axis=1)  # (n, d+1)
    crossed = with_bias[:, None, :, None] * arms[:, :, None, :]  # (n, K, d+1, f)
    return crossed.reshape(n, arms.shape[1], -1).astype(np.float32, copy=False)


FEATURE_MAPS: dict[str, FeatureMap] = {"concat": concat_features, "cross": cross_features}
