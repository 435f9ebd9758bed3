"""Embeddings of a left-padded history: item id, position, and each side input a config switches on.

Side inputs: ``genres`` (mean of the item's genre embeddings), ``event`` (event type), ``value``
(rating, watch fraction), ``time`` (hour of day, day of week, and the gap since the previous event
in log2 buckets), ``device``. The same ``time`` and ``device`` switches give the ranker the context
of the event being predicted (:class:`TargetContext`), which a service knows at request time.
"""

from __future__ import annotations

import torch
from torch import nn

from marquee.data.catalog import Catalog
from marquee.data.context import ContextSpec, gap_bucket
from marquee.errors import ConfigError

SIDE_INPUTS = ("genres", "event", "value", "time", "device")
TARGET_CONTEXT = {"time": ("hour", "dow"), "device": ("device",)}  # side-input switch -> context features


def _check_side(side_inputs: list[str] | tuple[str, ...], catalog: Catalog) -> tuple[str, ...]:
    """The side inputs, checked against the names known and against what the catalog's data has."""
    unknown = sorted(set(side_inputs) - set(SIDE_INPUTS))
    if unknown:
        raise ConfigError("model.side_inputs", f"unknown side inputs {unknown}; choose from {list(SIDE_INPUTS)}")
    lacking = {"genres": ("item genres", catalog.n_genres == 0), "time": ("timestamps", not catalog.context.time),
               "device": ("a device column", not catalog.context.devices)}
    for name in side_inputs:
        needs, absent = lacking.get(name, ("", False))
        if absent:
            raise ConfigError("model.side_inputs", f"'{name}' needs {needs}, and this data has none; drop it")
    return tuple(side_inputs)


def _need(batch: dict[str, torch.Tensor], key: str, switch: str) -> torch.Tensor:
    if key not in batch:
        raise ValueError(f"side input '{switch}' needs '{key}' in the batch, and this data has none "
                         f"(e.g. a log without timestamps or devices); switch '{switch}' off")
    return batch[key]


class SequenceInputs(nn.Module):
    """(B, L) item ids and their side features -> (B, L, hidden) input embeddings (dropout applied)."""

    def __init__(self, item_embedding: nn.Embedding, hidden: int, max_len: int, dropout: float,
                 side_inputs: tuple[str, ...], catalog: Catalog):
        super().__init__()
        self.side = _check_side(side_inputs, catalog)
        self.item_embedding = item_embedding
        self.position = nn.Embedding(max_len, hidden)
        context = catalog.context
        if "genres" in self.side:
            genres = catalog.item_genres
            # one padding row more than the catalog, for BERT4Rec's mask token
            table = torch.cat([genres, torch.zeros(1, genres.shape[1], dtype=genres.dtype)])
            self.register_buffer("item_genres", table, persistent=False)  # (n_items + 2, G)
            self.genre = nn.Embedding(catalog.n_genres + 1, hidden, padding_idx=0)
        if "event" in self.side:
            self.event = nn.Embedding(catalog.n_events + 1, hidden, padding_idx=0)
        if "value" in self.side:
            self.value = nn.Linear(1, hidden)
        if "time" in self.side:
            self.hour = nn.Embedding(context.size("hour"), hidden, padding_idx=0)
            self.dow = nn.Embedding(context.size("dow"), hidden, padding_idx=0)
            self.gap = nn.Embedding(context.size("gap"), hidden, padding_idx=0)
        if "device" in self.side:
            self.device_embedding = nn.Embedding(context.size("device"), hidden, padding_idx=0)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def genre_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """Mean genre embedding of each item id in ``items`` (any shape) -> (..., hidden)."""
        genres = self.item_genres[items]  # (..., G)
        present = (genres > 0).unsqueeze(-1).float()
        return (self.genre(genres) * present).sum(-2) / present.sum(-2).clamp(min=1.0)

    def forward(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None,
                use_gap: bool = True) -> torch.Tensor:
        items = batch["items"] if items is None else items  # (B, L)
        length = items.shape[1]
        x = self.item_embedding(items) + self.position.weight[-length:]  # the latest event is always last
        if "genres" in self.side:
            x = x + self.genre_vectors(items)
        if "event" in self.side:
            x = x + self.event(_need(batch, "event", "event"))
        if "value" in self.side:
            x = x + self.value(_need(batch, "value", "value").unsqueeze(-1))
        if "time" in self.side:
            x = x + self.hour(_need(batch, "hour", "time")) + self.dow(_need(batch, "dow", "time"))
            if use_gap:
                x = x + self.gap(gap_bucket(_need(batch, "gap", "time")))
        if "device" in self.side:
            x = x + self.device_embedding(_need(batch, "device", "device"))
        padding = (items == 0).unsqueeze(-1)
        return self.dropout(self.norm(x)).masked_fill(padding, 0.0)  # (B, L, hidden)


class TargetContext(nn.Module):
    """Fuses a sequence state with the context of the event being predicted (hour, weekday, device).

    state (..., hidden) and context ids (...) -> state + MLP([state; context embedding]): the
    residual keeps the context-free state intact when the context says nothing.
    """

    def __init__(self, hidden: int, side_inputs: tuple[str, ...], context: ContextSpec):
        super().__init__()
        # (context feature, the side-input switch that turns it on)
        self.keys = [(f, switch) for switch, features in TARGET_CONTEXT.items() if switch in side_inputs
                     for f in features]
        tables = {f: nn.Embedding(context.size(f), hidden, padding_idx=0) for f, _ in self.keys}
        self.tables = nn.ModuleDict(tables)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden)) if tables else None

    @property
    def active(self) -> bool:
        return self.mlp is not None

    def forward(self, state: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.mlp is None:
            return state
        context = sum(self.tables[k](_need(batch, f"target_{k}", switch)) for k, switch in self.keys)
        return state + self.mlp(torch.cat([state, context], -1))
