"""One FAISS search with the index's own settings, shared by training-side retrieval and the torch-free bundle.

Numpy and faiss only: :mod:`marquee.retrieval.index` (which reaches torch through ``marquee.data``) and
:mod:`marquee.export.bundle` (which a service imports without torch) both search through it, so the
HNSW ``efSearch`` and IVF ``nprobe`` rules live in one place.
"""

from __future__ import annotations

import faiss
import numpy as np


def search(index: faiss.Index, kind: str, queries: np.ndarray, n: int, ef_search: int = 0, nprobe: int = 1,
           threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's ``(scores, positions)`` of the top ``n`` per query (B, d), positions -1 where none.

    HNSW searches at least ``n`` deep (``efSearch`` below ``n`` would return fewer than asked); IVF probes
    ``nprobe`` lists; ``threads`` sets FAISS's OpenMP threads when given.
    """
    if threads:
        faiss.omp_set_num_threads(threads)
    if kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = max(ef_search, n)
    elif kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), n)
