"""The small data protocol the evaluator reads: per stage, one row per evaluated user and the items to mask."""

from __future__ import annotations

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from marquee.data.datasets import EvaluationUsers, to_tensors
from marquee.data.seen import SeenItems
from marquee.data.splits import Split

HISTORIES = ("visible", "train")


class EvaluationData:
    """Evaluation rows of a split: histories cut to ``max_len`` (None: whole), targets, seen items.

    ``history`` says what a model reads when predicting a stage: ``visible`` (default), all rows
    before that stage's targets (train, and for test the validation rows too); ``train``, the
    training rows only, as RecBole's general recommenders do. Masking follows the split either way.
    Under DDP each rank's loader yields its shard of users; the evaluator gathers them again.
    """

    def __init__(self, split: Split, max_len: int | None = None, batch_size: int = 1024, num_workers: int = 0,
                 history: str = "visible"):
        if history not in HISTORIES:
            raise ValueError(f"evaluation.history must be one of {HISTORIES}, got {history!r}")
        self.split, self.max_len, self.batch_size = split, max_len, batch_size
        self.num_workers, self.history = num_workers, history
        self._users: dict[str, EvaluationUsers] = {}

    def seen(self, stage: str) -> SeenItems:
        """Items to mask for ``stage``: those the user saw before its targets."""
        return self.split.seen(stage)

    def evaluation_users(self, stage: str) -> EvaluationUsers:
        if stage not in self._users:
            history = self.split.history(stage) if self.history == "visible" else self.split.train
            self._users[stage] = EvaluationUsers(history, self.split.targets(stage), self.split.log.n_users,
                                                 self.max_len)
        return self._users[stage]

    def eval_dataloader(self, stage: str) -> DataLoader:
        """One row per user evaluated at ``stage``, in user order, histories and targets padded."""
        users = self.evaluation_users(stage)
        sharded = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        return DataLoader(users, batch_size=self.batch_size, shuffle=False, collate_fn=to_tensors,
                          sampler=DistributedSampler(users, shuffle=False) if sharded else None,
                          num_workers=self.num_workers)
