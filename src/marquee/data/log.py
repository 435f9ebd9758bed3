"""The InteractionLog: encoded interactions, their vocabularies, metadata and fingerprint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from marquee.data.atomic import write_json, write_parquet
from marquee.data.context import CONTEXT_FEATURES
from marquee.data.events import EventSchema
from marquee.data.vocab import Vocabulary

ORDER_KEYS = ("user_id", "timestamp", "item_id", "event", "value")


def event_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw rows sorted by user, then absolute time; events in the same second in a fixed pseudo-random order.

    Tied timestamps are common (415 of ML-100K's 943 users rated their last titles within one
    second), and which of them counts as "last" decides every leave-one-out target. Ties are ordered
    by a hash of the raw (user id, item id) pair (``pandas.util.hash_pandas_object``, whose key is
    fixed), then by item id, event type (in ``events.types`` order), value and any other column:
    the order is a function of the rows alone, so any permutation of a file's lines gives the same
    log, split and sequences. A hash, not the item id itself, so that the held-out item of a tie is
    not systematically the one with the largest id (on ML-100K, the less popular titles).
    """
    tie = pd.util.hash_pandas_object(frame[["user_id", "item_id"]], index=False).to_numpy()
    rest = sorted(c for c in frame.columns if c not in ORDER_KEYS)
    keys = [_sort_key(frame["user_id"]), _sort_key(frame["timestamp"]), tie,
            *(_sort_key(frame[c]) for c in [*ORDER_KEYS[2:], *rest])]
    return frame.iloc[np.lexsort(keys[::-1])]  # lexsort: the last key is the primary one


def _sort_key(column: pd.Series) -> np.ndarray:
    """Numbers that sort like ``column``: categories in their order, strings alphabetically, numbers as they are."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy()
    if column.dtype.kind in "biuf":
        return column.to_numpy()
    return pd.factorize(column, sort=True)[0]


@dataclass
class InteractionLog:
    """One data set after loading, cleaning and filtering, ready to be split.

    ``interactions`` holds ``user_id`` and ``item_id`` as int32 ids from the vocabularies (0 is
    padding and never occurs), ``timestamp`` int64, ``event`` categorical over ``events.names``,
    ``value`` float32 and any context columns (``hour``, ``dow``, ``device``). Rows are in
    :func:`event_order` (applied to the raw ids when the log is built), so their order never depends
    on how the source file was written; the index is the row's position. ``item_meta`` and
    ``user_meta`` are indexed by id.
    """

    name: str
    interactions: pd.DataFrame
    users: Vocabulary
    items: Vocabulary
    events: EventSchema
    item_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    user_meta: pd.DataFrame = field(default_factory=pd.DataFrame)
    ordinal_time: bool = False

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def __len__(self) -> int:
        return len(self.interactions)

    @property
    def context_columns(self) -> list[str]:
        """Context columns present in this log."""
        return [c for c in CONTEXT_FEATURES if c in self.interactions.columns]

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the normalized interactions and the raw ids behind them."""
        digest = hashlib.sha256()
        digest.update(pd.util.hash_pandas_object(self.interactions, index=False).to_numpy().tobytes())
        for vocab in (self.users, self.items):
            digest.update(pd.util.hash_pandas_object(pd.Series(vocab.raw_ids), index=False).to_numpy().tobytes())
        # positive types as (name, weight), as before event kinds existed, so those fingerprints did not change
        kinds = [(n, k.weight) if k.positive else (n, k.weight, "not positive") for n, k in self.events.kinds.items()]
        digest.update(repr(sorted(kinds)).encode())
        return digest.hexdigest()

    @cached_property
    def genres(self) -> Vocabulary:
        """Vocabulary of genre/tag names found in the item metadata."""
        if "genres" not in self.item_meta:
            return Vocabulary(pd.Index([], dtype=object))
        return Vocabulary.fit(np.array([g for gs in self.item_meta["genres"] for g in gs], dtype=object))

    def item_genre_ids(self) -> tuple[np.ndarray, np.ndarray]:
        """Items' genres as CSR arrays ``(indptr, genre_ids)`` over item ids ``0..n_items`` (0 has none)."""
        lists = [[]] + [list(g) for g in self.item_meta.get("genres", pd.Series([[]] * self.n_items))]
        lengths = np.fromiter((len(g) for g in lists), dtype=np.int64, count=len(lists))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.array([g for gs in lists for g in gs], dtype=object)
        ids = self.genres.encode(flat) if len(flat) else np.zeros(0, dtype=np.int32)
        return indptr, ids

    def save_vocabularies(self, directory: str | Path) -> Path:
        """Write the user, item, genre and event vocabularies into ``directory``."""
        directory = Path(directory)
        self.users.save(directory / "users.parquet")
        self.items.save(directory / "items.parquet")
        self.genres.save(directory / "genres.parquet")
        write_json({"types": dict(self.events.types), "aliases": dict(self.events.aliases)}, directory / "events.json")
        if len(self.item_meta):
            meta = self.item_meta.reset_index(names="id")
            write_parquet(meta, directory / "item_meta.parquet")
        return directory
