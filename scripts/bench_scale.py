"""Benchmark data preparation (parse, filter, vocabularies, split) of 1M and 10M interactions with both engines.

Synthetic logs (``data=synthetic``, 100 interactions per user, one item per 1,000 interactions, at
least 1,000) are generated once as Parquet under ``logs/scale/`` (not committed). Each (size, engine,
split) runs ``marquee.data.pipeline.prepare_split`` in a fresh subprocess that reports its wall time
and peak RSS; each result is appended to ``experiments/scale/results.jsonl`` as soon as it exists,
and a row already there is not run again (delete it to measure again); a run that fails (pandas out of
memory, say) is reported on stderr and not recorded.

    python scripts/bench_scale.py [--include-100m] [--memory-limit 2GB]
    python scripts/bench_scale.py --render-only    # rewrite experiments/scale/README.md from results.jsonl
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_data_scale import machine, scaled_config
from provenance import measured, stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "scale"
SIZES = (1_000_000, 10_000_000)
ENGINES = ("pandas", "duckdb")
KEY = ("n_interactions", "engine", "split", "memory_limit")  # what makes a row; a row with a key present is skipped


def limit_of(engine: str, memory_limit: str) -> str | None:
    """The DuckDB memory limit a row is measured under (None for pandas, which has none)."""
    return memory_limit if engine == "duckdb" else None


def overrides(n: int, logs: Path, engine: str, split: str, memory_limit: str, prepared: Path) -> list[str]:
    """The Hydra overrides of one run: the synthetic log of size ``n`` under ``logs``, the engine and its limits."""
    cfg = scaled_config(n)
    return ["data=synthetic", f"data.source.cache_dir={logs}", f"data.source.n_interactions={n}",
            f"data.source.n_users={cfg['n_users']}", f"data.source.n_items={cfg['n_items']}", f"data/split={split}",
            f"data.engine={engine}", f"data.duckdb.memory_limit={memory_limit}", f"data.duckdb.cache_dir={prepared}"]


def generate(n: int, logs: Path) -> Path:
    """The synthetic log of size ``n`` under ``logs`` (generated unless a complete copy is there)."""
    from marquee.data.loaders.synthetic import SyntheticLog
    from marquee.data.synthetic import is_complete, write_synthetic

    loader = SyntheticLog(logs, **scaled_config(n))
    if not is_complete(loader.path, loader.config):
        write_synthetic(loader.config, loader.path, progress=False)
    return loader.path / "interactions.parquet"


def child(args: list[str]) -> None:
    """Run in the fresh subprocess: prepare one split and print its measurements as JSON."""
    from hydra import compose, initialize_config_dir

    from marquee.config_dir import CONFIG_DIR
    from marquee.data.pipeline import prepare_split

    base_rss = peak_rss_mb()  # the imports alone
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=args)
    started = time.perf_counter()
    split = prepare_split(cfg.data)
    seconds = time.perf_counter() - started
    prepared = Path(cfg.data.duckdb.cache_dir)
    manifests = list(prepared.glob("*/_SUCCESS.json"))
    print(json.dumps({
        "seconds": round(seconds, 2),
        "prep_seconds": json.loads(manifests[0].read_text())["seconds"] if manifests else None,
        "peak_rss_mb": peak_rss_mb(),
        "import_rss_mb": base_rss,
        "prepared_mb": round(sum(f.stat().st_size for f in prepared.rglob("*") if f.is_file()) / 2**20, 1)
        if manifests else None,
        "log_rows": len(split.log), "train_rows": len(split.train), "test_rows": len(split.test),
        "n_users_kept": split.log.n_users, "n_items_kept": split.log.n_items,
    }))


def peak_rss_mb() -> int:
    """This process's peak resident memory in MB: VmHWM, which starts afresh at exec (``ru_maxrss`` keeps the
    peak of the forking parent), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _cell(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(results: Path, readme: Path) -> None:
    """Write the README from the rows of ``results`` alone: one table row per measured run."""
    rows = read_rows(results)
    if not rows:
        raise SystemExit(f"no rows in {results}; run without --render-only first")
    table = [("| date | interactions | split | engine | DuckDB memory_limit | wall (s) | of it in DuckDB (s) "
             "| peak RSS (MB) | RSS after imports (MB) | prepared on disk (MB) |"),
             "|---|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["n_interactions"], r["split"], r["engine"])):
        table.append(
            f"| {r['date']} | {r['n_interactions']:,} | {r['split']} | {r['engine']} | {_cell(r['memory_limit'], '')} "
            f"| {r['seconds']:.1f} | {_cell(r.get('prep_seconds'), '.1f')} | {r['peak_rss_mb']:,} "
            f"| {r['import_rss_mb']:,} | {_cell(r.get('prepared_mb'), ',.1f')} |"
        )
    hosts = sorted({f"{h['cpu']}, {h['cores']} logical cores, {h['ram_gb']} GB RAM; Python {h['python']}, "
                    f"numpy {h['numpy']}, pyarrow {h['pyarrow']}, duckdb {h.get('duckdb', '?')}"
                    for h in (r["machine"] for r in rows)})
    stamps = [(f"{r['n_interactions']:,} {r['engine']}", r["date"], r.get("git_commit")) for r in rows]
    text = f"""# Scale: preparing logs larger than memory

Wall time and peak memory of `marquee.data.pipeline.prepare_split` (read, check, filter, vocabularies,
event order, split) on synthetic logs, with the in-memory engine (`data.engine=pandas`) and the
out-of-core one (`data.engine=duckdb`). `python scripts/bench_scale.py --render-only` rewrites this
page from `results.jsonl`; `python scripts/bench_scale.py` measures the rows not yet there.

Machine recorded by the rows: {'; '.join(hosts)}.

{chr(10).join(measured(stamps, "each row's `date`"))}
{chr(10).join(table)}

Each row is one run in a fresh process (`{Path(__file__).name} --child`) on `data=synthetic` (100 interactions
per user, one item per 1,000 interactions, at least 1,000), generated beforehand under `logs/scale/`. Wall
time covers reading the Parquet log through to the Split in memory, metadata included; for DuckDB, "of it in
DuckDB" is the preparation written to Parquet (the rest reads that Parquet back into pandas), and "prepared
on disk" is that folder. Peak RSS is the process's high-water resident memory (`VmHWM`; DuckDB's memory is in
the same process).
"""
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(text)


def main() -> None:
    """Generate each size once, then run every (size, engine, split) not in the results, appending as they come."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--include-100m", action="store_true", help="also run 100M interactions")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="interaction counts instead of 1M and 10M")
    parser.add_argument("--splits", nargs="+", default=["leave_one_out"], help="data/split options to run")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--memory-limit", default="2GB", help="data.duckdb.memory_limit of the DuckDB runs")
    parser.add_argument("--logs", type=Path, default=REPO / "logs" / "scale", help="where the synthetic logs go")
    parser.add_argument("--results", type=Path, default=OUT / "results.jsonl")
    parser.add_argument("--readme", type=Path, default=OUT / "README.md")
    parser.add_argument("--render-only", action="store_true", help="rewrite the README from the results")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.render_only:
        render(args.results, args.readme)
        return

    sizes = tuple(args.sizes or SIZES) + ((100_000_000,) if args.include_100m else ())
    done = {tuple(r[k] for k in KEY) for r in read_rows(args.results)}
    host = machine()
    import duckdb

    host["duckdb"] = duckdb.__version__
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        todo = [(e, s) for s in args.splits for e in args.engines
                if (n, e, s, limit_of(e, args.memory_limit)) not in done]
        if not todo:
            print(f"{n:>12,}: every run already in {args.results}")
            continue
        generate(n, args.logs)
        for engine, split in todo:
            prepared = Path(tempfile.mkdtemp(prefix="marquee-scale-"))
            try:
                cmd = [sys.executable, __file__, "--child",
                       *overrides(n, args.logs, engine, split, args.memory_limit, prepared)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
            finally:
                shutil.rmtree(prepared, ignore_errors=True)
            if proc.returncode != 0:  # e.g. pandas out of memory at 100M: said, not recorded, the rest still run
                print(f"{n:,} {engine} {split} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", file=sys.stderr)
                continue
            row = {**scaled_config(n), "engine": engine, "split": split,
                   "memory_limit": limit_of(engine, args.memory_limit),
                   **json.loads(proc.stdout.splitlines()[-1]), "date": datetime.now(UTC).date().isoformat(), **stamp(),
                   "machine": host}
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
            render(args.results, args.readme)
            print(f"{n:>12,} {engine:>6} {split}: {row['seconds']:.1f}s, peak {row['peak_rss_mb']:,} MB")


if __name__ == "__main__":
    main()
