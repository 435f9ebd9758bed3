"""Benchmark the synthetic log generator at 1M and 10M interactions (100M with --include-100m).

Each size runs in a fresh subprocess that reports its own wall time and peak RSS; every result is
appended to ``experiments/data_scale/results.jsonl`` as soon as it exists and the README table is
rewritten from those rows after each size, so a run cut short keeps what it measured.

    python scripts/bench_data_scale.py [--include-100m]
    python scripts/bench_data_scale.py --render-only    # rewrite the README from results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from provenance import measured, stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "data_scale"
SIZES = (1_000_000, 10_000_000)


def scaled_config(n: int) -> dict[str, int]:
    """Users and items grow with the log: 100 interactions per user, one item per 1000 interactions (>= 1000)."""
    return {"n_interactions": n, "n_users": n // 100, "n_items": max(1_000, n // 1_000)}


def child(n: int, out: Path) -> None:
    """Run in the fresh subprocess: generate one size and print its measurements as JSON."""
    from marquee.data.synthetic import SyntheticConfig, write_synthetic

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux: the imports alone
    started = time.perf_counter()
    write_synthetic(SyntheticConfig(**scaled_config(n)), out, progress=False)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                **scaled_config(n),
                "seconds": round(seconds, 2),
                "per_second": round(n / seconds),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "import_rss_mb": round(base_rss / 1024),
                "disk_mb": round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 1),
            }
        )
    )


def machine() -> dict[str, str | int]:
    """CPU model, logical cores and RAM from /proc, with the library versions that matter here."""
    import numpy
    import pyarrow

    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem_kb = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "ram_gb": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def read_rows() -> list[dict]:
    path = OUT / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def render() -> None:
    """Rewrite the README from every row in ``results.jsonl``: each row is one size of one run, dated."""
    rows = read_rows()
    if not rows:
        raise SystemExit(f"no rows in {OUT / 'results.jsonl'}; run without --render-only first")
    table = [
        ("| date | interactions | users | items | wall (s) | interactions/s | peak RSS (MB) | RSS after imports (MB) "
         "| on disk (MB) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['date']} | {r['n_interactions']:,} | {r['n_users']:,} | {r['n_items']:,} | {r['seconds']:.1f} "
            f"| {r['per_second'] / 1e6:.2f}M | {r['peak_rss_mb']:,} | {r['import_rss_mb']:,} | {r['disk_mb']:,.1f} |"
        )
    hosts = sorted({(f"{h['cpu']}, {h['cores']} logical cores, {h['ram_gb']} GB RAM; Python {h['python']}, "
                     f"numpy {h['numpy']}, pyarrow {h['pyarrow']}") for h in (r["machine"] for r in rows)})
    biggest = max(rows, key=lambda r: r["n_interactions"])
    smallest = min(rows, key=lambda r: r["n_interactions"])
    growth = (f"From {smallest['n_interactions']:,} to {biggest['n_interactions']:,} interactions "
              f"({biggest['n_interactions'] / smallest['n_interactions']:,.0f}× the log), peak RSS went from "
              f"{smallest['peak_rss_mb']:,} to {biggest['peak_rss_mb']:,} MB "
              f"({biggest['peak_rss_mb'] / smallest['peak_rss_mb']:.1f}×).")
    below = [r for r in rows if r["n_interactions"] < biggest["n_interactions"]]
    if below:
        prev = max(below, key=lambda r: r["n_interactions"])
        added = biggest["n_users"] - prev["n_users"]
        growth += (f" Between the {prev['n_interactions']:,} and {biggest['n_interactions']:,} rows it grew by "
                   f"{biggest['peak_rss_mb'] - prev['peak_rss_mb']:,} MB for {added:,} more users (and "
                   f"{biggest['n_items'] - prev['n_items']:,} more items): about "
                   f"{(biggest['peak_rss_mb'] - prev['peak_rss_mb']) * 2**20 / added:,.0f} bytes per added user, "
                   "the items' share included.")
    text = f"""# Data scale: the synthetic log generator

How fast `marquee.data.synthetic.write_synthetic` streams a log with planted structure to Parquet,
and how much memory it needs, as the log grows 10x at a time.

Reproduce (1M and 10M; add `--include-100m` for 100M; the largest row here took {biggest['seconds']:.0f} s and
{biggest['disk_mb']:,.0f} MB of disk); `python scripts/bench_data_scale.py --render-only` rewrites this page from `results.jsonl`:

```
python scripts/bench_data_scale.py{" --include-100m" if biggest["n_interactions"] >= 100_000_000 else ""}
```

Machine recorded by the rows: {'; '.join(hosts)}.

{chr(10).join(measured([(f"{r['n_interactions']:,} interactions", r["date"], r.get("git_commit")) for r in rows],
                      "each row's `date`"))}
{chr(10).join(table)}

Each size runs in a fresh process (`{Path(__file__).name} --child`). Users and items grow with the
log (100 interactions per user, one item per 1,000 interactions, at least 1,000). Wall time
covers sampling and writing `interactions.parquet` (zstd), items, users, `truth.npz` and the
manifest; peak RSS is the process's `ru_maxrss`, imports included (the column after it).

{growth} The generator holds one sampling chunk and a bounded number of Parquet row groups at a
time, never the whole log; the planted truth it keeps is per user and per item.
Every measurement is also appended to `results.jsonl` beside this file.
"""
    (OUT / "README.md").write_text(text)


def main() -> None:
    """Run each size in its own process, appending results as they come."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--include-100m", action="store_true", help="also run 100M interactions (minutes)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the logs are written (then deleted)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the README from results.jsonl")
    parser.add_argument("--child", nargs=2, metavar=("N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), Path(args.child[1]))
        return
    if args.render_only:
        render()
        return

    sizes = SIZES + ((100_000_000,) if args.include_100m else ())
    host = machine()
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="marquee-bench-", dir=args.workdir))
    try:
        for n in sizes:
            out = workdir / f"n{n}"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(n), str(out)], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                sys.exit(f"{n:,} interactions failed:\n{proc.stderr}")
            row = {**json.loads(proc.stdout.splitlines()[-1]), "date": datetime.now(UTC).date().isoformat(), **stamp()}
            with open(OUT / "results.jsonl", "a") as f:
                f.write(json.dumps({**row, "machine": host}) + "\n")
            render()
            print(f"{n:>12,}: {row['seconds']:.1f}s, {row['per_second'] / 1e6:.2f}M/s, peak {row['peak_rss_mb']} MB")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
