"""Benchmark the synthetic log generator at 1M and 10M interactions (100M with --include-100m).

Each size runs in a fresh subprocess that reports its own wall time and peak RSS; every result is
appended to ``experiments/data_scale/results.jsonl`` as soon as it exists and the README table is
rewritten after each size, so a run cut short keeps what it measured.

    python scripts/bench_data_scale.py [--include-100m]
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


def write_readme(rows: list[dict], host: dict, command: str) -> None:
    """Rewrite the README with the table of this run."""
    table = [
        "| interactions | users | items | wall (s) | interactions/s | peak RSS (MB) | RSS after imports (MB) | on disk (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['n_interactions']:,} | {r['n_users']:,} | {r['n_items']:,} | {r['seconds']:.1f} "
            f"| {r['per_second'] / 1e6:.2f}M | {r['peak_rss_mb']:,} | {r['import_rss_mb']:,} | {r['disk_mb']:,.1f} |"
        )
    text = f"""# Data scale: the synthetic log generator

How fast `marquee.data.synthetic.write_synthetic` streams a log with planted structure to Parquet,
and how much memory it needs, as the log grows 10x at a time.

Reproduce (1M and 10M; add `--include-100m` for 100M, which takes minutes and ~1 GB of disk):

```
{command}
```

Machine: {host['cpu']}, {host['cores']} logical cores, {host['ram_gb']} GB RAM;
Python {host['python']}, numpy {host['numpy']}, pyarrow {host['pyarrow']}. Measured {rows[0]['date'] if rows else ''}.

{chr(10).join(table)}

Each size runs in a fresh process (`{Path(__file__).name} --child`). Users and items grow with the
log (100 interactions per user, one item per 1,000 interactions, at least 1,000). Wall time
covers sampling and writing `interactions.parquet` (zstd), items, users, `truth.npz` and the
manifest; peak RSS is the process's `ru_maxrss`, imports included (the column after it).

Bounded memory means that peak memory stays roughly flat while the log grows 10x: the generator
holds one sampling chunk (`chunk_size`, 100k interactions) and at most two 1M-row Parquet row
groups at a time, never the whole log. What does grow is the planted truth, which is per user and
per item, not per interaction: about 115 bytes per user kept (tastes over 18 genres, device
preferences, activity, time window) plus a 144-byte-per-user float64 draw of the tastes while they
are planted; with 100 interactions per user that is ~2.6 bytes per interaction, ~250 MB at 100M.
Every measurement is also appended to `results.jsonl` beside this file.
"""
    (OUT / "README.md").write_text(text)


def main() -> None:
    """Run each size in its own process, appending results as they come."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--include-100m", action="store_true", help="also run 100M interactions (minutes)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the logs are written (then deleted)")
    parser.add_argument("--child", nargs=2, metavar=("N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), Path(args.child[1]))
        return

    sizes = SIZES + ((100_000_000,) if args.include_100m else ())
    command = "python scripts/bench_data_scale.py" + (" --include-100m" if args.include_100m else "")
    host, rows = machine(), []
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
            row = {**json.loads(proc.stdout.splitlines()[-1]), "date": datetime.now(UTC).date().isoformat()}
            rows.append(row)
            with open(OUT / "results.jsonl", "a") as f:
                f.write(json.dumps({**row, "machine": host}) + "\n")
            write_readme(rows, host, command)
            print(f"{n:>12,}: {row['seconds']:.1f}s, {row['per_second'] / 1e6:.2f}M/s, peak {row['peak_rss_mb']} MB")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
