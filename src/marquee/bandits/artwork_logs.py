"""marquee's artwork impression log: one Parquet row per artwork shown, the format serving writes and OPE reads.

``docs/impression_log.md`` documents every column (``SCHEMA`` below is its authority), how propensities
must be logged, and how to point ``python -m marquee.bandit source=artwork_log`` at a file.
:func:`write_artwork_log` is the writer: it checks every row first, so a file with a zero, missing or
above-one propensity, or a ``chosen`` that is not among the ``arms``, is refused before anything is
written; :func:`read_artwork_log` checks the same on reading and names the row and column.

The file's schema metadata holds ``marquee.context_names`` (a JSON list naming the context entries)
and ``marquee.artwork_log_version``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from marquee.bandits.logs import BanditLog, Candidates, check_propensities
from marquee.data.atomic import atomic_path
from marquee.data.errors import DataError, where

VERSION = "1"
# required columns: one value per row, and one list per row
SCALARS = ("impression_id", "user_id", "title_id", "chosen", "propensity", "reward")
LISTS = ("context", "arms", "arm_features")
# optional columns: written as nulls when a frame leaves them out
OPTIONAL = ("timestamp", "position", "hour", "policy")
SCHEMA = pa.schema([
    ("impression_id", pa.int64()), ("timestamp", pa.int64()), ("user_id", pa.int64()), ("title_id", pa.int64()),
    ("position", pa.int16()), ("hour", pa.int8()), ("context", pa.list_(pa.float32())), ("arms", pa.list_(pa.int64())),
    ("arm_features", pa.list_(pa.list_(pa.float32()))), ("chosen", pa.int64()), ("propensity", pa.float64()),
    ("reward", pa.float32()), ("policy", pa.string()),
])


def artwork_frame(log: BanditLog, policy: str) -> pd.DataFrame:
    """A log in the artwork-log layout (``meta`` supplies user_id, title_id and, if present, timestamp)."""
    mask, features = log.candidates.mask, log.candidates.features
    keys = log.candidates.keys if log.candidates.keys is not None else np.arange(len(log.candidates.table))
    ids = np.where(mask, keys[np.maximum(log.candidates.ids, 0)], -1)
    arms = [row[m] for row, m in zip(ids, mask)]
    return pd.DataFrame({
        "impression_id": log.meta["impression_id"] if "impression_id" in log.meta else np.arange(len(log)),
        "timestamp": log.meta["timestamp"] if "timestamp" in log.meta else pd.array([None] * len(log), "Int64"),
        "user_id": log.meta["user_id"], "title_id": log.meta["title_id"],
        "position": pd.array([None] * len(log), "Int16") if log.position is None else log.position,
        "hour": log.meta["hour"] if "hour" in log.meta else pd.array([None] * len(log), "Int8"),
        "context": list(log.context),
        "arms": arms, "arm_features": [list(f[m]) for f, m in zip(features, mask)],
        "chosen": keys[log.chosen_arm], "propensity": log.propensity, "reward": log.reward.astype(np.float32),
        "policy": policy,
    })


def write_artwork_log(frame: pd.DataFrame | Mapping[str, Sequence], path: str | Path,
                      context_names: Sequence[str] = ()) -> Path:
    """Check every row of ``frame`` (a DataFrame, or a mapping of column name to values), then write it atomically.

    ``context_names`` name the entries of the ``context`` lists; they travel in the file's metadata.
    Returns ``path``. See docs/impression_log.md for the columns.
    """
    path = Path(path)
    table = _table(pd.DataFrame(frame), path)
    to_bandit_log(table, path, tuple(context_names))  # raises on any bad row; nothing is written then
    metadata = {b"marquee.context_names": json.dumps(list(context_names)).encode(),
                b"marquee.artwork_log_version": VERSION.encode()}
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
    return path


def read_artwork_log(path: str | Path) -> BanditLog:
    """Read and check an artwork log written by :func:`write_artwork_log` (or by serving)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{where(path)} not found; expected an artwork impression log (Parquet)")
    table = pq.read_table(path)
    names = json.loads((table.schema.metadata or {}).get(b"marquee.context_names", b"[]"))
    return to_bandit_log(table, path, tuple(names))


def _check_columns(columns: Sequence[str], source: Path) -> None:
    """Refuse a frame or file without every required column, naming the missing ones."""
    missing = [c for c in SCALARS + LISTS if c not in columns]
    if missing:
        required = [c for c in SCHEMA.names if c not in OPTIONAL]
        raise DataError(f"{where(source)}: missing required column(s) {missing}; an artwork log has the columns "
                        f"{required} and optionally {list(OPTIONAL)} (docs/impression_log.md)")


def _table(frame: pd.DataFrame, source: Path) -> pa.Table:
    _check_columns(list(frame.columns), source)
    try:
        frame = frame.assign(**{c: None for c in OPTIONAL if c not in frame.columns},
                             # a row's features may come as one (K, f) array: Arrow takes a list of K rows
                             arm_features=[f if f is None else list(f) for f in frame["arm_features"]])
        return pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
        raise DataError(f"{where(source)}: a column does not convert to the artwork-log schema: {err}") from err


def _lists(table: pa.Table, name: str, source: Path) -> tuple[np.ndarray, pa.Array]:
    """A list column's per-row lengths and its flattened values; a null list is refused."""
    column = table[name].combine_chunks()
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{where(source, row, name)}: missing value")
    return np.diff(column.offsets.to_numpy()), column.flatten()


def to_bandit_log(table: pa.Table, source: str | Path, context_names: tuple[str, ...] = ()) -> BanditLog:
    """Check an artwork-log table row by row and turn it into a BanditLog; errors name the row and column."""
    source = Path(source)
    _check_columns(table.column_names, source)
    n = table.num_rows
    for name in SCALARS:
        nulls = table[name].is_null().to_numpy(zero_copy_only=False) if name != "propensity" else np.zeros(n, bool)
        if nulls.any():
            raise DataError(f"{where(source, int(np.flatnonzero(nulls)[0]), name)}: missing value")
    propensity = check_propensities(table["propensity"].to_numpy(zero_copy_only=False),
                                    lambda i: where(source, int(i), "propensity"))

    context_len, context_values = _lists(table, "context", source)
    if n and (context_len != context_len[0]).any():
        row = int(np.flatnonzero(context_len != context_len[0])[0])
        raise DataError(f"{where(source, row, 'context')}: {context_len[row]} entries; row 0 has {context_len[0]}")
    arm_count, arm_ids = _lists(table, "arms", source)
    feature_count, feature_lists = _lists(table, "arm_features", source)
    bad = np.flatnonzero((arm_count == 0) | (feature_count != arm_count))
    if len(bad):
        row = int(bad[0])
        column = "arms" if arm_count[row] == 0 else "arm_features"
        raise DataError(f"{where(source, row, column)}: {arm_count[row]} arms and {feature_count[row]} feature lists; "
                        "expected at least one arm and one feature list per arm")
    width, features = _lists(pa.Table.from_arrays([feature_lists], ["arm_features"]), "arm_features", source)
    if len(width) and (width != width[0]).any():
        row = int(np.searchsorted(np.cumsum(arm_count), np.flatnonzero(width != width[0])[0], side="right"))
        raise DataError(f"{where(source, row, 'arm_features')}: artworks have {sorted(set(width.tolist()))} features; "
                        "expected one length for all")
    arm_ids = arm_ids.to_numpy(zero_copy_only=False).astype(np.int64)
    features = features.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(arm_ids), -1)

    # one table row per distinct artwork id; the same id must always come with the same features
    keys, first, code = np.unique(arm_ids, return_index=True, return_inverse=True)
    table_rows = features[first]
    conflict = np.flatnonzero((features != table_rows[code]).any(axis=1))
    row_of_arm = np.repeat(np.arange(n), arm_count)
    if len(conflict):
        j = conflict[0]
        raise DataError(f"{where(source, int(row_of_arm[j]), 'arm_features')}: artwork {arm_ids[j]} has features "
                        f"that differ from row {int(row_of_arm[first[code[j]]])}'s; an artwork has one set of features")
    k = int(arm_count.max()) if n else 0
    slot = np.arange(len(arm_ids)) - np.repeat(np.cumsum(arm_count) - arm_count, arm_count)
    ids = np.full((n, k), -1, dtype=np.int64)
    ids[row_of_arm, slot] = code
    chosen = table["chosen"].to_numpy(zero_copy_only=False).astype(np.int64)
    is_chosen = arm_ids == np.repeat(chosen, arm_count)
    action = np.full(n, -1, dtype=np.int64)
    action[row_of_arm[is_chosen][::-1]] = slot[is_chosen][::-1]  # the first match wins
    absent = np.flatnonzero(action < 0)
    if len(absent):
        row = int(absent[0])
        raise DataError(f"{where(source, row, 'chosen')}: artwork {chosen[row]} is not among the candidate arms "
                        f"{arm_ids[row_of_arm == row].tolist()}")
    position = table["position"].to_numpy(zero_copy_only=False) if "position" in table.column_names else None
    if position is not None and pd.isna(position).any():
        position = None
    meta = pd.DataFrame({c: table[c].to_numpy(zero_copy_only=False) for c in
                         ("impression_id", "timestamp", "user_id", "title_id", "hour", "policy") if c in table.column_names})
    return BanditLog(
        context=context_values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, -1),
        candidates=Candidates(ids, table_rows, keys=keys),
        action=action,
        propensity=propensity,
        reward=table["reward"].to_numpy(zero_copy_only=False).astype(np.float64),
        context_names=context_names if context_names else tuple(f"x{j}" for j in range(int(context_len[0]) if n else 0)),
        position=None if position is None else position.astype(np.int64),
        meta=meta,
        source=str(source),
    )
