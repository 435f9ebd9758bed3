"""DataModules: training windows shift targets by one, cover every transition, and never see held-out rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marquee.data.datamodules import PairDataModule, SequenceDataModule
from marquee.data.evaluation_data import EvaluationData
from marquee.data.events import EventSchema
from marquee.data.splits import LeaveOneOut
from tests.helpers import make_log

HOUR = 3600


def _cycle_log(n_users: int = 6, length: int = 9):
    """Each user walks items 1..length in order, one per hour starting at a user-specific hour."""
    rows = [(u, i, (u + t) * HOUR) for u in range(n_users) for t, i in enumerate(range(1, length + 1))]
    return make_log(rows)


def test_sequence_windows_predict_the_next_item_at_every_position():
    split = LeaveOneOut()(_cycle_log(length=9))  # 7 training items per user
    dm = SequenceDataModule(split, max_len=8, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    items, targets = batch["items"], batch["targets"]  # (B, 8)
    assert items.shape == targets.shape == (4, 8)
    real = items > 0
    # left padded: 6 inputs, 2 padding slots in front
    assert real.sum(1).tolist() == [6] * 4 and not real[:, :2].any()
    assert torch.equal(targets[real], items[real] + 1)  # item raw ids 1..9 are encoded as 1..9
    # the context of a target is that of the predicted event: one hour after the input's
    assert torch.equal(batch["target_hour"][real], batch["hour"][real] % 24 + 1)


def test_all_windows_cover_each_transition_once_and_last_windows_only_the_tail():
    split = LeaveOneOut()(_cycle_log(n_users=3, length=25))  # 23 training items -> 22 transitions per user
    all_windows = SequenceDataModule(split, max_len=5, windows="all").train_windows
    targets = np.stack([all_windows[i]["targets"] for i in range(len(all_windows))])
    assert (targets > 0).sum() == 3 * 22
    assert len(all_windows) == 3 * 5  # ceil(22 / 5) windows per user
    last = SequenceDataModule(split, max_len=5, windows="last").train_windows
    assert len(last) == 3 and last[0]["targets"].tolist() == [19, 20, 21, 22, 23]


def test_training_never_sees_validation_or_test_items():
    split = LeaveOneOut()(_cycle_log(length=9))
    dm = SequenceDataModule(split, max_len=20)
    seen = torch.cat([torch.cat([b["items"], b["targets"]]).flatten() for b in dm.train_dataloader()])
    assert seen.max().item() == 7  # items 8 (validation) and 9 (test) never appear


def test_test_rows_read_history_through_validation_and_pad_targets():
    rows = [(1, i, i * HOUR) for i in range(1, 6)] + [(2, i, i * HOUR) for i in (3, 1, 2)]
    split = LeaveOneOut()(make_log(rows))
    dm = SequenceDataModule(split, max_len=4, evaluation=EvaluationData(split, max_len=4, batch_size=8))
    batch = next(iter(dm.test_dataloader()))
    assert batch["user"].tolist() == [1, 2]
    # user 2's rows are out of file order: by time they read items 1, 2, 3
    assert batch["items"].tolist() == [[1, 2, 3, 4], [0, 0, 1, 2]]
    assert batch["targets"].tolist() == [[5], [3]]
    val = next(iter(dm.val_dataloader()))
    assert val["items"].tolist() == [[0, 1, 2, 3], [0, 0, 0, 1]] and val["targets"].tolist() == [[4], [2]]
    assert val["target_hour"].tolist() == [5, 3]  # hours 4 and 2, shifted past padding


def test_eval_targets_of_several_rows_are_right_padded():
    from marquee.data.splits import TemporalSplit

    rows = [(1, 1, 1), (1, 2, 10), (1, 3, 11), (2, 1, 1), (2, 2, 10)]
    split = TemporalSplit(val_start=5, test_start=10)(make_log(rows))
    batch = next(iter(SequenceDataModule(split, max_len=3).test_dataloader()))
    assert batch["targets"].tolist() == [[2, 3], [2, 0]]


def test_pair_batches_cover_training_rows_once_per_epoch_with_event_weights():
    events = EventSchema(types={"play": 1.0, "complete": 3.0})
    rows = [(u, i, t, "complete" if i % 2 else "play", 0.5) for u in range(1, 5) for t, i in enumerate(range(1, 7))]
    split = LeaveOneOut()(make_log(rows, events=events))
    dm = PairDataModule(split, batch_size=5)
    batches = list(dm.train_dataloader())
    users = torch.cat([b["user"] for b in batches])
    items = torch.cat([b["item"] for b in batches])
    weights = torch.cat([b["weight"] for b in batches])
    got = sorted(zip(users.tolist(), items.tolist()))
    assert got == sorted(zip(split.train["user_id"], split.train["item_id"]))
    assert torch.equal(weights, torch.where(items % 2 == 1, 3.0, 1.0))


def test_shuffling_is_seeded():
    split = LeaveOneOut()(make_log([(u, 10 * u + i, i) for u in range(20) for i in range(6)]))
    first = [b["items"] for b in SequenceDataModule(split, max_len=4, batch_size=5, seed=3).train_dataloader()]
    again = [b["items"] for b in SequenceDataModule(split, max_len=4, batch_size=5, seed=3).train_dataloader()]
    other = [b["items"] for b in SequenceDataModule(split, max_len=4, batch_size=5, seed=4).train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_pair_evaluation_rows_carry_whole_histories_left_padded_to_the_longest():
    rows = [(1, i, i) for i in range(1, 8)] + [(2, i, i) for i in (1, 2, 3, 4)]
    split = LeaveOneOut()(make_log(rows))
    batch = next(iter(PairDataModule(split, evaluation=EvaluationData(split, batch_size=8)).test_dataloader()))
    assert batch["items"].tolist() == [[1, 2, 3, 4, 5, 6], [0, 0, 0, 1, 2, 3]]
    assert batch["hour"].shape == (2, 6)


def test_a_target_repeated_in_the_test_period_counts_once():
    from marquee.data.splits import TemporalSplit

    rows = [(1, 1, 1), (1, 2, 10), (1, 3, 11), (1, 2, 12)]
    split = TemporalSplit(val_start=5, test_start=10)(make_log(rows))
    batch = next(iter(SequenceDataModule(split, max_len=3).test_dataloader()))
    assert batch["targets"].tolist() == [[2, 3]]


def test_train_only_evaluation_history_leaves_out_validation_rows_but_not_the_mask():
    rows = [(1, i, i * HOUR) for i in range(1, 6)]
    split = LeaveOneOut()(make_log(rows))
    visible = next(iter(PairDataModule(split).test_dataloader()))
    train_only = PairDataModule(split, evaluation=EvaluationData(split, history="train"))
    batch = next(iter(train_only.test_dataloader()))
    assert visible["items"].tolist() == [[1, 2, 3, 4]] and batch["items"].tolist() == [[1, 2, 3]]
    assert sorted(train_only.evaluation.seen("test").items_of(1)) == [1, 2, 3, 4]  # the validation item is still masked
    with pytest.raises(ValueError, match="history"):
        EvaluationData(split, history="future")


def test_loaders_come_from_the_evaluation_data_handed_over_or_one_cut_to_the_models_max_len():
    rows = [(1, i, i * HOUR) for i in range(1, 8)]
    split = LeaveOneOut()(make_log(rows))
    default = SequenceDataModule(split, max_len=3)
    assert default.evaluation.max_len == 3 and default.evaluation.history == "visible"
    assert next(iter(default.test_dataloader()))["items"].tolist() == [[4, 5, 6]]
    assert next(iter(default.val_dataloader()))["items"].tolist() == [[3, 4, 5]]
    given = EvaluationData(split, max_len=2, batch_size=1)
    dm = SequenceDataModule(split, max_len=3, evaluation=given)
    assert dm.evaluation is given
    assert next(iter(dm.test_dataloader()))["items"].tolist() == [[5, 6]]
    batch = next(iter(given.eval_dataloader("test")))
    assert batch["targets"].tolist() == [[7]] and sorted(given.seen("test").items_of(1)) == [1, 2, 3, 4, 5, 6]
    assert PairDataModule(split).evaluation.max_len is None  # factor models read whole histories
    with pytest.raises(ValueError, match="max_len"):
        SequenceDataModule(split, max_len=None)


def test_sequence_windows_carry_each_targets_event_weight_and_kind_and_the_user():
    events = EventSchema(types={"play": 1.0, "complete": 2.0, "skip": {"weight": 0.5, "positive": False}})
    kinds = ["play", "skip", "complete", "play", "skip", "play", "play", "play"]  # the last two: val and test
    # user 1 walks items 1..8, user 2 items 11..18, with the same event kinds
    rows = [(u, i + 10 * (u - 1), i * HOUR, kinds[i - 1], 1.0) for u in (1, 2) for i in range(1, 9)]
    split = LeaveOneOut()(make_log(rows, events=events))
    batch = next(iter(SequenceDataModule(split, max_len=6, batch_size=2).train_dataloader()))
    by_user = {int(u): row.tolist() for u, row in zip(batch["user"], batch["targets"])}
    users, items = split.log.users.encode(np.array([1, 2])), split.log.items.encode(np.array([2, 3, 4, 5, 6]))
    # training rows are the first six events: windows read events 1..5 and predict 2..6 (item + 10 for user 2)
    assert by_user[int(users[0])] == [0, *items.tolist()]
    assert by_user[int(users[1])] == [0, *split.log.items.encode(np.array([12, 13, 14, 15, 16])).tolist()]
    # targets 2..6 are skip, complete, play, skip, play; padding weighs 0 and is not positive
    assert batch["target_weight"].tolist() == [[0.0, 0.5, 2.0, 1.0, 0.5, 1.0]] * 2
    assert batch["target_positive"].tolist() == [[False, False, True, True, False, True]] * 2
