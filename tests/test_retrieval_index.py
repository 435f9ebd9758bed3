"""The FAISS item index: exact search, HNSW and IVF recall against it, and the save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from marquee.retrieval.index import ItemIndex


def _catalog(n: int = 5000, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit item vectors around 50 centres (as trained embeddings cluster), their ids, and 200 queries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, d))
    vectors = centres[rng.integers(0, 50, n)] + 0.5 * rng.normal(size=(n, d))
    queries = centres[rng.integers(0, 50, 200)] + 0.5 * rng.normal(size=(200, d))
    return _unit(vectors), rng.permutation(np.arange(1, n + 1)), _unit(queries)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _exact(vectors, ids, queries, n):
    scores = queries @ vectors.T
    top = np.argsort(-scores, axis=1)[:, :n]
    return np.take_along_axis(scores, top, 1), ids[top]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


def test_flat_index_is_exact_and_answers_in_item_ids():
    vectors, ids, queries = _catalog()
    scores, items = ItemIndex("flat").build(vectors, ids).search(queries, 10)
    want_scores, want_items = _exact(vectors, ids, queries, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert _overlap(items, want_items) == 1.0


@pytest.mark.parametrize("kind, params, floor", [
    ("hnsw", {"M": 16, "ef_construction": 100, "ef_search": 64}, 0.95),
    ("ivf", {"nlist": 50, "nprobe": 10}, 0.9),
])
def test_approximate_indexes_find_most_of_the_exact_top_10(kind, params, floor):
    vectors, ids, queries = _catalog()
    _, want = _exact(vectors, ids, queries, 10)
    _, got = ItemIndex(kind, **params).build(vectors, ids).search(queries, 10)
    assert floor <= _overlap(got, want)
    _, coarse = ItemIndex(kind, **{**params, "ef_search": 1, "nprobe": 1}).build(vectors, ids).search(queries, 10)
    assert _overlap(coarse, want) < _overlap(got, want)  # the search-breadth knob is what buys the recall


def test_search_beyond_the_catalog_pads_with_item_0():
    vectors, ids, queries = _catalog(n=5)
    scores, items = ItemIndex("flat").build(vectors, ids).search(queries[:2], 8)
    assert (items[:, 5:] == 0).all() and np.isneginf(scores[:, 5:]).all() and set(items[0, :5]) == set(ids)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_and_load_give_the_same_results(kind, tmp_path):
    vectors, ids, queries = _catalog(n=2000)
    index = ItemIndex(kind, nlist=20, nprobe=3, ef_search=40).build(vectors, ids)
    index.save(tmp_path / "artifacts")
    loaded = ItemIndex.load(tmp_path / "artifacts")
    assert (loaded.kind, loaded.nprobe, loaded.ef_search, loaded.size) == (kind, 3, 40, 2000)
    for a, b in zip(index.search(queries, 20), loaded.search(queries, 20)):
        np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "artifacts").glob(".*"))  # no temporary files left behind


def test_bad_config_and_missing_files_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="index kind"):
        ItemIndex("annoy")
    with pytest.raises(FileNotFoundError, match="index.faiss"):
        ItemIndex.load(tmp_path)
    with pytest.raises(RuntimeError, match="before build"):
        ItemIndex().search(np.zeros((1, 4), np.float32), 1)
