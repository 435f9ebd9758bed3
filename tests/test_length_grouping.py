"""Length-grouped training batches: every window once per epoch, far less padding, the losses of padded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler

from marquee.data.batching import LengthGroupedBatches
from marquee.data.catalog import Catalog
from marquee.data.datamodules import EpochShuffle, SequenceDataModule
from marquee.data.datasets import to_tensors
from marquee.data.splits import LeaveOneOut
from marquee.models.sasrec import SASRec
from tests.helpers import make_log


def _skewed_split(n_users: int = 120, seed: int = 0):
    """Most users with a few events, a tenth with long histories: the shape of Amazon's logs."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        length = int(rng.integers(30, 60)) if user % 10 == 0 else int(rng.integers(4, 9))
        rows += [(user, int(rng.integers(1, 40)), t) for t in range(length)]
    return LeaveOneOut()(make_log(rows))


def test_every_index_lands_in_one_batch_and_pools_are_sorted_by_length():
    lengths = np.random.default_rng(1).integers(1, 51, 1000)
    shuffle = EpochShuffle(1000, seed=5)
    grouped = list(LengthGroupedBatches(shuffle, 32, False, lengths, pool=8))
    plain = list(BatchSampler(shuffle, 32, False))
    assert len(grouped) == len(plain) == len(LengthGroupedBatches(shuffle, 32, False, lengths, pool=8))
    assert sorted(i for b in grouped for i in b) == list(range(1000))  # each index once
    # padding: positions each batch pads to its longest, over the real ones
    waste = lambda batches: sum(len(b) * lengths[b].max() for b in batches) / lengths.sum()  # noqa: E731
    assert waste(grouped) < 1.15 < 1.6 < waste(plain)
    # the batches depend only on the sampler's order: the same epoch again gives the same ones, another epoch others
    assert grouped == list(LengthGroupedBatches(shuffle, 32, False, lengths, pool=8))
    shuffle.set_epoch(1)
    assert grouped != list(LengthGroupedBatches(shuffle, 32, False, lengths, pool=8))
    # pool 1 cuts the sampler's order as it comes, as a plain BatchSampler does (each batch then sorted)
    one = [sorted(b) for b in LengthGroupedBatches(shuffle, 32, False, lengths, pool=1)]
    assert one == [sorted(b) for b in BatchSampler(shuffle, 32, False)]
    dropped = list(LengthGroupedBatches(shuffle, 32, True, lengths, pool=8))
    assert len(dropped) == 1000 // 32 and all(len(b) == 32 for b in dropped)
    with pytest.raises(ValueError, match="pool"):
        LengthGroupedBatches(shuffle, 32, False, lengths, pool=0)


def test_grouped_batches_are_cut_to_their_longest_window_and_hold_every_transition_once():
    split = _skewed_split()
    grouped = SequenceDataModule(split, max_len=20, batch_size=8, windows="all", seed=2, length_grouping=4)
    plain = SequenceDataModule(split, max_len=20, batch_size=8, windows="all", seed=2)
    batches = list(grouped.train_dataloader())
    widths = [b["items"].shape[1] for b in batches]
    assert all(int((b["items"] > 0).sum(1).max()) == b["items"].shape[1] for b in batches)  # no all-padding column
    assert min(widths) < 10 and max(widths) == 20
    def rows(loader):  # (user, targets without padding) of every window
        return sorted((int(u), *t[t > 0].tolist()) for b in loader for u, t in zip(b["user"], b["targets"]))

    assert rows(batches) == rows(plain.train_dataloader())
    padded = sum(b["items"].numel() for b in batches)
    assert padded < 0.5 * sum(b["items"].numel() for b in plain.train_dataloader())
    with pytest.raises(ValueError, match="length_grouping"):
        SequenceDataModule(split, max_len=20, length_grouping=-1)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["sasrec", "bert4rec"])
def test_a_batch_cut_to_its_longest_window_trains_on_the_same_loss_as_the_padded_one(bidirectional):
    split = _skewed_split()
    torch.manual_seed(0)
    model = SASRec(Catalog.from_split(split), max_len=20, hidden=16, layers=1, heads=1, dropout=0.0,
                   bidirectional=bidirectional)
    trimmed = SequenceDataModule(split, max_len=20, length_grouping=1).train_windows
    padded = SequenceDataModule(split, max_len=20).train_windows
    short = [i for i in range(len(padded)) if padded.lengths[i] < 10][:16]  # a batch 9 or fewer wide
    a, b = to_tensors(trimmed.__getitems__(short)), to_tensors(padded.__getitems__(short))
    assert a["items"].shape[1] < 10 and b["items"].shape[1] == 20
    # BERT4Rec draws its masks max_len wide and cuts them as the window is cut: the same items are masked
    torch.manual_seed(1)
    loss_trimmed = model.training_loss(a)
    torch.manual_seed(1)
    loss_padded = model.training_loss(b)
    assert loss_trimmed["positions"] == loss_padded["positions"] > 0
    torch.testing.assert_close(loss_trimmed["loss"], loss_padded["loss"], rtol=1e-5, atol=1e-6)
