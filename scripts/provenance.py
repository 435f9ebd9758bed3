"""When and with what code an experiment's rows were measured: the lines every experiments/*/README.md prints.

The benchmarks stamp each row with ``finished_at`` (UTC) and ``git_commit`` (``stamp()``); a renderer hands
``measured()`` one (label, date, commit) per row, the date from the stamp or, for rows older than the stamp,
from what the row does record (a run id that starts with the date).
"""

from __future__ import annotations

import functools
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# events tied in time got a fixed order on this day, in this commit: figures measured before it used another split
TIE_BREAK_DATE, TIE_BREAK_COMMIT = "2026-12-01", "72b0bf1"


@functools.cache
def _started_from() -> str | None:
    """The commit this process's code came from, read once: a commit landing mid-run must not relabel later rows."""
    from marquee.run_record import code_version

    return code_version()["git_commit"]


def stamp() -> dict[str, str | None]:
    """``finished_at`` (UTC, to the second) and ``git_commit``: the commit the measuring process started from."""
    return {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": _started_from()}


def run_id_date(run_id: str) -> str:
    """The date a run id of the form ``YYYYMMDD-HHMMSS`` (the run's start) names, as ``YYYY-MM-DD``."""
    return f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}"


@functools.cache
def _has_tie_break(date: str, commit: str | None) -> bool | None:
    """Whether the code that measured a row had the fixed tie-break: by its commit's history, else by its date."""
    if commit:
        done = subprocess.run(["git", "merge-base", "--is-ancestor", TIE_BREAK_COMMIT, commit], cwd=REPO,
                              capture_output=True, check=False)
        if done.returncode in (0, 1):
            return done.returncode == 0
    if date != TIE_BREAK_DATE:
        return date > TIE_BREAK_DATE
    return None  # measured on the day the fix landed, by code it does not name


def measured(rows: list[tuple[str, str, str | None]], dates_from: str) -> list[str]:
    """Markdown lines: the rows' dates and code commits, grouped, and whether they predate the fixed tie-break.

    ``rows``: one (label, date ``YYYY-MM-DD``, commit or None) per measured row; ``dates_from`` says where the
    dates were read (e.g. "each row's `finished_at`").
    """
    groups: dict[tuple[str, str | None], list[str]] = {}
    for label, date, commit in rows:
        labels = groups.setdefault((date, commit), [])
        if label not in labels:
            labels.append(label)
    out = [f"When and with what code these figures were measured (dates from {dates_from}):", ""]
    for (date, commit), labels in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        code = f"marquee commit `{commit[:10]}`" if commit else "code commit not recorded"
        out.append(f"- {date}, {code}: {', '.join(labels)}")
    verdicts = [_has_tie_break(date, commit) for _, date, commit in rows]
    before, unknown = verdicts.count(False), verdicts.count(None)
    fix = (f"the fixed tie-break ordering of events in time introduced on {TIE_BREAK_DATE} "
           f"(marquee commit {TIE_BREAK_COMMIT})")
    if before == len(rows):
        how = " or was measured by code without that commit" if any(c for _, _, c in rows) else ""
        out += ["", f"Every row is dated before {TIE_BREAK_DATE}{how}: these figures predate {fix}."]
    elif before or unknown:
        out += ["", f"{before} of {len(rows)} rows predate {fix}"
                + (f"; for {unknown}, dated that day with no commit recorded, it is not known." if unknown else ".")]
    return [*out, ""]
