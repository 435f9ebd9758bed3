"""The LightningModule around any TrainableRecommender: its loss, optimizer, and full-ranking validation."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import pytorch_lightning as pl
import torch

from marquee.evaluation.distributed import gather_ranked
from marquee.evaluation.metrics import accuracy_metrics
from marquee.evaluation.ranking import RankedUsers, _cat_right_padded, rank_batch
from marquee.models.base import TrainableRecommender


class RecommenderModule(pl.LightningModule):
    """Trains ``net`` on its ``training_loss``; validates by full-catalog ranking with seen items masked.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) taking the parameters
    and the optimizer. Validation logs ``val/<metric>@k`` for the evaluator's ``ks``. ``seed``
    reseeds torch at each epoch's first batch, so a run resumed from an epoch's checkpoint draws the same
    dropout masks and negatives as an uninterrupted one.
    """

    def __init__(self, net: TrainableRecommender, optimizer: partial, scheduler: partial | None = None,
                 ks: list[int] | tuple[int, ...] = (10, 20, 50), mask_seen: bool = True, seed: int = 0,
                 scheduler_interval: str = "epoch"):
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval = scheduler_interval
        self.ks, self.mask_seen, self.seed = sorted(ks), mask_seen, seed
        self._val: dict[str, list[torch.Tensor]] = {}
        self._fit_started = time.perf_counter()

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # at the first batch, not at epoch start: whatever ran before it (a loader drawing its base seed
        # from the global generator, a resumed loop's setup) must not shift this epoch's draws
        if batch_idx == 0:
            torch.manual_seed(self.seed * 100_003 + self.current_epoch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.net.training_loss(batch)
        out = out if isinstance(out, dict) else {"loss": out}
        size = len(next(iter(batch.values())))
        self.log("train/loss", out["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        for name, value in out.items():
            if name != "loss" and value.dim() == 0:
                self.log(f"train/{name}", value.float(), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=size)
        return out["loss"]

    def on_validation_epoch_start(self) -> None:
        self._val = {"users": [], "targets": [], "ranks": [], "top": []}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        seen = self.trainer.datamodule.seen("val") if self.mask_seen else None
        ranks, top, _ = rank_batch(self.net, batch, seen, max(self.ks))
        for name, value in (("users", batch["user"]), ("targets", batch["targets"]), ("ranks", ranks), ("top", top)):
            self._val[name].append(value.cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("users"):
            return
        ranked = gather_ranked(RankedUsers(
            users=torch.cat(self._val["users"]).numpy(), targets=_cat_right_padded(self._val["targets"]),
            ranks=_cat_right_padded(self._val["ranks"]), top_items=torch.cat(self._val["top"]).numpy()))
        for name, values in accuracy_metrics(ranked.ranks, self.ks).items():
            # every rank holds the gathered users, so the value is the same everywhere: no further reduction
            self.log(f"val/{name}", float(np.mean(values)), prog_bar=name == "ndcg@10", sync_dist=False)
        # wall clock since fit started, validation included: the x axis of quality-against-time curves
        self.log("perf/elapsed_seconds", time.perf_counter() - self._fit_started, sync_dist=False)
        self._val = {}

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
