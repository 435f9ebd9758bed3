"""A comparison report over the runs and sweeps in some folders: groups, the ranked table, the paired tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from marquee.reports.groups import Group, group_runs
from marquee.reports.protocol import NotComparable, differences
from marquee.reports.runs import find_runs
from marquee.reports.sweeps import Sweep
from marquee.reports.tables import format_report_tables, paired_table, pairs_to_test, pooled_per_user, summary_table

DEFAULT_METRICS = ["ndcg@10", "recall@10", "recall@50", "mrr@10"]


@dataclass
class Report:
    """Everything ``marquee.compare`` prints and writes: groups, ranked table, paired tests, sweeps."""

    folders: list[Path]
    stage: str
    metrics: list[str]  # the ranking metric first
    groups: list[Group]
    summary: pd.DataFrame  # tables.summary_table, best first
    paired: pd.DataFrame  # tables.paired_table
    sweeps: list[Sweep] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # unfinished runs passed over, by status
    confidence: float = 0.95

    @property
    def best(self) -> Group | None:
        return self.group(self.summary["group"].iloc[0]) if len(self.summary) else None

    def group(self, label: str) -> Group:
        return next(g for g in self.groups if g.label == label)

    def pair(self, a: str, b: str) -> pd.DataFrame:
        """The paired test of group ``b`` against group ``a``, one row per metric (as ``compare_runs`` gives it)."""
        rows = self.paired[(self.paired["a"] == a) & (self.paired["b"] == b)]
        if rows.empty:
            raise KeyError(f"no paired test of {b} against {a}")
        return rows.drop(columns=["a", "b"]).set_index("metric")

    def text(self) -> str:
        if not self.groups:
            return "no finished runs to compare yet"
        return format_report_tables(self.summary, self.paired, self.metrics, self.stage, self.confidence)


def _run_label(group: Group, index: int) -> str:
    return group.label if len(group.runs) == 1 else f"{group.label}[seed={group.runs[index].seed}]"


def check_comparable(groups: list[Group]) -> None:
    """Refuse, naming both runs, any run whose data, split or evaluation protocol differs from the first run's."""
    if not groups:
        return
    first, reference = groups[0], groups[0].runs[0]
    for group in groups:
        for i, run in enumerate(group.runs):
            labels = (_run_label(first, 0), _run_label(group, i))
            found = differences(reference.protocol, run.protocol, labels)
            if found:
                raise NotComparable(f"run {labels[0]} '{reference.path}' and run {labels[1]} '{run.path}' "
                                    f"cannot be paired: {'; '.join(found)}")


def coverage_metric(metric: str) -> str:
    """The catalog coverage at ``metric``'s cut-off (``ndcg@20`` -> ``coverage@20``; 10 without one)."""
    return f"coverage@{metric.split('@', 1)[1] if '@' in metric else 10}"


def report_metrics(metric: str, metrics: list[str]) -> list[str]:
    """The ranking metric, the other metrics asked for, and the coverage at the ranking metric's cut-off."""
    return list(dict.fromkeys([metric, *metrics, coverage_metric(metric)]))


def build_report(folders: list[str | Path], stage: str = "test", metric: str = "ndcg@10",
                 metrics: list[str] | None = None, n_boot: int = 1000, trials: bool = False,
                 confidence: float = 0.95) -> Report:
    """Find, group and check the runs in ``folders``, rank the groups on ``stage`` and test them in pairs.

    Raises :class:`NotComparable` (or ValueError) with a one-line reason for anything that cannot be compared.
    """
    folders = [Path(f) for f in folders]
    runs, sweeps, skipped = [], [], {}
    for index, folder in enumerate(folders):
        found = find_runs(folder, index, trials)
        runs += found.runs
        sweeps += found.sweeps
        for status, n in found.skipped.items():
            skipped[status] = skipped.get(status, 0) + n
    groups = group_runs(runs, [f.name or str(f) for f in folders])
    check_comparable(groups)
    wanted = report_metrics(metric, DEFAULT_METRICS if metrics is None else metrics)
    per_user = {g.label: pooled_per_user(g, stage, wanted) for g in groups}
    if not groups:
        return Report(folders, stage, wanted, [], pd.DataFrame(), pd.DataFrame(), sweeps, skipped, confidence)
    summary = summary_table(groups, per_user, stage, wanted, n_boot, confidence)
    pairs = pairs_to_test(groups, best=summary["group"].iloc[0])
    paired = paired_table(pairs, per_user, wanted, n_boot, confidence)
    return Report(folders, stage, wanted, groups, summary, paired, sweeps, skipped, confidence)
