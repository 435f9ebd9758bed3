"""``python -m marquee.compare RUN_A RUN_B``: the offline A/B readout of two runs on the same users.

Reads each run's ``per_user_<stage>.parquet``, pairs the users, and prints, per metric, both
means, the difference with its paired-bootstrap CI, the relative change, the paired-bootstrap and
paired t-test p-values and the effect size; ``--out`` also writes the table as CSV.

Two runs pair only when their per-user numbers measure the same thing: the same data (fingerprint),
the same split (its resolved config, seed included) and the same evaluation protocol
(``evaluation.seen``, ``history`` and ``sampled``); anything else is refused with one line that
names both runs and both values, and exit code 2. Settings that do not change a per-user number
(``ks``, ``item_chunk``, ``batch_size``, ``n_boot``, ``device``, ...) may differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from marquee.data.atomic import atomic_path
from marquee.evaluation.statistics import compare_runs, format_comparison

DEFAULT_METRICS = ["ndcg@10", "recall@10", "recall@50", "mrr@10"]
# evaluation settings that change a user's metric values: masking, what the model reads, sampled negatives
EVALUATION_KEYS = ("seen", "history", "sampled")


class NotComparable(ValueError):
    """Two run directories that cannot be paired, or one that is not a readable run: the message says why."""


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


def _read_json(path: Path) -> dict[str, Any]:
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


def run_protocol(run_dir: str | Path) -> RunProtocol:
    """Read a run's data fingerprint, split and evaluation settings from its ``run.json``.

    A ``marquee.eval`` output folder (``eval.json``, no ``run.json``) is read through the training run
    it evaluated, with the ``evaluation.*`` overrides it was given.
    """
    run_dir = Path(run_dir)
    record_path, evaluated = run_dir / "run.json", run_dir / "eval.json"
    recorded = None  # eval.json of a marquee.eval output
    if not run_dir.is_dir():
        raise NotComparable(f"'{run_dir}' is not a directory")
    if not record_path.is_file() and evaluated.is_file():
        recorded = _read_json(evaluated)
        record_path = Path(recorded.get("evaluated_run", "")) / "run.json"
        if not record_path.is_file():
            raise NotComparable(f"'{evaluated}' names the evaluated run '{record_path.parent}', which has no run.json")
    elif not record_path.is_file():
        raise NotComparable(f"'{run_dir}' is not a marquee run directory: no run.json in it")
    record = _read_json(record_path)
    if record.get("status") in ("failed", "interrupted"):  # records from before run status existed have none
        raise NotComparable(f"'{record_path.parent}' did not finish: {record['status']}: {record.get('error', '?')}")
    try:
        data, split = record["data"], record["config"]["data"]["split"]
        fingerprint = data["fingerprint"]
    except KeyError as error:
        raise NotComparable(f"'{record_path}' has no {error} entry: it is not a marquee training run's record") from None
    evaluation = record["config"].get("evaluation") or {}
    if recorded is not None:
        evaluation = _evaluation_of_eval_dir(run_dir, recorded, evaluation)
    settings = {**{f"data.split.{key}": value for key, value in split.items()},
                **{f"evaluation.{key}": evaluation.get(key) for key in EVALUATION_KEYS}}
    return RunProtocol(str(data.get("name", "?")), fingerprint, settings)


def differences(a: RunProtocol, b: RunProtocol) -> list[str]:
    """What keeps runs ``a`` and ``b`` from being paired, one phrase per difference; empty when they pair."""
    found = []
    if a.fingerprint != b.fingerprint:
        found.append(f"data fingerprint {a.fingerprint[:16]} ({a.data_name}) in A, "
                     f"{b.fingerprint[:16]} ({b.data_name}) in B")
    for key in sorted(a.settings.keys() | b.settings.keys()):
        value_a, value_b = a.settings.get(key, ABSENT), b.settings.get(key, ABSENT)
        if value_a != value_b:
            found.append(f"{key} {value_a!r} in A, {value_b!r} in B")
    return found


def load_per_user(run_dir: Path, stage: str) -> pd.DataFrame:
    """A run's per-user metric table indexed by user id, numeric columns only."""
    path = Path(run_dir) / f"per_user_{stage}.parquet"
    if not path.is_file():
        raise NotComparable(f"no per-user metrics at '{path}': evaluate the run's {stage} stage first")
    return pd.read_parquet(path).set_index("user_id").select_dtypes("number")


def compare_run_dirs(run_a: str | Path, run_b: str | Path, stage: str = "test", metrics: list[str] | None = None,
                     n_boot: int = 1000) -> pd.DataFrame:
    """The :func:`compare_runs` table of two run directories, after checking they share data, split and protocol."""
    found = differences(run_protocol(run_a), run_protocol(run_b))
    if found:
        raise NotComparable(f"run A '{run_a}' and run B '{run_b}' cannot be paired: {'; '.join(found)}")
    return compare_runs(load_per_user(run_a, stage), load_per_user(run_b, stage), metrics=metrics, n_boot=n_boot)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path, help="baseline run directory (A)")
    parser.add_argument("run_b", type=Path, help="candidate run directory (B)")
    parser.add_argument("--stage", default="test")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="also write the table as CSV here")
    args = parser.parse_args(argv)
    try:
        table = compare_run_dirs(args.run_a, args.run_b, args.stage, args.metrics, args.n_boot)
    except ValueError as error:  # NotComparable, and compare_runs' different users or missing metrics
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_comparison(table))
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp)
    return table


if __name__ == "__main__":
    main()
