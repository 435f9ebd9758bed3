"""``--out DIR``: the report as ``report.md`` with its tables and plots, beside ``summary.csv`` and ``paired.csv``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from marquee.data.atomic import atomic_path
from marquee.reports import plots
from marquee.reports.report import Report, coverage_metric
from marquee.reports.sweeps import Sweep, summary_line
from marquee.reports.tables import ALL_PAIRS_UP_TO, mean_sd, pairs_text, summary_text


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (index dropped)."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in frame.columns) + " |", "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _protocol_lines(report: Report) -> list[str]:
    protocol = report.groups[0].runs[0].protocol
    settings = ", ".join(f"`{key}={value!r}`" for key, value in protocol.settings.items())
    return [(f"Every run shares the data `{protocol.data_name}` (fingerprint `{protocol.fingerprint[:16]}`), "
             f"its split and its evaluation protocol: {settings}.")]


def _ranking_section(report: Report) -> list[str]:
    return ["## Ranking", "", markdown_table(summary_text(report.summary, report.metrics, report.confidence)), "",
            (f"Each number is the mean ± sd over a group's runs (seeds) of what their `metrics.json` records for "
             f"`{report.stage}/<metric>`. The {report.confidence:.0%} CI of `{report.metrics[0]}` is a percentile "
             f"bootstrap over users of each user's `{report.metrics[0]}` averaged over the group's runs. "
             "All numbers, unrounded, are in `summary.csv`."), ""]


def _groups_section(report: Report) -> list[str]:
    lines = ["## Groups", ""]
    for group in report.groups:
        seeds = ", ".join(str(s) for s in group.seeds if s is not None)
        lines.append(f"- **{group.label}** `{group.name}`: {len(group.runs)} run(s)" + (f", seeds {seeds}" if seeds else ""))
        lines += [f"  - `{run.path}`" for run in group.runs]
    return [*lines, ""]


def _pairs_section(report: Report) -> list[str]:
    if report.paired.empty:
        return []
    if len(report.groups) <= ALL_PAIRS_UP_TO:
        how = "every pair of groups"
    else:
        how = f"every group against the best, {report.best.label}"
    lines = ["## Paired tests", "",
             (f"Of {how}, over the same users, each user's metric averaged over the group's runs: the difference "
              "`B vs A` = B − A with its paired-bootstrap CI, the relative change, the bootstrap and paired t-test "
              "p-values, the t-test p-values Holm-adjusted over the pairs (per metric) and the effect size d_z. "
              "All numbers are in `paired.csv`."), ""]
    rows = pairs_text(report.paired)
    if len(report.paired[["a", "b"]].drop_duplicates()) == 1:
        return [*lines, markdown_table(rows), ""]
    for metric in report.paired["metric"].unique():
        lines += [f"### {metric}", "", markdown_table(rows[rows["metric"] == metric].drop(columns="metric")), ""]
    return lines


def _coverage_section(report: Report, out: Path) -> list[str]:
    metric, coverage = report.metrics[0], coverage_metric(report.metrics[0])
    if report.summary[coverage].isna().any():
        return [f"({coverage} is missing from some runs' metrics.json: no plot of {metric} against it.)", ""]
    name = f"{metric.split('@', 1)[0]}_vs_coverage.png"
    plots.save(plots.accuracy_vs_coverage(report.summary, metric, coverage), out / name)
    return [f"## {metric} against {coverage}", "", f"![{metric} against {coverage}]({name})", ""]


def _sweep_section(report: Report, sweep: Sweep, out: Path) -> list[str]:
    prefix = "" if len(report.sweeps) == 1 else re.sub(r"[^\w.-]+", "_", sweep.name) + "_"
    history, params = f"{prefix}optimization_history.png", f"{prefix}params.png"
    plots.save(plots.optimization_history(sweep), out / history)
    plots.save(plots.parameters(sweep), out / params)
    lines = [f"## Sweep `{sweep.name}`", "", f"`{sweep.path}`: {sweep.direction} `{sweep.metric}`; {summary_line(sweep)}.", ""]
    best = [g for g in report.groups if any(run.source == f"{sweep.name} best" for run in g.runs)]
    for group in best:
        row = report.summary.set_index("group").loc[group.label]
        metric = report.metrics[0]
        lines.append(f"Best config, re-run over seeds: **{group.label}** `{group.name}`, rank {row['rank']}: "
                     f"{report.stage}/{metric} {mean_sd(row[metric], row[f'{metric}_sd'])} over {row['runs']} seed(s).")
    if not best:
        lines.append("The best config has no finished seed re-runs (`seeds/`) yet.")
    if sweep.best_yaml:
        lines += ["", "`best.yaml`:", "", "```yaml", sweep.best_yaml.rstrip(), "```"]
    return [*lines, "", f"![optimization history]({history})", "", f"![{sweep.metric} against each parameter]({params})", ""]


def write_report(report: Report, out: str | Path) -> Path:
    """Write ``report.md``, ``summary.csv``, ``paired.csv`` and the plots into ``out``; return the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = ", ".join(f"`{f}`" for f in report.folders)
    lines = [f"# Comparison on {report.stage}, ranked by {report.metrics[0]}", "", f"Compared: {folders}.", ""]
    if report.skipped:
        lines += ["Skipped unfinished runs: " + ", ".join(f"{n} {s}" for s, n in sorted(report.skipped.items())) + ".", ""]
    if report.groups:
        lines += [*_protocol_lines(report), "", *_ranking_section(report), *_groups_section(report),
                  *_pairs_section(report), *_coverage_section(report, out)]
        with atomic_path(out / "summary.csv") as tmp:
            report.summary.to_csv(tmp, index=False)
        with atomic_path(out / "paired.csv") as tmp:
            report.paired.to_csv(tmp, index=False)
    for sweep in report.sweeps:
        lines += _sweep_section(report, sweep, out)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n")
    return out / "report.md"
