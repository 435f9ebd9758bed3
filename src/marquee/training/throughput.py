"""Throughput per epoch: sequences/s, tokens/s, and the share of this machine's measured matmul peak FLOP/s.

Lightning's ThroughputMonitor reports utilization only against a table of known GPU peaks (none
for CPUs), so this callback measures the peak itself with a large float32 matmul and counts the
training step's FLOPs once with ``torch.utils.flop_counter.FlopCounterMode``. The peak is measured
once per device and process, not at every fit (a pipeline fits several stages, a sweep many trials).
"""

from __future__ import annotations

import time
from functools import cache

import pytorch_lightning as pl
import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """Best FLOP/s of ``repeats`` (size x size) @ (size x size) float32 matmuls on ``device``, measured now."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# the figure a process keeps: measured on first use per device and arguments
measured_matmul_peak = cache(matmul_peak)


def _tokens(batch: dict[str, torch.Tensor]) -> int:
    """Non-padding positions of a batch of windows (or rows, for pair batches)."""
    key = "targets" if "targets" in batch else "item"
    return int((batch[key] > 0).sum()) if key in batch else len(next(iter(batch.values())))


class ThroughputLogger(pl.Callback):
    """Logs ``perf/sequences_per_s``, ``perf/tokens_per_s``, ``perf/train_epoch_seconds`` and ``perf/peak_share``."""

    def __init__(self, measure_peak: bool = True):
        self.measure_peak = measure_peak
        self.peak: float | None = None
        self.flops_per_token: float | None = None
        self._started = 0.0
        self._sequences = self._tokens = 0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.measure_peak:
            self.peak = measured_matmul_peak(pl_module.device)
            pl_module.print(f"measured matmul peak: {self.peak / 1e9:.1f} GFLOP/s on {pl_module.device}")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started, self._sequences, self._tokens = time.perf_counter(), 0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.flops_per_token is None and self.measure_peak:
            self.flops_per_token = self._count_flops(pl_module, batch)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._sequences += len(next(iter(batch.values())))
        self._tokens += _tokens(batch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self._started
        if seconds <= 0 or self._sequences == 0:
            return
        # under DDP the run's figures: the slowest rank's seconds, every rank's rates summed, the mean peak share
        pl_module.log("perf/train_epoch_seconds", seconds, on_epoch=True, sync_dist=True, reduce_fx="max")
        rates = {"perf/sequences_per_s": self._sequences / seconds, "perf/tokens_per_s": self._tokens / seconds}
        if self.peak and self.flops_per_token:
            rates["perf/flops_per_s"] = self.flops_per_token * self._tokens / seconds
            pl_module.log("perf/peak_share", rates["perf/flops_per_s"] / self.peak, on_epoch=True, sync_dist=True)
        pl_module.log_dict(rates, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum")

    @staticmethod
    def _count_flops(pl_module: pl.LightningModule, batch: dict[str, torch.Tensor]) -> float | None:
        """FLOPs of one forward + backward on ``batch``, per token; gradients are discarded afterwards.

        ``training_loss`` changes no model state (see TrainableRecommender), so counting leaves training as it was.
        """
        state = torch.get_rng_state()  # counting must not shift the training run's random draws
        try:
            with FlopCounterMode(display=False) as counter:
                out = pl_module.net.training_loss(batch)
                loss = out["loss"] if isinstance(out, dict) else out
                loss.backward()
        finally:
            torch.set_rng_state(state)
        pl_module.net.zero_grad(set_to_none=True)
        tokens = _tokens(batch)
        return counter.get_total_flops() / tokens if tokens else None
