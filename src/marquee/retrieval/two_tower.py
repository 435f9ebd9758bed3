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
import torch

from marquee.data.catalog import Catalog
from marquee.data.datasets import target_weights
from marquee.models.base import TrainableRecommender
from marquee.retrieval.cross_rank import distributed, other_ranks_rows
from marquee.retrieval.index import CONFIG_FILE as INDEX_CONFIG_FILE
from marquee.retrieval.index import ItemIndex
from marquee.retrieval.losses import StreamingFrequency, sampled_softmax_loss, uniform_log_q
from marquee.retrieval.towers import ITEM_FEATURES, ItemTower, UserTower

log = logging.getLogger(__name__)

class TwoTower(TrainableRecommender):
    """User tower × item tower with a temperature-scaled dot product of unit vectors.

    The towers use what the catalog has (genres, title words, years, devices, user metadata).
    ``index`` configures the FAISS index (``{kind: flat | hnsw | ivf, ...}``, see :class:`ItemIndex`).
    Only positive target events train (a skip is history, not a query), each weighted by its event's weight.
    """

    def __init__(
        self,
        catalog: Catalog,
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
        cross_rank_negatives: bool = True,
    ):
        super().__init__(catalog)
        n_items, self.max_len = self.n_items, max_len
        if not temperature > 0 or uniform_negatives < 0 or max_queries < 2 or not 0 <= id_dropout < 1:
            raise ValueError("TwoTower: need temperature > 0, uniform_negatives >= 0, max_queries >= 2 and "
                             f"0 <= id_dropout < 1; got {temperature}, {uniform_negatives}, {max_queries}, {id_dropout}")
        self.temperature, self.log_q, self.uniform_negatives = temperature, log_q, uniform_negatives
        self.remove_accidental_hits, self.max_queries, self.id_dropout = remove_accidental_hits, max_queries, id_dropout
        self.index_config = dict(index or {"kind": "flat"})
        self.cross_rank_negatives = cross_rank_negatives  # under DDP: the other ranks' positives as negatives too
        self.item_tower = ItemTower(catalog, dim, hidden, tuple(item_features), dropout)
        self.user_tower = UserTower(catalog, dim, hidden, pooling, max_len, tuple(context), dropout, user_meta)
        self.frequency = StreamingFrequency(n_items, frequency_alpha)
        # items seen in training; the others (cold items) are embedded from content alone
        self.register_buffer("item_trained", torch.zeros(n_items + 1, dtype=torch.bool))
        self.index: ItemIndex | None = None
        self._item_cache: tuple[tuple, torch.Tensor] | None = None

    # ---- training ----------------------------------------------------------------------------

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """In-batch sampled softmax over (history prefix, next item) pairs of a batch of sequence windows.

        Reads the state :meth:`observe` keeps (trained items, the logQ estimate) and changes none of it.
        """
        if "targets" not in batch:
            raise ValueError("TwoTower trains on sequence windows (datamodule=sequences): the batch has no 'targets'")
        targets = batch["targets"]  # (B, L)
        weights, positive = target_weights(batch, targets)  # (B, L) each
        known = self.item_trained.clone()  # the batch's own items count as trained (observe() records them)
        known[batch["items"]] = True
        known[targets] = True
        known[0] = False
        rows, cols = ((targets > 0) & positive & (weights > 0)).nonzero(as_tuple=True)  # positions with a target
        if len(rows) > self.max_queries:
            keep = torch.randperm(len(rows), device=rows.device)[: self.max_queries]
            rows, cols = rows[keep], cols[keep]
        queries = self.user_tower.encode_prefixes(batch, known, rows, cols)  # (N, d)
        positive_ids = targets[rows, cols]  # (N,)
        id_known = torch.rand(positive_ids.shape, device=positive_ids.device) >= self.id_dropout
        positives = self.item_tower(positive_ids, id_known)  # (N, d)
        negatives = negative_ids = None
        log_q = None
        if self.log_q:
            log_q = self.frequency.log_probability(positive_ids)  # (N,) before observe() adds this step
        if self.uniform_negatives:
            negative_ids = torch.randint(1, self.n_items + 1, (self.uniform_negatives,), device=positive_ids.device)
            negatives = self.item_tower(negative_ids, known[negative_ids])  # (M, d)
            if log_q is not None:
                log_q = torch.cat([log_q, log_q.new_full((self.uniform_negatives,),
                                                         uniform_log_q(self.uniform_negatives, self.n_items))])
        if self.cross_rank_negatives and self.training and distributed():
            others, other_ids = other_ranks_rows(positives, positive_ids)  # (M', d), (M',)
            negatives = others if negatives is None else torch.cat([negatives, others])
            negative_ids = other_ids if negative_ids is None else torch.cat([negative_ids, other_ids])
            if log_q is not None:  # every rank holds the same frequency estimate (observe() sees every rank's batch)
                log_q = torch.cat([log_q, self.frequency.log_probability(other_ids)])
        loss = sampled_softmax_loss(queries, positives, positive_ids, self.temperature, negatives, negative_ids,
                                    log_q, self.remove_accidental_hits, weights[rows, cols])
        return {"loss": loss, "queries": torch.tensor(float(len(rows)))}

    @torch.no_grad()
    def observe(self, batch: dict[str, torch.Tensor]) -> None:
        """After a training step: its items are trained, and its positives update the logQ frequency estimate."""
        targets = batch["targets"]
        weights, positive = target_weights(batch, targets)
        self.item_trained[batch["items"]] = True
        self.item_trained[targets] = True
        self.item_trained[0] = False
        self.frequency.update(targets[(targets > 0) & positive & (weights > 0)])
        if self.user_tower.use_meta and "user" in batch:
            self.user_tower.meta_trained.fill_(True)  # the metadata table has trained: use it when scoring

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

    def save_artifacts(self, directory: str | Path) -> None:
        """Build the index unless built, and write it beside the checkpoint (``index.faiss``, ``index_ids.npy``,
        ``index.json``), so serving and re-evaluation load it with the model."""
        if self.index is None:
            self.eval()
            self.build_index()
        self.index.save(directory)

    def load_artifacts(self, directory: str | Path) -> None:
        """Load the index a run saved beside its checkpoint; without one, retrieval stays exact (and says so)."""
        if not (Path(directory) / INDEX_CONFIG_FILE).is_file():
            log.info("no item index in '%s': TwoTower.retrieve() searches exactly until build_index()", directory)
            return
        self.index = ItemIndex.load(directory)

    @torch.no_grad()
    def retrieve(self, batch: dict[str, torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``n`` items per row that the user has not seen: ``(scores, items)``, each (B, n), best first.

        Seen items are the row's history ``items`` and its ``exclude`` items, if the batch has them. With
        an index (:meth:`build_index`) the search is FAISS's; without one, exact over the catalog.
        Rows with fewer than ``n`` unseen items are padded with item 0 at score -inf.
        """
        users = self.user_vectors(batch)  # (B, d)
        excluded = torch.zeros(len(users), self.n_items + 1, dtype=torch.bool, device=users.device)
        rows = torch.arange(len(users), device=users.device)[:, None]
        for key in ("items", "exclude"):  # (B, L) and (B, E), 0 pads
            if key in batch:
                excluded[rows.expand_as(batch[key]), batch[key]] = True
        excluded[:, 0] = True
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
