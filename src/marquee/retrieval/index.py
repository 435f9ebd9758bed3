"""A FAISS inner-product index over item vectors: exact (flat), HNSW or IVF by config, saved beside a run.

FAISS numbers vectors 0..N-1 in insertion order; ``ids`` maps those positions to item ids, and is
saved with the index so a loaded index answers in item ids.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from marquee import faiss_search
from marquee.data.atomic import atomic_path, write_json

KINDS = ("flat", "hnsw", "ivf")
INDEX_FILE, IDS_FILE, CONFIG_FILE = "index.faiss", "index_ids.npy", "index.json"


@dataclass
class ItemIndex:
    """Inner-product search over item vectors.

    ``kind``: ``flat`` (exact), ``hnsw`` (graph with ``M`` links per node, built with
    ``ef_construction`` and searched with ``ef_search`` candidates), or ``ivf`` (``nlist``
    k-means cells, ``nprobe`` of them searched). ``threads`` (0 = FAISS's default) sets FAISS's
    OpenMP threads for build and search.
    """

    kind: str = "flat"
    M: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    nlist: int = 100
    nprobe: int = 10
    threads: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {self.kind!r}")
        self._index: faiss.Index | None = None
        self.ids = np.zeros(0, dtype=np.int64)

    def build(self, vectors: np.ndarray, ids: np.ndarray) -> ItemIndex:
        """Index ``vectors`` (N, d) float32 whose rows are items ``ids`` (N,); returns self."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise ValueError(f"index: need (N, d) vectors and N ids, got {vectors.shape} and {len(ids)}")
        self._threads()
        d = vectors.shape[1]
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
        else:
            nlist = min(self.nlist, len(vectors))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        index.add(vectors)
        self._index, self.ids = index, np.asarray(ids, dtype=np.int64)
        return self

    @property
    def size(self) -> int:
        return 0 if self._index is None else self._index.ntotal

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per query (B, d): ``(scores, item ids)``, each (B, n), best first; -inf / 0 where none."""
        if self._index is None:
            raise RuntimeError("ItemIndex.search() before build() or load()")
        scores, positions = faiss_search.search(self._index, self.kind, queries, n, self.ef_search, self.nprobe,
                                                self.threads)
        found = positions >= 0
        items = np.where(found, self.ids[np.maximum(positions, 0)], 0)
        return np.where(found, scores, -np.inf).astype(np.float32), items

    def save(self, directory: str | Path) -> Path:
        """Write ``index.faiss``, ``index_ids.npy`` and ``index.json`` into ``directory``, each atomically."""
        if self._index is None:
            raise RuntimeError("ItemIndex.save() before build()")
        directory = Path(directory)
        with atomic_path(directory / INDEX_FILE) as tmp:
            faiss.write_index(self._index, str(tmp))
        with atomic_path(directory / IDS_FILE) as tmp, open(tmp, "wb") as f:  # a file object: no '.npy' appended
            np.save(f, self.ids)
        write_json(asdict(self), directory / CONFIG_FILE)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ItemIndex:
        """Read an index written by :meth:`save`."""
        directory = Path(directory)
        missing = [f for f in (INDEX_FILE, IDS_FILE, CONFIG_FILE) if not (directory / f).is_file()]
        if missing:
            raise FileNotFoundError(f"no saved item index in '{directory}': missing {missing}")
        index = cls(**json.loads((directory / CONFIG_FILE).read_text()))
        index._index = faiss.read_index(str(directory / INDEX_FILE))
        index.ids = np.load(directory / IDS_FILE)
        if len(index.ids) != index._index.ntotal:
            raise ValueError(f"'{directory}': {IDS_FILE} has {len(index.ids)} ids for {index._index.ntotal} vectors")
        return index

    def _threads(self) -> None:
        if self.threads:
            faiss.omp_set_num_threads(self.threads)

