"""``python -m marquee.compare RUN_A RUN_B``: the offline A/B readout of two runs on the same users.

Reads each run's ``per_user_<stage>.parquet``, pairs the users, and prints, per metric, both
means, the difference with its paired-bootstrap CI, the relative change, the paired-bootstrap and
paired t-test p-values and the effect size; ``--out`` also writes the table as CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from marquee.data.atomic import atomic_path
from marquee.evaluation.statistics import compare_runs, format_comparison

DEFAULT_METRICS = ["ndcg@10", "recall@10", "recall@50", "mrr@10"]


def load_per_user(run_dir: Path, stage: str) -> pd.DataFrame:
    """A run's per-user metric table indexed by user id, numeric columns only."""
    path = Path(run_dir) / f"per_user_{stage}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no per-user metrics at '{path}': evaluate the run's {stage} stage first")
    return pd.read_parquet(path).set_index("user_id").select_dtypes("number")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path, help="baseline run directory (A)")
    parser.add_argument("run_b", type=Path, help="candidate run directory (B)")
    parser.add_argument("--stage", default="test")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="also write the table as CSV here")
    args = parser.parse_args(argv)
    table = compare_runs(load_per_user(args.run_a, args.stage), load_per_user(args.run_b, args.stage),
                         metrics=args.metrics, n_boot=args.n_boot)
    print(format_comparison(table))
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp)
    return table


if __name__ == "__main__":
    main()
