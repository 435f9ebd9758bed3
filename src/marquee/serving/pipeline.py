"""One home-page request through the bundle: retrieve → filter seen → rank → diversify → rows → choose artwork.

Each stage is timed (:class:`Timings`), and the service reports the times in its ``Server-Timing`` header.
A cascade bundle retrieves with its retriever's FAISS index and ranks with its ranker; a single-model bundle
does both with its one stage.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from marquee.diversity import mmr
from marquee.export.bundle import Bundle
from marquee.serving.artwork import Choice, PolicyArtwork, SyntheticArtwork
from marquee.serving.histories import History
from marquee.serving.rows import Catalog, PageRow, build_rows


class Timings:
    """Milliseconds spent in each named stage, in the order they ran."""

    def __init__(self):
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1000

    def header(self) -> str:
        """The ``Server-Timing`` header: ``retrieve;dur=1.20, rank;dur=0.40, ...``."""
        return ", ".join(f"{name};dur={ms:.2f}" for name, ms in self.ms.items())


@dataclass
class Shown:
    """A title on the page, with the artwork chosen for it."""

    item: int
    score: float
    choice: Choice


@dataclass
class Page:
    rows: list[tuple[PageRow, list[Shown]]] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)  # what ranking saw, best first
    context: list[float] = field(default_factory=list)  # the member context the artwork policy saw


class Pipeline:
    """The stages of a request over one loaded bundle."""

    def __init__(self, bundle: Bundle, artwork: SyntheticArtwork | PolicyArtwork):
        self.bundle, self.artwork = bundle, artwork
        system = bundle.system
        cascade = system["kind"] == "cascade"
        self.retriever = bundle.stage(system["retriever"] if cascade else None)
        self.ranker = bundle.stage(system["ranker"] if cascade else None)
        self.depth = int(system.get("n_candidates", 0)) if cascade else 0
        self.catalog = Catalog.from_bundle(bundle, self.retriever.item_vectors)
        artwork.bind(self.catalog.genres, list(bundle.items.raw_ids))

    def inputs(self, history: History, user: int, hour: int, dow: int, device: int) -> dict[str, np.ndarray]:
        """Every stage's inputs for one request (batch of one); the context ids as ``features.json`` defines them."""
        return {**history.features(), "user": np.array([user], np.int64), "target_hour": np.array([hour + 1]),
                "target_dow": np.array([dow + 1]), "target_device": np.array([device], np.int64)}

    def run(self, history: History, inputs: dict[str, np.ndarray], k: int, n_rows: int, diversity: float,
            timings: Timings, hour: int = 0) -> Page:
        bundle, n_items = self.bundle, self.bundle.n_items
        seen = np.unique(history.items)
        with timings.stage("retrieve"):
            depth = min(max(self.depth, k * n_rows), n_items)
            padding = np.zeros((1, n_items + 1), dtype=bool)
            padding[:, 0] = True
            found, _ = self.retriever.search(self.retriever.encode(inputs), padding, min(depth + len(seen), n_items),
                                             exact=False)
        with timings.stage("filter_seen"):
            candidates = found[0][(found[0] > 0) & ~np.isin(found[0], seen)][:depth]
        with timings.stage("rank"):
            state = self.ranker.encode(inputs)
            scores = self.ranker.score(state, candidates)[0] if len(candidates) else np.zeros(0, np.float32)
            order = np.argsort(-scores, kind="stable")
            candidates, scores = candidates[order], scores[order]
        with timings.stage("diversify"):
            diversified = mmr(np.arange(len(candidates)), scores, [self.catalog.genres[i] for i in candidates],
                              diversity, k)
            candidates, scores = candidates[diversified], scores[diversified]
        with timings.stage("rows"):
            def rank_items(items: np.ndarray) -> np.ndarray:
                return self.ranker.score(state, items)[0]

            rows = build_rows(self.catalog, candidates, scores, history.items, rank_items, n_rows, k)
        page = Page(candidates=[int(i) for i in candidates])
        with timings.stage("artwork"):
            shown_items = [item for row in rows for item, _ in row.items]
            raw = list(bundle.items.raw(shown_items)) if shown_items else []
            page.context = self.artwork.context(history.items[history.items > 0], hour)
            choices = iter(self.artwork.choose(shown_items, raw, page.context))
            for row in rows:
                page.rows.append((row, [Shown(item, score, next(choices)) for item, score in row.items]))
        return page
