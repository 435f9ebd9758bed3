"""A fitted system's top-k per member as data: raw ids, scores and reasons, ranked in member batches.

Each member is scored from their whole known history (every event of the log: training, validation
and test rows, the member's latest state) with the request context unknown (hour, weekday and
device id 0), over the full catalog, or through a cascade's own retrieve -> rank path (its ``score``
does that). Items the member has seen are masked unless ``seen='keep'``. Scores and masking are the
evaluator's own (:func:`~marquee.evaluation.ranking.catalog_scores`), so a list here is the list the
evaluator would rank from the same history. A member gets fewer than ``k`` rows only when fewer than
``k`` items can be shown (seen items masked, or items outside a cascade's candidates).

Recommendations come from a :class:`Source`: a training run's folder (:class:`RunSource`, the saved
model on torch) or a serving bundle (:class:`BundleSource`, its ONNX networks and FAISS index); both
read the members' events from the data they were trained on, checked by its fingerprint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from marquee.checkpoint import MODEL_FILE, load_system
from marquee.data.atomic import atomic_path
from marquee.data.context import CONTEXT_FEATURES
from marquee.data.datasets import to_tensors
from marquee.data.errors import DataError
from marquee.data.pipeline import load_log
from marquee.data.seen import SeenItems
from marquee.data.sequences import UserSequences
from marquee.data.vocab import Vocabulary
from marquee.errors import ConfigError
from marquee.evaluation.ranking import catalog_scores
from marquee.models.base import Reasons, Recommender

log = logging.getLogger(__name__)

SEEN = ("mask", "keep")
COLUMNS = ("user_id", "rank", "item_id", "score", "reason")
BECAUSE = "because you watched "


@dataclass(frozen=True)
class TopK:
    """One batch's lists: ``items`` and ``scores`` (B, k), best first (-inf: nothing more to show), and why:
    ``because`` (B, k) the history item that explains each (0: none), ``label`` how the others came."""

    items: np.ndarray
    scores: np.ndarray
    because: np.ndarray | None = None
    label: str | None = None


class Source:
    """Where recommendations come from: the vocabularies (raw id <-> id), a scorer, every member's known events.

    The vocabularies are read at once, so bad member ids are refused before anything heavy loads;
    the scorer and the events on first use.
    """

    name: str  # where it came from, for messages and the output's metadata
    users: Vocabulary
    items: Vocabulary

    @property
    def max_len(self) -> int | None:
        """History items the scorer reads (None: all)."""
        raise NotImplementedError

    def events(self) -> pd.DataFrame:
        """Every known event, encoded ids, sorted by user then time (an InteractionLog's ``interactions``)."""
        raise NotImplementedError

    def top_k(self, batch: dict[str, np.ndarray], seen: SeenItems | None, k: int) -> TopK:
        """The ``k`` best items of each row of :func:`member_batch`'s ``batch``, ``seen`` items never among them."""
        raise NotImplementedError

    def _events(self, data_cfg: dict[str, Any], fingerprint: str | None) -> pd.DataFrame:
        """The log ``data_cfg`` loads, refused unless it is the data this source was trained on."""
        data = load_log(OmegaConf.create(data_cfg))
        if data.fingerprint != fingerprint or data.users != self.users or data.items != self.items:
            raise DataError(f"the data changed since '{self.name}' was trained: fingerprint {data.fingerprint[:16]} "
                            f"!= {str(fingerprint)[:16]}")
        return data.interactions


class RunSource(Source):
    """A finished training run: ``checkpoints/model.pt``, ``vocab/`` and the data its ``run.json`` config names,
    scored with the framework's own ranking on ``device`` (``auto``: the GPU when there is one)."""

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        self.run_dir = Path(run_dir)
        self.name = str(self.run_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)
        record_path = self.run_dir / "run.json"
        if not record_path.is_file():
            raise ConfigError("run_dir", f"'{run_dir}' is not a marquee run directory: no run.json in it")
        self.record = json.loads(record_path.read_text())
        if not (self.run_dir / "checkpoints" / MODEL_FILE).is_file():
            raise ConfigError("run_dir", f"'{run_dir}' has no saved model (checkpoints/{MODEL_FILE}): "
                              f"its status is '{self.record.get('status', 'unknown')}'")
        self.users = Vocabulary.load(self.run_dir / "vocab" / "users.parquet")
        self.items = Vocabulary.load(self.run_dir / "vocab" / "items.parquet")

    @cached_property
    def _loaded(self) -> tuple[Recommender, dict[str, Any]]:
        system, payload = load_system(self.run_dir / "checkpoints" / MODEL_FILE)
        return system.to(self.device).eval(), payload

    @property
    def system(self) -> Recommender:
        return self._loaded[0]

    @property
    def max_len(self) -> int | None:
        return self.system.max_len

    def events(self) -> pd.DataFrame:
        return self._events(self.record["config"]["data"], self._loaded[1]["data_fingerprint"])

    def top_k(self, batch: dict[str, np.ndarray], seen: SeenItems | None, k: int) -> TopK:
        """The evaluator's scores and masking (:func:`~marquee.evaluation.ranking.catalog_scores`), then the top k."""
        rows = {name: value.to(self.device) for name, value in to_tensors(batch).items()}
        with torch.inference_mode():
            if seen is not None:  # what a cascade's retriever skips
                rows["exclude"] = seen.padded(rows["user"])
            scores, items = catalog_scores(self.system, rows, seen).topk(k, dim=1)  # (B, k) each
            reasons = self.system.reasons(rows, items) or Reasons()
        because = reasons.because.cpu().numpy() if reasons.because is not None else None
        return TopK(items.cpu().numpy(), scores.cpu().numpy(), because, reasons.label)


class BundleSource(Source):
    """A serving bundle (:func:`marquee.export.bundle.load_bundle`): its networks score, through FAISS and the
    ranker for a cascade, and the data its manifest's config names gives the members' events."""

    def __init__(self, path: str | Path):
        from marquee.export.bundle import load_bundle  # onnxruntime and FAISS, only when a bundle is read
        from marquee.export.manifest import BundleError

        try:
            self.bundle = load_bundle(path)
        except BundleError as err:
            raise ConfigError("bundle", str(err)) from err
        self.name = str(self.bundle.root)
        self.users, self.items = Vocabulary(self.bundle.users.raw_ids), Vocabulary(self.bundle.items.raw_ids)

    @property
    def max_len(self) -> int:
        return max(stage.max_len for stage in self.bundle.stages.values())

    def events(self) -> pd.DataFrame:
        return self._events(self.bundle.manifest["config"]["data"], self.bundle.manifest["data"]["fingerprint"])

    def top_k(self, batch: dict[str, np.ndarray], seen: SeenItems | None, k: int) -> TopK:
        exclude = seen.padded(torch.from_numpy(batch["user"])).numpy() if seen is not None else None
        items, scores = self.bundle.top_k(batch, k, exclude=exclude, exclude_history=seen is not None)
        return TopK(items, scores, label="retrieved" if self.bundle.system["kind"] == "cascade" else None)


def as_source(source: Source | str | Path, device: str = "auto") -> Source:
    """``source`` itself, or what the folder it names holds: a serving bundle (``manifest.json``) or a run."""
    if isinstance(source, Source):
        return source
    return BundleSource(source) if (Path(source) / "manifest.json").is_file() else RunSource(source, device)


def member_ids(vocab: Vocabulary, users: Sequence[Any] | str | int | None, where: str = "the vocabulary"
               ) -> np.ndarray:
    """Ids of raw member ids ``users`` (None or ``'all'``: every member, in id order), duplicates dropped.

    Raw ids are read as the vocabulary's type (``196`` and ``"196"`` are the same member of an integer
    vocabulary); unknown ones stop with a :class:`ConfigError` that lists them.
    """
    if users is None or (isinstance(users, str) and users == "all"):
        return np.arange(1, len(vocab) + 1, dtype=np.int64)
    wanted = [users] if isinstance(users, str | int) else list(users)
    if not wanted:
        raise ConfigError("users", "an empty list; give raw member ids, e.g. users=[196,186], or users=all")
    numeric = vocab.raw_ids.dtype.kind in "iu"
    raw = np.array([_as_int(u) if numeric else str(u) for u in wanted], dtype=object)
    codes = vocab.raw_ids.get_indexer(raw)
    unknown = list(dict.fromkeys(raw[codes < 0].tolist()))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        raise ConfigError("users", f"{len(unknown)} unknown member id(s): {shown} (not among the {len(vocab):,} "
                          f"members of {where}; ids are raw, as in the log)")
    return pd.unique(codes.astype(np.int64) + 1)


def _as_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value  # not an integer: stays unknown


def check_options(k: int, seen: str, batch_size: int, n_items: int) -> None:
    """Refuse a list length outside 1..catalog, an unknown ``seen`` and a batch size below 1, naming the key."""
    if not 1 <= k <= n_items:
        raise ConfigError("k", f"the list length must be between 1 and the catalog's {n_items:,} items, got {k}")
    if seen not in SEEN:
        raise ConfigError("seen", f"'mask' (never show a seen item) or 'keep' (allow repeats), got {seen!r}")
    if batch_size < 1:
        raise ConfigError("batch_size", f"a positive number of members per batch, got {batch_size}")


def member_batch(sequences: UserSequences, users: np.ndarray, max_len: int | None) -> dict[str, np.ndarray]:
    """Rows as :class:`~marquee.data.datasets.EvaluationUsers` makes them, over the whole history, no targets,
    and the request context unknown (0)."""
    first, end = sequences.indptr[users], sequences.indptr[users + 1]
    start = first if max_len is None else np.maximum(first, end - max_len)
    batch = sequences.windows(start, end, max_len)  # (B, L) each, left-padded
    batch["user"] = users.astype(np.int64)
    for name in CONTEXT_FEATURES:
        if name in batch:
            batch[f"target_{name}"] = np.zeros(len(users), np.int64)
    return batch


def iter_recommendations(source: Source | str | Path, users: Sequence[Any] | str | None = None, k: int = 50,
                         seen: str = "mask", batch_size: int = 1024, device: str = "auto",
                         progress: bool = False) -> Iterator[pa.Table]:
    """Each batch of members' top-``k`` as an Arrow table with :data:`COLUMNS` (raw ids), best first."""
    source = as_source(source, device)
    check_options(k, seen, batch_size, len(source.items))
    members = member_ids(source.users, users, source.name)
    events = source.events()
    sequences = UserSequences.from_frame(events, len(source.users))
    masked = SeenItems.from_frame(events, len(source.users), len(source.items)) if seen == "mask" else None
    schema = output_schema(source, {"source": source.name, "k": k, "seen": seen})
    short = 0
    with tqdm(total=len(members), desc="recommending", unit="member", disable=not progress) as bar:
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            top = source.top_k(member_batch(sequences, chunk, source.max_len), masked, k)
            if np.isnan(top.scores).any():
                raise ValueError(f"the model of '{source.name}' produced NaN scores; the recommendations would be "
                                 "meaningless")
            short += int((np.isfinite(top.scores).sum(1) < k).sum())
            bar.update(len(chunk))
            yield _table(source, chunk, top, schema)
    if short:
        log.warning("%d of %d members have fewer than k=%d items to show (seen items masked, or outside a "
                    "cascade's candidates): their lists are shorter", short, len(members), k)


def output_schema(source: Source, metadata: dict[str, Any]) -> pa.Schema:
    """:data:`COLUMNS` with the raw id types of ``source``'s vocabularies; ``metadata`` as JSON under ``marquee``."""
    fields = [("user_id", _raw_type(source.users)), ("rank", pa.int32()), ("item_id", _raw_type(source.items)),
              ("score", pa.float32()), ("reason", pa.string())]
    return pa.schema(fields, metadata={"marquee": json.dumps(metadata)})


def _raw_type(vocab: Vocabulary) -> pa.DataType:
    return pa.array(np.asarray(vocab.raw_ids[:1])).type


def _table(source: Source, users: np.ndarray, top: TopK, schema: pa.Schema) -> pa.Table:
    """One batch's rows: members ``users`` (B,) with their lists; items scored -inf (none left to show) dropped."""
    k = top.items.shape[1]
    shown = np.isfinite(top.scores).ravel()
    columns = {
        "user_id": source.users.decode(np.repeat(users, k)[shown]),
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))[shown],
        "item_id": source.items.decode(top.items.ravel()[shown]),
        "score": top.scores.ravel()[shown].astype(np.float32),
        "reason": _reason_text(top, source.items, shown),
    }
    return pa.Table.from_pydict({name: pa.array(np.asarray(v), type=schema.field(name).type)
                                 for name, v in columns.items()}, schema=schema)


def _reason_text(top: TopK, items: Vocabulary, shown: np.ndarray) -> np.ndarray:
    """Per shown row: ``because you watched <raw item id>``, else the label, else None."""
    text = np.full(int(shown.sum()), top.label, dtype=object)
    if top.because is not None:
        because = top.because.ravel()[shown]
        named = because > 0
        text[named] = [BECAUSE + str(raw) for raw in items.decode(because[named])]
    return text


def recommend(source: Source | str | Path, users: Sequence[Any] | str | None = None, k: int = 50,
              seen: str = "mask", batch_size: int = 1024, device: str = "auto", progress: bool = False
              ) -> pd.DataFrame:
    """Every requested member's top-``k`` (:data:`COLUMNS`) from a run or bundle folder (or any :class:`Source`).

    ``users``: raw member ids, or None for all; ``seen``: ``mask`` (never recommend a seen item) or
    ``keep`` (allow repeats).
    """
    return pa.concat_tables(iter_recommendations(source, users, k, seen, batch_size, device, progress)).to_pandas()


def write_recommendations(source: Source | str | Path, out: str | Path, users: Sequence[Any] | str | None = None,
                          k: int = 50, seen: str = "mask", batch_size: int = 1024, device: str = "auto",
                          progress: bool = True) -> Path:
    """Write :func:`recommend`'s rows to the Parquet file ``out``, one row group per batch, atomically."""
    out = Path(out)
    writer = None
    with atomic_path(out) as tmp:
        try:
            for table in iter_recommendations(source, users, k, seen, batch_size, device, progress):
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
    return out
