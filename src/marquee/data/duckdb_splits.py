"""The built-in splits as SQL over the encoded log, so that splitting never needs the log in memory.

:func:`parts_sql` returns a SELECT over the relation ``encoded`` (one row per event: ``_ord``, its place
in the log's order, and the encoded ``user_id``, ``item_id``, ``timestamp``, ``event``, ...) that adds
``part``, the index in :data:`PARTS` of the part the pandas split (:mod:`marquee.data.splits`) puts
the row in, with the same checks and errors. :func:`to_split` turns the parts back into a Split.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from marquee.data.errors import DataError
from marquee.data.log import InteractionLog
from marquee.data.splits import ItemHoldout, LeaveOneOut, Split, TemporalSplit, UserHoldout, holdout_roles

logger = logging.getLogger(__name__)

PARTS = ("train", "val", "test", "val_fold_in", "test_fold_in")
SUPPORTED = (LeaveOneOut, TemporalSplit, UserHoldout, ItemHoldout)
STRATEGY = {LeaveOneOut: "leave_one_out", TemporalSplit: "temporal", UserHoldout: "user_holdout",
            ItemHoldout: "item_holdout"}


def parts_sql(con, split: object, name: str, ordinal_time: bool, positive: list[int], n_users: int,
              n_items: int) -> str:
    """SELECT ``encoded``'s columns plus ``part`` for ``split`` (one of :data:`SUPPORTED`); ``positive``: event
    codes of positive types."""
    if isinstance(split, LeaveOneOut):
        return _leave_one_out(con, split, name, positive)
    if isinstance(split, TemporalSplit):
        return _temporal(con, split, name, ordinal_time)
    if isinstance(split, UserHoldout):
        role = holdout_roles(np.arange(1, n_users + 1), n_users, split.val_fraction, split.test_fraction, split.seed)
        _roles_table(con, "user_roles", role)
        # fold-in: a held-out user's first rows; val 1 / 3, test 2 / 4
        return f"""SELECT e.*, CASE r.role WHEN 0 THEN 0 ELSE r.role + CASE WHEN
                (row_number() OVER (PARTITION BY e.user_id ORDER BY e._ord)) <= {int(split.fold_in)} THEN 2 ELSE 0 END
                END AS part FROM encoded e JOIN user_roles r ON e.user_id = r.id"""
    if isinstance(split, ItemHoldout):
        counted = con.execute("SELECT item_id, count(*) FROM encoded GROUP BY item_id").fetchnumpy()
        counts = np.zeros(n_items + 1, dtype=np.int64)
        counts[counted["item_id"]] = counted["count_star()"]
        eligible = np.flatnonzero(counts >= split.min_interactions)
        _roles_table(con, "item_roles", holdout_roles(eligible[eligible > 0], n_items, split.val_fraction,
                                                       split.test_fraction, split.seed))
        return "SELECT e.*, r.role AS part FROM encoded e JOIN item_roles r ON e.item_id = r.id"
    raise TypeError(f"no SQL for split {type(split).__name__}; supported: {[s.__name__ for s in SUPPORTED]}")


def _leave_one_out(con, split: LeaveOneOut, name: str, positive: list[int]) -> str:
    if split.min_interactions < 3:
        raise DataError("split.min_interactions must be >= 3: one train, one validation and one test row")
    m = int(split.min_interactions)
    is_positive = f"CAST(event IN ({', '.join(map(str, positive))}) AS INTEGER)"
    short = con.execute(f"SELECT count(*) FROM (SELECT user_id FROM encoded GROUP BY user_id "
                        f"HAVING sum({is_positive}) < {m})").fetchall()[0][0]
    if short:
        logger.info("%s: %d users with fewer than %d positive events stay in training only", name, short, m)
    # after: the user's positive events at or after this row (1 at the last positive, 0 after it)
    return f"""SELECT * EXCLUDE (_pos, _after, _size), CASE
            WHEN _size >= {m} AND (_after = 0 OR (_after = 1 AND _pos = 1)) THEN 2
            WHEN _size >= {m} AND ((_after = 1 AND _pos = 0) OR (_after = 2 AND _pos = 1)) THEN 1
            ELSE 0 END AS part
        FROM (SELECT *,
            sum(_pos) OVER (PARTITION BY user_id ORDER BY _ord
                            ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS _after,
            sum(_pos) OVER (PARTITION BY user_id) AS _size
            FROM (SELECT *, {is_positive} AS _pos FROM encoded))"""


def _temporal(con, split: TemporalSplit, name: str, ordinal_time: bool) -> str:
    if ordinal_time:
        raise DataError(f"{name}: timestamps are positions, not times; a temporal split needs real times")
    val_start = split.val_start if split.val_start is not None else int(quantile(con, split.val_quantile))
    test_start = split.test_start if split.test_start is not None else int(quantile(con, split.test_quantile))
    if not val_start <= test_start:
        raise DataError(f"split: val_start ({val_start}) must not be after test_start ({test_start})")
    train, test = con.execute(f"SELECT count(*) FILTER (WHERE timestamp < {int(val_start)}), "
                              f"count(*) FILTER (WHERE timestamp >= {int(test_start)}) FROM encoded").fetchall()[0]
    if not train or not test:
        raise DataError(f"{name}: temporal cut at {val_start}/{test_start} leaves train or test empty")
    return (f"SELECT *, CASE WHEN timestamp < {int(val_start)} THEN 0 WHEN timestamp < {int(test_start)} THEN 1 "
            "ELSE 2 END AS part FROM encoded")


def quantile(con, q: float) -> float:
    """``Series.quantile(q)`` of ``encoded.timestamp`` (linear), to the last bit: numpy's interpolation between the
    two order statistics it would read, which SQL fetches without loading the column."""
    n = con.execute("SELECT count(*) FROM encoded").fetchall()[0][0]
    virtual = (n - 1) * np.asarray([q], dtype=np.float64)  # numpy's virtual index of the linear method
    below = n - 1 if virtual[0] >= n - 1 else int(np.floor(virtual[0]))
    above = min(below + 1, n - 1)
    pair = con.execute(f"SELECT timestamp FROM encoded ORDER BY timestamp LIMIT {above - below + 1} "
                       f"OFFSET {below}").fetchnumpy()["timestamp"].astype(np.int64)
    if below == n - 1:
        return float(pair[0])
    gamma = virtual[0] - below  # the same float numpy interpolates with, on the same two values
    return float(np.quantile(pair, gamma))


def _roles_table(con, name: str, role: np.ndarray) -> None:
    """Table ``name`` (id, role) for ids 1..len(role) - 1 (0 is padding)."""
    frame = pd.DataFrame({"id": np.arange(1, len(role), dtype=np.int32), "role": role[1:].astype(np.int8)})
    con.register("_roles", frame)
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM _roles")
    con.unregister("_roles")


def to_split(log: InteractionLog, part: np.ndarray, strategy: str) -> Split:
    """The Split whose parts are the rows of ``log.interactions`` with each ``part`` code (an index of PARTS)."""
    frame = log.interactions
    parts = {name: frame[part == code] for code, name in enumerate(PARTS)}
    fold_in = {"val_fold_in": parts["val_fold_in"], "test_fold_in": parts["test_fold_in"]}
    return Split(log, parts["train"], parts["val"], parts["test"], strategy,
                 **(fold_in if strategy == "user_holdout" else {}))
