"""The SASRec family: a pre-norm transformer over item histories, causal (SASRec) or bidirectional with
masked-item training (BERT4Rec), with switchable side inputs and target context.

``encode(batch)`` gives the user state (B, hidden) from a history; ``score_state(state, items)``
scores the catalog or candidates; ``score(batch, items)`` is the two together, as the evaluator and
the retrieval cascade call it. Training reads every position of a window at once.
"""

from __future__ import annotations

import torch
from torch import nn

from marquee.data.catalog import Catalog
from marquee.data.datasets import target_weights
from marquee.models.base import TrainableRecommender
from marquee.models.sequence_inputs import SequenceInputs, TargetContext, _check_side
from marquee.models.sequence_losses import NextItemLoss


class SASRec(TrainableRecommender):
    """Next-item transformer; ``bidirectional=True`` makes it BERT4Rec (Cloze training, a mask token at the end).

    ``loss`` is a dict for :class:`NextItemLoss` (``name``: ce | sampled_softmax | bce | gbce,
    ``n_negatives``, ``sampling``, ``gbce_t``). ``side_inputs`` switches on ``genres``, ``event``,
    ``value``, ``time``, ``device``.
    """

    def __init__(self, catalog: Catalog, max_len: int = 50, hidden: int = 64, layers: int = 2, heads: int = 2,
                 inner: int | None = None, dropout: float = 0.2, side_inputs: list[str] | tuple[str, ...] = (),
                 tie_weights: bool = True, bidirectional: bool = False, mask_prob: float = 0.2,
                 loss: dict | None = None, init_std: float = 0.02):
        super().__init__(catalog)
        n_items = self.n_items
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"SASRec needs a positive integer max_len, got {max_len!r}")
        side = _check_side(list(side_inputs), catalog)
        if bidirectional and {"event", "value"} & set(side):
            raise ValueError("BERT4Rec hides the item at masked positions but would still read its event and "
                             "value there; use side inputs genres, time or device with bidirectional=True")
        self.max_len, self.hidden, self.bidirectional, self.mask_prob = max_len, hidden, bidirectional, mask_prob
        self.mask_token = n_items + 1
        self.item_embedding = nn.Embedding(n_items + 2, hidden, padding_idx=0)  # + BERT4Rec's mask token
        self.output_embedding = None if tie_weights else nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.inputs = SequenceInputs(self.item_embedding, hidden, max_len + 1, dropout, side, catalog)
        layer = nn.TransformerEncoderLayer(hidden, heads, inner or 4 * hidden, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.heads = heads
        # BERT4Rec's mask position carries the target's context in its own input; SASRec fuses it at the output
        self.context = TargetContext(hidden, () if bidirectional else side, catalog.context)
        # BERT4Rec's prediction head: its states mix the context items' own (tied) embeddings, which the
        # head maps away from before the dot product with the item table
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden)) if bidirectional else None
        self.loss_fn = NextItemLoss(**(loss or {}), item_counts=catalog.item_counts, n_items=n_items)
        self._init_weights(init_std)

    def _init_weights(self, std: float) -> None:
        """Every matrix N(0, std), biases 0, padding rows 0 (BERT's and the SASRec reference code's init).

        PyTorch's default (Xavier/Kaiming) init left the model on the popularity plateau for
        hundreds of steps on ML-100K; std 0.02 leaves it within the first epoch.
        """
        for name, param in self.named_parameters():
            if param.dim() >= 2:
                nn.init.normal_(param, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()

    # ---- encoding ---------------------------------------------------------------------------------

    def item_table(self) -> torch.Tensor:
        """Output item vectors (n_items + 1, hidden); row 0 is padding."""
        table = self.output_embedding if self.output_embedding is not None else self.item_embedding
        return table.weight[: self.n_items + 1]

    def _attention_mask(self, items: torch.Tensor) -> torch.Tensor:
        """(B * heads, L, L) boolean mask, True = may not attend: padding keys, future keys when causal.

        Every query may attend to itself, so a padding row never sees only masked keys (which gives NaN).
        """
        length = items.shape[1]
        blocked = (items == 0)[:, None, :].expand(-1, length, -1)  # (B, L, L) padding keys
        if not self.bidirectional:
            future = torch.ones(length, length, dtype=torch.bool, device=items.device).triu(1)
            blocked = blocked | future
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=items.device)
        return blocked.repeat_interleave(self.heads, 0)

    def sequence_states(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None,
                        use_gap: bool = True) -> torch.Tensor:
        """States at every position (B, L, hidden) of the (possibly masked) ``items``."""
        items = batch["items"] if items is None else items
        x = self.inputs(batch, items, use_gap)
        return self.encoder(x, mask=self._attention_mask(items))

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """User state (B, hidden) after an evaluation row's history, fused with the target context."""
        if batch["items"].shape[1] > self.max_len:  # only the latest max_len events count
            batch = {k: v[:, -self.max_len :] if v.dim() == 2 and k != "targets" else v for k, v in batch.items()}
        return self.encode_window(batch)

    def encode_window(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`encode` of a history no longer than ``max_len``: what export traces, as it holds no
        branch on the history's length (a cut would tie an exported graph to one length)."""
        items = batch["items"]  # (B, L)
        if self.bidirectional:
            return self._encode_cloze(batch, items)
        return self.context(self.sequence_states(batch, items)[:, -1], batch)  # (B, hidden)

    def _encode_cloze(self, batch: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """BERT4Rec: drop the oldest item, append the mask token with the target's context, read its state."""
        # appended, then the oldest dropped: no (B, L - 1) slice, whose size an exported graph could not leave free
        shifted = torch.cat([items, torch.full_like(items[:, :1], self.mask_token)], 1)[:, 1:]  # (B, L)
        features = {}
        for key in ("hour", "dow", "device"):
            if key in batch:
                target = batch.get(f"target_{key}", torch.zeros_like(batch[key][:, 0]))
                features[key] = torch.cat([batch[key][:, -items.shape[1] :], target[:, None]], 1)[:, 1:]
        return self.head(self.sequence_states(features, shifted, use_gap=False)[:, -1])

    def score_state(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, n_items + 1) over the catalog, or (B, C) for candidate ``items`` ((C,) or (B, C))."""
        table = self.item_table()
        if items is None:
            return state @ table.T
        if items.dim() == 1:
            return state @ table[items].T
        return torch.einsum("bd,bcd->bc", state, table[items])

    def score(self, batch: dict[str, torch.Tensor], items: torch.Tensor | None = None) -> torch.Tensor:
        return self.score_state(self.encode(batch), items)

    # ---- training ---------------------------------------------------------------------------------

    def training_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss over every target position of a batch of windows (no per-prefix copies of the data)."""
        if batch["targets"].dim() != 2 or "item" in batch:
            raise ValueError("SASRec/BERT4Rec train on sequence windows: run with datamodule=sequences")
        if self.bidirectional:
            states, targets = self._cloze_states(batch)
        else:
            states = self.context(self.sequence_states(batch), batch)  # (B, L, hidden)
            targets = batch["targets"]  # (B, L), 0 = padding
        weights, positive = target_weights(batch, targets)  # (B, L) each: the target event's weight and kind
        trained = (targets > 0) & (weights > 0)
        loss = self.loss_fn(states[trained], targets[trained], self.item_table(), weights[trained], positive[trained])
        return {"loss": loss, "positions": trained.sum().float()}

    def _cloze_states(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """BERT4Rec training: mask ``mask_prob`` of the window's items (always its last) and predict them."""
        sequence = batch["targets"]  # (B, L): the window's items, the latest last
        real = sequence > 0
        # drawn max_len wide and cut from the right, as the windows are: a batch trimmed to its longest window
        # masks the same items as the same batch padded to max_len
        draws = torch.rand(len(sequence), max(self.max_len, sequence.shape[1]), device=sequence.device)
        draws = draws[:, -sequence.shape[1] :]  # (B, L)
        masked = (draws < self.mask_prob) & real
        masked[:, -1] |= real[:, -1]  # the last position is what evaluation asks for
        features = {key: batch[f"target_{key}"] for key in ("hour", "dow", "device") if f"target_{key}" in batch}
        states = self.sequence_states(features, sequence.masked_fill(masked, self.mask_token), use_gap=False)
        return self.head(states), sequence.masked_fill(~masked, 0)
