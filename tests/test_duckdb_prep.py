"""The out-of-core (DuckDB) preparation gives the pandas path's log and split exactly, and its errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

duckdb = pytest.importorskip("duckdb", reason="the out-of-core engine needs the scale extra: pip install '.[scale]'")

from marquee.data import duckdb_prep
from marquee.data.duckdb_splits import PARTS, quantile
from marquee.data.errors import DataError
from marquee.data.pipeline import load_log, prepare_split
from marquee.data.splits import Split
from marquee.data.synthetic import SyntheticConfig, generate_frame
from marquee.errors import ConfigError
from tests.conftest import CONFIG_DIR

SPLITS = {"leave_one_out": "marquee.data.splits.LeaveOneOut", "temporal": "marquee.data.splits.TemporalSplit",
          "user_holdout": "marquee.data.splits.UserHoldout", "item_holdout": "marquee.data.splits.ItemHoldout"}
TYPES = {"play": 1.0, "complete": 2.0, "skip": {"weight": 1.0, "positive": False}}
FILE_COLUMNS = {"user_id": "member", "item_id": "title", "timestamp": "ts", "event": "action", "value": "watched",
                "device": "platform"}


def assert_same_split(a: Split, b: Split) -> None:
    """Same vocabularies, log rows in the same order, the same rows in every part and the same seen sets."""
    for kind in ("users", "items"):
        va, vb = getattr(a.log, kind), getattr(b.log, kind)
        assert va == vb and va.raw_ids.dtype == vb.raw_ids.dtype, kind
    pd.testing.assert_frame_equal(a.log.interactions, b.log.interactions)
    assert a.log.fingerprint == b.log.fingerprint and a.strategy == b.strategy
    for part in PARTS:
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), obj=part)
    for stage in ("val", "test"):
        np.testing.assert_array_equal(a.seen(stage).indptr, b.seen(stage).indptr)
        np.testing.assert_array_equal(a.seen(stage).indices, b.seen(stage).indices)
    pd.testing.assert_frame_equal(a.log.item_meta, b.log.item_meta)
    pd.testing.assert_frame_equal(a.log.user_meta, b.log.user_meta)


@pytest.fixture(scope="module")
def plays() -> pd.DataFrame:
    """A synthetic streaming log made hard: coarse times (many ties), exact duplicates, repeated pairs, missing
    devices, shuffled rows."""
    frame = generate_frame(SyntheticConfig(n_users=80, n_items=40, n_interactions=4000, seed=3))[0]
    rng = np.random.default_rng(0)
    frame["timestamp"] = frame["timestamp"] // 7200 * 7200  # events within two hours tie
    frame["device"] = frame["device"].astype(object).where(rng.random(len(frame)) > 0.05, None)
    repeats = frame.sample(200, random_state=1).assign(timestamp=lambda f: f["timestamp"] + 86_400)
    frame = pd.concat([frame, frame.sample(150, random_state=2), repeats])  # exact duplicates, repeated pairs
    frame = frame.sample(frac=1.0, random_state=4).reset_index(drop=True)
    return frame[["user_id", "item_id", "timestamp", "event", "value", "device"]].astype({"event": str})


def write_log(frame: pd.DataFrame, path: Path, string_ids: bool = False) -> Path:
    """``frame`` under the file's own column names, as CSV or Parquet by ``path``'s suffix."""
    out = frame.rename(columns=FILE_COLUMNS)
    if string_ids:  # ids whose order is by code point: upper case before lower, accents last
        out["member"] = [f"{'Zaé'[u % 3]}{u}" for u in out["member"]]
        out["title"] = [f"t{'éa'[i % 2]}{i}" for i in out["title"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        out.to_parquet(path, index=False)
    else:
        out.to_csv(path, index=False)
    return path


def data_cfg(path: Path, engine: str, cache: Path, split: str = "leave_one_out", filters: dict | None = None,
             timezone: str | None = None, **source):
    return OmegaConf.create({
        "name": "plays", "timezone": timezone,
        "source": {"_target_": "marquee.data.loaders.tabular.TabularLog", "path": str(path), "name": "plays",
                   "columns": {k: v for k, v in FILE_COLUMNS.items() if k != "device"},
                   "context": {"device": FILE_COLUMNS["device"]}, "timezone": timezone, **source},
        "events": {"_target_": "marquee.data.events.EventSchema", "types": TYPES, "value": "fraction"},
        "filters": {"_target_": "marquee.data.filters.Filters", **(filters or {})},
        "split": {"_target_": SPLITS[split]},
        "engine": engine, "duckdb": {"cache_dir": str(cache), "memory_limit": "256MB", "threads": 1},
    })


def both(path: Path, tmp_path: Path, **kwargs) -> tuple[Split, Split]:
    return (prepare_split(data_cfg(path, "pandas", tmp_path / "prepared", **kwargs)),
            prepare_split(data_cfg(path, "duckdb", tmp_path / "prepared", **kwargs)))


# --- the same split ---------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "string_ids", "split", "filters", "timezone"), [
    (".csv", False, "leave_one_out", {}, None),
    (".csv", True, "temporal", {}, "Europe/Berlin"),
    (".parquet", True, "leave_one_out", {"dedup": "keep_last", "user_core": 5, "item_core": 5}, None),
    (".parquet", False, "temporal", {"min_value": 0.2, "dedup": "keep_first"}, "America/New_York"),
    (".csv", False, "user_holdout", {"item_core": 3}, None),
    (".parquet", False, "item_holdout", {}, None),
])
def test_duckdb_gives_the_pandas_split(plays, tmp_path, suffix, string_ids, split, filters, timezone):
    path = write_log(plays, tmp_path / f"plays{suffix}", string_ids)
    pandas_split, duckdb_split = both(path, tmp_path, split=split, filters=filters, timezone=timezone,
                                      id_type="str" if string_ids else "int")
    assert_same_split(pandas_split, duckdb_split)
    assert (tmp_path / "prepared").is_dir() and len(duckdb_split.val) and len(duckdb_split.test)


def test_the_split_does_not_depend_on_the_file_order(plays, tmp_path):
    first = prepare_split(data_cfg(write_log(plays, tmp_path / "a.csv"), "duckdb", tmp_path / "prepared"))
    shuffled = write_log(plays.sample(frac=1.0, random_state=9), tmp_path / "b.csv")
    assert_same_split(first, prepare_split(data_cfg(shuffled, "duckdb", tmp_path / "prepared")))


def test_synthetic_parquet_and_its_metadata(tmp_path):
    source = {"_target_": "marquee.data.loaders.synthetic.SyntheticLog", "cache_dir": str(tmp_path / "synthetic"),
              "n_users": 60, "n_items": 30, "n_interactions": 2000}
    splits = []
    for engine in ("pandas", "duckdb"):
        cfg = OmegaConf.create({"name": "synthetic", "source": source, "split": {"_target_": SPLITS["leave_one_out"]},
                                "events": {"_target_": "marquee.data.events.EventSchema", "types": TYPES},
                                "engine": engine, "duckdb": {"cache_dir": str(tmp_path / "prepared"), "threads": 1}})
        splits.append(prepare_split(cfg))
    assert_same_split(*splits)
    assert splits[1].log.item_meta["genres"].map(len).gt(0).all() and len(splits[1].log.user_meta.columns)


@pytest.mark.parametrize("split", ["leave_one_out", "temporal"])
def test_ml100k_duckdb_gives_the_pandas_split(shared_data, split, tmp_path):
    overrides = [f"data/split={split}", f"data.duckdb.cache_dir={tmp_path}", "data.duckdb.threads=1"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = {e: compose("train", overrides=[f"data.engine={e}", *overrides]).data for e in ("pandas", "duckdb")}
    assert_same_split(prepare_split(cfg["pandas"]), prepare_split(cfg["duckdb"]))


def test_quantile_is_pandas_to_the_last_bit():
    rng = np.random.default_rng(0)
    con = duckdb.connect()
    for n in (1, 2, 3, 10, 997, 5000):
        ts = pd.Series(rng.integers(0, 2**40, n), dtype=np.int64)
        con.register("ts_frame", ts.to_frame("timestamp"))
        con.execute("CREATE OR REPLACE TABLE encoded AS SELECT * FROM ts_frame")
        for q in (0.0, 0.1, 0.33, 0.5, 0.8, 0.9, 0.999, 1.0):
            assert quantile(con, q) == ts.quantile(q), (n, q)


# --- the prepared folder ----------------------------------------------------------------------


def test_a_prepared_log_is_reused_until_the_file_changes(plays, tmp_path, monkeypatch):
    path = write_log(plays, tmp_path / "plays.csv")
    first = prepare_split(data_cfg(path, "duckdb", tmp_path / "prepared"))
    built = duckdb_prep._build
    monkeypatch.setattr(duckdb_prep, "_build", lambda *a: pytest.fail("prepared again although nothing changed"))
    assert_same_split(first, prepare_split(data_cfg(path, "duckdb", tmp_path / "prepared")))
    write_log(plays.iloc[:-10], path)  # another file under the same name
    monkeypatch.setattr(duckdb_prep, "_build", built)
    again = prepare_split(data_cfg(path, "duckdb", tmp_path / "prepared"))
    assert len(again.log) < len(first.log) and len(list((tmp_path / "prepared").iterdir())) == 2


def test_auto_picks_duckdb_above_the_threshold_only(plays, tmp_path):
    path = write_log(plays, tmp_path / "plays.csv")
    cfg = data_cfg(path, "auto", tmp_path / "prepared")
    load_log(cfg)
    assert not (tmp_path / "prepared").exists()
    cfg.duckdb.auto_threshold_mb = 0
    load_log(cfg)
    assert len(list((tmp_path / "prepared").iterdir())) == 1


def test_what_duckdb_cannot_read_goes_to_pandas_under_auto_and_stops_under_duckdb(tmp_path):
    path = tmp_path / "iso.csv"
    path.write_text("member,title,ts,action,watched,platform\n1,2,2024-03-01T21:15:00+09:00,play,0.5,tv\n"
                    "1,3,2024-03-02T21:15:00+09:00,play,0.5,tv\n")
    cfg = data_cfg(path, "auto", tmp_path / "prepared", timestamp_unit="iso")
    cfg.duckdb.auto_threshold_mb = 0
    assert len(load_log(cfg)) == 2
    cfg.engine = "duckdb"
    with pytest.raises(ConfigError, match="data.engine: duckdb cannot prepare this data: timestamp_unit=iso"):
        load_log(cfg)
    cfg.engine = "spark"
    with pytest.raises(ConfigError, match="data.engine: expected one of"):
        load_log(cfg)


# --- the same errors --------------------------------------------------------------------------

HEADER = "member,title,ts,action,watched,platform\n"
GOOD = "1,10,100,play,0.5,tv\n2,11,200,skip,0.0,\n"


@pytest.mark.parametrize(("text", "fragment"), [
    ("member,title,action,watched,platform\n1,10,play,0.5,tv\n", "missing column(s) ['ts']"),
    (HEADER + GOOD + "3,,300,play,0.5,tv\n", "line 4, column 'title': missing value"),
    (HEADER + GOOD + "3,12,yesterday,play,0.5,tv\n", "'yesterday' is not a number; set timestamp_unit: iso"),
    (HEADER + GOOD + "3,1.5,300,play,0.5,tv\n", "'1.5' is not an integer; set id_type: str"),
    (HEADER + GOOD + "3,12,300,like,0.5,tv\n", "line 4, column 'event': unknown event 'like'"),
    (HEADER + GOOD + "3,12,300,play,1.5,tv\n", "1.5 is not a valid value for a 'play' event"),
    (HEADER + GOOD + "3,12,300,play,inf,tv\n", "'inf' is not a number"),
    (HEADER + "1,10,100,play,0.5,tv\n\n2,11,200,skip,0.0,tv\n", "line 3, column 'member': missing value"),
    ("", "the file is empty"),
    (HEADER, "the file has no data rows"),
])
def test_bad_input_stops_with_the_pandas_error(tmp_path, text, fragment):
    path = tmp_path / "log.csv"
    path.write_text(text)
    messages = []
    for engine in ("pandas", "duckdb"):
        with pytest.raises(DataError) as err:
            load_log(data_cfg(path, engine, tmp_path / "prepared"))
        messages.append(str(err.value))
    assert messages[0] == messages[1] and fragment in messages[1], messages


@pytest.mark.parametrize(("text", "fragment"), [
    ("1\t2\t3\t881250949\n1,3,4,881250950\n", ("line 2, column 'item_id': expected 4 fields separated by '\\t', "
                                              "found fewer; the line seems comma-separated")),
    ("1\t2\t3\t881250949\n1\t3\t4\t881250950\t7\n", "line 2: expected 4 fields separated by '\\t', found more"),
    ("1\t2\t3\t881250949\n1\t3\tx\t881250950\n", "line 2, column 'value': 'x' is not a number"),
])
def test_bad_headerless_ratings_stop_with_the_pandas_error(tmp_path, text, fragment):
    (tmp_path / "u.data").write_text(text)
    (tmp_path / "u.item").write_text("1|Heat (1995)|01-Jan-1995||http://x" + "|0" * 8 + "|1" + "|0" * 10 + "\n")
    messages = []
    for engine in ("pandas", "duckdb"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[f"data.source.root={tmp_path}", "+data.source.download=false",
                                              f"data.engine={engine}", f"data.duckdb.cache_dir={tmp_path / 'prep'}"])
        with pytest.raises(DataError) as err:
            load_log(cfg.data)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and fragment in messages[1], messages
