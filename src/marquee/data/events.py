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
class EventType:
    """What one kind of event means for learning: is it a positive (a target worth predicting), and how much it weighs.

    A positive event with weight ``w`` counts ``w`` times as a target. A not-positive event (a skip)
    is never a target and is never evaluated; with ``w > 0`` it teaches the model that the member
    did *not* want that title (each loss says how), with ``w = 0`` it is history only.
    """

    weight: float = 1.0
    positive: bool = True


def _event_type(name: str, spec: float | Mapping) -> EventType:
    """``1.0`` (a positive event of that weight) or ``{weight: 1.0, positive: false}``."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"weight", "positive"})
        if unknown:
            raise DataError(f"events.types.{name}: unknown key(s) {unknown}; expected weight and positive")
        kind = EventType(float(spec.get("weight", 1.0)), bool(spec.get("positive", True)))
    else:
        kind = EventType(float(spec))
    if not (np.isfinite(kind.weight) and kind.weight >= 0):
        raise DataError(f"events.types.{name}: weight must be a finite number >= 0, got {kind.weight}")
    return kind


@dataclass(frozen=True)
class EventSchema:
    """Event types with their weights and whether they are positive; raw labels reach a type by name or ``aliases``.

    ``types`` maps a type to its weight (a positive event) or to ``{weight, positive}``, e.g.
    ``{play: 1.0, complete: 2.0, skip: {weight: 1.0, positive: false}}``. Only positive events are
    training targets and evaluation targets. ``unknown`` says what happens to a label that names no
    type: ``error`` stops with the first offending row, ``drop`` removes those rows and logs how many.
    """

    types: Mapping[str, float | Mapping] = field(default_factory=lambda: {"interaction": 1.0})
    aliases: Mapping[str, str] = field(default_factory=dict)
    unknown: str = "error"
    kinds: dict[str, EventType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.types:
            raise DataError("events.types is empty: give at least one event type with its weight")
        bad = {raw: t for raw, t in self.aliases.items() if t not in self.types}
        if bad:
            raise DataError(f"events.aliases point at unknown types {bad}; known types: {list(self.types)}")
        if self.unknown not in ("error", "drop"):
            raise DataError(f"events.unknown must be 'error' or 'drop', got {self.unknown!r}")
        kinds = {name: _event_type(name, spec) for name, spec in self.types.items()}
        if not any(k.positive for k in kinds.values()):
            raise DataError(f"events.types: no positive event type among {list(kinds)}; nothing could be a target")
        object.__setattr__(self, "kinds", kinds)

    @property
    def names(self) -> list[str]:
        """Event type names; type ``k`` has tensor id ``k + 1`` (0 is padding)."""
        return list(self.types)

    def weights(self) -> np.ndarray:
        """Weight per tensor id, index 0 (padding) weighing 0."""
        return np.array([0.0, *(k.weight for k in self.kinds.values())], dtype=np.float32)

    def positive(self) -> np.ndarray:
        """Whether each tensor id is a positive event; index 0 (padding) is not."""
        return np.array([False, *(k.positive for k in self.kinds.values())])

    def is_positive(self, event: pd.Series) -> np.ndarray:
        """Per row of a categorical ``event`` column (over :attr:`names`): is it a positive event."""
        return self.positive()[event.cat.codes.to_numpy(np.int64) + 1]

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
