"""Building an InteractionLog: drop rules, event mapping, context, encoding and fingerprint."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from marquee.data.build import build_log
from marquee.data.errors import DataError
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from tests.helpers import make_log, make_raw


def test_ids_are_contiguous_in_sorted_raw_order_with_zero_free():
    log = make_log([("u9", "b", 5), ("u1", "c", 1), ("u1", "a", 2)])
    assert log.users.raw_ids.tolist() == ["u1", "u9"]
    assert log.items.raw_ids.tolist() == ["a", "b", "c"]
    assert log.interactions["user_id"].tolist() == [1, 1, 2]
    # sorted by user then time: u1 saw c (t=1) then a (t=2)
    assert log.interactions["item_id"].tolist() == [3, 1, 2]
    assert 0 not in set(log.interactions[["user_id", "item_id"]].to_numpy().ravel())


def test_exact_duplicate_rows_are_dropped_and_counted(caplog):
    with caplog.at_level(logging.WARNING):
        log = make_log([(1, 1, 1), (1, 1, 1), (1, 2, 2), (1, 1, 1)])
    assert len(log) == 2
    assert "dropped 2 duplicate rows" in caplog.text


def test_same_pair_at_other_times_is_not_a_duplicate():
    assert len(make_log([(1, 1, 1), (1, 1, 2)])) == 2


def test_missing_value_in_required_column_names_line_and_column():
    raw = make_raw([(1, 1, 1), (2, None, 2)])
    with pytest.raises(DataError, match=r"toy\.csv', line 3, column 'item_id': missing value"):
        build_log(raw)


def test_non_finite_value_is_refused_with_its_line():
    raw = make_raw([(1, 1, 1, "interaction", 1.0), (2, 2, 2, "interaction", float("inf"))])
    with pytest.raises(DataError, match=r"line 3, column 'value'"):
        build_log(raw)


def test_events_map_through_aliases_and_carry_weights():
    events = EventSchema(types={"play": 1.0, "complete": 2.0, "skip": 0.0}, aliases={"finished": "complete"})
    log = make_log([(1, 1, 1, "play", 0.5), (1, 2, 2, "finished", 1.0), (1, 3, 3, "skip", 0.05)], events=events)
    assert log.interactions["event"].tolist() == ["play", "complete", "skip"]
    codes = log.interactions["event"].cat.codes.to_numpy() + 1
    np.testing.assert_allclose(events.weights()[codes], [1.0, 2.0, 0.0])


def test_event_kinds_say_which_events_are_positive_and_what_each_weighs():
    events = EventSchema(types={"play": 1.0, "complete": 2.0, "skip": {"weight": 0.5, "positive": False}})
    np.testing.assert_allclose(events.weights(), [0.0, 1.0, 2.0, 0.5])  # id 0 is padding
    assert events.positive().tolist() == [False, True, True, False]
    log = make_log([(1, 1, 1, "skip", 1.0), (1, 2, 2, "complete", 1.0), (1, 3, 3, "play", 1.0)], events=events)
    assert events.is_positive(log.interactions["event"]).tolist() == [False, True, True]
    assert EventSchema(types={"play": {"weight": 3.0}}).kinds["play"].positive  # positive unless said otherwise


@pytest.mark.parametrize("types, message", [
    ({"play": 1.0, "skip": {"weight": 1.0, "positve": False}}, r"events\.types\.skip: unknown key\(s\) \['positve'\]"),
    ({"play": -1.0}, r"events\.types\.play: weight must be a finite number >= 0"),
    ({"skip": {"weight": 1.0, "positive": False}}, "no positive event type"),
])
def test_bad_event_kinds_are_refused(types, message):
    with pytest.raises(DataError, match=message):
        EventSchema(types=types)


def test_fingerprint_follows_what_events_mean_not_how_they_are_written():
    rows = [(1, 1, 1, "play", 1.0), (1, 2, 2, "skip", 1.0)]
    plain = make_log(rows, events=EventSchema(types={"play": 1.0, "skip": 1.0})).fingerprint
    spelled_out = make_log(rows, events=EventSchema(types={"play": {"weight": 1.0}, "skip": {"positive": True}}))
    assert spelled_out.fingerprint == plain
    skips = make_log(rows, events=EventSchema(types={"play": 1.0, "skip": {"weight": 1.0, "positive": False}}))
    assert skips.fingerprint != plain


def test_unknown_event_stops_with_line_or_is_dropped_when_configured(caplog):
    rows = [(1, 1, 1, "play", 1.0), (1, 2, 2, "rewind", 1.0)]
    with pytest.raises(DataError, match=r"line 3, column 'event': unknown event 'rewind'"):
        make_log(rows, events=EventSchema(types={"play": 1.0}))
    with caplog.at_level(logging.WARNING):
        log = make_log(rows, events=EventSchema(types={"play": 1.0}, unknown="drop"))
    assert len(log) == 1 and "dropped 1 rows" in caplog.text


def test_hour_and_weekday_are_derived_in_utc():
    # 2021-03-01 was a Monday; 13:05 UTC
    ts = int(pd.Timestamp("2021-03-01 13:05", tz="UTC").timestamp())
    log = make_log([(1, 1, ts), (1, 2, ts + 86_400 * 6)])
    assert log.interactions["hour"].tolist() == [13, 13]
    assert log.interactions["dow"].tolist() == [0, 6]


def test_missing_device_becomes_unknown(caplog):
    with caplog.at_level(logging.WARNING):
        log = make_log([(1, 1, 1), (1, 2, 2)], device=["tv", None])
    assert log.interactions["device"].tolist() == ["tv", "unknown"]
    assert "1 rows without device" in caplog.text


def test_filters_combine_value_threshold_dedup_and_core():
    rows = [(1, "a", 1, "interaction", 5.0), (1, "a", 2, "interaction", 4.0), (1, "b", 3, "interaction", 1.0),
            (1, "c", 4, "interaction", 5.0), (2, "a", 1, "interaction", 5.0), (2, "c", 2, "interaction", 5.0),
            (3, "c", 9, "interaction", 5.0)]
    log = make_log(rows, filters=Filters(min_value=4.0, dedup="keep_last", user_core=2, item_core=2))
    # b goes (value 1); user 1 keeps its later 'a' (t=2); user 3 has one row and goes; a and c keep two users
    assert log.users.raw_ids.tolist() == [1, 2]
    assert log.items.raw_ids.tolist() == ["a", "c"]
    assert log.interactions["timestamp"].tolist() == [2, 4, 1, 2]


def test_k_core_is_iterated_until_stable():
    rows = [(1, "a", 1), (1, "b", 2), (2, "a", 1), (2, "b", 2), (3, "a", 1), (3, "z", 2)]
    log = make_log(rows, filters=Filters(user_core=2, item_core=2))
    # z has one user -> goes; then user 3 has one row -> goes; a and b keep two users each
    assert log.users.raw_ids.tolist() == [1, 2]
    assert log.items.raw_ids.tolist() == ["a", "b"]


def test_filters_that_empty_the_log_stop_with_an_error():
    with pytest.raises(DataError, match="no interactions left after filters"):
        make_log([(1, 1, 1), (2, 2, 1)], filters=Filters(user_core=2))


def test_users_emptied_by_filters_are_dropped_and_counted(caplog):
    rows = [(1, 1, 1, "interaction", 5.0), (2, 1, 1, "interaction", 1.0), (2, 2, 2, "interaction", 2.0)]
    with caplog.at_level(logging.INFO):
        log = make_log(rows, filters=Filters(min_value=4.0))
    assert log.n_users == 1 and log.users.raw_ids.tolist() == [1]
    assert "1 users lost every interaction" in caplog.text


def test_keep_first_keeps_the_earliest_repeat():
    rows = [(1, "a", 5, "interaction", 1.0), (1, "a", 2, "interaction", 2.0), (1, "b", 3, "interaction", 3.0)]
    log = make_log(rows, filters=Filters(dedup="keep_first"))
    assert log.interactions["timestamp"].tolist() == [2, 3]


def test_fingerprint_is_stable_and_changes_with_the_data():
    rows = [(1, 1, 1), (1, 2, 2), (2, 1, 3)]
    assert make_log(rows).fingerprint == make_log(list(reversed(rows))).fingerprint
    assert make_log(rows).fingerprint != make_log(rows[:2] + [(2, 1, 4)]).fingerprint


def test_items_without_metadata_get_empty_genres(caplog):
    raw = make_raw([(1, "a", 1), (1, "b", 2)])
    raw.item_meta = pd.DataFrame({"title": ["A"], "year": [1999], "genres": [["Drama"]]}, index=["a"])
    with caplog.at_level(logging.WARNING):
        log = build_log(raw)
    assert log.item_meta.loc[1, "genres"] == ["Drama"] and log.item_meta.loc[2, "genres"] == []
    assert "1 of 2 items have no metadata" in caplog.text
    indptr, genre_ids = log.item_genre_ids()
    assert indptr.tolist() == [0, 0, 1, 1] and log.genres.decode(genre_ids).tolist() == ["Drama"]
