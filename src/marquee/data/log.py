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


@dataclass
class InteractionLog:
    """One data set after loading, cleaning and filtering, ready to be split.

    ``interactions`` holds ``user_id`` and ``item_id`` as int32 ids from the vocabularies (0 is
    padding and never occurs), ``timestamp`` int64, ``event`` categorical over ``events.names``,
    ``value`` float32 and any context columns (``hour``, ``dow``, ``device``). Rows are sorted by
    user, then time, then their order in the source file. ``item_meta`` and ``user_meta`` are
    indexed by id.
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
