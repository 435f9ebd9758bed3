"""The LightningModule around any TrainableRecommender: its loss, optimizer, and full-ranking validation."""

from __future__ import annotations

import time
from functools import partial

import pytorch_lightning as pl
import torch

from marquee.evaluation.evaluator import Evaluator
from marquee.evaluation.ranking import RankingAccumulator
from marquee.models.base import TrainableRecommender
from marquee.training.distributed import gather_batches


class RecommenderModule(pl.LightningModule):
    """Trains ``net`` on its ``training_loss``; validates with the evaluator's own ranking of the validation users.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) taking the parameters
    and the optimizer. Validation feeds the :class:`~marquee.evaluation.ranking.RankingAccumulator`
    that the final evaluation uses (same masking, ``item_chunk`` and k) and logs
    ``val/<metric>@k``. ``seed`` reseeds torch at each epoch's first batch, so a run resumed from an
    epoch's checkpoint draws the same dropout masks and negatives as an uninterrupted one.

    Under DDP: ``train/`` values are reduced across ranks (the loss averaged, counts summed); the
    validation metrics are already global (the accumulator gathers every rank's users), so their
    reduction is ``max`` of equal values, which returns them unchanged; every rank passes every rank's
    batch to ``observe``, so state that follows the data (trained items, logQ counts) covers all of it alike.
    """

    def __init__(self, net: TrainableRecommender, optimizer: partial, evaluator: Evaluator,
                 scheduler: partial | None = None, scheduler_interval: str = "epoch", seed: int = 0):
        super().__init__()
        self.net, self.evaluator = net, evaluator
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.scheduler_interval, self.seed = scheduler_interval, seed
        self._val: RankingAccumulator | None = None
        self._fit_started = time.perf_counter()

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # at the first batch, not at epoch start: whatever ran before it (a loader drawing its base seed
        # from the global generator, a resumed loop's setup) must not shift this epoch's draws
        if batch_idx == 0:  # other ranks draw other masks and negatives; rank zero those of a single process
            torch.manual_seed(self.seed * 100_003 + self.current_epoch + 1_000_000_007 * self.global_rank)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.net.training_loss(batch)
        out = out if isinstance(out, dict) else {"loss": out}
        size = len(next(iter(batch.values())))
        # sync_dist: the mean over every rank's rows, per step (one scalar all-reduce) and per epoch
        self.log("train/loss", out["loss"], prog_bar=True, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        for name, value in out.items():
            if name != "loss" and value.dim() == 0:
                self.log(f"train/{name}", value.float(), on_step=False, on_epoch=True, reduce_fx="sum", batch_size=size,
                         sync_dist=True)
        return out["loss"]

    def on_train_batch_end(self, outputs, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if type(self.net).observe is TrainableRecommender.observe:  # keeps no state: nothing to gather
            return
        for part in gather_batches(batch):
            self.net.observe(part)

    def on_validation_epoch_start(self) -> None:
        self._val = self.evaluator.accumulator(self.trainer.datamodule.evaluation, "val")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._val.add(self.net, batch)

    def on_validation_epoch_end(self) -> None:
        if self._val is None or not self._val.n_batches:
            return
        # every rank holds the gathered users, so the value is the same everywhere: max of equal values keeps it
        # exactly (a mean's sum / world could round), and Lightning knows it is global (no sync_dist warning)
        for name, value in self.evaluator.accuracy(self._val.result()).items():
            self.log(f"val/{name}", value, prog_bar=name == "ndcg@10", sync_dist=True, reduce_fx="max")
        # wall clock since fit started, validation included: the x axis of quality-against-time curves
        self.log("perf/elapsed_seconds", time.perf_counter() - self._fit_started, sync_dist=True, reduce_fx="max")
        self._val = None

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
