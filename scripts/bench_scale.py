"""Benchmark data preparation of 1M and 10M interactions with both engines, and training throughput on such logs.

Synthetic logs (``data=synthetic``, 100 interactions per user, one item per 1,000 interactions, at
least 1,000) are generated once as Parquet under ``logs/scale/`` (not committed). Each (size, engine,
split) runs ``marquee.data.pipeline.prepare_split`` in a fresh subprocess that reports its wall time
and peak RSS; each result is appended to ``experiments/scale/results.jsonl`` as soon as it exists,
and a row already there is not run again (delete it to measure again); a run that fails (pandas out of
memory, say) is reported on stderr and not recorded.

The training part (``--part train``) trains SASRec and the two-tower model for a fixed number of steps with
``python -m marquee.train`` on logs of 1M and 10M interactions, on catalogs of 1,000 to 100,000 items at 1M, and
SASRec at 1M in 2 DDP processes as well as in one; the throughput the run logs (``perf/*`` of its CSV
metrics) goes to ``experiments/scale/training.jsonl``, a row at a time, under the same rules.

    python scripts/bench_scale.py [--part prep|train|all] [--include-100m] [--memory-limit 2GB]
    python scripts/bench_scale.py --render-only    # rewrite experiments/scale/README.md from both .jsonl files
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench_data_scale import machine, scaled_config
from bench_eval_speed import eval_speed_section
from provenance import measured, stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "experiments" / "scale"
SIZES = (1_000_000, 10_000_000)
ENGINES = ("pandas", "duckdb")
KEY = ("n_interactions", "engine", "split", "memory_limit")  # what makes a row; a row with a key present is skipped
CATALOGS = (1_000, 10_000, 100_000)  # catalog sizes trained at the catalog sweep's log size
MODELS = {"sasrec": ["model=sasrec", "datamodule=sequences"], "two_tower": ["model=two_tower", "datamodule=sequences"]}
TRAIN_KEY = ("model", "n_interactions", "n_users", "n_items", "processes", "threads", "steps", "extra")
PLOT = "training_throughput.png"
PREP_PLOT = "preparation_growth.png"


def limit_of(engine: str, memory_limit: str) -> str | None:
    """The DuckDB memory limit a row is measured under (None for pandas, which has none)."""
    return memory_limit if engine == "duckdb" else None


def overrides(n: int, logs: Path, engine: str, split: str, memory_limit: str, prepared: Path) -> list[str]:
    """The Hydra overrides of one run: the synthetic log of size ``n`` under ``logs``, the engine and its limits."""
    cfg = scaled_config(n)
    return ["data=synthetic", f"data.source.cache_dir={logs}", f"data.source.n_interactions={n}",
            f"data.source.n_users={cfg['n_users']}", f"data.source.n_items={cfg['n_items']}", f"data/split={split}",
            f"data.engine={engine}", f"data.duckdb.memory_limit={memory_limit}", f"data.duckdb.cache_dir={prepared}"]


def generate(log: dict[str, int], logs: Path) -> Path:
    """The synthetic log of ``log``'s sizes (``scaled_config``'s keys) under ``logs``, generated unless a complete
    copy is there."""
    from marquee.data.loaders.synthetic import SyntheticLog
    from marquee.data.synthetic import is_complete, write_synthetic

    loader = SyntheticLog(logs, **log)
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


def address_limit(gb: float) -> None:
    """Cap this (child) process's address space at ``gb`` GiB, so that an engine that outgrows the machine fails with
    a MemoryError of its own instead of drawing the kernel's OOM killer onto other processes."""
    if gb > 0:
        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def peak_rss_mb() -> int:
    """This process's peak resident memory in MB: VmHWM, which starts afresh at exec (``ru_maxrss`` keeps the
    peak of the forking parent), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def train_plan(sizes: list[int], catalogs: list[int], catalog_log: int, ddp_sizes: list[int], models: list[str],
               threads: int) -> list[dict]:
    """Every training run to measure, as (model, log, processes, threads): each model on each scaled log and on each
    catalog size at ``catalog_log``, in one process; SASRec at each of ``ddp_sizes`` in two, one thread each."""
    logs = [scaled_config(n) for n in sizes] + [{**scaled_config(catalog_log), "n_items": k} for k in catalogs]
    runs = [{"model": m, **log, "processes": 1, "threads": threads} for log in logs for m in models]
    runs += [{"model": "sasrec", **scaled_config(n), "processes": 2, "threads": max(1, threads // 2)}
             for n in ddp_sizes if "sasrec" in models]
    unique = {json.dumps(r, sort_keys=True): r for r in runs}  # the catalog sweep's scaled size is a log size too
    return list(unique.values())


def train_key(row: dict) -> tuple:
    """The ``TRAIN_KEY`` values of a row, lists made tuples so that the key can be looked up."""
    return tuple(tuple(row[k]) if isinstance(row[k], list) else row[k] for k in TRAIN_KEY)


def log_of(run: dict) -> dict[str, int]:
    """The synthetic log's sizes of a training run."""
    return {k: run[k] for k in ("n_interactions", "n_users", "n_items")}


def train_overrides(run: dict, logs: Path, run_dir: Path) -> list[str]:
    """The ``marquee.train`` overrides of a training run: its log, model, CPU processes and threads, ``steps`` batches
    of one epoch, no validation, evaluation, checkpoints or progress bar, the CSV logger writing into ``run_dir``."""
    trainer = ["trainer=ddp_cpu", f"trainer.devices={run['processes']}"] if run["processes"] > 1 else ["trainer=cpu"]
    return ["data=synthetic", f"data.source.cache_dir={logs}",
            *(f"data.source.{k}={v}" for k, v in log_of(run).items()), *MODELS[run["model"]], *trainer,
            f"torch_threads={run['threads']}", "trainer.max_epochs=1", f"+trainer.limit_train_batches={run['steps']}",
            "+trainer.limit_val_batches=0", "+trainer.enable_checkpointing=false",
            "+trainer.enable_progress_bar=false", "callbacks=none", "logger=csv", "stages=[]",
            f"hydra.run.dir={run_dir}", *run["extra"]]


def train_child(args: list[str]) -> None:
    """Run in a fresh process: run ``marquee.train`` with ``args`` and print its wall time and peak RSS as JSON.

    This process is fresh and small, so the peak its children report is theirs alone (a child's ``ru_maxrss``
    starts from its parent's peak); as the adopter of orphans it also counts DDP ranks that outlive rank zero.
    """
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "marquee.train", *args], capture_output=True, text=True,
                          check=False, cwd=REPO)
    while True:  # orphaned ranks, if any
        try:
            os.wait()
        except ChildProcessError:
            break
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(proc.returncode)
    print(json.dumps({"wall_seconds": round(seconds, 2),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}))


def throughput(run_dir: Path) -> dict[str, float | int | None]:
    """The ``perf/*`` figures the training epoch logged in ``run_dir``'s CSV metrics, with its optimizer steps and
    the model's parameter count from ``metrics.json``."""
    files = sorted(run_dir.glob("csv/*/metrics.csv"))
    logged = [r for r in csv.DictReader(files[-1].open()) if r.get("perf/tokens_per_s")] if files else []
    if not logged:
        raise RuntimeError(f"no perf/tokens_per_s in {run_dir}/csv/*/metrics.csv")
    epoch = logged[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}

    def number(key: str, digits: int) -> float | None:
        return round(float(epoch[key]), digits) if epoch.get(key) else None

    flops = number("perf/flops_per_s", 0)
    return {"steps_run": int(epoch["step"]) + 1, "tokens_per_s": number("perf/tokens_per_s", 1),
            "sequences_per_s": number("perf/sequences_per_s", 2), "peak_share": number("perf/peak_share", 4),
            "gflops_per_s": None if flops is None else round(flops / 1e9, 2),
            "epoch_seconds": number("perf/train_epoch_seconds", 2),
            "n_parameters": int(metrics["train/n_parameters"]) if "train/n_parameters" in metrics else None}


def train_host() -> dict[str, str | int]:
    """``machine()`` with the versions that training depends on."""
    return {**machine(), "torch": version("torch"), "pytorch_lightning": version("pytorch_lightning")}


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def measure_training(run: dict, logs: Path, host: dict) -> dict | None:
    """Train one run in a fresh process tree and return its row (None, said on stderr, when the run fails)."""
    run_dir = Path(tempfile.mkdtemp(prefix="marquee-scale-train-"))
    try:
        load_before = load_average()
        cmd = [sys.executable, __file__, "--train-child", *train_overrides(run, logs, run_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
        load_after = load_average()
        if proc.returncode != 0:
            print(f"{describe(run)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", file=sys.stderr)
            return None
        measured_run = {**json.loads(proc.stdout.splitlines()[-1]), **throughput(run_dir)}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {**run, **measured_run, "load_before": load_before, "load_after": load_after,
            "date": datetime.now(UTC).date().isoformat(), **stamp(), "machine": host}


def describe(run: dict) -> str:
    """A training run in a few words, for the console."""
    extra = f" {' '.join(run['extra'])}" if run["extra"] else ""
    return (f"{run['model']} {run['n_interactions']:,} interactions {run['n_items']:,} items "
            f"{run['processes']}x{run['threads']} threads {run['steps']} steps{extra}")


def run_training(args: argparse.Namespace) -> None:
    """Run every training run of the plan not in the training rows, appending each row as it comes."""
    plan = [{**r, "steps": args.train_steps, "extra": list(args.train_extra)}
            for r in train_plan(args.train_sizes, args.catalog_sizes, args.catalog_log, args.ddp_sizes, args.models,
                                args.threads)]
    done = {train_key(r) for r in read_rows(args.training)}
    todo = [r for r in plan if train_key(r) not in done]
    if not todo:
        print(f"every training run already in {args.training}")
        return
    host = train_host()
    args.training.parent.mkdir(parents=True, exist_ok=True)
    for run in todo:
        generate(log_of(run), args.logs)
        row = measure_training(run, args.logs, host)
        if row is None:
            continue
        with open(args.training, "a") as f:
            f.write(json.dumps(row) + "\n")
        render(args.results, args.training, args.readme)
        print(f"{describe(run)}: {row['tokens_per_s']:,.0f} tokens/s, epoch {row['epoch_seconds']:.1f}s, "
              f"wall {row['wall_seconds']:.1f}s, peak {row['peak_rss_mb']:,} MB")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _cell(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(results: Path, training: Path, readme: Path) -> None:
    """Write the README from the rows of ``results`` and ``training`` alone: a section per part, a row per run."""
    prep_rows, train_rows = read_rows(results), read_rows(training)
    if not prep_rows and not train_rows and not (OUT / "eval_speed.jsonl").is_file():
        raise SystemExit(f"no rows in {results} or {training}; run without --render-only first")
    text = f"""# Scale: preparing and training on large logs

Two parts, each measured by `python scripts/bench_scale.py` (`--part prep`, the default, `--part train` or
`--part all`) into its own file here, a row per run, and rendered from those rows alone by
`python scripts/bench_scale.py --render-only`: data preparation with both engines (`{results.name}`) and
training throughput against log and catalog size (`{training.name}`); a third, evaluation speed against RecBole and
the hardware's floor, is measured by `python scripts/bench_eval_speed.py` (`eval_speed.jsonl`, `eval_roofline.jsonl`)
and rendered here too.

{prep_section(prep_rows, results.name, readme.parent)}
{train_section(train_rows, training.name, readme.parent)}
{eval_speed_section()}"""
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(text)


def fit_growth(sizes: list[int], values: list[float]) -> tuple[float, float] | None:
    """The exponent and log-intercept of ``values ∝ sizes^exponent`` by least squares in log-log space (None with
    fewer than two distinct sizes)."""
    import numpy as np

    if len(set(sizes)) < 2:
        return None
    slope, intercept = np.polyfit(np.log(sizes), np.log(values), 1)
    return float(slope), float(intercept)


def finished_by_engine(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The finished preparation rows of each (engine, split), smallest log first."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sorted((r for r in rows if "failed" not in r), key=lambda r: r["n_interactions"]):
        groups.setdefault((r["engine"], r["split"]), []).append(r)
    return dict(sorted(groups.items()))


def growth_table(rows: list[dict]) -> list[str]:
    """A Markdown table of each (engine, split)'s fitted exponents of wall time and peak RSS, with the sizes it
    finished and its extrapolation to the largest size any engine finished."""
    import math

    groups = finished_by_engine(rows)
    largest = max(r["n_interactions"] for mine in groups.values() for r in mine)
    table = ["| engine | split | sizes finished | time exponent | peak RSS exponent "
             f"| time at {largest:,} (s, measured or fitted) | peak RSS at {largest:,} (MB, measured or fitted) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for (engine, split), mine in groups.items():
        sizes = [r["n_interactions"] for r in mine]
        time_fit = fit_growth(sizes, [r["seconds"] for r in mine])
        rss_fit = fit_growth(sizes, [r["peak_rss_mb"] for r in mine])

        def at_largest(fit: tuple[float, float] | None, key: str, spec: str) -> str:
            if largest in sizes:
                return format(mine[sizes.index(largest)][key], spec) + " (measured)"
            return "-" if fit is None else format(math.exp(fit[1]) * largest ** fit[0], spec) + " (fitted; not finished)"

        table.append(f"| {engine} | {split} | {', '.join(f'{n:,}' for n in sizes)} "
                     f"| {'-' if time_fit is None else f'{time_fit[0]:.2f}'} "
                     f"| {'-' if rss_fit is None else f'{rss_fit[0]:.2f}'} "
                     f"| {at_largest(time_fit, 'seconds', ',.1f')} | {at_largest(rss_fit, 'peak_rss_mb', ',.0f')} |")
    return table


def plot_prep(rows: list[dict], path: Path) -> None:
    """Wall time and peak RSS against interactions on log-log axes, a line per engine and split (points measured,
    dashed the fitted power law)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "seconds", "wall time (s)"), (axes[1], "peak_rss_mb", "peak RSS (MB)")):
        for (engine, split), mine in finished_by_engine(rows).items():
            sizes, values = [r["n_interactions"] for r in mine], [r[key] for r in mine]
            line, = ax.plot(sizes, values, "o", label=f"{engine}, {split}")
            fit = fit_growth(sizes, values)
            if fit is not None:
                xs = np.array([min(sizes), max(sizes)], dtype=float)
                ax.plot(xs, np.exp(fit[1]) * xs ** fit[0], "--", color=line.get_color(),
                        label=f"fit: ∝ n^{fit[0]:.2f}")
        ax.set(xscale="log", yscale="log", xlabel="interactions in the log", ylabel=label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def prep_section(rows: list[dict], name: str, folder: Path) -> str:
    """The data preparation section: one table row per measured run."""
    if not rows:
        return f"## Data preparation\n\nNo rows in `{name}` yet.\n"
    table = [("| date | interactions | split | engine | DuckDB memory_limit | wall (s) | of it in DuckDB (s) "
             "| peak RSS (MB) | RSS after imports (MB) | prepared on disk (MB) |"),
             "|---|---:|---|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["n_interactions"], r["split"], r["engine"])):
        if "failed" in r:
            table.append(f"| {r['date']} | {r['n_interactions']:,} | {r['split']} | {r['engine']} "
                         f"| {_cell(r['memory_limit'], '')} | failed after {r['seconds']:.1f} s "
                         f"(address space capped at {r['address_limit_gb']:g} GiB): {r['failed']} | - | - | - | - |")
            continue
        table.append(
            f"| {r['date']} | {r['n_interactions']:,} | {r['split']} | {r['engine']} | {_cell(r['memory_limit'], '')} "
            f"| {r['seconds']:.1f} | {_cell(r.get('prep_seconds'), '.1f')} | {r['peak_rss_mb']:,} "
            f"| {r['import_rss_mb']:,} | {_cell(r.get('prepared_mb'), ',.1f')} |"
        )
    hosts = sorted({f"{h['cpu']}, {h['cores']} logical cores, {h['ram_gb']} GB RAM; Python {h['python']}, "
                    f"numpy {h['numpy']}, pyarrow {h['pyarrow']}, duckdb {h.get('duckdb', '?')}"
                    for h in (r["machine"] for r in rows)})
    stamps = [(f"{r['n_interactions']:,} {r['engine']}", r["date"], r.get("git_commit")) for r in rows]
    plot_prep(rows, folder / PREP_PLOT)
    return f"""## Data preparation: logs larger than memory

Wall time and peak memory of `marquee.data.pipeline.prepare_split` (read, check, filter, vocabularies,
event order, split) on synthetic logs, with the in-memory engine (`data.engine=pandas`) and the
out-of-core one (`data.engine=duckdb`), from `{name}`.

Machine recorded by the rows: {'; '.join(hosts)}.

{chr(10).join(measured(stamps, "each row's `date`"))}
{chr(10).join(table)}

Fitted growth, per engine and split: the least-squares line through log(measure) against log(interactions) over
the sizes that engine finished, as measure ∝ interactions^exponent (1 is linear), and what it extrapolates to at
the largest size measured by any engine (a size an engine did not finish is named):

{chr(10).join(growth_table(rows))}

![wall time and peak RSS against interactions, log-log, a line per engine]({PREP_PLOT})

Each row is one run in a fresh process (`{Path(__file__).name} --child`) on `data=synthetic` (100 interactions
per user, one item per 1,000 interactions, at least 1,000), generated beforehand under `logs/scale/`. Wall
time covers reading the Parquet log through to the Split in memory, metadata included; for DuckDB, "of it in
DuckDB" is the preparation written to Parquet (the rest reads that Parquet back into pandas), and "prepared
on disk" is that folder. Peak RSS is the process's high-water resident memory (`VmHWM`; DuckDB's memory is in
the same process).
"""


def train_section(rows: list[dict], name: str, folder: Path) -> str:
    """The training throughput section: a table row per run, the plot, and the machines and loads they ran on."""
    if not rows:
        return f"## Training throughput\n\nNo rows in `{name}` yet.\n"
    table = [("| date | model | interactions | users | items | processes x threads | extra overrides | steps "
              "| tokens/s | sequences/s | share of matmul peak | GFLOP/s | epoch (s) | wall (s) | peak RSS (MB) "
              "| load before / after (1 min) |"),
             "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["n_interactions"], r["n_items"], r["processes"], r["threads"])):
        table.append(
            f"| {r['date']} | {r['model']} | {r['n_interactions']:,} | {r['n_users']:,} | {r['n_items']:,} "
            f"| {r['processes']} x {r['threads']} | {' '.join(f'`{o}`' for o in r['extra']) or '-'} "
            f"| {r['steps_run']} | {_cell(r['tokens_per_s'], ',.0f')} | {_cell(r['sequences_per_s'], ',.1f')} "
            f"| {_cell(r['peak_share'], '.1%')} | {_cell(r['gflops_per_s'], '.1f')} "
            f"| {_cell(r['epoch_seconds'], '.1f')} | {r['wall_seconds']:.1f} | {r['peak_rss_mb']:,} "
            f"| {r['load_before'][0]:.2f} / {r['load_after'][0]:.2f} |"
        )
    hosts = sorted({f"{h['cpu']}, {h['cores']} logical cores, {h['ram_gb']} GB RAM; Python {h['python']}, "
                    f"torch {h['torch']}, pytorch_lightning {h['pytorch_lightning']}"
                    for h in (r["machine"] for r in rows)})
    loads = [x for r in rows for x in (r["load_before"][0], r["load_after"][0])]
    stamps = [(f"{r['model']} {r['n_interactions']:,}/{r['n_items']:,} {r['processes']}x{r['threads']}", r["date"],
               r.get("git_commit")) for r in rows]
    plot_training(rows, folder / PLOT)
    return f"""## Training throughput against log and catalog size

SASRec and the two-tower model (`datamodule=sequences`, their `configs/model` defaults and the row's extra
overrides) trained for a fixed number of batches of one epoch by `python -m marquee.train` on `data=synthetic`,
with no validation, evaluation or checkpoints, from `{name}`. The log sizes scale users and items as the data
preparation part does; the catalog sweep keeps a log's interactions and users and changes its items.

Machine recorded by the rows: {'; '.join(hosts)}. The 1-minute load average on it before and after each run
is in the table: from {min(loads):.2f} to {max(loads):.2f} over these rows (a load above the cores means
other work shared the CPUs with the run).

{chr(10).join(measured(stamps, "each row's `date`"))}
{chr(10).join(table)}

![tokens/s against log size and against catalog size, a line per model, processes and threads]({PLOT})

Each row is one `marquee.train` run in a fresh process tree (`{Path(__file__).name} --train-child`), on a log
generated beforehand under `logs/scale/`. Tokens/s, sequences/s, the share of the matmul peak, GFLOP/s and
epoch seconds are the `perf/*` figures the run's `ThroughputLogger` logged for its epoch
(`src/marquee/training/throughput.py`): tokens are the non-padding positions trained, the share divides the
step's FLOP/s (counted once with `FlopCounterMode`) by a float32 matmul peak the same process measured, and
the epoch's seconds include that one counted forward and backward. With 2 processes (`trainer=ddp_cpu`) the
rates are the ranks' sums, the seconds the slowest rank's, the share their mean, and steps are per rank (each
rank trains on its half of the windows). Steps are the optimizer steps the epoch ran (fewer than asked when
the log has fewer batches). Wall time is the whole command: preparing the split from the Parquet log, building
the model, the peak measurement, the epoch and saving the model (the two-tower model builds its item index
then). Peak RSS is the largest single process's high-water resident memory, not the sum over DDP ranks.
"""


def plot_training(rows: list[dict], path: Path) -> None:
    """Tokens/s against log size (scaled catalogs) and against catalog size (logs trained at several), a line per
    model, processes, threads and extra overrides."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaled = [r for r in rows if log_of(r) == scaled_config(r["n_interactions"])]
    sweeps = {r["n_interactions"] for r in rows if len({q["n_items"] for q in rows
                                                         if q["n_interactions"] == r["n_interactions"]}) > 1}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((axes[0], scaled, "n_interactions", "interactions in the log (items scale with it)"),
              (axes[1], [r for r in rows if r["n_interactions"] in sweeps], "n_items", "items in the catalog"))
    for ax, subset, x, label in panels:
        lines: dict[str, list[dict]] = {}
        for r in sorted(subset, key=lambda r: r[x]):
            extra = f", {' '.join(r['extra'])}" if r["extra"] else ""
            log = f", {r['n_interactions']:,} interactions" if x == "n_items" else ""
            lines.setdefault(f"{r['model']}, {r['processes']} x {r['threads']}{log}{extra}", []).append(r)
        for name, points in lines.items():
            ax.plot([r[x] for r in points], [r["tokens_per_s"] for r in points], "o-", label=name)
        ax.set(xlabel=label, ylabel="tokens/s (one epoch)")
        ax.grid(alpha=0.3)
        if lines:
            ax.set_xscale("log")
            ax.legend(fontsize=7, title="model, processes x threads", title_fontsize=7)
        else:
            ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_prep(args: argparse.Namespace) -> None:
    """Generate each size once, then run every (size, engine, split) not in the results, appending as they come."""
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
        generate(scaled_config(n), args.logs)
        for engine, split in todo:
            prepared = Path(tempfile.mkdtemp(prefix="marquee-scale-"))
            started = time.perf_counter()
            try:
                cmd = [sys.executable, __file__, "--child",
                       *overrides(n, args.logs, engine, split, args.memory_limit, prepared)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO,
                                      preexec_fn=lambda: address_limit(args.address_limit_gb))
            finally:
                shutil.rmtree(prepared, ignore_errors=True)
            if proc.returncode != 0:  # e.g. pandas out of memory at 100M: recorded as failed, the rest still run
                print(f"{n:,} {engine} {split} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}", file=sys.stderr)
                last = [line for line in proc.stderr.splitlines() if line.strip()]
                measured_run = {"failed": f"exit {proc.returncode}: {last[-1][:200] if last else 'no message'}",
                                "seconds": round(time.perf_counter() - started, 2)}
            else:
                measured_run = json.loads(proc.stdout.splitlines()[-1])
            row = {**scaled_config(n), "engine": engine, "split": split,
                   "memory_limit": limit_of(engine, args.memory_limit), "address_limit_gb": args.address_limit_gb,
                   **measured_run, "date": datetime.now(UTC).date().isoformat(), **stamp(), "machine": host}
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
            render(args.results, args.training, args.readme)
            outcome = row["failed"] if "failed" in row else f"peak {row['peak_rss_mb']:,} MB"
            print(f"{n:>12,} {engine:>6} {split}: {row['seconds']:.1f}s, {outcome}")


def parse_args() -> argparse.Namespace:
    """The command line; the result files default to ``--results-dir``'s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("prep", "train", "all"), default="prep", help="which part to measure")
    parser.add_argument("--include-100m", action="store_true", help="also run 100M interactions (data preparation)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="interaction counts instead of 1M and 10M")
    parser.add_argument("--splits", nargs="+", default=["leave_one_out"], help="data/split options to run")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--memory-limit", default="2GB", help="data.duckdb.memory_limit of the DuckDB runs")
    parser.add_argument("--address-limit-gb", type=float, default=20.0,
                        help="address-space cap of each preparation process (0: none); a run over it fails and is "
                             "recorded as failed")
    parser.add_argument("--train-sizes", type=int, nargs="+", default=list(SIZES),
                        help="interaction counts trained on (catalogs scaled with them)")
    parser.add_argument("--catalog-sizes", type=int, nargs="*", default=list(CATALOGS),
                        help="catalog sizes trained on at --catalog-log interactions (none: no catalog sweep)")
    parser.add_argument("--catalog-log", type=int, default=SIZES[0], help="interactions of the catalog sweep's log")
    parser.add_argument("--ddp-sizes", type=int, nargs="*", default=[SIZES[0]],
                        help="interaction counts at which SASRec also trains in 2 processes (none: no DDP runs)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--train-steps", type=int, default=30, help="training batches of the one epoch (per rank)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of a 1-process run (halved per rank)")
    parser.add_argument("--train-extra", nargs="*", default=[],
                        help="further marquee.train overrides of every training run (recorded in its row)")
    parser.add_argument("--logs", type=Path, default=REPO / "logs" / "scale", help="where the synthetic logs go")
    parser.add_argument("--results-dir", type=Path, default=OUT, help="folder of the results files and the README")
    parser.add_argument("--results", type=Path, default=None, help="data preparation rows (results.jsonl)")
    parser.add_argument("--training", type=Path, default=None, help="training rows (training.jsonl)")
    parser.add_argument("--readme", type=Path, default=None, help="the README (README.md)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the README from the results")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--train-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.results = args.results or args.results_dir / "results.jsonl"
    args.training = args.training or args.results_dir / "training.jsonl"
    args.readme = args.readme or args.results_dir / "README.md"
    return args


def main() -> None:
    """Run a child, render, or measure the chosen parts' runs not yet in their results."""
    args = parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.train_child is not None:
        train_child(args.train_child)
        return
    if args.render_only:
        render(args.results, args.training, args.readme)
        return
    if args.part in ("prep", "all"):
        run_prep(args)
    if args.part in ("train", "all"):
        run_training(args)


if __name__ == "__main__":
    main()
