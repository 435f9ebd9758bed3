"""Training in several processes (DDP): a new shuffle split across ranks every epoch, and batches every rank sees.

Lightning wraps a custom training sampler (the datamodules' ``EpochShuffle``) in its
``DistributedSamplerWrapper``: it shuffles the sampler's order again (seeded by the run's seed and the
epoch), gives rank r every world-th position of it, and passes the epoch on to the wrapped sampler.
Nobody passes it into a ``BatchSampler``'s own sampler (the pair datamodule's shuffle), with or without
DDP: :class:`WrappedSamplerEpoch` does, so the pair batches are new every epoch too.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper


def world_size() -> int:
    """Processes in the run's process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class WrappedSamplerEpoch(pl.Callback):
    """At each training epoch's start, give the epoch to every sampler nested in the training loader's sampler."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        if isinstance(sampler, DistributedSamplerWrapper):
            sampler = sampler.dataset._sampler  # the sampler Lightning wrapped (it gets the epoch from the wrapper)
        while sampler is not None:  # a BatchSampler's own sampler, which Lightning never reaches
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(trainer.current_epoch)
            sampler = getattr(sampler, "sampler", None)


def gather_batches(batch: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Every rank's ``batch``, in rank order; shapes may differ across ranks. ``[batch]`` without DDP."""
    world = world_size()
    if world == 1:
        return [batch]
    parts: list[dict[str, torch.Tensor]] = [{} for _ in range(world)]
    for key in sorted(batch):  # collectives pair up by call order: the same key order on every rank
        for part, value in zip(parts, _gather(batch[key], world)):
            part[key] = value
    return parts


def _gather(tensor: torch.Tensor, world: int) -> list[torch.Tensor]:
    """``tensor`` from every rank: padded to the largest shape for ``all_gather``, then cut back."""
    shape = torch.tensor(tensor.shape, dtype=torch.long, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(world)]
    dist.all_gather(shapes, shape)
    largest = torch.stack(shapes).amax(0).tolist()
    sent = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor  # gloo gathers no bool tensors
    padded = sent.new_zeros(largest)
    padded[tuple(slice(0, n) for n in tensor.shape)] = sent
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded.contiguous())
    return [g[tuple(slice(0, n) for n in s.tolist())].to(tensor.dtype) for g, s in zip(gathered, shapes)]
