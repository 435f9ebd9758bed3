"""Search spaces as YAML (``configs/hparams_search/<name>.yaml``, key ``sweep.params``) turned into Hydra overrides.

Each entry maps a config key to a distribution::

    optim.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.layers: {type: int, low: 1, high: 3}
    model.loss.name: {type: categorical, choices: [ce, sampled_softmax]}
"""

from __future__ import annotations

from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from marquee.errors import ConfigError

KINDS = ("float", "int", "categorical")


def check_space(params: DictConfig | dict) -> dict[str, dict[str, Any]]:
    """The search space as plain dicts, every entry checked (a bad one names its key)."""
    space = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else dict(params)
    if not space:
        raise ConfigError("sweep.params", "the search space is empty")
    for key, spec in space.items():
        where = f"sweep.params.{key}"
        if not isinstance(spec, dict) or spec.get("type") not in KINDS:
            raise ConfigError(where, f"a mapping with type one of {list(KINDS)}, got {spec!r}")
        if spec["type"] == "categorical":
            if not spec.get("choices"):
                raise ConfigError(where, "a categorical parameter needs a non-empty 'choices' list")
        elif not ("low" in spec and "high" in spec and spec["low"] < spec["high"]):
            raise ConfigError(where, f"needs low < high, got low={spec.get('low')!r} high={spec.get('high')!r}")
    return space


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Draw one value per parameter from ``trial``: ``{config key: value}``."""
    values = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
        elif spec["type"] == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            values[key] = trial.suggest_categorical(key, spec["choices"])
    return values


def as_overrides(values: dict[str, Any]) -> list[str]:
    """``{key: value}`` -> Hydra overrides ``key=value`` (strings quoted, so any value parses)."""
    def text(value: Any) -> str:
        if isinstance(value, str):
            return "'" + value.replace("'", "\\'") + "'"
        if isinstance(value, bool):
            return str(value).lower()
        return repr(value)

    return [f"{key}={text(value)}" for key, value in values.items()]
