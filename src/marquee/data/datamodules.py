"""Lightning DataModules over a Split: sequence windows for sequence and tower models, pairs for factor models.

A DataModule serves training batches; validation batches come from the :class:`EvaluationData` it is
handed, the same rows the final evaluation reads. ``max_len`` is the model's (the stage fitter
passes ``model.max_len``): a datamodule never decides how much history a model reads.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Sampler

from marquee.data.batching import LengthGroupedBatches
from marquee.data.datasets import InteractionPairs, SequenceWindows, to_tensors
from marquee.data.evaluation_data import EvaluationData
from marquee.data.sequences import UserSequences
from marquee.data.splits import Split


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``seed`` and the epoch (Lightning calls ``set_epoch``).

    RandomSampler with a generator continues that generator's stream, so a run resumed from a checkpoint
    (or any extra ``iter()``) would see other batches than an uninterrupted one; this one cannot.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


class TrainingDataModule(pl.LightningDataModule):
    """Training batches of a split; validation and test loaders from ``evaluation`` (built from the split if None)."""

    def __init__(self, split: Split, max_len: int | None, batch_size: int, num_workers: int, seed: int,
                 evaluation: EvaluationData | None = None):
        super().__init__()
        self.split, self.max_len, self.batch_size = split, max_len, batch_size
        self.num_workers, self.seed = num_workers, seed
        self.evaluation = evaluation or EvaluationData(split, max_len)

    def val_dataloader(self) -> DataLoader:
        return self.evaluation.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.evaluation.eval_dataloader("test")

    def _shuffle(self, n: int) -> EpochShuffle:
        sampler = EpochShuffle(n, self.seed)
        sampler.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return sampler


class SequenceDataModule(TrainingDataModule):
    """Left-padded training windows with a target (its event's weight and kind) at every position.

    ``length_grouping`` > 0 batches windows of similar length (sorted within pools of that many batches of the
    epoch's shuffle, :class:`LengthGroupedBatches`) and pads each batch only to its longest window.
    """

    def __init__(self, split: Split, max_len: int = 50, batch_size: int = 256, windows: str = "last",
                 num_workers: int = 0, seed: int = 0, evaluation: EvaluationData | None = None,
                 length_grouping: int = 0):
        if not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"sequence windows need the model's max_len as a positive integer, got {max_len!r}")
        if not isinstance(length_grouping, int) or length_grouping < 0:
            raise ValueError(f"length_grouping is a number of batches per sorted pool (0: off), "
                             f"got {length_grouping!r}")
        super().__init__(split, max_len, batch_size, num_workers, seed, evaluation)
        self.windows, self.length_grouping = windows, length_grouping
        self._train: SequenceWindows | None = None

    @property
    def train_windows(self) -> SequenceWindows:
        if self._train is None:
            sequences = UserSequences.from_frame(self.split.train, self.split.log.n_users)
            events = self.split.log.events
            self._train = SequenceWindows(sequences, self.max_len, self.windows, events.weights(), events.positive(),
                                          trim=self.length_grouping > 0)
        return self._train

    def train_dataloader(self) -> DataLoader:
        if self.length_grouping:
            windows = self.train_windows
            batches = LengthGroupedBatches(self._shuffle(len(windows)), self.batch_size, False, windows.lengths,
                                           self.length_grouping)
            # batch_size=None: each index list goes to the dataset whole (and DDP shards whole batches)
            return DataLoader(windows, sampler=batches, batch_size=None, num_workers=self.num_workers,
                              collate_fn=to_tensors)
        return DataLoader(
            self.train_windows,
            batch_size=self.batch_size,
            sampler=self._shuffle(len(self.train_windows)),
            num_workers=self.num_workers,
            collate_fn=to_tensors,
            drop_last=False,
        )


class PairDataModule(TrainingDataModule):
    """Shuffled (user, item) training rows with their event weights, in vectorized batches."""

    def __init__(self, split: Split, max_len: int | None = None, batch_size: int = 1024, num_workers: int = 0,
                 seed: int = 0, evaluation: EvaluationData | None = None):
        super().__init__(split, max_len, batch_size, num_workers, seed, evaluation)
        self._train: InteractionPairs | None = None

    @property
    def train_pairs(self) -> InteractionPairs:
        if self._train is None:
            self._train = InteractionPairs(self.split.train, self.split.log.events.weights())
        return self._train

    def train_dataloader(self) -> DataLoader:
        pairs = self.train_pairs
        sampler = BatchSampler(self._shuffle(len(pairs)), self.batch_size, drop_last=False)
        # batch_size=None: the sampler's index lists go to the dataset whole
        return DataLoader(pairs, sampler=sampler, batch_size=None, num_workers=self.num_workers)
