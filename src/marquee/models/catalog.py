"""Constructor arguments that come from the data (catalog size, item genres, ...), and building models with them.

A model names in its ``__init__`` the data facts it needs (``n_items``, ``item_genres``, ...);
:func:`build_model` passes exactly those, and checkpoints store them so a model is rebuilt without
the log. Item features are id-aligned tables with row 0 for padding.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from marquee.data.log import InteractionLog
from marquee.data.splits import Split

TITLE_TOKENS = 8  # words kept per title
MIN_TOKEN_COUNT = 2  # a title word must occur this often in the catalog to get an id


def _padded(lists: list[list[int]], width: int | None = None) -> torch.Tensor:
    """Right-padded (len(lists), width) int64 table; 0 is padding."""
    width = width or max((len(x) for x in lists), default=1) or 1
    table = np.zeros((len(lists), width), dtype=np.int64)
    for row, values in enumerate(lists):
        values = values[:width]
        table[row, : len(values)] = values
    return torch.from_numpy(table)


def title_token_table(titles: list[str]) -> tuple[torch.Tensor, int]:
    """Lower-cased word ids per title (words seen at least MIN_TOKEN_COUNT times), and the vocabulary size."""
    words = [re.findall(r"[a-z0-9]+", str(t).lower()) for t in titles]
    counts: dict[str, int] = {}
    for ws in words:
        for w in set(ws):
            counts[w] = counts.get(w, 0) + 1
    vocab = {w: i + 1 for i, w in enumerate(sorted(w for w, c in counts.items() if c >= MIN_TOKEN_COUNT))}
    return _padded([[vocab[w] for w in ws if w in vocab] for ws in words], TITLE_TOKENS), len(vocab)


def data_args(log: InteractionLog) -> dict[str, Any]:
    """Every data fact a model constructor may ask for, computed from the log.

    ``item_genres`` (n_items + 1, G) genre ids 1..n_genres; ``item_year`` (n_items + 1,) year or 0;
    ``item_title_tokens`` (n_items + 1, 8) title word ids; ``n_events``, ``n_devices`` categorical
    sizes without padding (0 when the log has no such column).
    """
    indptr, genre_ids = log.item_genre_ids()
    genres = [genre_ids[indptr[i] : indptr[i + 1]].astype(np.int64).tolist() for i in range(len(indptr) - 1)]
    meta = log.item_meta
    year = np.zeros(log.n_items + 1, dtype=np.int64)
    if "year" in meta:
        year[1:] = np.nan_to_num(meta["year"].reindex(range(1, log.n_items + 1)).to_numpy(np.float64)).astype(np.int64)
    titles = [""] + (meta["title"].reindex(range(1, log.n_items + 1)).fillna("").tolist() if "title" in meta
                     else [""] * log.n_items)
    tokens, n_tokens = title_token_table(titles)
    device = log.interactions.get("device")
    return {
        "n_items": log.n_items,
        "n_users": log.n_users,
        "n_genres": len(log.genres),
        "item_genres": _padded(genres),
        "item_year": torch.from_numpy(year),
        "item_title_tokens": tokens,
        "n_title_tokens": n_tokens,
        "n_events": len(log.events.names),
        "n_devices": len(device.cat.categories) if device is not None else 0,
    }


def wanted_args(model_cfg: DictConfig, available: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``available`` that the configured model class's ``__init__`` names."""
    params = inspect.signature(get_class(model_cfg._target_).__init__).parameters
    return {k: v for k, v in available.items() if k in params}


def build_model(model_cfg: DictConfig, split: Split):
    """Instantiate the configured model with the data facts it asks for; returns (model, those facts).

    Besides :func:`data_args` of the log, a model may ask for ``item_counts`` (n_items + 1,): the
    training interactions per item (popularity-sampled negatives), from the split's train rows only.
    """
    available = {**data_args(split.log), "item_counts": torch.as_tensor(split.item_counts, dtype=torch.float32)}
    args = wanted_args(model_cfg, available)
    return instantiate(model_cfg, **args), args
