"""Loaders read each layout into the RawLog contract, checked through build_log; the fetcher checks what it writes."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marquee.data import download, parsing
from marquee.data.build import build_log
from marquee.data.errors import DataError
from marquee.data.events import EventSchema
from marquee.data.loaders import movielens
from marquee.data.loaders.movielens import GENRES_100K, MovieLens1M, MovieLens100K, MovieLensLatest
from marquee.data.loaders.sasrec import SasrecText

CSV_LOG_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "data" / "csv_log.yaml"
RATING = EventSchema(types={"rating": 1.0})


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


# --- real data -------------------------------------------------------------------------------


def test_ml100k_real_counts_and_genres(shared_data):
    log = build_log(MovieLens100K(shared_data / "ml-100k", download=False).load(), RATING)
    assert (log.n_users, log.n_items, len(log)) == (943, 1682, 100_000)
    assert all(len(g) >= 1 for g in log.item_meta["genres"])
    assert log.item_meta.loc[1, "title"] == "Toy Story" and log.item_meta.loc[1, "year"] == 1995
    assert log.item_meta.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]


def test_video_games_real_counts_and_ordinal_time(shared_data):
    raw = SasrecText(shared_data / "amazon-video-games" / "Video.txt").load()
    log = build_log(raw)
    assert (log.n_users, log.n_items, len(log)) == (31_013, 23_715, 287_107)
    assert log.ordinal_time and "hour" not in log.interactions
    # each user's positions count 0, 1, 2, ... in file order
    first = raw.interactions[raw.interactions["user_id"] == raw.interactions["user_id"].iloc[0]]
    assert first["timestamp"].tolist() == list(range(len(first)))


def test_fast_and_careful_reads_agree(shared_data, monkeypatch):
    fast = MovieLens100K(shared_data / "ml-100k", download=False).load()
    monkeypatch.setattr(parsing, "_read_typed", lambda *args: None)  # force the string-by-string path
    careful = MovieLens100K(shared_data / "ml-100k", download=False).load()
    pd.testing.assert_frame_equal(fast.interactions, careful.interactions)
    assert fast.interactions["timestamp"].dtype == "int64" and fast.line_offset == careful.line_offset == 2


# --- ML-100K: the two layouts give one log ---------------------------------------------------

RATINGS = [
    (1, 10, 4, 881250949),
    (1, 20, 5, 881250950),
    (2, 10, 3, 881250951),
    (2, 30, 1, 881250952),
    (3, 20, 2, 881250953),
]
ITEMS = [  # id, GroupLens title, release date, atomic title, atomic year, genres
    (10, "Toy Story (1995)", "01-Jan-1995", "Toy Story", "1995", ["Animation", "Children's", "Comedy"]),
    (20, "Blade Runner (1982)", "01-Jan-1982", "Blade Runner", "1982", ["Film-Noir", "Sci-Fi"]),
    (30, "unknown", "", "unknown", "unknown", ["unknown"]),  # the 'unknown' flag, as in the real u.item
]
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "T8H1N")]


def _grouplens_folder(root: Path) -> Path:
    _write(root / "u.data", "".join("\t".join(map(str, r)) + "\n" for r in RATINGS))
    flags = lambda genres: "|".join("1" if g in genres else "0" for g in GENRES_100K)  # noqa: E731
    items = "".join(f"{i}|{t}|{d}||http://x|{flags(g)}\n" for i, t, d, _, _, g in ITEMS)
    _write(root / "u.item", items, encoding="latin-1")
    _write(root / "u.user", "".join("|".join(map(str, u)) + "\n" for u in USERS))
    return root


def _atomic_folder(root: Path) -> Path:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    _write(root / "ml-100k.inter", inter + "".join("\t".join(map(str, r)) + "\n" for r in RATINGS))
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    _write(root / "ml-100k.item", item + "".join(f"{i}\t{t}\t{y}\t{' '.join(g)}\n" for i, _, _, t, y, g in ITEMS))
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    _write(root / "ml-100k.user", user + "".join("\t".join(map(str, u)) + "\n" for u in USERS))
    return root


def test_grouplens_and_atomic_layouts_give_the_same_log(tmp_path):
    grouplens = build_log(MovieLens100K(_grouplens_folder(tmp_path / "gl"), download=False).load(), RATING)
    atomic = build_log(MovieLens100K(_atomic_folder(tmp_path / "atomic"), download=False).load(), RATING)
    pd.testing.assert_frame_equal(grouplens.interactions, atomic.interactions)
    assert grouplens.users == atomic.users and grouplens.items == atomic.items
    pd.testing.assert_frame_equal(grouplens.item_meta, atomic.item_meta)
    pd.testing.assert_frame_equal(grouplens.user_meta, atomic.user_meta)
    assert grouplens.fingerprint == atomic.fingerprint
    meta = grouplens.item_meta.set_index(grouplens.items.raw_ids)
    assert meta.loc[20, "genres"] == ["Film-Noir", "Sci-Fi"] and meta.loc[30, "genres"] == ["unknown"]
    assert meta.loc[10, "title"] == "Toy Story" and meta.loc[10, "year"] == 1995 and pd.isna(meta.loc[30, "year"])
    first = grouplens.interactions.iloc[0]
    assert (first["timestamp"], first["value"]) == (881250949, 4.0)
    assert grouplens.user_meta["zip_code"].tolist() == ["85711", "94043", "T8H1N"]


def test_ml100k_layout_can_be_forced(tmp_path):
    root = _grouplens_folder(_atomic_folder(tmp_path))
    assert MovieLens100K(root, layout="grouplens", download=False).load().source.endswith("u.data")
    assert MovieLens100K(root, layout="atomic", download=False).load().source.endswith("ml-100k.inter")


# --- ML-1M and ML-20M/25M --------------------------------------------------------------------


def test_ml1m_dat_files(tmp_path):
    _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::3::4::978298413\n")
    movies = (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3::Misérables, Les (1995)::Drama|Musical\n"  # latin-1 on disk
    )
    _write(tmp_path / "movies.dat", movies, encoding="latin-1")
    _write(tmp_path / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    raw = MovieLens1M(tmp_path).load()
    log = build_log(raw, RATING)
    assert (log.n_users, log.n_items, len(log)) == (2, 3, 3)
    meta = raw.item_meta
    assert meta.loc[1193, "title"] == "One Flew Over the Cuckoo's Nest" and meta.loc[1193, "year"] == 1975
    assert meta.loc[3, "title"] == "Misérables, Les" and meta.loc[661, "genres"] == [
        "Animation",
        "Children's",
        "Musical",
    ]
    assert raw.user_meta.loc[2, "age"] == 56 and raw.user_meta.loc[1, "gender"] == "F"
    assert raw.interactions.loc[1, ["item_id", "timestamp", "value"]].tolist() == [661, 978302109, 3.0]


def test_movielens_latest_csv_files(tmp_path):
    _write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,29,4.5,964981247\n2,5,2.5,1445714835\n",
    )
    movies = (
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy|Mystery|Sci-Fi\n'
        "5,Babylon 5,(no genres listed)\n"
    )
    _write(tmp_path / "movies.csv", movies)
    raw = MovieLensLatest(tmp_path, name="ml20m").load()
    log = build_log(raw, RATING)
    assert (log.name, log.n_users, log.n_items, len(log)) == ("ml20m", 2, 3, 3)
    assert raw.item_meta.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La)"
    assert raw.item_meta.loc[29, "year"] == 1995 and raw.item_meta.loc[29, "genres"][-1] == "Sci-Fi"
    assert raw.item_meta.loc[5, "title"] == "Babylon 5" and pd.isna(raw.item_meta.loc[5, "year"])
    assert raw.item_meta.loc[5, "genres"] == []
    assert raw.interactions["value"].tolist() == [4.0, 4.5, 2.5]


# --- any CSV or Parquet log, by config alone --------------------------------------------------


def _csv_log(tmp_path: Path, *overrides: str):
    cfg = OmegaConf.load(CSV_LOG_CONFIG)
    cfg = OmegaConf.merge(cfg, {"paths": {"data_dir": str(tmp_path)}}, OmegaConf.from_dotlist(list(overrides)))
    return build_log(instantiate(cfg.source).load(), instantiate(cfg.events), instantiate(cfg.filters))


def test_csv_log_with_other_column_names_loads_by_config(tmp_path):
    _write(
        tmp_path / "plays.csv",
        "customer,sku,when,action,weight,platform\n"
        "u_1,m_2,2024-03-01T20:15:00Z,play,1.0,tv\n"
        "u_1,m_3,2024-03-02 08:00:00,click,0.5,\n"
        "u_2,m_2,2024-03-01,play,2,phone\n",
    )
    _write(tmp_path / "titles.csv", "sku,name,tags\nm_2,Heat,Crime;Drama\nm_3,Up,Animation\n")
    log = _csv_log(
        tmp_path,
        f"source.path={tmp_path}/plays.csv",
        "source.id_type=str",
        "source.timestamp_unit=iso",
        "source.columns.user_id=customer",
        "source.columns.item_id=sku",
        "source.columns.timestamp=when",
        "source.columns.event=action",
        "source.columns.value=weight",
        "source.context.device=platform",
        f"source.item_meta.path={tmp_path}/titles.csv",
        "source.item_meta.columns.item_id=sku",
        "source.item_meta.columns.title=name",
        "source.item_meta.columns.genres=tags",
        "source.item_meta.genre_sep=;",
        "events.types.play=1.0",
        "events.types.click=0.5",
    )
    rows = log.interactions.assign(user=log.users.decode(log.interactions["user_id"]))
    first = rows[rows["user"] == "u_1"].iloc[0]
    assert first["timestamp"] == int(pd.Timestamp("2024-03-01T20:15:00Z").timestamp()) and first["hour"] == 20
    assert first["event"] == "play" and first["device"] == "tv"
    assert rows["device"].tolist().count("unknown") == 1 and sorted(rows["value"]) == [0.5, 1.0, 2.0]
    assert log.item_meta["title"].tolist() == ["Heat", "Up"] and log.item_meta["genres"].tolist()[0] == [
        "Crime",
        "Drama",
    ]


def test_parquet_log_loads_by_config(tmp_path):
    frame = pd.DataFrame(
        {"uid": [7, 7, 9], "iid": [100, 101, 100], "t_ms": [1_700_000_000_999, 1_700_000_100_000, 1_700_000_200_000]}
    )
    frame.to_parquet(tmp_path / "log.parquet")
    log = _csv_log(
        tmp_path,
        f"source.path={tmp_path}/log.parquet",
        "source.timestamp_unit=ms",
        "source.columns.user_id=uid",
        "source.columns.item_id=iid",
        "source.columns.timestamp=t_ms",
    )
    assert (log.n_users, log.n_items, len(log)) == (2, 2, 3)
    assert log.users.raw_ids.tolist() == [7, 9]
    assert log.interactions["timestamp"].tolist() == [1_700_000_000, 1_700_000_100, 1_700_000_200]
    assert set(log.interactions["event"]) == {"interaction"} and set(log.interactions["value"]) == {1.0}


# --- fetching ML-100K ------------------------------------------------------------------------


def _fake_wheel(shared_data: Path, path: Path, alter: str | None = None) -> Path:
    """A zip laid out like the RecBole wheel, holding the real files (one altered on request)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name in download.ATOMIC_FILES:
            data = (shared_data / "ml-100k" / name).read_bytes()
            zf.writestr(download.RECBOLE_MEMBER.format(name=name), data + (b"1\t1\t1\t1\n" if name == alter else b""))
    return path


def test_fetch_builds_ml100k_from_the_wheel(shared_data, tmp_path, monkeypatch):
    wheel = _fake_wheel(shared_data, tmp_path / "recbole.whl")
    fetch = functools.partial(download.fetch_ml100k, url=None, wheel_source=lambda _: wheel)
    monkeypatch.setattr(movielens, "fetch_ml100k", fetch)  # what MovieLens100K calls when files are absent
    root = tmp_path / "data" / "ml-100k"
    log = build_log(MovieLens100K(root).load(), RATING)
    assert (log.n_users, log.n_items, len(log)) == (943, 1682, 100_000)
    assert sorted(p.name for p in root.iterdir()) == sorted(download.ATOMIC_FILES)  # no temporary files left
    for name in download.ATOMIC_FILES:
        assert (root / name).read_bytes() == (shared_data / "ml-100k" / name).read_bytes()


def test_fetch_refuses_an_altered_wheel_and_writes_nothing(shared_data, tmp_path):
    wheel = _fake_wheel(shared_data, tmp_path / "recbole.whl", alter="ml-100k.item")
    root = tmp_path / "ml-100k"
    with pytest.raises(DataError, match=r"ml-100k\.item.*SHA-256"):
        download.install_from_wheel(wheel, root)
    with pytest.raises(DataError, match="could not fetch ML-100K"):
        download.fetch_ml100k(root, url=None, wheel_source=lambda _: wheel)
    assert not root.exists() or not any(root.iterdir())


def test_grouplens_zip_with_a_wrong_checksum_is_not_used(shared_data, tmp_path):
    bogus = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(bogus, "w") as zf:
        for name in download.GROUPLENS_FILES:
            zf.writestr(f"ml-100k/{name}", "1\t1\t1\t1\n")
    wheel = _fake_wheel(shared_data, tmp_path / "recbole.whl")
    root = download.fetch_ml100k(tmp_path / "root", url=bogus.as_uri(), wheel_source=lambda _: wheel)
    assert sorted(p.name for p in root.iterdir()) == sorted(download.ATOMIC_FILES)


def test_ml100k_without_files_or_download_names_the_folder(tmp_path):
    with pytest.raises(DataError) as err:
        MovieLens100K(tmp_path / "empty", download=False).load()
    assert str(tmp_path / "empty") in str(err.value)
    assert "ml-100k.inter" in str(err.value) and "u.data" in str(err.value)
