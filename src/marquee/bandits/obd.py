"""The Open Bandit Dataset (ZOZOTOWN fashion e-commerce, Saito et al. 2020) as impression logs.

Each row shows one of 80 (men: 34, women: 46) items in one of three slate positions, chosen by a
uniform-random or a Bernoulli Thompson sampling logging policy; ``propensity_score`` is that policy's
probability of the item at that position. The context is a one-hot of the position (always its first
three columns) plus the one-hot user features (first level of each dropped, as obp's default
preprocessing), so that a position-aware
target policy or reward model reads the position from the context like any other feature. Arm features
are ``item_feature_0`` and a one-hot of the three hashed categorical item features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from marquee.bandits.logs import BanditLog, Candidates, check_propensities
from marquee.bandits.policies.static import ArmDistributionPolicy
from marquee.data.errors import DataError, where
from marquee.data.parsing import read_delimited, require_columns, to_number

BEHAVIOR_POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
N_POSITIONS = 3
ITEM_COLUMNS = ("item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
LOG_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")


def load_obd(root: str | Path, behavior_policy: str = "random", campaign: str = "all",
             affinity: bool = False) -> BanditLog:
    """Read ``<root>/<behavior_policy>/<campaign>/<campaign>.csv`` and its ``item_context.csv`` into a BanditLog.

    With ``affinity`` the context also holds the ``user-item_affinity_*`` columns (obp's context set 2).
    """
    if behavior_policy not in BEHAVIOR_POLICIES or campaign not in CAMPAIGNS:
        raise ValueError(f"behavior_policy must be one of {BEHAVIOR_POLICIES} and campaign one of {CAMPAIGNS}, "
                         f"got {behavior_policy!r} and {campaign!r}")
    folder = Path(root) / behavior_policy / campaign
    log_path, items_path = folder / f"{campaign}.csv", folder / "item_context.csv"
    for path in (log_path, items_path):
        if not path.is_file():
            raise DataError(f"{where(path)} not found; expected the Open Bandit Dataset laid out as "
                            "<root>/<random|bts>/<all|men|women>/{<campaign>.csv, item_context.csv}")
    arm_features, arm_names = _item_features(items_path)
    n_items = len(arm_features)

    frame, offset = read_delimited(log_path, ",")
    require_columns(frame, LOG_COLUMNS, log_path, ",")
    user_columns = sorted(c for c in frame.columns if c.startswith("user_feature_"))
    affinity_columns = [f"user-item_affinity_{i}" for i in range(n_items)] if affinity else []
    require_columns(frame, user_columns + affinity_columns, log_path, ",")
    propensity = check_propensities(frame["propensity_score"], lambda i: where(log_path, i + offset, "propensity_score"))
    item = to_number(frame, "item_id", log_path, offset, integer=True).to_numpy()
    position = to_number(frame, "position", log_path, offset, integer=True).to_numpy()
    click = to_number(frame, "click", log_path, offset).to_numpy()
    for name, values, high in (("item_id", item, n_items - 1), ("position", position - 1, N_POSITIONS - 1),
                               ("click", click, 1)):
        bad = np.flatnonzero((values < 0) | (values > high))
        if len(bad):
            raise DataError(f"{where(log_path, bad[0] + offset, name)}: {frame[name].iloc[bad[0]]!r} is outside the "
                            f"range this campaign allows ({'0/1' if name == 'click' else f'{high + 1} values'})")

    users = pd.get_dummies(frame[user_columns].astype(str), drop_first=True, dtype=np.float32)
    positions = pd.DataFrame(np.eye(N_POSITIONS, dtype=np.float32)[position - 1],
                             columns=[f"position={p + 1}" for p in range(N_POSITIONS)])
    parts = [positions, users.reset_index(drop=True)]  # positions first: the same columns in every OBD log
    if affinity_columns:
        parts.append(pd.DataFrame({c: to_number(frame, c, log_path, offset).to_numpy(np.float32)
                                   for c in affinity_columns}))
    context = pd.concat(parts, axis=1)
    ids = np.broadcast_to(np.arange(n_items, dtype=np.int64), (len(frame), n_items))  # every item is a candidate
    return BanditLog(
        context=context.to_numpy(np.float32),
        candidates=Candidates(ids, arm_features, keys=arm_names),
        action=item,
        propensity=propensity,
        reward=click,
        context_names=tuple(context.columns),
        position=position - 1,
        meta=pd.DataFrame({"timestamp": pd.to_datetime(frame["timestamp"].to_numpy(), utc=True)}),
        source=str(log_path),
    )


def _item_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Item features as an ``(n_items, f)`` float32 table ordered by item id, and the item ids."""
    frame, offset = read_delimited(path, ",")
    require_columns(frame, ITEM_COLUMNS, path, ",")
    item = to_number(frame, "item_id", path, offset, integer=True).to_numpy()
    if not np.array_equal(np.sort(item), np.arange(len(item))):
        raise DataError(f"{where(path, column='item_id')}: expected item ids 0..{len(item) - 1} once each")
    numeric = to_number(frame, "item_feature_0", path, offset).to_numpy(np.float32)[:, None]
    categorical = pd.get_dummies(frame[list(ITEM_COLUMNS[2:])].astype(str), dtype=np.float32).to_numpy()
    table = np.concatenate([numeric, categorical], axis=1)
    order = np.argsort(item)
    return table[order], item[order]


def position_columns(context_names: tuple[str, ...]) -> list[int]:
    """Indices of the position one-hot among an OBD log's context columns, position 1 first."""
    return [context_names.index(f"position={p + 1}") for p in range(N_POSITIONS)]


def logged_policy(root: str | Path, behavior_policy: str = "bts", campaign: str = "all") -> ArmDistributionPolicy:
    """A logger's behaviour as a target policy: how often it showed each item at each position in its own log."""
    log = load_obd(root, behavior_policy, campaign)
    return ArmDistributionPolicy.from_log(log, position_columns(log.context_names), name=f"{behavior_policy} (logged)")
