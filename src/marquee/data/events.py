"""Map raw event labels (play, skip, rating, ...) to event types, training weights and valid value ranges by config."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from marquee.data.errors import DataError, where

log = logging.getLogger(__name__)


# what an event's value may be: kind -> (min, max); a rating's scale differs per data set, so it has none
VALUE_KINDS: dict[str, tuple[float, float] | None] = {
    "fraction": (0.0, 1.0),  # share of the title watched
    "seconds": (0.0, np.inf),  # watch time
    "rating": None,  # stars on the data set's scale: give min and max
    "value": (-np.inf, np.inf),  # any finite number, optionally bounded by min/max
}


@dataclass(frozen=True)
class ValueRange:
    """The closed interval ``[low, high]`` an event's value must lie in, and what kind of value it is."""

    kind: str
    low: float
    high: float

    def describe(self) -> str:
        """E.g. ``a fraction in [0, 1]`` or ``seconds >= 0``."""
        noun = "seconds" if self.kind == "seconds" else f"a {self.kind}"
        if np.isfinite(self.high):
            return f"{noun} in [{self.low:g}, {self.high:g}]" if np.isfinite(self.low) else f"{noun} <= {self.high:g}"
        return f"{noun} >= {self.low:g}" if np.isfinite(self.low) else f"{noun} (any finite number)"


def value_range(key: str, spec: str | Mapping | None) -> ValueRange | None:
    """Parse ``fraction``, ``seconds`` or ``{kind: rating, min: 1, max: 5}`` (min/max override a kind's bounds)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        spec = {"kind": spec}
    unknown = sorted(set(spec) - {"kind", "min", "max"})
    kind = str(spec.get("kind", "value"))
    if unknown or kind not in VALUE_KINDS:
        raise DataError(f"{key}: expected one of {list(VALUE_KINDS)} or {{kind, min, max}}, got {dict(spec)}")
    low, high = VALUE_KINDS[kind] or (None, None)
    low, high = spec.get("min", low), spec.get("max", high)
    if low is None or high is None:
        raise DataError(f"{key}: a {kind} needs min and max, e.g. {{kind: {kind}, min: 1, max: 5}}")
    if not float(low) <= float(high):
        raise DataError(f"{key}: min ({low}) is above max ({high})")
    return ValueRange(kind, float(low), float(high))


@dataclass(frozen=True)
class EventType:
    """What one kind of event means for learning: is it a positive (a target worth predicting), and how much it weighs.

    A positive event with weight ``w`` counts ``w`` times as a target. A not-positive event (a skip)
    is never a target and is never evaluated; with ``w > 0`` it teaches the model that the member
    did *not* want that title (each loss says how), with ``w = 0`` it is history only. ``value``,
    when set, is the range the event's logged value must lie in (None: any finite number).
    """

    weight: float = 1.0
    positive: bool = True
    value: ValueRange | None = None


def _event_type(name: str, spec: float | Mapping, value: ValueRange | None) -> EventType:
    """``1.0`` (a positive event of that weight) or ``{weight: 1.0, positive: false, value: fraction}``.

    ``value`` is the schema-wide range, used unless the type names its own.
    """
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"weight", "positive", "value"})
        if unknown:
            raise DataError(f"events.types.{name}: unknown key(s) {unknown}; expected weight, positive and value")
        if "value" in spec:
            value = value_range(f"events.types.{name}.value", spec["value"])
        kind = EventType(float(spec.get("weight", 1.0)), bool(spec.get("positive", True)), value)
    else:
        kind = EventType(float(spec), value=value)
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

    ``value`` is the range every event's value must lie in: ``fraction`` ([0, 1]), ``seconds``
    (>= 0), ``{kind: rating, min: 1, max: 5}``, ``{min: 0}``; a type's own ``value`` key overrides
    it, e.g. ``{play: {weight: 1.0, value: seconds}}``. None (the default) accepts any finite number.
    """

    types: Mapping[str, float | Mapping] = field(default_factory=lambda: {"interaction": 1.0})
    aliases: Mapping[str, str] = field(default_factory=dict)
    unknown: str = "error"
    value: str | Mapping | None = None
    kinds: dict[str, EventType] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.types:
            raise DataError("events.types is empty: give at least one event type with its weight")
        bad = {raw: t for raw, t in self.aliases.items() if t not in self.types}
        if bad:
            raise DataError(f"events.aliases point at unknown types {bad}; known types: {list(self.types)}")
        if self.unknown not in ("error", "drop"):
            raise DataError(f"events.unknown must be 'error' or 'drop', got {self.unknown!r}")
        value = value_range("events.value", self.value)
        kinds = {name: _event_type(name, spec, value) for name, spec in self.types.items()}
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

    @property
    def lookup(self) -> dict[str, str]:
        """Raw label -> event type: every type's own name and the aliases."""
        return {**{t: t for t in self.types}, **dict(self.aliases)}

    def encode(self, labels: pd.Series, source: str, line_offset: int = 1) -> tuple[pd.Categorical, np.ndarray]:
        """Map raw labels to a categorical of event types; returns it with a keep-mask of rows."""
        lookup = self.lookup
        mapped = labels.astype("string").map(lookup)
        unknown = mapped.isna().to_numpy()
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            if self.unknown == "error":
                raise self.unknown_error(source, labels.index[first] + line_offset, labels.iloc[first])
            log.warning("%s: dropped %d rows with events outside %s", source, int(unknown.sum()), sorted(lookup))
        cat = pd.Categorical(mapped.to_numpy(dtype=object, na_value=None), categories=self.names)
        return cat, ~unknown

    def unknown_error(self, source: str, line: int, label: object) -> DataError:
        """The error for a label that names no type, at ``line`` of ``source``."""
        return DataError(
            f"{where(source, line, 'event')}: unknown event {label!r}; expected one of {sorted(self.lookup)} "
            "(add it to events.types or events.aliases, or set events.unknown=drop)"
        )

    def check_values(self, frame: pd.DataFrame, source: str, line_offset: int = 1) -> None:
        """Raise at the first row whose ``value`` lies outside its event type's range, naming file, line and column.

        ``frame`` has ``event`` (a categorical over :attr:`names`) and ``value``; its index is the
        row's position in ``source`` (line = index + ``line_offset``).
        """
        ranges = [k.value for k in self.kinds.values()]
        if not any(ranges):
            return
        low = np.array([-np.inf, *(r.low if r else -np.inf for r in ranges)])
        high = np.array([np.inf, *(r.high if r else np.inf for r in ranges)])
        codes = frame["event"].cat.codes.to_numpy(np.int64) + 1
        value = frame["value"].to_numpy(np.float64)
        bad = (value < low[codes]) | (value > high[codes])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise self.value_error(source, frame.index[row] + line_offset, self.names[codes[row] - 1], value[row])

    def value_error(self, source: str, line: int, name: str, value: float) -> DataError:
        """The error for a ``value`` outside the range of event type ``name``, at ``line`` of ``source``."""
        spec = self.types[name]
        key = f"events.types.{name}.value" if isinstance(spec, Mapping) and "value" in spec else "events.value"
        return DataError(
            f"{where(source, line, 'value')}: {value:g} is not a valid value for "
            f"a {name!r} event: expected {self.kinds[name].value.describe()} (fix the row, or change {key})"
        )
