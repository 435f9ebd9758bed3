"""A data set's and its split's vital statistics, as a dict and as a printable table."""

from __future__ import annotations

import datetime as dt

from marquee.data.splits import Split


def split_summary(split: Split) -> dict[str, int | float | str]:
    """Users, items, interactions, sparsity, time span, events and split sizes."""
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
