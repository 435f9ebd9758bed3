"""Traps that gave wrong numbers without a warning: tie order, time zones, impossible values, masked repeats."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from marquee.config_dir import CONFIG_DIR
from marquee.data.build import build_log
from marquee.data.errors import DataError
from marquee.data.events import EventSchema
from marquee.data.filters import Filters
from marquee.data.loaders.movielens import MovieLens100K
from marquee.data.loaders.tabular import TabularLog
from marquee.data.pipeline import load_log
from marquee.data.raw import RawLog
from marquee.data.sequences import UserSequences
from marquee.data.splits import LeaveOneOut, TemporalSplit, UserHoldout
from marquee.data.summary import REPEAT_WARN_SHARE, split_summary
from tests.helpers import make_log, make_raw

PLAY_SKIP = EventSchema(types={"play": 1.0, "skip": {"weight": 1.0, "positive": False}})


def _data_cfg(tmp_path: Path, data: str, *overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[f"data={data}", f"paths.data_dir={tmp_path}", *overrides]).data


def _tabular(path: Path, columns: dict[str, str] | None = None, **kwargs) -> TabularLog:
    return TabularLog(path, "mine", {"user_id": "user", "item_id": "item", "timestamp": "ts", **(columns or {})},
                      **kwargs)


# --- 1. events in the same second: an order of the rows, not of the file ---------------------------------


def _tied_rows() -> list[tuple]:
    """Three users whose last events share a second; user 3 plays and skips the same title in one second."""
    return [
        (1, "a", 1, "play", 1.0), (1, "b", 2, "play", 1.0), (1, "c", 9, "play", 1.0), (1, "d", 9, "play", 1.0),
        (1, "e", 9, "play", 1.0), (2, "a", 3, "play", 1.0), (2, "c", 3, "play", 1.0), (2, "e", 3, "play", 1.0),
        (2, "b", 7, "skip", 1.0), (2, "d", 7, "play", 1.0), (3, "a", 4, "play", 1.0), (3, "b", 4, "skip", 1.0),
        (3, "b", 4, "play", 0.5), (3, "c", 5, "play", 1.0), (3, "d", 5, "play", 1.0),
    ]  # fmt: skip


def _fingerprint_of_everything(rows: list[tuple]) -> dict[str, object]:
    """Every ordered thing a split hands over, as plain lists."""
    log = make_log(rows, events=PLAY_SKIP)
    out: dict[str, object] = {"log": log.interactions.to_dict("list"), "fingerprint": log.fingerprint}
    for name, split in (("loo", LeaveOneOut()(log)), ("temporal", TemporalSplit(val_start=5, test_start=9)(log)),
                        ("users", UserHoldout(val_fraction=0.34, test_fraction=0.34, fold_in=2)(log))):
        for stage in ("val", "test"):
            targets = split.targets(stage)
            out[f"{name}/{stage}"] = list(zip(targets["user_id"], targets["item_id"], strict=True))
            sequences = UserSequences.from_frame(split.history(stage), log.n_users)
            out[f"{name}/{stage}/history"] = (sequences.indptr.tolist(), sequences.items.tolist())
    return out


def test_shuffled_rows_give_the_same_log_splits_and_sequences():
    rows = _tied_rows()
    reference = _fingerprint_of_everything(rows)
    rng = np.random.default_rng(0)
    for _ in range(6):
        shuffled = [rows[i] for i in rng.permutation(len(rows))]
        assert _fingerprint_of_everything(shuffled) == reference


def test_dedup_keeps_the_same_row_whatever_the_file_order():
    rows = [(1, "a", 1, "play", 0.2), (1, "a", 1, "play", 0.9), (1, "b", 2, "play", 1.0)]
    for keep in ("keep_first", "keep_last"):
        kept = {tuple(make_log(order, events=PLAY_SKIP, filters=Filters(dedup=keep)).interactions["value"])
                for order in (rows, rows[::-1], [rows[1], rows[2], rows[0]])}
        assert len(kept) == 1


def test_a_tie_does_not_always_hold_out_the_largest_item_id():
    # ordering ties by item id would make "b" every user's test target; the tie-break must not favour an id
    rows = [(u, item, t) for u in range(60) for item, t in (("x", 1), ("y", 2), ("a", 5), ("b", 5))]
    log = make_log(rows)
    split = LeaveOneOut()(log)
    held_out = log.items.decode(split.test["item_id"].to_numpy())
    assert set(held_out) == {"a", "b"}
    assert 15 < (held_out == "a").sum() < 45


def test_ml100k_leave_one_out_does_not_depend_on_the_row_order(shared_data):
    raw = MovieLens100K(shared_data / "ml-100k", download=False).load()
    events = EventSchema(types={"rating": 1.0})
    first = LeaveOneOut()(build_log(raw, events))
    shuffled = raw.interactions.sample(frac=1.0, random_state=1)
    second = LeaveOneOut()(build_log(RawLog(raw.name, shuffled, raw.source, raw.line_offset), events))
    for stage in ("val", "test"):
        pd.testing.assert_frame_equal(first.targets(stage), second.targets(stage))
    pd.testing.assert_frame_equal(first.train, second.train)


# --- 2. hour and weekday on the member's clock, order on absolute time -----------------------------------


def test_an_iso_offset_gives_local_hour_and_weekday(tmp_path):
    path = tmp_path / "log.csv"
    # 23:30 in Tokyo is 14:30 UTC; 01:30 on Monday 4 March in Tokyo is still Sunday 3 March in UTC
    pd.DataFrame({"user": [1, 1], "item": [1, 2],
                  "ts": ["2024-03-01T23:30:00+09:00", "2024-03-04T01:30:00+09:00"]}).to_csv(path, index=False)
    log = build_log(_tabular(path, timestamp_unit="iso").load())
    assert log.interactions["hour"].tolist() == [23, 1]
    assert log.interactions["dow"].tolist() == [4, 0]  # Friday, Monday (Monday is 0)
    assert log.interactions["timestamp"].tolist() == [int(pd.Timestamp("2024-03-01T14:30Z").timestamp()),
                                                      int(pd.Timestamp("2024-03-03T16:30Z").timestamp())]


@pytest.mark.parametrize("text", ["2024-03-01T23:30:00+09:00", "2024-03-01 23:30:00.250 +0900", "2024-03-01T23:30+09",
                                  "20240301T233000+0900"])
def test_every_iso_offset_form_is_read(tmp_path, text):
    path = tmp_path / "log.csv"
    pd.DataFrame({"user": [1, 1], "item": [1, 2], "ts": [text, "2024-03-01T14:00:00Z"]}).to_csv(path, index=False)
    frame = build_log(_tabular(path, timestamp_unit="iso").load()).interactions
    assert frame["hour"].tolist() == [14, 23]  # 14:00Z first, then 23:30 in Tokyo = 14:30Z
    assert frame["timestamp"].iloc[1] == int(pd.Timestamp("2024-03-01T14:30Z").timestamp())


def test_an_offset_that_cannot_be_read_is_named_not_taken_as_utc(tmp_path):
    path = tmp_path / "log.csv"
    pd.DataFrame({"user": [1, 1], "item": [1, 2], "ts": ["2024-03-01T21:00", "2024-03-01T21:15:00+09:00:00"]}).to_csv(
        path, index=False)
    with pytest.raises(DataError, match=r"line 3, column 'ts': '2024-03-01T21:15:00\+09:00:00' is not an ISO date"):
        _tabular(path, timestamp_unit="iso").load()


def test_a_datetime_column_with_a_zone_gives_local_hours(tmp_path):
    path = tmp_path / "log.parquet"
    when = pd.to_datetime(["2024-03-01 23:30", "2024-03-02 08:00"]).tz_localize("Asia/Tokyo")
    pd.DataFrame({"user": [1, 1], "item": [1, 2], "ts": when}).to_parquet(path)
    log = build_log(_tabular(path).load())
    assert log.interactions["hour"].tolist() == [23, 8]


def test_events_are_ordered_by_absolute_time_across_offsets(tmp_path):
    path = tmp_path / "log.csv"
    # on the wall clocks c (00:00) < b (03:00) < a (10:00); in absolute time a (01:00Z) < b (03:00Z) < c (05:00Z)
    pd.DataFrame({"user": [1, 1, 1, 1], "item": ["c", "b", "a", "z"],
                  "ts": ["2024-03-01T00:00:00-05:00", "2024-03-01T03:00:00Z", "2024-03-01T10:00:00+09:00",
                         "2024-02-01T00:00:00Z"]}).to_csv(path, index=False)
    log = build_log(_tabular(path, timestamp_unit="iso", id_type="str").load())
    assert log.items.decode(log.interactions["item_id"].to_numpy()).tolist() == ["z", "a", "b", "c"]
    assert log.interactions["hour"].tolist() == [0, 10, 3, 0]
    split = LeaveOneOut()(log)
    assert log.items.decode(split.test["item_id"].to_numpy()).tolist() == ["c"]
    assert log.items.decode(split.val["item_id"].to_numpy()).tolist() == ["b"]


def test_a_configured_zone_moves_epoch_hours_but_not_time():
    summer, winter = (int(pd.Timestamp(t, tz="UTC").timestamp()) for t in ("2024-07-01 12:00", "2024-01-01 23:30"))
    raw = make_raw([(1, 1, summer), (1, 2, winter)])
    logs = {zone: build_log(raw, timezone=zone).interactions.set_index("timestamp")
            for zone in (None, "Europe/Berlin", "America/New_York")}
    assert logs[None].loc[[winter, summer], "hour"].tolist() == [23, 12]
    assert logs["Europe/Berlin"].loc[[winter, summer], "hour"].tolist() == [0, 14]  # CET +1, CEST +2
    assert logs["America/New_York"].loc[[winter, summer], "hour"].tolist() == [18, 8]  # EST -5, EDT -4
    # 23:30 UTC on Monday 1 January is already Tuesday in Berlin
    assert logs[None].loc[winter, "dow"] == 0 and logs["Europe/Berlin"].loc[winter, "dow"] == 1
    assert all(frame.index.tolist() == [winter, summer] for frame in logs.values())


def test_data_timezone_reaches_epoch_and_naive_iso_timestamps(tmp_path):
    epoch = int(pd.Timestamp("2024-03-01 12:00", tz="UTC").timestamp())
    pd.DataFrame({"user": [1, 1], "item": [1, 2], "ts": [epoch, epoch + 3600]}).to_csv(tmp_path / "my_log.csv",
                                                                                       index=False)
    log = load_log(_data_cfg(tmp_path, "csv_log", "data.timezone=Asia/Tokyo"))
    assert log.interactions["hour"].tolist() == [21, 22]
    pd.DataFrame({"user": [1], "item": [1], "ts": ["2024-03-01 21:15:00"]}).to_csv(tmp_path / "my_log.csv",
                                                                                  index=False)
    log = load_log(_data_cfg(tmp_path, "csv_log", "data.timezone=Asia/Tokyo", "data.source.timestamp_unit=iso"))
    # a naive time is the wall clock of the zone: hour 21 there, 12:15 UTC in absolute time
    assert log.interactions["hour"].tolist() == [21]
    assert log.interactions["timestamp"].tolist() == [int(pd.Timestamp("2024-03-01 12:15", tz="UTC").timestamp())]


def test_an_unknown_zone_is_named():
    with pytest.raises(DataError, match="unknown time zone 'Europe/Berln'"):
        build_log(make_raw([(1, 1, 1)]), timezone="Europe/Berln")


# --- 3. a value must be possible for its event type -----------------------------------------------------


def _value_log(tmp_path: Path, rows: list[tuple], events: EventSchema) -> Path:
    path = tmp_path / "plays.csv"
    pd.DataFrame(rows, columns=["user", "item", "ts", "action", "amount"]).to_csv(path, index=False)
    raw = _tabular(path, {"event": "action", "value": "amount"}).load()
    build_log(raw, events)
    return path


def test_negative_watch_seconds_name_file_line_and_column(tmp_path):
    events = EventSchema(types={"play": 1.0}, value="seconds")
    with pytest.raises(DataError) as err:
        _value_log(tmp_path, [(1, 1, 1, "play", 30.0), (1, 2, 2, "play", -12.0)], events)
    assert f"file '{tmp_path / 'plays.csv'}', line 3, column 'value'" in str(err.value)
    assert "-12 is not a valid value for a 'play' event: expected seconds >= 0" in str(err.value)
    assert "events.value" in str(err.value)


def test_a_watch_fraction_above_one_is_refused(tmp_path):
    events = EventSchema(types={"play": 1.0}, value="fraction")
    with pytest.raises(DataError, match=r"line 4, column 'value': 1.3 .* a fraction in \[0, 1\]"):
        _value_log(tmp_path, [(1, 1, 1, "play", 0.0), (1, 2, 2, "play", 1.0), (1, 3, 3, "play", 1.3)], events)


def test_a_rating_off_the_ml100k_scale_is_refused_by_the_shipped_config(tmp_path):
    root = tmp_path / "ml-100k"
    root.mkdir()
    (root / "u.data").write_text("1\t1\t5\t881250949\n1\t2\t6\t881250950\n")
    (root / "u.item").write_text("1|Heat (1995)|01-Jan-1995||http://x" + "|0" * 19 + "\n"
                                 "2|Up (2009)|01-Jan-2009||http://x" + "|0" * 19 + "\n")
    with pytest.raises(DataError, match=r"u\.data', line 2, column 'value': 6 .* a rating in \[1, 5\]"):
        load_log(_data_cfg(tmp_path, "ml100k"))


def test_values_inside_their_ranges_pass_and_a_type_may_set_its_own(tmp_path):
    events = EventSchema(types={"play": {"weight": 1.0, "value": "seconds"}, "rating": 1.0},
                         value={"kind": "rating", "min": 1, "max": 5})
    rows = [(1, 1, 1, "play", 0.0), (1, 2, 2, "play", 7200.0), (1, 3, 3, "rating", 1.0), (1, 4, 4, "rating", 5.0)]
    _value_log(tmp_path, rows, events)
    with pytest.raises(DataError, match=r"line 2, .* for a 'rating' event: expected a rating in \[1, 5\]"):
        _value_log(tmp_path, [(1, 1, 1, "rating", 7.0)], events)
    with pytest.raises(DataError, match=r"seconds >= 0 \(fix the row, or change events\.types\.play\.value\)"):
        _value_log(tmp_path, [(1, 1, 1, "play", -1.0)], events)


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "rating"}, "a rating needs min and max"),
    ("minutes", "expected one of ['fraction', 'seconds', 'rating', 'value']"),
    ({"min": 5, "max": 1}, "min (5) is above max (1)"),
])  # fmt: skip
def test_a_bad_value_range_is_named(spec, message):
    with pytest.raises(DataError) as err:
        EventSchema(types={"rating": 1.0}, value=spec)
    assert message in str(err.value) and "events.value" in str(err.value)


# --- 4. targets the evaluator masks as already seen -------------------------------------------------------


def _summary(rows: list[tuple]) -> tuple[dict, list[str]]:
    split = LeaveOneOut()(make_log(rows))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = split_summary(split)
    return summary, [str(w.message) for w in caught if "already seen" in str(w.message)]


def test_rewatched_last_titles_are_counted_and_warned_about():
    # every member's last event rewatches their first title; the validation target is new
    summary, messages = _summary([(u, item, t) for u in range(1, 5) for t, item in enumerate((1, 2, 3, 4, 1))])
    assert (summary["test_repeat_targets"], summary["test_repeat_share"]) == (4, 1.0)
    assert (summary["val_repeat_targets"], summary["val_repeat_share"]) == (0, 0.0)
    assert len(messages) == 1
    assert messages[0].startswith("test: 100.0% of the targets (4 of 4)") and "evaluation.seen=keep" in messages[0]


def test_a_test_target_seen_only_in_validation_is_a_repeat():
    # test repeats the validation title: masked at test (history = train + val) though training never saw it
    summary, messages = _summary([(u, item, t) for u in range(1, 4) for t, item in enumerate((1, 2, 3, 3))])
    assert summary["test_repeat_share"] == 1.0 and summary["val_repeat_share"] == 0.0
    assert [m.split(":")[0] for m in messages] == ["test"]


def test_a_log_without_repeats_reports_zero_and_stays_quiet():
    summary, messages = _summary([(u, item, t) for u in range(1, 5) for t, item in enumerate((1, 2, 3, 4))])
    assert summary["val_repeat_share"] == summary["test_repeat_share"] == 0.0
    assert summary["test_repeat_targets"] == 0 and messages == []


def test_a_few_repeats_below_the_threshold_are_counted_without_a_warning():
    # 1 of 40 test targets repeats: 2.5% < the 5% threshold
    rows = [(u, item, t) for u in range(1, 41) for t, item in enumerate((1, 2, 3, 4 if u > 1 else 1))]
    summary, messages = _summary(rows)
    assert summary["test_repeat_targets"] == 1 and summary["test_repeat_share"] < REPEAT_WARN_SHARE
    assert messages == []
