"""Impression logs: bad propensities are refused with the row and column; OBD and artwork logs load as written;
the documented format (docs/impression_log.md) is the one the writer and reader use."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marquee.bandits.artwork_logs import (
    LISTS,
    OPTIONAL,
    SCALARS,
    SCHEMA,
    artwork_frame,
    read_artwork_log,
    write_artwork_log,
)
from marquee.bandits.logs import BanditLog, Candidates
from marquee.bandits.obd import load_obd, position_columns
from marquee.bandits.simulator import ArtworkSimulator
from marquee.data.errors import DataError

BAD_PROPENSITIES = [(0.0, "zero or negative"), (-0.2, "zero or negative"), (np.nan, "missing"), (None, "missing"),
                    (1.5, "above 1")]


def _tiny_log(propensity) -> BanditLog:
    return BanditLog(context=np.zeros((3, 1)), candidates=Candidates(np.array([[0, 1]] * 3), np.eye(2)),
                     action=np.array([0, 1, 0]), propensity=np.array(propensity, dtype=object), reward=np.zeros(3),
                     source="tiny")


@pytest.mark.parametrize(("bad", "what"), BAD_PROPENSITIES)
def test_bandit_log_refuses_bad_propensity_naming_row_and_column(bad, what):
    with pytest.raises(DataError) as err:
        _tiny_log([0.5, bad, 0.5])
    assert "tiny, row 1, column 'propensity'" in str(err.value) and what in str(err.value)


def test_bandit_log_accepts_propensity_one_and_refuses_a_slot_without_an_arm():
    assert _tiny_log([1.0, 0.5, 0.5]).propensity[0] == 1.0
    with pytest.raises(DataError, match="row 2, column 'action'.*holds no candidate"):
        BanditLog(np.zeros((3, 1)), Candidates(np.array([[0, 1], [0, 1], [0, -1]]), np.eye(2)), np.array([0, 1, 1]),
                  np.full(3, 0.5), np.zeros(3))


def _obd_copy(shared_data: Path, tmp_path: Path, row: int, propensity: str) -> Path:
    """The random/men OBD sample with one propensity replaced, in the loader's folder layout."""
    source = shared_data / "obd" / "random" / "men"
    target = tmp_path / "random" / "men"
    target.mkdir(parents=True)
    (target / "item_context.csv").write_bytes((source / "item_context.csv").read_bytes())
    frame = pd.read_csv(source / "men.csv", dtype=str, keep_default_na=False)
    frame.loc[row, "propensity_score"] = propensity
    frame.to_csv(target / "men.csv", index=False)
    return target / "men.csv"


def test_obd_sample_loads_with_positions_in_the_context(shared_data):
    log = load_obd(shared_data / "obd", "random", "all")
    assert len(log) == 10_000 and log.candidates.ids.shape == (10_000, 80) and log.candidates.table.shape[0] == 80
    assert np.allclose(log.propensity, 1 / 80) and log.reward.sum() == 38
    onehot = log.context[:, position_columns(log.context_names)]
    assert np.array_equal(onehot.argmax(axis=1), log.position) and np.allclose(onehot.sum(axis=1), 1.0)
    bts = load_obd(shared_data / "obd", "bts", "men")
    assert bts.candidates.n_slots == 34 and bts.propensity.max() < 1 and abs(bts.reward.mean() - 0.0069) < 1e-12


@pytest.mark.parametrize(("value", "what"), [("0.0", "zero or negative"), ("", "missing"), ("1.2", "above 1"),
                                             ("abc", "missing or not a number")])
def test_obd_loader_names_file_line_and_column_of_a_bad_propensity(shared_data, tmp_path, value, what):
    path = _obd_copy(shared_data, tmp_path, row=41, propensity=value)
    with pytest.raises(DataError) as err:
        load_obd(tmp_path, "random", "men")
    assert f"file '{path}', line 43, column 'propensity_score'" in str(err.value) and what in str(err.value)


def test_artwork_log_round_trips_through_parquet(tmp_path):
    sim = ArtworkSimulator.synthetic(n_users=50, n_titles=10)
    log = sim.simulate_log(sim.production_policy(), 300, seed=0)
    path = write_artwork_log(artwork_frame(log, "production v1"), tmp_path / "impressions.parquet", log.context_names)
    back = read_artwork_log(path)
    assert back.context_names == log.context_names and np.allclose(back.context, log.context)
    assert np.array_equal(back.candidates.keys[back.candidates.ids], log.candidates.ids)
    assert np.array_equal(back.candidates.features, log.candidates.features)
    assert np.array_equal(back.action, log.action) and np.array_equal(back.propensity, log.propensity)
    assert np.array_equal(back.reward, log.reward) and (back.meta["policy"] == "production v1").all()
    assert np.array_equal(sim.requests_of(back).title, sim.requests_of(log).title)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("propensity", 0.0, "row 7, column 'propensity': propensity 0.0 is zero or negative"),
    ("propensity", np.nan, "row 7, column 'propensity': propensity nan is missing"),
    ("propensity", 1.01, "row 7, column 'propensity': propensity 1.01 is above 1"),
    ("chosen", 10_000, "row 7, column 'chosen': artwork 10000 is not among the candidate arms"),
])
def test_writing_a_bad_artwork_log_is_refused_before_anything_is_written(tmp_path, column, value, message):
    sim = ArtworkSimulator.synthetic(n_users=50, n_titles=10)
    frame = artwork_frame(sim.simulate_log(sim.production_policy(), 20, seed=0), "production")
    frame.loc[7, column] = value
    path = tmp_path / "impressions.parquet"
    with pytest.raises(DataError, match=message):
        write_artwork_log(frame, path)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_an_artwork_with_two_sets_of_features_is_refused_naming_the_row(tmp_path):
    sim = ArtworkSimulator.synthetic(n_users=50, n_titles=10)
    frame = artwork_frame(sim.simulate_log(sim.production_policy(), 20, seed=0), "production")
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)  # row 20 shows row 0's title again
    frame.at[20, "arm_features"] = [np.ones_like(f) for f in frame.at[20, "arm_features"]]
    with pytest.raises(DataError, match="row 20, column 'arm_features'.*differ from row 0"):
        write_artwork_log(frame, tmp_path / "impressions.parquet")


DOC = Path(__file__).resolve().parents[1] / "docs" / "impression_log.md"


def _doc_example(directory: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """Run the Python example of docs/impression_log.md in ``directory``; return the frame it wrote."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL).group(1)
    monkeypatch.chdir(directory)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102  the page's own example, so that it stays runnable
    return namespace["frame"]


def test_the_documented_example_round_trips_through_the_writer_and_the_bandit_reader(tmp_path, monkeypatch):
    frame = _doc_example(tmp_path, monkeypatch)
    back = read_artwork_log(tmp_path / "impressions.parquet")
    assert back.context_names == ("taste_action", "evening")
    assert np.allclose(back.context, np.array(frame["context"].tolist()))
    arms = [back.candidates.keys[row[row >= 0]].tolist() for row in back.candidates.ids]
    assert arms == frame["arms"].tolist()
    assert [back.candidates.features[i][: len(a)].tolist() for i, a in enumerate(arms)] == frame["arm_features"].tolist()
    assert back.candidates.keys[back.chosen_arm].tolist() == frame["chosen"].tolist()
    assert back.propensity.tolist() == frame["propensity"].tolist() and back.reward.tolist() == frame["reward"].tolist()
    for column in ("impression_id", "timestamp", "user_id", "title_id", "hour", "policy"):
        assert back.meta[column].tolist() == frame[column].tolist(), column
    assert back.position is None  # no row had one


def test_the_documented_columns_are_the_ones_the_writer_and_reader_use():
    rows = re.findall(r"^\| `(\w+)` \| (.+?) \| (required|optional) \|", DOC.read_text(), re.MULTILINE)
    assert [name for name, _, _ in rows] == SCHEMA.names
    assert {name for name, _, need in rows if need == "required"} == set(SCALARS + LISTS)
    assert {name for name, _, need in rows if need == "optional"} == set(OPTIONAL)


def test_the_writer_takes_plain_columns_with_one_feature_array_per_row(tmp_path):
    features = np.array([[0.5, 1.0], [2.0, -1.0]], dtype=np.float32)  # (K, f) for artworks 7 and 8
    columns = {"impression_id": [0, 1], "user_id": [3, 4], "title_id": [1, 1], "context": [[1.0], [0.0]],
               "arms": [[7, 8], [7, 8]], "arm_features": [features, features], "chosen": [8, 7],
               "propensity": [0.5, 0.5], "reward": [0.0, 1.0]}
    back = read_artwork_log(write_artwork_log(columns, tmp_path / "log.parquet"))
    assert np.array_equal(back.candidates.features, np.stack([features, features]))
    assert back.action.tolist() == [1, 0] and back.context_names == ("x0",)


def _written_around_the_writer(tmp_path: Path, change) -> Path:
    """The documented example, changed by ``change(table)`` and saved with plain pyarrow (no checks)."""
    table = pq.read_table(tmp_path / "impressions.parquet")
    path = tmp_path / "changed.parquet"
    pq.write_table(change(table), path)
    return path


def test_the_reader_refuses_a_log_without_a_required_column(tmp_path, monkeypatch):
    _doc_example(tmp_path, monkeypatch)
    path = _written_around_the_writer(tmp_path, lambda t: t.drop(["propensity"]))
    with pytest.raises(DataError, match=re.escape(f"file '{path}': missing required column(s) ['propensity']")):
        read_artwork_log(path)


@pytest.mark.parametrize(("value", "what"), [(0.0, "is zero or negative"), (-0.5, "is zero or negative"),
                                             (1.5, "is above 1"), (None, "is missing")])
def test_the_reader_refuses_a_propensity_outside_zero_one(tmp_path, monkeypatch, value, what):
    _doc_example(tmp_path, monkeypatch)
    column = SCHEMA.names.index("propensity")
    path = _written_around_the_writer(
        tmp_path, lambda t: t.set_column(column, "propensity", pa.array([0.8, value, 0.8], pa.float64())))
    with pytest.raises(DataError, match=re.escape(f"file '{path}', row 1, column 'propensity': propensity ")) as err:
        read_artwork_log(path)
    assert what in str(err.value) and "expected a probability in (0, 1]" in str(err.value)
