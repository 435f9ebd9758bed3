"""Batches of training windows of similar length, so a batch pads to its own longest window instead of max_len.

On Amazon Video Games a training window holds 6.2 items on average of its 50 positions, and a random batch
of 64 nearly always holds one long window: the transformer then runs over about eight padded positions for
each real one. Grouping by length (as fairseq's and transformers' length-grouped samplers do) removes most of
that padding while batches stay random: the order is still the epoch's shuffle, sorted only inside pools of
``pool`` batches, and the pool's batches come out in a shuffled order. Written here because torch ships no such
sampler and transformers' would bring that whole library for some lines.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import BatchSampler, Sampler


class LengthGroupedBatches(BatchSampler):
    """Index batches in ``sampler``'s order, each pool of ``pool`` batches sorted by ``lengths`` before it is cut.

    Every index the sampler yields lands in exactly one batch, and there are as many batches as a plain
    ``BatchSampler`` makes. The pool's batches are yielded in an order drawn from the pool's own indices, so
    the batches depend only on the sampler's order (an ``EpochShuffle``: the seed and the epoch). Used as a
    DataLoader's ``sampler`` with ``batch_size=None`` (as the pair datamodule's batches): under DDP Lightning
    then hands each rank whole batches of it.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool, lengths: np.ndarray,
                 pool: int = 100):
        super().__init__(sampler, batch_size, drop_last)
        if not isinstance(pool, int) or pool < 1:
            raise ValueError(f"a length-grouping pool holds a positive whole number of batches, got {pool!r}")
        self.lengths, self.pool = np.asarray(lengths), pool

    def __iter__(self):
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        if len(order) and order.max() >= len(self.lengths):
            raise IndexError(f"the sampler yields index {int(order.max())}, beyond the {len(self.lengths)} lengths")
        size = self.batch_size * self.pool
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]  # longest first
            batches = [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
            for b in np.random.default_rng(chunk.tolist()).permutation(len(batches)):
                yield batches[b].tolist()
