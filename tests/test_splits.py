"""Splits: sizes, time order, no leakage into training or popularity, and the seen items they hand over."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from marquee.data.build import build_log
from marquee.data.errors import DataError
from marquee.data.events import EventSchema
from marquee.data.loaders.movielens import MovieLens100K
from marquee.data.splits import ItemHoldout, LeaveOneOut, TemporalSplit, UserHoldout
from tests.helpers import make_log

PLAY_SKIP = EventSchema(types={"play": 1.0, "skip": {"weight": 1.0, "positive": False}})


@pytest.fixture(scope="module")
def ml100k(shared_data):
    return build_log(MovieLens100K(shared_data / "ml-100k", download=False).load(), EventSchema({"rating": 1.0}))


def test_leave_one_out_on_ml100k_holds_out_one_val_and_one_test_per_user(ml100k):
    split = LeaveOneOut()(ml100k)
    assert len(split.val) == len(split.test) == 943
    assert split.val["user_id"].is_unique and split.test["user_id"].is_unique
    assert len(split.train) + len(split.val) + len(split.test) == 100_000
    last_train = split.train.groupby("user_id")["timestamp"].max()
    val_ts = split.val.set_index("user_id")["timestamp"]
    test_ts = split.test.set_index("user_id")["timestamp"]
    assert (val_ts >= last_train.reindex(val_ts.index)).all()
    assert (test_ts >= val_ts.reindex(test_ts.index)).all()


def test_popularity_counts_training_rows_only(ml100k):
    split = LeaveOneOut()(ml100k)
    assert split.item_counts.sum() == len(split.train)
    np.testing.assert_array_equal(split.item_counts, np.bincount(split.train["item_id"], minlength=ml100k.n_items + 1))
    only_in_test = set(split.test["item_id"]) - set(split.train["item_id"]) - set(split.val["item_id"])
    assert only_in_test and all(split.item_counts[i] == 0 for i in only_in_test)


def test_changing_test_rows_changes_nothing_training_can_see(ml100k):
    split = LeaveOneOut()(ml100k)
    tampered = ml100k.interactions.copy()
    test_rows = split.test.index
    tampered.loc[test_rows, "item_id"] = 50  # every user's test item becomes the same title
    ml_tampered = type(ml100k)(**{**ml100k.__dict__, "interactions": tampered})
    other = LeaveOneOut()(ml_tampered)
    pd.testing.assert_frame_equal(other.train, split.train)
    np.testing.assert_array_equal(other.item_counts, split.item_counts)
    np.testing.assert_array_equal(other.seen("test").indices, split.seen("test").indices)
    assert (other.test["item_id"] == 50).all()


def test_vocabulary_ids_do_not_depend_on_how_often_items_occur():
    rare_first = make_log([(1, "b", 1), (1, "a", 2), (2, "b", 1), (3, "b", 1)])
    frequent_first = make_log([(1, "a", 1), (1, "b", 2), (2, "a", 1), (3, "a", 1)])
    assert rare_first.items == frequent_first.items


def test_seen_items_cover_history_before_each_stage(ml100k):
    split = LeaveOneOut()(ml100k)
    user = int(split.test["user_id"].iloc[0])
    train_items = set(split.train.loc[split.train.user_id == user, "item_id"])
    val_item = int(split.val.loc[split.val.user_id == user, "item_id"].iloc[0])
    assert set(split.seen("val").items_of(user)) == train_items
    assert set(split.seen("test").items_of(user)) == train_items | {val_item}
    import torch

    mask = split.seen("test").mask(torch.tensor([user]))
    assert set(torch.nonzero(mask[0]).flatten().tolist()) == train_items | {val_item}


def test_short_users_train_only_and_are_not_evaluated():
    log = make_log([(1, "a", 1), (1, "b", 2), (2, "a", 1), (2, "b", 2), (2, "c", 3)])
    split = LeaveOneOut()(log)
    assert split.test["user_id"].tolist() == [2] and split.val["user_id"].tolist() == [2]
    assert (split.train["user_id"] == 1).sum() == 2


def test_ties_in_time_do_not_follow_the_file_order():
    rows = [(1, "a", 5), (1, "c", 5), (1, "b", 5)]
    held_out = set()
    for permutation in itertools.permutations(rows):
        log = make_log(list(permutation))
        split = LeaveOneOut()(log)
        held_out.add(tuple(log.items.decode(np.r_[split.val["item_id"], split.test["item_id"]])))
    assert len(held_out) == 1  # in file order six permutations would hold out six different pairs


def test_temporal_split_orders_parts_in_time(ml100k):
    split = TemporalSplit(val_quantile=0.8, test_quantile=0.9)(ml100k)
    assert split.train["timestamp"].max() < split.val["timestamp"].min()
    assert split.val["timestamp"].max() < split.test["timestamp"].min()
    assert len(split.train) + len(split.val) + len(split.test) == len(ml100k)
    assert 0.07 < len(split.test) / len(ml100k) < 0.13


def test_temporal_split_at_given_cut_points():
    log = make_log([(1, "a", 1), (1, "b", 5), (2, "a", 6), (2, "c", 10)])
    split = TemporalSplit(val_start=5, test_start=10)(log)
    assert split.train["timestamp"].tolist() == [1]
    assert sorted(split.val["timestamp"]) == [5, 6] and split.test["timestamp"].tolist() == [10]


def test_temporal_split_refuses_logs_without_real_time():
    log = make_log([(1, "a", 0), (1, "b", 1), (2, "a", 0)])
    log.ordinal_time = True
    with pytest.raises(DataError, match="needs real times"):
        TemporalSplit()(log)


def test_user_holdout_keeps_held_out_users_out_of_training(ml100k):
    split = UserHoldout(val_fraction=0.1, test_fraction=0.1, fold_in=3, seed=1)(ml100k)
    held_out = set(split.test["user_id"]) | set(split.val["user_id"])
    assert not held_out & set(split.train["user_id"])
    assert split.test["user_id"].nunique() == round(0.1 * 943)
    user = int(split.test["user_id"].iloc[0])
    first3 = ml100k.interactions[ml100k.interactions.user_id == user].iloc[:3]
    assert set(split.seen("test").items_of(user)) == set(first3["item_id"])
    assert split.test_fold_in.groupby("user_id").size().max() == 3
    again = UserHoldout(val_fraction=0.1, test_fraction=0.1, fold_in=3, seed=1)(ml100k)
    pd.testing.assert_frame_equal(again.test, split.test)


def _raw_items(log, frame: pd.DataFrame) -> list[str]:
    return log.items.decode(frame["item_id"].to_numpy()).tolist()


def test_leave_one_out_holds_out_the_last_two_positive_events_and_places_skips_with_the_next_positive():
    # user 1: g (skip), a, b, c (second-last play), d (skip), e (last play), f (skip)
    kinds = [("g", "skip"), ("a", "play"), ("b", "play"), ("c", "play"), ("d", "skip"), ("e", "play"), ("f", "skip")]
    rows = [(1, item, t, kind, 1.0) for t, (item, kind) in enumerate(kinds)]
    rows += [(2, "a", 0, "play", 1.0), (2, "b", 1, "skip", 1.0), (2, "c", 2, "skip", 1.0), (2, "e", 3, "play", 1.0)]
    log = make_log(rows, events=PLAY_SKIP)
    split = LeaveOneOut()(log)
    one = log.users.encode(np.array([1]))[0]
    train_1 = split.train[split.train["user_id"] == one]
    # the skip after the last play is a test row, never seen by training and never a target
    assert _raw_items(log, train_1) == ["g", "a", "b"]
    assert _raw_items(log, split.test) == ["e", "f"] and _raw_items(log, split.targets("test")) == ["e"]
    # the skip between the second-last and last play is a validation row (history for test), not a target
    assert _raw_items(log, split.val) == ["c", "d"] and _raw_items(log, split.targets("val")) == ["c"]
    history = split.history("test")
    assert _raw_items(log, history[history["user_id"] == one]) == ["g", "a", "b", "c", "d"]
    # user 2 has two plays only (skips do not count toward min_interactions): all training, not evaluated
    assert (split.train["user_id"] != one).sum() == 4
    assert set(split.val["user_id"]) == set(split.test["user_id"]) == {one}
    # popularity counts training plays only: a twice (users 1 and 2), b and e once (user 1, user 2); skips count nothing
    counts = dict(zip(log.items.raw_ids, split.item_counts[1:].tolist()))
    assert counts == {"a": 2, "b": 1, "c": 0, "d": 0, "e": 1, "f": 0, "g": 0}


def test_item_holdout_keeps_every_row_of_a_held_out_item_out_of_training():
    rows = [(u, i, t) for u in range(1, 6) for t, i in enumerate(range(1, 11))]
    log = make_log(rows)
    split = ItemHoldout(val_fraction=0.1, test_fraction=0.2, seed=0)(log)
    cold = ItemHoldout.items(split, "test")
    assert isinstance(cold, np.ndarray) and len(cold) == 2 and (np.diff(cold) > 0).all()
    val_cold = ItemHoldout.items(split, "val")
    assert len(val_cold) == 1 and not set(val_cold) & set(cold)
    assert not split.train["item_id"].isin([*cold, *val_cold]).any()
    assert set(split.test["item_id"]) == set(cold) and len(split.test) == 5 * 2  # every user's rows with them
    assert split.item_counts[cold].sum() == 0 and len(split.train) == 5 * 7
