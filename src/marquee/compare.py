"""``python -m marquee.compare PATH [PATH ...]``: rank runs, seed groups and sweeps, and test them in pairs.

Each PATH is a run directory, or a folder searched for finished runs (a Hydra multirun, ``logs/train/runs``,
a ``marquee.sweep`` folder, whose ``seeds/`` re-runs of the winner form one group). Runs of one folder whose
configs differ only by seed form a group, named by its model and the config keys that set it apart.
Printed: the ranked table (mean ± sd over seeds of each run's ``metrics.json``, a CI over users) and the
paired tests over the same users (each user averaged over a group's seeds): every pair for up to 4
groups, else each group against the best; for two runs, the A/B readout of B against A per metric.
``--out DIR`` writes ``report.md``, ``summary.csv``, ``paired.csv`` and the plots.

Runs compare only when their per-user numbers measure the same thing: the same data (fingerprint), the
same split (its resolved config, seed included) and the same evaluation protocol (``evaluation.seen``,
``history`` and ``sampled``); anything else is refused with one line that names both runs and both
values, and exit code 2. Settings that do not change a per-user number (``ks``, ``item_chunk``,
``batch_size``, ``n_boot``, ``device``, ...) may differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from marquee.evaluation.statistics import compare_runs
from marquee.reports.protocol import NotComparable, differences, load_per_user, run_protocol
from marquee.reports.report import DEFAULT_METRICS, Report, build_report

__all__ = ["NotComparable", "compare_run_dirs", "load_per_user", "main", "run_protocol"]


def compare_run_dirs(run_a: str | Path, run_b: str | Path, stage: str = "test", metrics: list[str] | None = None,
                     n_boot: int = 1000) -> pd.DataFrame:
    """The :func:`compare_runs` table of two run directories, after checking they share data, split and protocol."""
    found = differences(run_protocol(run_a), run_protocol(run_b))
    if found:
        raise NotComparable(f"run A '{run_a}' and run B '{run_b}' cannot be paired: {'; '.join(found)}")
    return compare_runs(load_per_user(run_a, stage), load_per_user(run_b, stage), metrics=metrics, n_boot=n_boot)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m marquee.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH",
                        help="run directories, folders of runs (multiruns, seeds) or marquee.sweep folders; or one "
                             "marquee.serve log folder, for the A/B readout of the variants it served")
    parser.add_argument("--stage", help="evaluated stage to compare (default: test; val with --trials)")
    parser.add_argument("--metric", default="ndcg@10", help="metric the groups are ranked by (default: ndcg@10)")
    parser.add_argument("--metrics", nargs="+", default=DEFAULT_METRICS,
                        help=f"further metrics in the tables (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--trials", action="store_true",
                        help="also compare every sweep's trials, each a group, on the val stage")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of users (default: 1000)")
    parser.add_argument("--out", type=Path, help="folder to write report.md, summary.csv, paired.csv and the plots")
    return parser


def service_readout(paths: list[Path]):
    """The A/B readout of a service's impression log, when the one PATH is a ``marquee.serve`` log folder."""
    from marquee.serving.ab import ab_readout
    from marquee.serving.impressions import IMPRESSIONS

    if len(paths) == 1 and (paths[0] / IMPRESSIONS).is_file():
        return ab_readout(paths[0])
    return None


def main(argv: list[str] | None = None) -> Report:
    args = _parser().parse_args(argv)
    try:
        readout = service_readout(args.paths)  # an A/B test served live: play rates per variant, not offline runs
        if readout is not None:
            print(readout.table())
            return readout
        if args.trials and args.stage not in (None, "val"):
            raise ValueError(f"--trials compares on the val stage (a sweep's trials have no {args.stage} metrics)")
        if args.out is not None and (args.out.suffix == ".csv" or args.out.is_file()):
            raise ValueError(f"--out is a folder for report.md, summary.csv, paired.csv and plots, got '{args.out}'")
        stage = args.stage or ("val" if args.trials else "test")
        report = build_report(args.paths, stage, args.metric, args.metrics, args.n_boot, args.trials)
    except ValueError as error:  # NotComparable, and compare_runs' different users or missing metrics
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if report.skipped:
        skipped = ", ".join(f"{n} {status}" for status, n in sorted(report.skipped.items()))
        print(f"skipped unfinished runs: {skipped}", file=sys.stderr)
    print(report.text())
    if args.out is not None:
        from marquee.reports.markdown import write_report  # matplotlib only when there are plots to draw

        print(f"report: {write_report(report, args.out)}")
    return report


if __name__ == "__main__":
    main()
