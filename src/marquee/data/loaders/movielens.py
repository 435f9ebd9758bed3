"""MovieLens loaders: ML-100K (RecBole atomic files or GroupLens u.*), ML-1M (.dat) and ML-20M/25M (.csv)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from marquee.data.download import ATOMIC_FILES, GROUPLENS_FILES, fetch_grouplens, fetch_ml100k, ml100k_layout
from marquee.data.errors import DataError
from marquee.data.loaders.common import check_unique, item_meta_frame, nullable_int, title_and_year
from marquee.data.parsing import (
    read_delimited,
    read_header,
    read_numeric,
    require_columns,
    require_file,
    split_genres,
    to_number,
)
from marquee.data.raw import REQUIRED_COLUMNS, RawLog
from marquee.data.scan import RawScan, ScanColumn

# u.item's genre flags in file order; the atomic file spells these names the same way
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
RATING_COLUMNS = ["user_id", "item_id", "value", "timestamp"]
ATOMIC_RATINGS = ["user_id:token", "item_id:token", "rating:float", "timestamp:float"]
LATEST_RATINGS = ["userId", "movieId", "rating", "timestamp"]
ATOMIC_WHAT = f"RecBole atomic ratings with header {' '.join(ATOMIC_RATINGS)}"
GROUPLENS_RATINGS = "GroupLens ratings: user id, item id, rating, timestamp separated by tabs"
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

    def scan(self) -> RawScan:
        """The ratings file for the out-of-core engine, read as :meth:`load` reads it."""
        layout = self.layout if self.layout != "auto" else self._present_layout()
        if layout == "atomic":
            inter = require_file(self.root / ATOMIC_FILES[0], ATOMIC_WHAT)
            require_columns(read_header(inter, "\t"), ATOMIC_RATINGS, inter, "\t")
            return RawScan("ml100k", inter, _rating_fields(ATOMIC_RATINGS), sep="\t", line_offset=2,
                           meta=lambda: _atomic_meta(self.root))
        data = require_file(self.root / GROUPLENS_FILES[0], GROUPLENS_RATINGS)
        return _headerless_ratings("ml100k", data, "\t", lambda: _grouplens_meta(self.root))

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
    inter = require_file(root / ATOMIC_FILES[0], ATOMIC_WHAT)
    integer = (ATOMIC_RATINGS[0], ATOMIC_RATINGS[1], ATOMIC_RATINGS[3])
    frame, offset = read_numeric(inter, "\t", ATOMIC_RATINGS, integer=integer, header=True)
    frame.columns = RATING_COLUMNS
    item_meta, user_meta = _atomic_meta(root)
    return RawLog("ml100k", _ratings(frame), str(inter), offset, item_meta, user_meta)


def _atomic_meta(root: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Item metadata (titles, years, genres) and, when present, user metadata of the atomic layout."""
    _, item, user = (root / f for f in ATOMIC_FILES)
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
    return item_meta, user_meta


def _load_grouplens(root: Path) -> RawLog:
    data = require_file(root / GROUPLENS_FILES[0], GROUPLENS_RATINGS)
    frame, offset = read_numeric(data, "\t", RATING_COLUMNS, integer=_IDS_AND_TIME)
    item_meta, user_meta = _grouplens_meta(root)
    return RawLog("ml100k", _ratings(frame), str(data), offset, item_meta, user_meta)


def _grouplens_meta(root: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Item metadata from ``u.item`` (genre flags, titles, years) and user metadata from ``u.user`` when present."""
    _, item, user = (root / f for f in GROUPLENS_FILES)
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
    return item_meta, user_meta


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
        return RawLog("ml1m", _ratings(frame), str(ratings), offset, *self._meta(movies, users))

    def scan(self) -> RawScan:
        """The ratings file for the out-of-core engine, read as :meth:`load` reads it."""
        ratings, movies, users = _ensure_files(self.root, self.FILES, "ml-1m", self.download)
        return _headerless_ratings("ml1m", ratings, "::", lambda: self._meta(movies, users))

    @staticmethod
    def _meta(movies: Path, users: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        items, item_offset = read_delimited(movies, "::", names=["item_id", "title", "genres"], encoding="latin-1")
        item_meta = _titled_items(items, "item_id", movies, item_offset)
        user_frame, user_offset = read_delimited(users, "::", names=["user_id", "gender", "age", "occupation", "zip_code"])
        return item_meta, _user_meta(user_frame, users, user_offset)


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
        ratings, movies = self._files()
        frame, offset = read_numeric(
            ratings, ",", LATEST_RATINGS, integer=("userId", "movieId", "timestamp"), header=True
        )
        frame.columns = RATING_COLUMNS
        return RawLog(self.name, _ratings(frame), str(ratings), offset, _latest_items(movies))

    def scan(self) -> RawScan:
        """The ratings file for the out-of-core engine, read as :meth:`load` reads it."""
        ratings, movies = self._files()
        require_columns(read_header(ratings, ","), LATEST_RATINGS, ratings, ",")
        return RawScan(self.name, ratings, _rating_fields(LATEST_RATINGS), line_offset=2,
                       meta=lambda: (_latest_items(movies), None))

    def _files(self) -> list[Path]:
        zip_name = {"ml20m": "ml-20m", "ml25m": "ml-25m"}.get(self.name, self.name)
        return _ensure_files(self.root, self.FILES, zip_name, self.download)


def _latest_items(movies: Path) -> pd.DataFrame:
    items, item_offset = read_delimited(movies, ",")
    require_columns(items, ["movieId", "title", "genres"], movies, ",")
    return _titled_items(items, "movieId", movies, item_offset)


def _ensure_files(root: Path, files: dict[str, str], dataset: str, download: bool) -> list[Path]:
    """Fetch GroupLens's zip when a file is missing and ``download`` is set; else name what is missing."""
    if download and not all((root / f).is_file() for f in files):
        fetch_grouplens(dataset, root, list(files))
    hint = "" if download else " (or set download=true to fetch it from GroupLens)"
    return [require_file(root / f, what + hint) for f, what in files.items()]


def _rating_fields(columns: list[str]) -> dict[str, ScanColumn | str]:
    """The scan fields of ratings whose ``columns`` are user, item, rating and timestamp, checked in that order."""
    user, item, rating, timestamp = columns
    return {"user_id": ScanColumn(user, "int"), "item_id": ScanColumn(item, "int"),
            "value": ScanColumn(rating, "float"), "timestamp": ScanColumn(timestamp, "int"), "event": "rating"}


def _headerless_ratings(name: str, path: Path, sep: str, meta: Callable) -> RawScan:
    """A scan of ``user sep item sep rating sep timestamp`` lines without a header (GroupLens u.data, ratings.dat)."""
    return RawScan(name, path, _rating_fields(RATING_COLUMNS), sep=sep, header=False, names=tuple(RATING_COLUMNS),
                   quote=False, meta=meta)


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
