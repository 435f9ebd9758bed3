"""Whether runs' per-user numbers measure the same thing: the same data, split and evaluation protocol.

Runs pair only when they share the data (fingerprint), the split (its resolved config, seed included)
and the evaluation protocol (``evaluation.seen``, ``history`` and ``sampled``); settings that do not
change a per-user number (``ks``, ``item_chunk``, ``batch_size``, ``n_boot``, ``device``, ...) may differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

# evaluation settings that change a user's metric values: masking, what the model reads, sampled negatives
EVALUATION_KEYS = ("seen", "history", "sampled")


class NotComparable(ValueError):
    """Runs that cannot be compared, or a folder that is not a readable run: the message says why."""


@dataclass(frozen=True)
class RunProtocol:
    """What a run's per-user numbers depend on besides the model: its data, split and evaluation settings."""

    data_name: str
    fingerprint: str
    settings: dict[str, Any]  # 'data.split.<key>' and 'evaluation.<key>' -> value


class _Absent:
    """A setting one run's record lacks (None is a value, so it cannot stand for one)."""

    def __repr__(self) -> str:
        return "absent"


ABSENT = _Absent()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's object; invalid JSON is refused naming the file."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise NotComparable(f"'{path}' is not valid JSON: {error}") from error


def _evaluation_of_eval_dir(eval_dir: Path, recorded: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """The evaluation settings a ``marquee.eval`` run used: recorded ones, else the trained run's plus its overrides."""
    if "evaluation" in recorded:
        return recorded["evaluation"]
    overrides = eval_dir / ".hydra" / "overrides.yaml"  # as marquee.eval.evaluation_config applies them
    given = OmegaConf.to_container(OmegaConf.load(overrides)) if overrides.is_file() else []
    changes = [o.removeprefix("evaluation.") for o in given if o.startswith("evaluation.")]
    return OmegaConf.to_container(OmegaConf.merge(trained, OmegaConf.from_dotlist(changes)), resolve=True)


def _protocol(record: dict[str, Any], evaluation: dict[str, Any]) -> RunProtocol:
    split = record["config"]["data"]["split"]
    settings = {**{f"data.split.{key}": value for key, value in split.items()},
                **{f"evaluation.{key}": evaluation.get(key) for key in EVALUATION_KEYS}}
    return RunProtocol(str(record["data"].get("name", "?")), record["data"]["fingerprint"], settings)


def read_record(run_dir: str | Path) -> tuple[dict[str, Any], RunProtocol]:
    """A finished run's ``run.json`` and the protocol its per-user numbers were computed under.

    A ``marquee.eval`` output folder (``eval.json``, no ``run.json``) is read through the training run
    it evaluated, with the ``evaluation.*`` overrides it was given. A run that did not finish is refused.
    """
    run_dir = Path(run_dir)
    record_path, evaluated = run_dir / "run.json", run_dir / "eval.json"
    recorded = None  # eval.json of a marquee.eval output
    if not run_dir.is_dir():
        raise NotComparable(f"'{run_dir}' is not a directory")
    if not record_path.is_file() and evaluated.is_file():
        recorded = read_json(evaluated)
        record_path = Path(recorded.get("evaluated_run", "")) / "run.json"
        if not record_path.is_file():
            raise NotComparable(f"'{evaluated}' names the evaluated run '{record_path.parent}', which has no run.json")
    elif not record_path.is_file():
        raise NotComparable(f"'{run_dir}' is not a marquee run directory: no run.json in it")
    record = read_json(record_path)
    status = record.get("status", "finished")  # records from before run status existed have none
    if status != "finished":
        reason = f": {record['error']}" if "error" in record else ""
        raise NotComparable(f"'{record_path.parent}' did not finish: {status}{reason}")
    try:
        evaluation = record["config"].get("evaluation") or {}
        if recorded is not None:
            evaluation = _evaluation_of_eval_dir(run_dir, recorded, evaluation)
        return record, _protocol(record, evaluation)
    except KeyError as error:
        raise NotComparable(f"'{record_path}' has no {error} entry: it is not a marquee training run's record") from None


def run_protocol(run_dir: str | Path) -> RunProtocol:
    """Read a run's data fingerprint, split and evaluation settings from its ``run.json`` (see :func:`read_record`)."""
    return read_record(run_dir)[1]


def differences(a: RunProtocol, b: RunProtocol, labels: tuple[str, str] = ("A", "B")) -> list[str]:
    """What keeps runs ``a`` and ``b`` from being paired, one phrase per difference naming each by its label."""
    found = []
    if a.fingerprint != b.fingerprint:
        found.append(f"data fingerprint {a.fingerprint[:16]} ({a.data_name}) in {labels[0]}, "
                     f"{b.fingerprint[:16]} ({b.data_name}) in {labels[1]}")
    for key in sorted(a.settings.keys() | b.settings.keys()):
        value_a, value_b = a.settings.get(key, ABSENT), b.settings.get(key, ABSENT)
        if value_a != value_b:
            found.append(f"{key} {value_a!r} in {labels[0]}, {value_b!r} in {labels[1]}")
    return found


def load_per_user(run_dir: str | Path, stage: str) -> pd.DataFrame:
    """A run's per-user metric table indexed by user id, numeric columns only."""
    path = Path(run_dir) / f"per_user_{stage}.parquet"
    if not path.is_file():
        raise NotComparable(f"no per-user metrics at '{path}': evaluate the run's {stage} stage first")
    return pd.read_parquet(path).set_index("user_id").select_dtypes("number")
