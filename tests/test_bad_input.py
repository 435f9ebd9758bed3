"""Bad input files stop with a DataError that names the file, the line where there is one, and the column."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from marquee.data.errors import DataError
from marquee.data.loaders.movielens import MovieLens1M, MovieLens100K, MovieLensLatest
from marquee.data.loaders.sasrec import SasrecText
from marquee.data.loaders.tabular import TabularLog

U_ITEM = "1|Heat (1995)|01-Jan-1995||http://x" + "|0" * 8 + "|1" + "|0" * 10 + "\n"
ATOMIC_ITEM = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tHeat\t1995\tDrama\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _error(load: Callable[[], object], *fragments: str) -> str:
    """Run ``load``, expect a DataError, and check that its message holds every fragment."""
    with pytest.raises(DataError) as err:
        load()
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def _tabular(path: Path, **kwargs) -> TabularLog:
    return TabularLog(path, "mine", {"user_id": "user", "item_id": "item", "timestamp": "ts"}, **kwargs)


# --- missing file ----------------------------------------------------------------------------


def test_missing_sasrec_file(tmp_path):
    _error(lambda: SasrecText(tmp_path / "Video.txt").load(), f"file '{tmp_path / 'Video.txt'}' not found", "user id")


def test_missing_ml1m_file_names_it_and_the_download_switch(tmp_path):
    _write(tmp_path / "ratings.dat", "1::2::3::978300760\n")
    _error(lambda: MovieLens1M(tmp_path).load(), f"'{tmp_path / 'movies.dat'}' not found", "download=true")


def test_missing_tabular_file(tmp_path):
    _error(lambda: _tabular(tmp_path / "log.csv").load(), f"'{tmp_path / 'log.csv'}' not found", "'user'")


# --- wrong separator -------------------------------------------------------------------------


def test_comma_separated_u_data_read_as_tab(tmp_path):
    _write(tmp_path / "u.data", "1,2,3,881250949\n")
    _write(tmp_path / "u.item", U_ITEM)
    _error(lambda: MovieLens100K(tmp_path, download=False).load(), "u.data', line 1", "comma-separated")


def test_comma_separated_atomic_file_read_as_tab(tmp_path):
    _write(tmp_path / "ml-100k.inter", "user_id:token,item_id:token,rating:float,timestamp:float\n1,2,3,4\n")
    _write(tmp_path / "ml-100k.item", ATOMIC_ITEM)
    _error(
        lambda: MovieLens100K(tmp_path, download=False).load(), "ml-100k.inter'", "'timestamp:float'", "comma-separated"
    )


def test_tab_separated_csv_given_to_tabular_with_comma(tmp_path):
    path = _write(tmp_path / "log.csv", "user\titem\tts\n1\t2\t3\n")
    _error(
        lambda: _tabular(path, sep=",").load(), "log.csv'", "missing column(s) ['user', 'item', 'ts']", "tab-separated"
    )


def test_surplus_fields_in_headerless_file(tmp_path):
    _write(tmp_path / "u.data", "1\t2\t3\t881250949\t5\n")
    _write(tmp_path / "u.item", U_ITEM)
    _error(lambda: MovieLens100K(tmp_path, download=False).load(), "u.data', line 1", "expected 4 fields", "found more")


# --- missing or misnamed column --------------------------------------------------------------


def test_unknown_context_feature_in_tabular_config_names_the_known_ones(tmp_path):
    path = _write(tmp_path / "log.csv", "user,item,ts,platform\n1,2,3,tv\n")
    _error(lambda: _tabular(path, context={"platfrom": "platform"}).load(),
           "context: unknown key(s) ['platfrom']", "['hour', 'dow', 'device']")


def test_misnamed_column_in_tabular_config(tmp_path):
    path = _write(tmp_path / "log.csv", "user,item,time\n1,2,3\n")
    _error(lambda: _tabular(path).load(), "log.csv'", "missing column(s) ['ts']", "found ['user', 'item', 'time']")


def test_misnamed_column_in_movielens_ratings_csv(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movie_id,rating,timestamp\n1,2,4.0,5\n")
    _write(tmp_path / "movies.csv", "movieId,title,genres\n2,Heat (1995),Drama\n")
    _error(lambda: MovieLensLatest(tmp_path).load(), "ratings.csv'", "missing column(s) ['movieId']")


def test_short_line_in_headerless_file(tmp_path):
    _write(tmp_path / "ratings.dat", "1::2::3::978300760\n1::3::4\n")
    _write(tmp_path / "movies.dat", "2::Heat (1995)::Drama\n")
    _write(tmp_path / "users.dat", "1::F::1::10::48067\n")
    _error(lambda: MovieLens1M(tmp_path).load(), "ratings.dat', line 2", "expected 4 fields")


# --- non-numeric ids -------------------------------------------------------------------------


def test_non_numeric_item_id_in_sasrec_text(tmp_path):
    path = _write(tmp_path / "Video.txt", "1 2\n1 3\n2 abc\n")
    _error(lambda: SasrecText(path).load(), "Video.txt', line 3, column 'item_id'", "'abc' is not an integer")


def test_non_numeric_user_id_in_tabular_suggests_str_ids(tmp_path):
    path = _write(tmp_path / "log.csv", "user,item,ts\n1,2,3\nu_7,2,4\n")
    _error(lambda: _tabular(path).load(), "log.csv', line 3, column 'user'", "'u_7'", "id_type: str")


def test_non_numeric_id_in_movie_metadata(tmp_path):
    _write(tmp_path / "ratings.dat", "1::2::3::978300760\n")
    _write(tmp_path / "movies.dat", "2::Heat (1995)::Drama\nx3::Up (2009)::Animation\n")
    _write(tmp_path / "users.dat", "1::F::1::10::48067\n")
    _error(lambda: MovieLens1M(tmp_path).load(), "movies.dat', line 2, column 'item_id'", "'x3'")


# --- non-numeric timestamps ------------------------------------------------------------------


def test_non_numeric_timestamp_in_u_data(tmp_path):
    _write(tmp_path / "u.data", "1\t1\t3\t881250949\n1\t1\t4\tyesterday\n")
    _write(tmp_path / "u.item", U_ITEM)
    _error(lambda: MovieLens100K(tmp_path, download=False).load(), "u.data', line 2, column 'timestamp'", "'yesterday'")


def test_date_strings_in_a_seconds_column_suggest_iso(tmp_path):
    path = _write(tmp_path / "log.csv", "user,item,ts\n1,2,2024-01-01\n")
    _error(lambda: _tabular(path).load(), "log.csv', line 2, column 'ts'", "'2024-01-01'", "timestamp_unit: iso")


def test_unparseable_iso_timestamp(tmp_path):
    path = _write(tmp_path / "log.csv", "user,item,ts\n1,2,2024-01-01\n1,3,the day after\n")
    _error(lambda: _tabular(path, timestamp_unit="iso").load(), "log.csv', line 3, column 'ts'", "not an ISO date")


# --- missing values in required fields -------------------------------------------------------


def test_empty_rating_in_ratings_csv(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,5\n1,2,,6\n")
    _write(tmp_path / "movies.csv", "movieId,title,genres\n2,Heat (1995),Drama\n")
    _error(lambda: MovieLensLatest(tmp_path).load(), "ratings.csv', line 3, column 'rating'", "missing value")


def test_empty_user_in_tabular_csv(tmp_path):
    path = _write(tmp_path / "log.csv", "user,item,ts\n1,2,3\n,5,6\n")
    _error(lambda: _tabular(path, id_type="str").load(), "log.csv', line 3, column 'user'", "missing value")


def test_empty_item_in_u_data(tmp_path):
    _write(tmp_path / "u.data", "1\t1\t3\t881250949\n2\t\t4\t881250950\n")
    _write(tmp_path / "u.item", U_ITEM)
    _error(lambda: MovieLens100K(tmp_path, download=False).load(), "u.data', line 2, column 'item_id'", "missing value")


def test_nan_value_in_parquet(tmp_path):
    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3], "ts": [1, 2, 3], "w": [1.0, None, 2.0]}).to_parquet(path)
    columns = {"user_id": "user", "item_id": "item", "timestamp": "ts", "value": "w"}
    _error(lambda: TabularLog(path, "mine", columns).load(), "log.parquet', row 2, column 'w'", "missing value")
