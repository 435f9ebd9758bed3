"""Map raw event labels (play, skip, rating, ...) to event types and training weights by config."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marquee.data.errors import DataError, where

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventSchema:
    """Event types with their weights; raw labels reach a type by name or through ``aliases``.

    ``unknown`` says what happens to a label that names no type: ``error`` stops with the first
    offending row, ``drop`` removes those rows and logs how many.
    """

    types: Mapping[str, float] = field(default_factory=lambda: {"interaction": 1.0})
    aliases: Mapping[str, str] = field(default_factory=dict)
    unknown: str = "error"

    def __post_init__(self) -> None:
        if not self.types:
            raise DataError("events.types is empty: give at least one event type with its weight")
        bad = {raw: t for raw, t in self.aliases.items() if t not in self.types}
        if bad:
            raise DataError(f"events.aliases point at unknown types {bad}; known types: {list(self.types)}")
        if self.unknown not in ("error", "drop"):
            raise DataError(f"events.unknown must be 'error' or 'drop', got {self.unknown!r}")

    @property
    def names(self) -> list[str]:
        """Event type names; type ``k`` has tensor id ``k + 1`` (0 is padding)."""
        return list(self.types)

    def weights(self) -> np.ndarray:
        """Weight per tensor id, index 0 (padding) weighing 0."""
        return np.array([0.0, *self.types.values()], dtype=np.float32)

    def encode(self, labels: pd.Series, source: str, line_offset: int = 1) -> tuple[pd.Categorical, np.ndarray]:
        """Map raw labels to a categorical of event types; returns it with a keep-mask of rows."""
        lookup = {**{t: t for t in self.types}, **dict(self.aliases)}
        mapped = labels.astype("string").map(lookup)
        unknown = mapped.isna().to_numpy()
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            label = labels.iloc[first]
            if self.unknown == "error":
                raise DataError(
                    f"{where(source, labels.index[first] + line_offset, 'event')}: unknown event {label!r}; "
                    f"expected one of {sorted(lookup)} (add it to events.types or events.aliases, "
                    "or set events.unknown=drop)"
                )
            log.warning("%s: dropped %d rows with events outside %s", source, int(unknown.sum()), sorted(lookup))
        cat = pd.Categorical(mapped.to_numpy(dtype=object, na_value=None), categories=self.names)
        return cat, ~unknown
