"""MovieLens loaders: ML-100K (RecBole atomic files or GroupLens u.*), ML-1M (.dat) and ML-20M/25M (.csv)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from marquee.data.download import ATOMIC_FILES, GROUPLENS_FILES, fetch_grouplens, fetch_ml100k, ml100k_layout
from marquee.data.errors import DataError
from marquee.data.loaders.common import check_unique, item_meta_frame, nullable_int, title_and_year
from marquee.data.parsing import read_delimited, read_numeric, require_columns, require_file, split_genres, to_number
from marquee.data.raw import REQUIRED_COLUMNS, RawLog

# u.item's genre flags in file order; the atomic file spells these names the same way
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
RATING_COLUMNS = ["user_id", "item_id", "value", "timestamp"]
USER_COLUMNS = ["age", "gender", "occupation", "zip_code"]
_IDS_AND_TIME = ("user_id", "item_id", "timestamp")


class MovieLens100K:
    """MovieLens-100K from RecBole's atomic files or GroupLens's ``u.*`` files, fetched when absent.

    Both layouts give the same ratings, timestamps and genres; the ``unknown`` genre flag becomes
    the genre ``'unknown'``, as in the atomic file.
    """

    def __init__(self, root: str | Path, layout: str = "auto", download: bool = True):
        if layout not in ("auto", "atomic", "grouplens"):
            raise DataError(f"MovieLens100K layout must be 'auto', 'atomic' or 'grouplens', got {layout!r}")
        self.root, self.layout, self.download = Path(root), layout, download

    def load(self) -> RawLog:
        """Read the ratings with item and user metadata."""
        layout = self.layout if self.layout != "auto" else self._present_layout()
        return _load_atomic(self.root) if layout == "atomic" else _load_grouplens(self.root)

    def _present_layout(self) -> str:
        layout = ml100k_layout(self.root)
        if layout is None and self.download:
            fetch_ml100k(self.root)
            layout = ml100k_layout(self.root)
        if layout is None:
            raise DataError(
                f"folder '{self.root}' holds no MovieLens-100K: expected {', '.join(ATOMIC_FILES)} (RecBole atomic "
                f"files) or {', '.join(GROUPLENS_FILES)} (GroupLens; the user file is optional in both); "
                "set download=true to fetch them"
            )
        return layout


def _load_atomic(root: Path) -> RawLog:
    inter, item, user = (root / f for f in ATOMIC_FILES)
    typed = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
    require_file(inter, f"RecBole atomic ratings with header {' '.join(typed)}")
    frame, offset = read_numeric(inter, "\t", typed, integer=(typed[0], typed[1], typed[3]), header=True)
    frame.columns = RATING_COLUMNS

    columns = ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]
    items, item_offset = read_delimited(
        require_file(item, f"RecBole atomic items with header {' '.join(columns)}"), "\t"
    )
    require_columns(items, columns, item, "\t")
    title, year = items[columns[1]].fillna(""), nullable_int(items[columns[2]])
    # a few rows hold the year in the title instead ('... (1995)' with year 'V'): take it from there
    title_only, title_year = title_and_year(title)
    title, year = title.where(year.notna(), title_only), year.fillna(title_year)
    ids = to_number(items, columns[0], item, item_offset, integer=True)
    item_meta = item_meta_frame(ids, title, year, split_genres(items[columns[3]], " "), item, item_offset)

    user_meta = None
    if user.is_file():
        users, user_offset = read_delimited(user, "\t")
        typed_users = ["user_id:token", *(f"{c}:token" for c in USER_COLUMNS)]
        require_columns(users, typed_users, user, "\t")
        user_meta = _user_meta(users.rename(columns=lambda c: c.split(":")[0]), user, user_offset)
    return RawLog("ml100k", _ratings(frame), str(inter), offset, item_meta, user_meta)


def _load_grouplens(root: Path) -> RawLog:
    data, item, user = (root / f for f in GROUPLENS_FILES)
    require_file(data, "GroupLens ratings: user id, item id, rating, timestamp separated by tabs")
    frame, offset = read_numeric(data, "\t", RATING_COLUMNS, integer=_IDS_AND_TIME)

    names = ["item_id", "title", "release_date", "video_release_date", "url", *GENRES_100K]
    require_file(item, "GroupLens items: id|title|release date|video release date|url|19 genre flags")
    items, item_offset = read_delimited(item, "|", names=names, encoding="latin-1")
    flags = np.column_stack([to_number(items, g, item, item_offset, integer=True).to_numpy() == 1 for g in GENRES_100K])
    genres = pd.Series([[GENRES_100K[j] for j in np.flatnonzero(row)] for row in flags], index=items.index)
    title, year = title_and_year(items["title"])
    # the film's year sits in its title; the release date (often a later video release) is the fallback
    released = pd.to_datetime(items["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    ids = to_number(items, "item_id", item, item_offset, integer=True)
    item_meta = item_meta_frame(ids, title, year.fillna(nullable_int(released)), genres, item, item_offset)

    user_meta = None
    if user.is_file():
        users, user_offset = read_delimited(user, "|", names=["user_id", *USER_COLUMNS], encoding="latin-1")
        user_meta = _user_meta(users, user, user_offset)
    return RawLog("ml100k", _ratings(frame), str(data), offset, item_meta, user_meta)


class MovieLens1M:
    """MovieLens-1M from GroupLens's ``ratings.dat``, ``movies.dat`` and ``users.dat`` (``::``-separated)."""

    FILES: ClassVar[dict[str, str]] = {
        "ratings.dat": "ML-1M ratings: UserID::MovieID::Rating::Timestamp",
        "movies.dat": "ML-1M movies: MovieID::Title::Genres (genres separated by '|')",
        "users.dat": "ML-1M users: UserID::Gender::Age::Occupation::Zip-code",
    }

    def __init__(self, root: str | Path, download: bool = False):
        self.root, self.download = Path(root), download

    def load(self) -> RawLog:
        """Read the ratings with movie titles, years and genres and the users' demographics."""
        ratings, movies, users = _ensure_files(self.root, self.FILES, "ml-1m", self.download)
        frame, offset = read_numeric(ratings, "::", RATING_COLUMNS, integer=_IDS_AND_TIME)
        items, item_offset = read_delimited(movies, "::", names=["item_id", "title", "genres"], encoding="latin-1")
        item_meta = _titled_items(items, "item_id", movies, item_offset)
        user_frame, user_offset = read_delimited(users, "::", names=["user_id", "gender", "age", "occupation", "zip_code"])
        user_meta = _user_meta(user_frame, users, user_offset)
        return RawLog("ml1m", _ratings(frame), str(ratings), offset, item_meta, user_meta)


class MovieLensLatest:
    """MovieLens in the ML-20M/ML-25M (and ml-latest) layout: ``ratings.csv`` and ``movies.csv`` with headers."""

    FILES: ClassVar[dict[str, str]] = {
        "ratings.csv": "MovieLens ratings with header userId,movieId,rating,timestamp",
        "movies.csv": "MovieLens movies with header movieId,title,genres",
    }

    def __init__(self, root: str | Path, name: str = "ml25m", download: bool = False):
        self.root, self.name, self.download = Path(root), name, download

    def load(self) -> RawLog:
        """Read the ratings with titles, years (from the titles) and genres."""
        zip_name = {"ml20m": "ml-20m", "ml25m": "ml-25m"}.get(self.name, self.name)
        ratings, movies = _ensure_files(self.root, self.FILES, zip_name, self.download)
        frame, offset = read_numeric(
            ratings,
            ",",
            ["userId", "movieId", "rating", "timestamp"],
            integer=("userId", "movieId", "timestamp"),
            header=True,
        )
        frame.columns = RATING_COLUMNS
        items, item_offset = read_delimited(movies, ",")
        require_columns(items, ["movieId", "title", "genres"], movies, ",")
        item_meta = _titled_items(items, "movieId", movies, item_offset)
        return RawLog(self.name, _ratings(frame), str(ratings), offset, item_meta)


def _ensure_files(root: Path, files: dict[str, str], dataset: str, download: bool) -> list[Path]:
    """Fetch GroupLens's zip when a file is missing and ``download`` is set; else name what is missing."""
    if download and not all((root / f).is_file() for f in files):
        fetch_grouplens(dataset, root, list(files))
    hint = "" if download else " (or set download=true to fetch it from GroupLens)"
    return [require_file(root / f, what + hint) for f, what in files.items()]


def _ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed ratings in the RawLog column order, every row a 'rating' event."""
    return frame.assign(event="rating")[list(REQUIRED_COLUMNS)]


def _titled_items(items: pd.DataFrame, id_column: str, source: Path, line_offset: int) -> pd.DataFrame:
    """Item metadata from 'Title (Year)' titles and '|'-separated genres (ML-1M and later)."""
    title, year = title_and_year(items["title"])
    ids = to_number(items, id_column, source, line_offset, integer=True)
    return item_meta_frame(ids, title, year, split_genres(items["genres"], "|"), source, line_offset)


def _user_meta(users: pd.DataFrame, source: Path, line_offset: int) -> pd.DataFrame:
    ids = to_number(users, "user_id", source, line_offset, integer=True)
    check_unique(ids, source, line_offset, "user_id")
    meta = users[USER_COLUMNS].assign(age=nullable_int(users["age"]))
    return meta.set_axis(pd.Index(ids.to_numpy(), name="user_id"))
