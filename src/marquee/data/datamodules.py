"""Lightning DataModules over a Split: sequences for sequence models, pairs for factor and tower models."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler

from marquee.data.datasets import EvaluationUsers, InteractionPairs, SequenceWindows, to_tensors
from marquee.data.seen import SeenItems
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


class EvaluationDataModule(pl.LightningDataModule):
    """Evaluation loaders and catalog facts shared by every marquee DataModule.

    ``eval_history`` says what a model reads when predicting a stage: ``visible`` (default), all
    rows before that stage's targets (train, and for test the validation rows too); ``train``, the
    training rows only, as RecBole's general recommenders do. Masking follows the split either way.
    """

    def __init__(self, split: Split, max_len: int | None, batch_size: int, eval_batch_size: int, num_workers: int,
                 seed: int, eval_history: str = "visible"):
        super().__init__()
        if eval_history not in ("visible", "train"):
            raise ValueError(f"eval_history must be 'visible' or 'train', got {eval_history!r}")
        self.eval_history = eval_history
        self.split = split
        self.max_len, self.batch_size, self.eval_batch_size = max_len, batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self._eval: dict[str, EvaluationUsers] = {}

    @property
    def n_items(self) -> int:
        return self.split.log.n_items

    @property
    def n_users(self) -> int:
        return self.split.log.n_users

    def seen(self, stage: str) -> SeenItems:
        """Items to mask for ``stage``: those the user saw before its targets."""
        return self.split.seen(stage)

    def evaluation_users(self, stage: str) -> EvaluationUsers:
        if stage not in self._eval:
            history = self.split.history(stage) if self.eval_history == "visible" else self.split.train
            self._eval[stage] = EvaluationUsers(history, self.split.targets(stage), self.split.log.n_users, self.max_len)
        return self._eval[stage]

    def eval_dataloader(self, stage: str) -> DataLoader:
        """One row per user evaluated at ``stage``, in user order, histories and targets padded.

        Under DDP each rank gets its shard of users; the evaluator gathers them again.
        """
        users = self.evaluation_users(stage)
        sharded = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        return DataLoader(
            users,
            batch_size=self.eval_batch_size,
            sampler=DistributedSampler(users, shuffle=False) if sharded else None,
            shuffle=False,
            collate_fn=to_tensors,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    def _shuffle(self, n: int) -> EpochShuffle:
        sampler = EpochShuffle(n, self.seed)
        sampler.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return sampler


class SequenceDataModule(EvaluationDataModule):
    """Left-padded training windows with a target at every position, and per-user evaluation rows."""

    def __init__(
        self,
        split: Split,
        max_len: int = 50,
        batch_size: int = 256,
        eval_batch_size: int = 1024,
        windows: str = "last",
        num_workers: int = 0,
        seed: int = 0,
        eval_history: str = "visible",
    ):
        super().__init__(split, max_len, batch_size, eval_batch_size, num_workers, seed, eval_history)
        self.windows = windows
        self._train: SequenceWindows | None = None

    @property
    def train_windows(self) -> SequenceWindows:
        if self._train is None:
            sequences = UserSequences.from_frame(self.split.train, self.split.log.n_users)
            self._train = SequenceWindows(sequences, self.max_len, self.windows)
        return self._train

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_windows,
            batch_size=self.batch_size,
            sampler=self._shuffle(len(self.train_windows)),
            num_workers=self.num_workers,
            collate_fn=to_tensors,
            drop_last=False,
        )


class PairDataModule(EvaluationDataModule):
    """Shuffled (user, item) training rows in vectorized batches, and per-user evaluation rows.

    Evaluation rows carry each user's whole history unless ``max_len`` caps it.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int = 1024,
        eval_batch_size: int = 1024,
        max_len: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        eval_history: str = "visible",
    ):
        super().__init__(split, max_len, batch_size, eval_batch_size, num_workers, seed, eval_history)
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
