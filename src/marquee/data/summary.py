"""A data set's and its split's vital statistics, as a dict and as a printable table."""

from __future__ import annotations

import datetime as dt
import logging
import warnings

import numpy as np

from marquee.data.splits import STAGES, Split

logger = logging.getLogger(__name__)

REPEAT_WARN_SHARE = 0.05  # warn when this share of a stage's targets are items the member has already seen


def repeat_targets(split: Split, stage: str) -> tuple[int, int]:
    """``(repeats, targets)``: distinct (user, item) targets of ``stage``, and how many the user has already seen.

    "Seen" is exactly what the evaluator masks by default (:meth:`Split.seen`: training rows before
    validation, training and validation rows before test), so a repeat can never be hit under
    ``evaluation.seen=mask``.
    """
    targets = split.targets(stage)[["user_id", "item_id"]].drop_duplicates().to_numpy(np.int64)
    seen = split.seen(stage)
    width = split.log.n_items + 1
    seen_users = np.repeat(np.arange(len(seen.indptr) - 1), np.diff(seen.indptr))
    repeats = np.isin(targets[:, 0] * width + targets[:, 1], seen_users * width + seen.indices)
    return int(repeats.sum()), len(targets)


def _warn_on_repeats(stage: str, repeats: int, targets: int) -> None:
    share = repeats / targets
    message = (
        f"{stage}: {share:.1%} of the targets ({repeats:,} of {targets:,}) are titles the member has already seen; "
        "the default evaluation.seen=mask hides them, so they can never be hit and accuracy reads too low. "
        "Set evaluation.seen=keep to evaluate repeat consumption."
    )
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def split_summary(split: Split) -> dict[str, int | float | str]:
    """Users, items, interactions, sparsity, time span, events, split sizes and repeat targets per stage.

    Warns (and logs) when at least :data:`REPEAT_WARN_SHARE` of a stage's targets are repeats of
    items already seen, which the default seen-item masking scores as misses.
    """
    log = split.log
    frame = log.interactions
    pairs = len(frame[["user_id", "item_id"]].drop_duplicates())
    out: dict[str, int | float | str] = {
        "dataset": log.name,
        "users": log.n_users,
        "items": log.n_items,
        "interactions": len(log),
        "sparsity": 1.0 - pairs / (log.n_users * log.n_items),
        "items_with_genres": int(sum(1 for g in log.item_meta.get("genres", []) if g)),
        "genres": len(log.genres),
        "events": ", ".join(f"{k}={v}" for k, v in frame["event"].value_counts().items() if v),
        "context": ", ".join(log.context_columns) or "none",
    }
    if log.ordinal_time:
        out["time"] = "ordinal positions (no timestamps)"
    else:
        first, last = (dt.datetime.fromtimestamp(int(t), dt.UTC).date() for t in (frame.timestamp.min(), frame.timestamp.max()))
        out["time"] = f"{first} .. {last}"
    out.update(split.summary())
    for stage in STAGES:
        repeats, targets = repeat_targets(split, stage)
        out[f"{stage}_repeat_targets"] = repeats
        out[f"{stage}_repeat_share"] = repeats / targets if targets else 0.0
        if targets and repeats / targets >= REPEAT_WARN_SHARE:
            _warn_on_repeats(stage, repeats, targets)
    out["fingerprint"] = log.fingerprint[:16]
    return out


def format_table(summary: dict[str, int | float | str]) -> str:
    """Two aligned columns, numbers with thousands separators."""
    width = max(len(k) for k in summary)
    lines = []
    for key, value in summary.items():
        if isinstance(value, float):
            text = f"{value:.4%}" if key == "sparsity" else f"{value:,.4f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)
