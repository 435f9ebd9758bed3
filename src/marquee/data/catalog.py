"""The Catalog: every fact about the data a model may need, built once per split and saved with every model.

Models receive it explicitly (``marquee.checkpoint.build(model_cfg, catalog=catalog)``) and read what they use:
catalog sizes, item content (genres, title words, year), user metadata, popularity from the
training rows only, event types and the context-feature spec. Tables are id-aligned with row 0 for
padding. :meth:`Catalog.state` and :meth:`Catalog.from_state` carry it through a checkpoint, so a
model is rebuilt without the log.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import torch

from marquee.data.context import ContextSpec
from marquee.data.splits import Split

TITLE_TOKENS = 8  # words kept per title
MIN_TOKEN_COUNT = 2  # a title word must occur this often in the catalog to get an id
USER_META_MAX_VALUES = 64  # a categorical user column with more distinct values (zip codes) is left out
USER_META_BINS = 8  # numeric user columns (age) become this many quantile buckets


def _zeros(rows: int, width: int = 1) -> torch.Tensor:
    return torch.zeros(rows, width, dtype=torch.long)


@dataclass
class Catalog:
    """Sizes, item and user features, popularity, events and context of one data set (id 0 is padding).

    ``item_genres`` (n_items + 1, G) genre ids 1..n_genres; ``item_year`` (n_items + 1,) year or 0;
    ``item_title_tokens`` (n_items + 1, 8) title word ids 1..n_title_tokens; ``user_features``
    (n_users + 1, F) ids 1..n_user_feature_values into one shared table (0 = unknown);
    ``item_counts`` (n_items + 1,) positive training events per item; ``event_weights`` and
    ``event_positive`` per event id (0 = padding).
    """

    n_items: int
    n_users: int = 0
    item_genres: torch.Tensor | None = None
    n_genres: int = 0
    item_year: torch.Tensor | None = None
    item_title_tokens: torch.Tensor | None = None
    n_title_tokens: int = 0
    user_features: torch.Tensor | None = None
    n_user_feature_values: int = 0
    item_counts: torch.Tensor | None = None
    event_names: tuple[str, ...] = ("interaction",)
    event_weights: torch.Tensor | None = None
    event_positive: torch.Tensor | None = None
    context: ContextSpec = field(default_factory=ContextSpec)

    def __post_init__(self) -> None:
        if self.n_items < 1:
            raise ValueError(f"a catalog needs at least one item, got n_items={self.n_items}")
        n, u = self.n_items + 1, self.n_users + 1
        self.item_genres = _zeros(n) if self.item_genres is None else self.item_genres
        self.item_year = torch.zeros(n, dtype=torch.long) if self.item_year is None else self.item_year
        self.item_title_tokens = _zeros(n, TITLE_TOKENS) if self.item_title_tokens is None else self.item_title_tokens
        self.user_features = _zeros(u) if self.user_features is None else self.user_features
        self.item_counts = torch.zeros(n) if self.item_counts is None else self.item_counts
        k = len(self.event_names) + 1
        self.event_weights = torch.tensor([0.0] + [1.0] * (k - 1)) if self.event_weights is None else self.event_weights
        self.event_positive = (torch.tensor([False] + [True] * (k - 1)) if self.event_positive is None
                               else self.event_positive)
        for name, table, rows in (("item_genres", self.item_genres, n), ("item_year", self.item_year, n),
                                  ("item_title_tokens", self.item_title_tokens, n), ("item_counts", self.item_counts, n),
                                  ("user_features", self.user_features, u)):
            if len(table) != rows:
                raise ValueError(f"catalog.{name} has {len(table)} rows, expected {rows} (ids 0..{rows - 1})")

    @property
    def n_events(self) -> int:
        return len(self.event_names)

    @classmethod
    def from_split(cls, split: Split) -> Catalog:
        """Everything a model may need from ``split``: content and metadata from the log, popularity from train."""
        log = split.log
        indptr, genre_ids = log.item_genre_ids()
        genres = [genre_ids[indptr[i] : indptr[i + 1]].astype(np.int64).tolist() for i in range(len(indptr) - 1)]
        meta = log.item_meta
        year = np.zeros(log.n_items + 1, dtype=np.int64)
        if "year" in meta:
            years = meta["year"].reindex(range(1, log.n_items + 1)).to_numpy(np.float64)
            year[1:] = np.nan_to_num(years).astype(np.int64)
        titles = [""] + (meta["title"].reindex(range(1, log.n_items + 1)).fillna("").tolist() if "title" in meta
                         else [""] * log.n_items)
        tokens, n_tokens = title_token_table(titles)
        user_features, n_values = user_feature_table(log.user_meta, log.n_users)
        device = log.interactions.get("device")
        return cls(
            n_items=log.n_items,
            n_users=log.n_users,
            item_genres=_padded(genres),
            n_genres=len(log.genres),
            item_year=torch.from_numpy(year),
            item_title_tokens=tokens,
            n_title_tokens=n_tokens,
            user_features=user_features,
            n_user_feature_values=n_values,
            item_counts=torch.as_tensor(split.item_counts, dtype=torch.float32),
            event_names=tuple(log.events.names),
            event_weights=torch.from_numpy(log.events.weights()),
            event_positive=torch.from_numpy(log.events.positive()),
            context=ContextSpec(time=not log.ordinal_time and "hour" in log.interactions,
                                devices=tuple(str(d) for d in device.cat.categories) if device is not None else ()),
        )

    def state(self) -> dict[str, Any]:
        """Plain values and tensors (no pandas) for a checkpoint; :meth:`from_state` rebuilds the catalog."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "context"}
        return {**out, "event_names": list(self.event_names), "context": asdict(self.context)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Catalog:
        context = state.get("context") or {}
        return cls(**{**state, "event_names": tuple(state["event_names"]),
                      "context": ContextSpec(time=context.get("time", True), devices=tuple(context.get("devices", ())))})


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


def user_feature_table(user_meta: pd.DataFrame, n_users: int) -> tuple[torch.Tensor, int]:
    """User metadata as (n_users + 1, F) ids into one shared table, 0 = unknown, and the table's size.

    Numeric columns become quantile buckets, categorical ones keep up to 64 values; each column gets
    its own range of ids. Metadata is not interaction data, so held-out (cold) users have theirs too.
    """
    columns, offset = [], 0
    for name in user_meta.columns:
        values = user_meta[name].reindex(range(1, n_users + 1))
        if pd.api.types.is_numeric_dtype(values):
            codes = pd.qcut(values.astype("float64"), USER_META_BINS, labels=False, duplicates="drop")
            codes = codes.fillna(-1).to_numpy(np.int64) + 1
        elif values.nunique() <= USER_META_MAX_VALUES:
            codes = pd.Categorical(values).codes.astype(np.int64) + 1  # -1 (missing) -> 0
        else:
            continue
        width = int(codes.max(initial=0))
        columns.append(np.where(codes > 0, codes + offset, 0))
        offset += width
    table = np.zeros((n_users + 1, max(len(columns), 1)), dtype=np.int64)
    if columns:
        table[1:] = np.stack(columns, 1)
    return torch.from_numpy(table), offset
