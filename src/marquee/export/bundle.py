"""Load a bundle and answer from it, without torch, Lightning or marquee's training code.

Imports numpy, pandas/pyarrow, onnxruntime and faiss only. :func:`load_bundle` checks the manifest's
format, the library versions it requires and the sha256 of every file before it opens anything, and
refuses a bundle that fails with one line naming the file or the version. A :class:`Bundle` then
encodes requests (:meth:`Bundle.encode`), scores candidates (:meth:`Bundle.score`) and ranks
(:meth:`Bundle.top_k`: the whole catalog for a single model; FAISS retrieval, then the ranker, for a
cascade), and maps raw ids to the internal ids the networks read and back.

Inputs are NumPy arrays named as the bundle's ``features.json`` says (as in an evaluation batch):
``items`` (B, L) left-padded internal ids with their per-event features, the request context
(``target_hour`` ...) and ``user``. Histories longer than a stage's ``max_len`` are cut to their latest events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow

from marquee import faiss_search
from marquee.export.manifest import BundleError, check_files, check_versions, read_manifest


def installed_versions() -> dict[str, str]:
    """The versions of what this loader runs on, as ``requires`` in a manifest names them."""
    return {"onnxruntime": ort.__version__, "faiss": faiss.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "pyarrow": pyarrow.__version__}


class Stage:
    """One stage of a bundle: its encoder and scorer sessions, item table, and (retrievers) FAISS index."""

    def __init__(self, root: Path, name: str, entry: dict[str, Any], spec: dict[str, Any], threads: int):
        self.name, self.kind, self.max_len = name, entry["kind"], int(entry["max_len"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(root / entry["encoder"]["onnx"]), options,
                                            providers=["CPUExecutionProvider"])
        self.scorer = ort.InferenceSession(str(root / entry["scorer"]["onnx"]), options,
                                           providers=["CPUExecutionProvider"])
        self.inputs = spec["encoder"]["inputs"]  # [{name, dtype, axes, meaning}]
        self.item_vectors = np.load(root / entry["item_vectors"])  # (n_items + 1, d)
        self.index = self.index_ids = None
        if entry.get("index"):
            directory = root / entry["index"]["directory"]
            self.index = faiss.read_index(str(directory / "index.faiss"))
            self.index_ids = np.load(directory / "index_ids.npy")
            self.index_config = json.loads((directory / "index.json").read_text())

    def feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The encoder's inputs taken from ``inputs``: checked, cast, histories cut to ``max_len`` (at least 1 long)."""
        missing = [i["name"] for i in self.inputs if i["name"] not in inputs]
        if missing:
            raise KeyError(f"stage '{self.name}' needs inputs {missing} "
                           f"({'; '.join(i['meaning'] for i in self.inputs if i['name'] in missing)})")
        feed = {}
        for spec in self.inputs:
            array = np.asarray(inputs[spec["name"]], dtype=spec["dtype"])
            if spec["axes"][1:] == ["seq"]:
                array = array[:, -self.max_len :]
                if array.shape[1] == 0:  # an empty history: one padding event
                    array = np.zeros((len(array), 1), dtype=array.dtype)
            feed[spec["name"]] = np.ascontiguousarray(array)
        return feed

    def encode(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """(B, d) states of a batch of requests."""
        return self.encoder.run(None, self.feed(inputs))[0]

    def score(self, state: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(B, C) scores of candidate ids ((C,) shared or (B, C)) for ``state``, by the exported scorer."""
        items = np.asarray(items, dtype=np.int64)
        if items.ndim == 1:
            items = np.broadcast_to(items, (len(state), len(items)))
        return self.scorer.run(None, {"state": np.ascontiguousarray(state, dtype=np.float32),
                                      "candidates": np.ascontiguousarray(items)})[0]

    def search(self, vectors: np.ndarray, excluded: np.ndarray, n: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` items per row not ``excluded`` (B, n_items + 1): ``(items, scores)``, item 0 at -inf where none.

        From the FAISS index, as the framework's ``TwoTower.retrieve``; ``exact`` (or no index) scores every item.
        """
        n_items = len(self.item_vectors) - 1
        if exact or self.index is None:
            scores = np.where(excluded, -np.inf, vectors @ self.item_vectors.T).astype(np.float32)
            return best(scores, np.arange(n_items + 1), min(n, n_items))
        depth = min(n + int(excluded.sum(1).max()), n_items)  # enough to keep n after dropping excluded items
        config = self.index_config
        scores, positions = faiss_search.search(self.index, config["kind"], vectors, depth, config.get("ef_search", 0),
                                                config.get("nprobe", 1), config.get("threads"))
        items = np.where(positions >= 0, self.index_ids[np.maximum(positions, 0)], 0)
        scores = np.where((positions < 0) | np.take_along_axis(excluded, items, 1), -np.inf, scores)
        return best(scores.astype(np.float32), items, min(n, depth))


def best(scores: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(items, scores)`` of the ``k`` highest ``scores`` (B, N) per row, best first; ``items`` ((N,) or (B, N))
    name the columns; item 0 where the score is -inf. Ties go to the earlier column."""
    items = np.broadcast_to(items, scores.shape)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(
        np.arange(scores.shape[1]), (len(scores), 1))
    top_scores = np.take_along_axis(scores, top, 1)
    order = np.lexsort((top, -top_scores), axis=1)  # by score, ties by column
    top, top_scores = np.take_along_axis(top, order, 1), np.take_along_axis(top_scores, order, 1)
    return np.where(np.isneginf(top_scores), 0, np.take_along_axis(items, top, 1)), top_scores


@dataclass
class Vocab:
    """Raw ids <-> internal ids ``1..n`` (0: padding or unknown)."""

    raw_ids: pd.Index

    @classmethod
    def load(cls, path: Path) -> Vocab:
        return cls(pd.Index(pd.read_parquet(path)["raw_id"]))

    def ids(self, raw: Any) -> np.ndarray:
        """Internal ids of raw ids; 0 for raw ids the bundle does not know (a cold item or member)."""
        return (self.raw_ids.get_indexer(np.asarray(raw).ravel()) + 1).reshape(np.shape(raw)).astype(np.int64)

    def raw(self, ids: Any) -> np.ndarray:
        """Raw ids of internal ids ``1..n`` (object array; None for 0)."""
        ids = np.asarray(ids, dtype=np.int64)
        if ((ids < 0) | (ids > len(self.raw_ids))).any():
            raise KeyError(f"ids outside 0..{len(self.raw_ids)}")
        table = np.concatenate([np.array([None], dtype=object), self.raw_ids.to_numpy(dtype=object)])
        return table[ids]


class Bundle:
    """A verified bundle: its manifest, feature spec, stages, vocabularies, item metadata and artwork policy."""

    def __init__(self, root: Path, manifest: dict[str, Any], threads: int = 0):
        self.root, self.manifest = root, manifest
        if threads:
            faiss.omp_set_num_threads(threads)
        self.features = json.loads((root / manifest["features"]).read_text())
        self.system = manifest["system"]
        self.stages = {name: Stage(root, name, entry, self.features["stages"][name], threads)
                       for name, entry in manifest["stages"].items()}
        vocab = root / manifest["vocab"]
        self.items, self.users = Vocab.load(vocab / "items.parquet"), Vocab.load(vocab / "users.parquet")
        meta = vocab / "item_meta.parquet"
        self.item_meta = pd.read_parquet(meta).set_index("id") if meta.is_file() else pd.DataFrame()
        self.policy = self._policy(manifest["policy"])

    def _policy(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        if not entry.get("file"):
            return None
        return json.loads((self.root / entry["file"]).read_text())  # checked by the service's artwork chooser

    @property
    def n_items(self) -> int:
        return len(self.items.raw_ids)

    def stage(self, name: str | None = None) -> Stage:
        """Stage ``name``; by default the ranker of a cascade, else the only stage."""
        name = name or (self.system["ranker"] if self.system["kind"] == "cascade" else self.system["stage"])
        if name not in self.stages:
            raise KeyError(f"no stage '{name}' in this bundle; it has {sorted(self.stages)}")
        return self.stages[name]

    def encode(self, inputs: dict[str, np.ndarray], stage: str | None = None) -> np.ndarray:
        """(B, d) states of a batch of requests (a ranker's user state, a retriever's user vector)."""
        return self.stage(stage).encode(inputs)

    def score(self, state: np.ndarray, item_ids: np.ndarray, stage: str | None = None) -> np.ndarray:
        """(B, C) scores of candidate internal ``item_ids`` ((C,) shared, or (B, C)) for :meth:`encode`'s ``state``."""
        return self.stage(stage).score(state, item_ids)

    def excluded(self, inputs: dict[str, np.ndarray], exclude: np.ndarray | None, history: bool) -> np.ndarray:
        """(B, n_items + 1) items a row must not be shown: ``exclude`` ids, the history's when ``history``, padding."""
        rows = len(inputs["items"])
        mask = np.zeros((rows, self.n_items + 1), dtype=bool)
        for ids in ([inputs["items"]] if history else []) + ([exclude] if exclude is not None else []):
            ids = np.asarray(ids, dtype=np.int64)
            mask[np.repeat(np.arange(rows), ids.shape[1]), ids.ravel()] = True
        mask[:, 0] = True
        return mask

    def top_k(self, inputs: dict[str, np.ndarray], k: int, exclude: np.ndarray | None = None,
              exclude_history: bool = True, exact: bool = False, stage: str | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per request: ``(items, scores)``, each (B, k), best first (item 0 where none is left).

        ``exclude`` (B, E) internal ids (0 pads) and, with ``exclude_history``, the history's items are never
        shown. A ranker (a single model, or ``stage=``) scores the whole catalog exactly. A retriever searches
        its FAISS index, as the framework's ``TwoTower.retrieve`` does, or with ``exact=True`` scores every
        item (what the evaluator ranks); a cascade retrieves ``n_candidates`` so and lets the ranker score
        them, as the framework's ``CascadeRecommender`` does.
        """
        if k < 1:
            raise ValueError(f"top_k needs k >= 1, got {k}")
        excluded = self.excluded(inputs, exclude, exclude_history)
        if stage is not None or self.system["kind"] != "cascade":
            chosen = self.stage(stage)
            return chosen.search(chosen.encode(inputs), excluded, k, exact)
        retriever, ranker = self.stage(self.system["retriever"]), self.stage(self.system["ranker"])
        candidates, _ = retriever.search(retriever.encode(inputs), excluded, self.system["n_candidates"], exact)
        scores = np.where(candidates == 0, -np.inf, ranker.score(ranker.encode(inputs), candidates))
        return best(scores.astype(np.float32), candidates, min(k, candidates.shape[1]))

    def item_metadata(self, item_ids: np.ndarray) -> pd.DataFrame:
        """The metadata rows (title, genres, year, ...) of internal ``item_ids``, in their order, with ``raw_id``."""
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        rows = self.item_meta.reindex(ids)
        return rows.assign(raw_id=self.items.raw(ids)).rename_axis("id").reset_index()


def load_bundle(path: str | Path, threads: int = 0) -> Bundle:
    """Open the bundle at ``path`` after checking its format, the versions it requires and every file's sha256.

    A bundle that fails any check raises :class:`~marquee.export.manifest.BundleError` with one line naming
    the file or the version; ``threads`` sets onnxruntime's and FAISS's threads (0: their defaults).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise BundleError(f"bundle '{root}' does not exist")
    manifest = read_manifest(root)
    check_versions(root, manifest, installed_versions())
    check_files(root, manifest)
    return Bundle(root, manifest, threads)
