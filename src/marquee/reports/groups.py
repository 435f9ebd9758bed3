"""Runs grouped by config (a group's runs differ only by seed), each group labelled and named.

Two runs from the same command-line folder (and the same sweep role) fall into one group when their
resolved configs are equal once the keys that do not change what is trained are removed:

- top-level ``seed``, ``task_name``, ``paths``, ``hydra``, ``logger``, ``torch_threads``, ``ckpt_path``,
  ``resume_from``, ``stages``, ``optimized_metric``, ``hparams_search`` and ``sweep``;
- ``data`` and ``evaluation``: every run compared must share its data, split and evaluation protocol
  anyway (checked apart, see :mod:`marquee.reports.protocol`), and the rest only sets how it is read;
- at any depth: ``seed`` (a run's own seed and the ``${seed}`` copies in datamodules), and where files go
  or how fast and loud the run is (``dirpath``, ``save_dir``, ``default_root_dir``, ``cache_dir``,
  ``num_workers``, ``accelerator``, ``devices``, ``log_every_n_steps``, ``refresh_rate``, ``progress``,
  ``enable_progress_bar``, ``enable_model_summary``);
- callbacks that only report (progress bars) or stop a sweep's trial (Optuna pruning).

Runs from different command-line folders are never pooled: ``compare run1 run2`` compares two runs,
whatever their configs. A group is named by its model (the last part of ``model._target_``, or the
pipeline's system over its stages' models: ``Cascade(TwoTower>SASRec)``), or by its sweep
(``<study> best``, ``<study> #<trial>``), followed by the flattened config keys whose values differ
among the groups of the same model: ``SASRec model.hidden=128 optim.optimizer.lr=0.003``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from string import ascii_uppercase
from typing import Any

from marquee.reports.runs import Run

IGNORED_TOP_LEVEL = ("seed", "task_name", "paths", "hydra", "logger", "torch_threads", "ckpt_path", "resume_from",
                     "stages", "optimized_metric", "hparams_search", "sweep", "data", "evaluation")
IGNORED_ANYWHERE = ("seed", "dirpath", "save_dir", "default_root_dir", "cache_dir", "num_workers", "accelerator",
                    "devices", "log_every_n_steps", "refresh_rate", "progress", "enable_progress_bar",
                    "enable_model_summary")
IGNORED_CALLBACKS = ("TQDMProgressBar", "RichProgressBar", "OptunaPruning")  # last part of their _target_


@dataclass
class Group:
    """Runs of one config (seeds of it), with a short label (A, B, ...) and a name that says what sets it apart."""

    label: str
    name: str
    runs: list[Run]

    @property
    def seeds(self) -> list[Any]:
        return [run.seed for run in self.runs]


def _target_name(node: Any) -> str | None:
    target = node.get("_target_") if isinstance(node, dict) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def _semantic(node: Any, top: bool = False) -> Any:
    """``node`` without the keys that do not change what is trained (see the module's docstring)."""
    if not isinstance(node, dict):
        return node
    kept = {}
    for key, value in node.items():
        if key in IGNORED_ANYWHERE or (top and key in IGNORED_TOP_LEVEL):
            continue
        if key == "callbacks" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if _target_name(v) not in IGNORED_CALLBACKS}
        kept[key] = _semantic(value)
    return kept


def semantic_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's resolved config reduced to what sets its results apart from another config's, seeds aside."""
    return _semantic(config, top=True)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; lists stay values."""
    if not isinstance(node, dict) or not node:
        return {prefix: node} if prefix else {}
    flat = {}
    for key, value in node.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def system_name(config: dict[str, Any]) -> str:
    """The model's class name, or the pipeline's system over its stages' models; ``run`` when there is none."""
    model = _target_name(config.get("model")) or "run"
    pipeline = config.get("pipeline") or {}
    system = _target_name(pipeline.get("system"))
    if not system:
        return model
    stages = [_target_name((stage or {}).get("model")) or model for stage in (pipeline.get("stages") or {}).values()]
    return f"{system.removesuffix('Recommender')}({'>'.join(stages)})"


def _value_text(key: str, value: Any) -> str:
    if key.endswith("_target_") and isinstance(value, str):
        return value.rsplit(".", 1)[-1]
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


def _key_text(key: str) -> str:
    return key.removesuffix("._target_")


def label(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: a short name for the ``index``-th group (0-based)."""
    text = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        text = ascii_uppercase[rest] + text
    return text


def group_runs(runs: list[Run], argument_names: list[str] | None = None) -> list[Group]:
    """Group ``runs`` (in the order given) by command-line folder, sweep role and semantic config; label and name them.

    ``argument_names`` (one per command-line folder) tell groups apart whose names would otherwise be equal.
    """
    keyed: dict[tuple, list[Run]] = {}
    for run in runs:
        key = (run.argument, run.source, json.dumps(semantic_config(run.config), sort_keys=True, default=str))
        keyed.setdefault(key, []).append(run)
    members = list(keyed.values())
    flats = [flatten(semantic_config(group[0].config)) for group in members]
    systems = [system_name(group[0].config) for group in members]
    names = []
    for i, group in enumerate(members):
        peers = [flats[j] for j in range(len(members)) if systems[j] == systems[i]]
        differing = sorted({k for flat in peers for k in flat
                            if len({json.dumps(p.get(k, "<absent>"), default=str) for p in peers}) > 1},
                           key=lambda k: (not k.startswith("model."), k))
        parts = [group[0].source or systems[i]]
        parts += [f"{_key_text(k)}={_value_text(k, flats[i][k])}" for k in differing if k in flats[i]]
        names.append(" ".join(parts))
    if argument_names:
        names = [f"{name} ({argument_names[group[0].argument]})" if names.count(name) > 1 else name
                 for name, group in zip(names, members)]
    return [Group(label(i), names[i], group) for i, group in enumerate(members)]
