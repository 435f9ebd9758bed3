"""The two-tower retriever: trained with a sampled softmax on sequence windows, served from a FAISS index.

Training reads :class:`~marquee.data.datamodules.SequenceDataModule` windows: every position with a
target is a (history prefix, next item) pair; up to ``max_queries`` of them per batch are scored
against each other's positives (in-batch negatives), optionally plus ``uniform_negatives`` items
drawn from the whole catalog (mixed negatives), with the logQ correction and accidental-hit
removal as switches. :meth:`TwoTower.score` ranks the catalog exactly; :meth:`TwoTower.retrieve`
returns top-N candidates from the index built by :meth:`TwoTower.build_index`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from marquee.data.seen import SeenItems
from marquee.models.base import TrainableRecommender
from marquee.retrieval.index import CONFIG_FILE as INDEX_CONFIG_FILE
from marquee.retrieval.index import ItemIndex
from marquee.retrieval.losses import StreamingFrequency, sampled_softmax_loss, uniform_log_q
from marquee.retrieval.towers import ITEM_FEATURES, ItemTower, UserTower

log = logging.getLogger(__name__)

USER_META_MAX_VALUES = 64  # a categorical user column with more distinct values (zip codes) is left out
USER_META_BINS = 8  # numeric user columns (age) become this many quantile buckets


def user_feature_table(user_meta: pd.DataFrame, n_users: int) -> dict[str, Any]:
    """User metadata as ``user_features`` (n_users + 1, F) ids into one shared table, 0 = unknown, and its size.

    Numeric columns become quantile buckets, categorical ones keep up to 64 values; each column gets
    its own range of ids. Metadata is not interaction data, so held-out (cold) users have theirs too.
    """
    columns, offset = [], 0
    for name in user_meta.columns:
        values = user_meta[name].reindex(range(1, n_users + 1))
        if pd.api.types.is_numeric_dtype(values):
            numeric = values.astype("float64")
            codes = pd.qcut(numeric, USER_META_BINS, labels=False, duplicates="drop")
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
    return {"user_features": torch.from_numpy(table), "n_user_feature_values": offset}


class TwoTower(TrainableRecommender):
    """User tower × item tower with a temperature-scaled dot product of unit vectors.

    Catalog facts (``item_genres``, ``item_title_tokens``, ``item_year``, ``n_devices``,
    ``user_features``) are optional: the towers use what the data has. ``index`` configures the
    FAISS index (``{kind: flat | hnsw | ivf, ...}``, see :class:`ItemIndex`).
    """

    def __init__(
        self,
        n_items: int,
        n_genres: int = 0,
        item_genres: torch.Tensor | None = None,
        item_year: torch.Tensor | None = None,
        item_title_tokens: torch.Tensor | None = None,
        n_title_tokens: int = 0,
        n_devices: int = 0,
        user_features: torch.Tensor | None = None,
        n_user_feature_values: int = 0,
        dim: int = 64,
        hidden: int = 256,
        pooling: str = "attention",
        max_len: int = 50,
        item_features: tuple[str, ...] | list[str] = ITEM_FEATURES,
        context: tuple[str, ...] | list[str] = ("hour", "dow", "device"),
        user_meta: bool = True,
        dropout: float = 0.1,
        id_dropout: float = 0.1,
        temperature: float = 0.05,
        log_q: bool = False,
        uniform_negatives: int = 0,
        remove_accidental_hits: bool = True,
        max_queries: int = 2048,
        frequency_alpha: float = 0.01,
        index: dict[str, Any] | None = None,
    ):
        super().__init__(n_items)
        if not temperature > 0 or uniform_negatives < 0 or max_queries < 2 or not 0 <= id_dropout < 1:
            raise ValueError("TwoTower: need temperature > 0, uniform_negatives >= 0, max_queries >= 2 and "
                             f"0 <= id_dropout < 1; got {temperature}, {uniform_negatives}, {max_queries}, {id_dropout}")
        self.temperature, self.log_q, self.uniform_negatives = temperature, log_q, uniform_negatives
        self.remove_accidental_hits, self.max_queries, self.id_dropout = remove_accidental_hits, max_queries, id_dropout
        self.index_config = dict(index or {"kind": "flat"})
        self.item_tower = ItemTower(n_items, dim, hidden, tuple(item_features), dropout, item_genres, n_genres,
                                    item_title_tokens, n_title_tokens, item_year)
        self.user_tower = UserTower(n_items, dim, hidden, pooling, max_len, tuple(context), dropout, n_devices,
                                    user_features if user_meta else None, n_user_feature_values)
        self.frequency = StreamingFrequency(n_items, frequency_alpha)
        # items seen in training; the others (cold items) are embedded from content alone
        self.register_buffer("item_trained", torch.zeros(n_items + 1, dtype=torch.bool))
        self.index: ItemIndex | None = None
        self._item_cache: tuple[tuple, torch.Tensor] | None = None

    # ---- training ----------------------------------------------------------------------------

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """In-batch sampled softmax over (history prefix, next item) pairs of a batch of sequence windows."""
        if "targets" not in batch:
            raise ValueError("TwoTower trains on sequence windows (datamodule=sequences): the batch has no 'targets'")
        inputs, targets = batch["items"], batch["targets"]  # (B, L) each
        self.item_trained[inputs.unique()] = True
        self.item_trained[targets.unique()] = True
        self.item_trained[0] = False
        rows, cols = (targets > 0).nonzero(as_tuple=True)  # every position with a target
        if len(rows) > self.max_queries:
            keep = torch.randperm(len(rows), device=rows.device)[: self.max_queries]
            rows, cols = rows[keep], cols[keep]
        queries = self.user_tower.encode_prefixes(batch, self.item_trained, rows, cols)  # (N, d)
        positive_ids = targets[rows, cols]  # (N,)
        id_known = torch.rand(positive_ids.shape, device=positive_ids.device) >= self.id_dropout
        positives = self.item_tower(positive_ids, id_known)  # (N, d)
        negatives = negative_ids = None
        log_q = None
        if self.log_q:
            log_q = self.frequency.log_probability(positive_ids)  # (N,) before this step updates it
        if self.uniform_negatives:
            negative_ids = torch.randint(1, self.n_items + 1, (self.uniform_negatives,), device=positive_ids.device)
            negatives = self.item_tower(negative_ids, self.item_trained[negative_ids])  # (M, d)
            if log_q is not None:
                log_q = torch.cat([log_q, log_q.new_full((self.uniform_negatives,),
                                                         uniform_log_q(self.uniform_negatives, self.n_items))])
        self.frequency.update(positive_ids)
        loss = sampled_softmax_loss(queries, positives, positive_ids, self.temperature, negatives, negative_ids,
                                    log_q, self.remove_accidental_hits)
        return {"loss": loss, "queries": torch.tensor(float(len(rows)))}

    # ---- scoring and retrieval ---------------------------------------------------------------

    def user_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, d) unit vectors of evaluation rows."""
        return self.user_tower(batch, self.item_trained)

    def item_vectors(self) -> torch.Tensor:
        """(n_items + 1, d) unit vectors of the whole catalog (row 0 padding); cached between calls in eval mode."""
        key = tuple((p.data_ptr(), p._version) for p in self.item_tower.parameters()) + (self.item_trained._version,)
        # vectors made under inference_mode cannot enter autograd-tracked code later: make them again then
        stale = self._item_cache is None or self._item_cache[0] != key or (
            self._item_cache[1].is_inference() and not torch.is_inference_mode_enabled())
        if self.training or stale:
            ids = torch.arange(self.n_items + 1, device=self.item_trained.device)
            with torch.no_grad():
                vectors = self.item_tower(ids, self.item_trained)
            if self.training:
                return vectors
            self._item_cache = (key, vectors)
        return self._item_cache[1]

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        users = self.user_vectors(batch)  # (B, d)
        vectors = self.item_vectors()  # (n_items + 1, d)
        if items is None:
            return users @ vectors.T  # (B, n_items + 1)
        if items.dim() == 1:
            return users @ vectors[items].T  # (B, C)
        return (vectors[items] @ users.unsqueeze(-1)).squeeze(-1)  # (B, C)

    def build_index(self) -> ItemIndex:
        """Build the configured FAISS index over every item's vector (cold items too) and keep it."""
        vectors = self.item_vectors()[1:].cpu().numpy()
        self.index = ItemIndex(**self.index_config).build(vectors, np.arange(1, self.n_items + 1))
        return self.index

    def save_artifacts(self, directory: str | Path) -> Path:
        """Build the index unless built, and write it beside the checkpoint (``index.faiss``, ``index_ids.npy``,
        ``index.json``), so serving and re-evaluation load it with the model."""
        if self.index is None:
            self.build_index()
        return self.index.save(directory)

    def load_artifacts(self, directory: str | Path) -> None:
        """Load the index a run saved beside its checkpoint; without one, retrieval stays exact (and says so)."""
        if not (Path(directory) / INDEX_CONFIG_FILE).is_file():
            log.info("no item index in '%s': TwoTower.retrieve() searches exactly until build_index()", directory)
            return
        self.index = ItemIndex.load(directory)

    @torch.no_grad()
    def retrieve(self, batch: dict[str, torch.Tensor], n: int, seen: SeenItems | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``n`` items per row that the user has not seen: ``(scores, items)``, each (B, n), best first.

        Seen items are the row's history plus, if given, ``seen``'s items of the row's user. With an
        index (:meth:`build_index`) the search is FAISS's; without one, exact over the catalog.
        Rows with fewer than ``n`` unseen items are padded with item 0 at score -inf.
        """
        users = self.user_vectors(batch)  # (B, d)
        excluded = torch.zeros(len(users), self.n_items + 1, dtype=torch.bool, device=users.device)
        excluded[:, 0] = True
        history = batch["items"]
        excluded[torch.arange(len(users), device=users.device)[:, None].expand_as(history), history] = True
        if seen is not None:
            excluded[seen.pairs(batch["user"])] = True
        if self.index is None:
            scores = (users @ self.item_vectors().T).masked_fill(excluded, float("-inf"))  # (B, n_items + 1)
            return scores.topk(min(n, self.n_items), dim=1)
        depth = min(n + int(excluded.sum(1).max()), self.n_items)  # enough to keep n after dropping seen items
        scores, items = self.index.search(users.cpu().numpy(), depth)  # (B, depth) numpy
        scores, items = torch.from_numpy(scores).to(users.device), torch.from_numpy(items).to(users.device)
        scores = scores.masked_fill(excluded.gather(1, items), float("-inf"))
        scores, order = scores.topk(min(n, depth), dim=1)
        items = items.gather(1, order).masked_fill(scores == float("-inf"), 0)
        return scores, items
