"""The rows of a home page, each with a title and the reason it is there; a title appears in one row only.

1. "Top picks for you": the ranked (and, when asked, diversified) candidates.
2. "Because you watched X": X the latest history title; the titles nearest X by the retriever's item vectors (cosine).
3. "More <genre>": the member's most frequent history genres, most frequent first; that genre's titles by the ranker.

A row that would be empty (nothing left to show) is left out, so a page can hold fewer rows than asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from marquee.export.bundle import Bundle


@dataclass
class Catalog:
    """Per internal id (0: padding): title, genres and unit item vector, read once from the bundle."""

    titles: list[str | None]
    genres: list[frozenset[str]]
    unit_vectors: np.ndarray  # (n_items + 1, d)

    @classmethod
    def from_bundle(cls, bundle: Bundle, item_vectors: np.ndarray) -> Catalog:
        meta = bundle.item_metadata(np.arange(bundle.n_items + 1))
        titles = [t if isinstance(t, str) else None for t in meta["title"]] if "title" in meta else [None] * len(meta)
        genres = ([frozenset(str(g) for g in gs) if gs is not None and not isinstance(gs, float) else frozenset()
                   for gs in meta["genres"]] if "genres" in meta else [frozenset()] * len(meta))
        norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
        return cls(titles, genres, item_vectors / np.where(norms > 0, norms, 1.0))


@dataclass
class PageRow:
    title: str
    reason: str
    items: list[tuple[int, float]]  # (internal id, score), best first


def _top(items: np.ndarray, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(items[i]), float(scores[i])) for i in order]


def build_rows(catalog: Catalog, candidates: np.ndarray, scores: np.ndarray, history: np.ndarray,
               rank: Callable[[np.ndarray], np.ndarray], n_rows: int, k: int) -> list[PageRow]:
    """Up to ``n_rows`` rows of up to ``k`` titles: ``candidates`` in page order with their ranker ``scores``,
    the member's ``history`` (internal ids, oldest first) and ``rank`` (ranker scores of any internal ids)."""
    n_items = len(catalog.titles) - 1
    blocked = np.zeros(n_items + 1, dtype=bool)
    blocked[0] = True
    blocked[history] = True
    rows: list[PageRow] = []

    def add(row: PageRow) -> None:
        if row.items and len(rows) < n_rows:
            rows.append(row)
            blocked[[i for i, _ in row.items]] = True

    add(PageRow("Top picks for you", "ranked for you from your history and context",
                [(int(i), float(s)) for i, s in zip(candidates[:k], scores[:k], strict=True)]))
    latest = int(history[-1])
    similarity = catalog.unit_vectors @ catalog.unit_vectors[latest]
    open_items = np.flatnonzero(~blocked)
    name = catalog.titles[latest] or f"title {latest}"
    add(PageRow(f"Because you watched {name}", f"nearest to '{name}', your latest title, by item vectors",
                _top(open_items, similarity[open_items], k)))
    counts = Counter(g for item in history for g in catalog.genres[int(item)])
    for genre, count in sorted(counts.items(), key=lambda gc: (-gc[1], gc[0])):
        if len(rows) >= n_rows:
            break
        items = np.array([i for i in np.flatnonzero(~blocked) if genre in catalog.genres[i]], dtype=np.int64)
        if len(items):
            add(PageRow(f"More {genre}", f"{genre} is in {count} of the {len(history)} titles you watched",
                        _top(items, rank(items), k)))
    return rows
