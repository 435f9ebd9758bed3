"""The two towers: an item tower over id and content, a user tower over history, metadata and context.

Both end in an L2-normalized vector, so a dot product is a cosine and a FAISS inner-product index
ranks exactly as :meth:`TwoTower.score` does. The item tower reads the item id plus genres, title
words and year, so an item never seen in training (its id maps to the shared unknown row 0) still
gets a vector from its content. The user tower pools the item history (mean, or attention with
the latest item as query and a learned recency bias), and adds the target context (hour, day,
device) and user metadata, so a new member with a few onboarding picks gets a vector too.
"""

from __future__ import annotations

import itertools
import logging

import torch
import torch.nn.functional as F
from torch import nn

from marquee.data.catalog import Catalog
from marquee.data.context import CONTEXT_FEATURES

log = logging.getLogger(__name__)

ITEM_FEATURES = ("id", "genres", "title", "year")
POOLINGS = ("mean", "attention")
YEAR_MIN, YEAR_BUCKET, YEAR_BUCKETS = 1900, 5, 30  # 5-year buckets from 1900; 0 = unknown


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of the given sizes with GELU and dropout between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def _bag(table: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """Mean of the embeddings of the non-zero ``ids`` (..., K) -> (..., d); zero where all are padding."""
    present = (ids > 0).unsqueeze(-1).float()
    return (table(ids) * present).sum(-2) / present.sum(-2).clamp(min=1.0)


class ItemTower(nn.Module):
    """Item id (or the unknown row for cold items) and content features -> (N, dim) unit vectors.

    ``features`` names the inputs among id, genres, title, year; content the catalog lacks (no
    genres, no titles, no years) is left out with a log line, so one config serves every data set.
    """

    def __init__(self, catalog: Catalog, dim: int, hidden: int, features: tuple[str, ...], dropout: float = 0.0):
        super().__init__()
        unknown = sorted(set(features) - set(ITEM_FEATURES))
        if unknown:
            raise ValueError(f"unknown item features {unknown}; choose from {list(ITEM_FEATURES)}")
        n_items, item_year = catalog.n_items, catalog.item_year
        available = {"id": True, "genres": catalog.n_genres > 0, "title": catalog.n_title_tokens > 0,
                     "year": bool((item_year > 0).any())}
        missing = [f for f in features if not available[f]]
        if missing:
            log.info("item tower: this catalog has no %s; the tower goes without", missing)
        self.features = tuple(f for f in features if available[f])
        if not self.features:
            raise ValueError(f"item tower: none of the item features {list(features)} exists in this catalog")
        if "id" in self.features:
            self.id_embedding = nn.Embedding(n_items + 1, dim)  # row 0: the unknown (cold or dropped-out) item
        if "genres" in self.features:
            self.register_buffer("item_genres", catalog.item_genres, persistent=False)  # (n_items + 1, G)
            self.genre_embedding = nn.Embedding(catalog.n_genres + 1, dim, padding_idx=0)
        if "title" in self.features:
            self.register_buffer("item_title_tokens", catalog.item_title_tokens, persistent=False)  # (n_items + 1, 8)
            self.title_embedding = nn.Embedding(catalog.n_title_tokens + 1, dim, padding_idx=0)
        if "year" in self.features:
            bucket = ((item_year - YEAR_MIN).clamp(min=0) // YEAR_BUCKET).clamp(max=YEAR_BUCKETS - 1) + 1
            self.register_buffer("item_year_bucket", torch.where(item_year > 0, bucket, 0), persistent=False)
            self.year_embedding = nn.Embedding(YEAR_BUCKETS + 1, dim, padding_idx=0)
        self.mlp = mlp([dim * len(self.features), hidden, dim], dropout)

    def forward(self, items: torch.Tensor, id_known: torch.Tensor) -> torch.Tensor:
        """Unit vectors (..., dim) of item ids ``items`` (...); ``id_known`` (...) False uses the unknown id row."""
        parts = []
        if "id" in self.features:
            parts.append(self.id_embedding(torch.where(id_known, items, 0)))
        if "genres" in self.features:
            parts.append(_bag(self.genre_embedding, self.item_genres[items]))
        if "title" in self.features:
            parts.append(_bag(self.title_embedding, self.item_title_tokens[items]))
        if "year" in self.features:
            parts.append(self.year_embedding(self.item_year_bucket[items]))
        return F.normalize(self.mlp(torch.cat(parts, -1)), dim=-1)


class UserTower(nn.Module):
    """History, target context and user metadata -> (..., dim) unit vectors.

    ``pooling`` is ``mean`` (average of the history's item embeddings) or ``attention`` (weights
    from the latest item as query and a learned bias per distance back in time). The pooled vector
    and the latest item's embedding, the context embeddings and the metadata embeddings go through
    an MLP. ``encode_prefixes`` gives the vectors of chosen positions of training windows (causal).
    """

    def __init__(self, catalog: Catalog, dim: int, hidden: int, pooling: str, max_len: int, context: tuple[str, ...],
                 dropout: float = 0.0, user_meta: bool = True):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        unknown = sorted(set(context) - set(CONTEXT_FEATURES))
        if unknown:
            raise ValueError(f"unknown context {unknown}; choose from {list(CONTEXT_FEATURES)}")
        self.pooling, self.max_len = pooling, max_len
        self.history_embedding = nn.Embedding(catalog.n_items + 1, dim, padding_idx=0)
        if pooling == "attention":
            self.query = nn.Linear(dim, dim, bias=False)
            self.key = nn.Linear(dim, dim, bias=False)
            self.recency = nn.Embedding(max_len, 1)  # logit bias per distance back from the latest item
            nn.init.zeros_(self.recency.weight)
        spec = catalog.context
        missing = [c for c in context if c not in spec.features]
        if missing:
            log.info("user tower: this log has no %s context; the tower goes without", missing)
        self.context = tuple(c for c in context if c in spec.features)
        self.context_embedding = nn.ModuleDict({c: nn.Embedding(spec.size(c), dim, padding_idx=0) for c in self.context})
        self.use_meta = user_meta and catalog.n_user_feature_values > 0
        if self.use_meta:  # (n_users + 1, F), 0 = unknown
            self.register_buffer("user_features", catalog.user_features, persistent=False)
            self.meta_embedding = nn.Embedding(catalog.n_user_feature_values + 1, dim, padding_idx=0)
            self.register_buffer("meta_trained", torch.tensor(False))  # training windows carried user ids
        self._warned = False
        n_parts = 2 + (len(self.context) > 0) + self.use_meta
        self.dropout = nn.Dropout(dropout)
        self.mlp = mlp([dim * n_parts, hidden, dim], dropout)

    def forward(self, batch: dict[str, torch.Tensor], known_items: torch.Tensor) -> torch.Tensor:
        """(B, dim) vectors of evaluation rows: left-padded ``items`` (B, L), ``user``, ``target_hour`` ..."""
        items = batch["items"][:, -self.max_len :]  # (B, L) the latest max_len events, the latest last
        rows = torch.arange(len(items), device=items.device)
        cols = torch.full_like(rows, items.shape[1] - 1)
        context = {c: batch.get(f"target_{c}") for c in self.context}  # (B,) each
        return self._encode(items, known_items, rows, cols, context, batch["user"])

    def encode_prefixes(self, batch: dict[str, torch.Tensor], known_items: torch.Tensor, rows: torch.Tensor,
                        cols: torch.Tensor) -> torch.Tensor:
        """(N, dim) vectors of positions (``rows``, ``cols``) of training windows ``items`` (B, L): position t reads
        the window's items up to t (causal) and the context of t's target."""
        context = {c: batch[f"target_{c}"][rows, cols] if f"target_{c}" in batch else None for c in self.context}
        users = batch["user"][rows] if "user" in batch else None
        if self.use_meta and users is None and not self._warned:
            log.warning("user tower: training windows carry no 'user', so user metadata stays unused")
            self._warned = True
        return self._encode(batch["items"], known_items, rows, cols, context, users, training=True)

    def _encode(self, items: torch.Tensor, known_items: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                context: dict[str, torch.Tensor | None], users: torch.Tensor | None, training: bool = False
                ) -> torch.Tensor:
        """(N, dim) vectors of positions (``rows``, ``cols``) of left-padded histories ``items`` (B, L).

        Every position of every window is pooled at once (B, L, L weights), then the chosen ones are taken:
        cheaper than gathering an (N, L, d) copy of the windows when the N positions share B windows.
        """
        items = torch.where(known_items[items], items, 0)  # cold items in a history carry no learned id
        h = self.dropout(self.history_embedding(items))  # (B, L, d)
        t = torch.arange(items.shape[1], device=items.device)
        visible = (t[None, :] <= t[:, None]) & (items > 0)[:, None, :]  # (B, L, L): position i sees j <= i
        if self.pooling == "mean":
            weights = visible.float() / visible.sum(-1, keepdim=True).clamp(min=1)  # (B, L, L)
        else:
            scores = self.query(h) @ self.key(h).transpose(1, 2) / h.shape[-1] ** 0.5  # (B, L, L)
            distance = (t[:, None] - t[None, :]).clamp(0, self.max_len - 1)  # (L, L) steps back from i to j
            scores = scores + self.recency(distance).squeeze(-1)
            weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), -1).nan_to_num(0.0)  # (B, L, L)
        pooled = (weights @ h)[rows, cols]  # (N, d)
        last = h[rows, cols]  # (N, d) the latest item at each position
        parts = [pooled, last]
        if self.context:
            ctx = torch.zeros_like(pooled)
            for name, ids in context.items():
                if ids is not None:  # a log without that column gives nothing
                    ctx = ctx + self.context_embedding[name](ids)
            parts.append(ctx)
        if self.use_meta:  # in training, or once training has seen it: an untrained table would add noise
            use = users is not None and (training or bool(self.meta_trained))
            parts.append(_bag(self.meta_embedding, self.user_features[users]) if use else torch.zeros_like(pooled))
        return F.normalize(self.mlp(torch.cat(parts, -1)), dim=-1)
