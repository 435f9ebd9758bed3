"""The reference service measured: bundle load time, memory, and latency and throughput at 1, 8 and 32 clients.

Steps append rows to experiments/serving/results.jsonl; heavy files (run, bundle, histories) stay under
logs/bench_serving/. The README is rendered from the rows alone.

    python scripts/bench_serving.py prepare          # train a short cascade on ML-100K, export it, write histories
    python scripts/bench_serving.py measure          # serve it; load from a second process at each concurrency
    python scripts/bench_serving.py --render-only    # rewrite experiments/serving/README.md from the rows
    python scripts/bench_serving.py prepare --tiny   # a synthetic tiny cascade instead (to try the script)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "experiments" / "serving"
ROWS = OUT_DIR / "results.jsonl"
WORK = REPO / "logs" / "bench_serving"
LEVELS = (1, 8, 32)
GOAL = {"concurrency": 8, "p99_ms": 20.0, "cores": 2,
        "text": "p99 under 20 ms at 8 concurrent clients on a 2-core machine for retrieval + ranking + artwork "
                "of one member"}
BUSY_PER_CORE = 0.5  # a 1-minute load average above this per core before measuring: the machine was busy
REQUEST = {"k": 10, "rows": 3}
QUIET = ["~callbacks.progress_bar", "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
         "evaluation.progress=false", "logger=csv"]
# a synthetic cascade of the size tests/test_export.py trains: minutes, to try the script end to end
TINY = ["data=synthetic", "data.source.n_users=300", "data.source.n_items=150", "data.source.n_interactions=6000",
        "evaluation.n_boot=10", "stages=[val,test]", "evaluation.ks=[10]", "pipeline.system.n_candidates=30",
        "model.max_len=12", "model.hidden=16", "model.layers=2", "model.heads=2", "model.inner=32",
        "datamodule.windows=last", "datamodule.batch_size=256", "pipeline.stages.retriever.model.dim=16",
        "pipeline.stages.retriever.model.hidden=32", "pipeline.stages.retriever.model.max_len=10",
        "pipeline.stages.retriever.model.index.kind=flat", "pipeline.stages.retriever.datamodule.windows=last",
        "pipeline.stages.retriever.datamodule.batch_size=256"]


# ---- rows --------------------------------------------------------------------------------------

def read() -> list[dict]:
    return [json.loads(line) for line in ROWS.read_text().splitlines() if line.strip()] if ROWS.is_file() else []


def append(row: dict) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with ROWS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "bundle"}), flush=True)


def git_commit() -> str | None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True,
                           check=False).stdout.strip()
    return (done.stdout.strip() + ("+dirty-src" if dirty else "")) if done.returncode == 0 else None


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version()}


def utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def provenance(started: str, load_start: tuple[float, ...], bundle: Path) -> dict:
    """What every row records: the machine, its load averages, the code, the time and the bundle served."""
    return {"machine": machine(), "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()], "git_commit": git_commit(), "started_at": started,
            "finished_at": utc(), "bundle": describe(bundle)}


def describe(bundle: Path) -> dict | None:
    """The bundle: its path, id, system, dataset, size and the epochs each stage trained (from its manifest)."""
    path = bundle / "manifest.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    config = manifest.get("config", {})
    stages = config.get("pipeline", {}).get("stages", {}) or {}
    epochs = {"ranker": (config.get("trainer") or {}).get("max_epochs")}  # a stage without its own trainer uses this
    for name, stage in stages.items():
        if isinstance(stage, dict) and (stage.get("trainer") or {}).get("max_epochs") is not None:
            epochs[name] = stage["trainer"]["max_epochs"]
    items = bundle / "vocab" / "items.parquet"
    users = bundle / "vocab" / "users.parquet"
    return {"path": str(bundle.relative_to(REPO) if bundle.is_relative_to(REPO) else bundle),
            "bundle_id": hashlib.sha256(path.read_bytes()).hexdigest()[:16], "system": manifest.get("system"),
            "task_name": config.get("task_name"), "data": (config.get("data") or {}).get("name"),
            "fingerprint": (manifest.get("data") or {}).get("fingerprint"),
            "items": len(pd.read_parquet(items)) if items.is_file() else None,
            "users": len(pd.read_parquet(users)) if users.is_file() else None,
            "epochs": epochs, "policy": policy_of(bundle, manifest),
            "bytes": sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())}


def artwork_line(policy: dict | None) -> str:
    if policy is None:
        return "Artwork: no policy in the bundle; synthetic variants chosen uniformly."
    how = f"ε-greedy, ε {policy['epsilon']}" if policy["kind"] == "linear" else policy["kind"]
    return (f"Artwork: the bundle's policy `{policy['name']}` ({how}) over the artworks of {policy['titles']} titles, "
            "chosen per title on every request.")


def policy_of(bundle: Path, manifest: dict) -> dict | None:
    """The bundle's artwork policy: its name, kind, ε and how many titles its layout covers (None: synthetic)."""
    entry = (manifest.get("policy") or {}).get("file")
    if not entry:
        return None
    policy = json.loads((bundle / entry).read_text())
    return {"name": policy.get("name"), "kind": policy.get("kind"), "epsilon": policy.get("epsilon"),
            "titles": len(policy.get("layout", {}).get("titles", {}))}


# ---- prepare -----------------------------------------------------------------------------------

def data_dir() -> Path | None:
    """The folder holding ml-100k/: MARQUEE_DATA_DIR, else ../shared/data, else ./data."""
    candidates = [os.environ.get("MARQUEE_DATA_DIR"), str(REPO.parent / "shared" / "data"), str(REPO / "data")]
    return next((Path(c) for c in candidates if c and (Path(c) / "ml-100k").is_dir()), None)


def shown(command: list[str]) -> str:
    """A command as a person types it: ``python`` for this interpreter."""
    return " ".join("python" if part == sys.executable else part for part in command)


def run(command: list[str], env: dict | None = None) -> float:
    print("$", shown(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, env={**os.environ, **(env or {})})
    return round(time.perf_counter() - start, 1)


def prepare(args: argparse.Namespace) -> None:
    started, load_start = utc(), os.getloadavg()
    name = "tiny" if args.tiny else "ml100k"
    work = WORK / name
    run_dir, bundle, histories = work / "run", work / "bundle", work / "histories.parquet"
    root = None if args.tiny else data_dir()
    if not args.tiny and root is None:
        sys.exit("error: no ml-100k/ under MARQUEE_DATA_DIR, ../shared/data or ./data; give --tiny for synthetic data")
    env = {} if root is None else {"MARQUEE_DATA_DIR": str(root)}
    epochs = [f"trainer.max_epochs={args.epochs}", f"pipeline.stages.retriever.trainer.max_epochs={args.epochs}"]
    train = [sys.executable, "-m", "marquee.train", "experiment=cascade_ml100k", *epochs, *QUIET,
             "trainer.accelerator=cpu", f"torch_threads={os.cpu_count()}", *(TINY if args.tiny else []),
             f"hydra.run.dir={run_dir.relative_to(REPO)}"]
    # the artwork policy the service runs: LinUCB trained on the artwork simulator over the same titles
    policy = work / "bandit" / "policies" / "linucb.json"
    bandit = [sys.executable, "-m", "marquee.bandit", "save_policies=true", "~policies.softmax", "~policies.linear_ts",
              *(["data=synthetic"] if args.tiny else []), f"hydra.run.dir={(work / 'bandit').relative_to(REPO)}"]
    export = [sys.executable, "-m", "marquee.export", f"run_dir={run_dir.relative_to(REPO)}",
              f"out={bundle.relative_to(REPO)}", f"policy={policy.relative_to(REPO)}"]
    train_s = export_s = bandit_s = None
    if not (run_dir / "checkpoints" / "model.pt").is_file():
        train_s = run(train, env)
    if not policy.is_file():
        bandit_s = run(bandit, env)
    if not (bundle / "manifest.json").is_file():
        export_s = run(export, env)
    if not histories.is_file():
        write_histories(histories, bundle, root)
    trained = describe(bundle)["epochs"]
    if any(e != args.epochs for e in trained.values()):
        print(f"note: {bundle.relative_to(REPO)} was already there, trained {trained} epochs, not {args.epochs}; "
              f"delete {work.relative_to(REPO)} to train again", flush=True)
    stored = pd.read_parquet(histories)
    append({"step": "prepare", "name": name, "command": shown([sys.executable, *sys.argv]),
            "epochs_requested": args.epochs, "train_s": train_s, "export_s": export_s, "bandit_s": bandit_s,
            "commands": [shown(c) for c in (train, bandit, export)], "data_dir": None if root is None else os.path.relpath(root, REPO),
            "histories": {"path": str(histories.relative_to(REPO)), "members": int(stored["user_id"].nunique()),
                          "events": len(stored)},
            **provenance(started, load_start, bundle)})


def write_histories(path: Path, bundle: Path, root: Path | None) -> None:
    """``user_id, item_id, timestamp`` (raw ids): the ML-100K log, or for a synthetic bundle random events of its
    members over its titles."""
    if root is not None:
        from marquee.data.loaders.movielens import MovieLens100K

        log = MovieLens100K(root / "ml-100k", download=False).load().interactions
        frame = log[["user_id", "item_id", "timestamp"]].reset_index(drop=True)
    else:
        rng = np.random.default_rng(0)
        users = pd.read_parquet(bundle / "vocab" / "users.parquet").iloc[:, 0].to_numpy()
        items = pd.read_parquet(bundle / "vocab" / "items.parquet").iloc[:, 0].to_numpy()
        rows = [(u, items[rng.integers(len(items))], 1_700_000_000 + 3600 * t)
                for u in users for t in range(int(rng.integers(3, 30)))]
        frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame.to_parquet(path, index=False)


# ---- measure -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> dict:
    """The process's resident memory (MiB) now, and its peak where /proc gives it: psutil if installed, else /proc."""
    try:
        import psutil

        info = psutil.Process(pid).memory_info()
        return {"rss_mb": round(info.rss / 2**20, 1), "source": "psutil"}
    except ImportError:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM") if key in status}
        return {"rss_mb": round(kib["VmRSS"] / 1024, 1), "peak_rss_mb": round(kib.get("VmHWM", 0) / 1024, 1),
                "source": "/proc/<pid>/status"}


def filesystem(path: Path) -> str:
    """The type and mount point of the filesystem holding ``path`` (the impression log's fsyncs depend on it)."""
    mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    point, kind = max(((m, k) for m, k in mounts if path.resolve().is_relative_to(m)), key=lambda mk: len(mk[0]))
    return f"{kind} at {point}"


def log_bytes(log_dir: Path) -> int:
    """The size of the service's impression and event logs so far."""
    return sum(p.stat().st_size for p in log_dir.glob("*.jsonl"))


def wait_healthy(process: subprocess.Popen, stderr: Path, url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode}; its stderr: {stderr.read_text()}")
        try:
            answer = httpx.get(f"{url}/health", timeout=1)
            if answer.status_code == 200:
                return answer.json()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the service did not answer {url}/health within {timeout:.0f} s")


def load_command(url: str, histories: Path, concurrency: int, requests: int, seconds: float, seed: int) -> list[str]:
    return [sys.executable, str(Path(__file__).relative_to(REPO)), "load", "--url", url, "--histories",
            str(histories.relative_to(REPO)), "--concurrency", str(concurrency), "--requests", str(requests),
            "--seconds", str(seconds), "--seed", str(seed)]


def generate(command: list[str]) -> dict:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> None:
    name = "tiny" if args.tiny else "ml100k"
    work = WORK / name
    bundle, histories = work / "bundle", work / "histories.parquet"
    if not (bundle / "manifest.json").is_file() or not histories.is_file():
        sys.exit(f"error: no bundle or histories under {work.relative_to(REPO)}; run prepare{' --tiny' if args.tiny else ''} first")
    measure_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    started, load_start = utc(), os.getloadavg()
    port = free_port()
    log_dir = tempfile.mkdtemp(prefix="bench_serving_log_", dir=args.log_dir)
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "marquee.serve", f"bundle={bundle.relative_to(REPO)}", f"port={port}",
             f"histories={histories.relative_to(REPO)}", f"log_dir={log_dir}"]
    print("$", shown(serve), flush=True)
    spawned = time.perf_counter()
    stderr = Path(log_dir) / "serve.stderr"
    with stderr.open("w") as sink:  # a file, not a pipe nobody drains
        process = subprocess.Popen(serve, cwd=REPO, stdout=subprocess.DEVNULL, stderr=sink)
    try:
        health = wait_healthy(process, stderr, url, timeout=300)
        healthy_s = time.perf_counter() - spawned
        warm = generate(load_command(url, histories, 1, args.warmup, 60, seed=0))
        append({"step": "startup", "name": name, "measure_id": measure_id, "command": shown([sys.executable, *sys.argv]),
                "serve_command": shown(serve), "log_dir_filesystem": filesystem(Path(log_dir)),
                "start_to_healthy_s": round(healthy_s, 3), "health": health,
                # /health reports uptime since the app finished loading, not a load time of its own
                "uptime_at_first_health_s": health.get("uptime_s"), "warmup_requests": warm["requests"],
                "warmup_errors": warm["errors"], "memory_after_warmup": rss_mb(process.pid),
                **provenance(started, load_start, bundle)})
        for concurrency in args.levels:
            level_started, level_load = utc(), os.getloadavg()
            generate(load_command(url, histories, concurrency, args.warmup, 60, seed=concurrency))  # warm-up
            command = load_command(url, histories, concurrency, args.requests, args.seconds, seed=1000 + concurrency)
            result = generate(command)
            append({"step": "level", "name": name, "measure_id": measure_id, "concurrency": concurrency,
                    "warmup_requests": args.warmup, "load_command": shown(command), **result,
                    "memory_after": rss_mb(process.pid), "impression_log_bytes": log_bytes(Path(log_dir)),
                    **provenance(level_started, level_load, bundle)})
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(log_dir)  # every request logs ~30 impressions: a scratch log of this size is not kept


# ---- load generator (the second process) -------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between order statistics."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def parse_server_timing(header: str) -> dict[str, float]:
    """``retrieve;dur=1.20, rank;dur=0.40`` -> {"retrieve": 1.2, "rank": 0.4}."""
    stages = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        for field in rest.split(";"):
            key, _, value = field.strip().partition("=")
            if key == "dur" and name:
                stages[name] = float(value)
    return stages


def load(args: argparse.Namespace) -> None:
    """POST ``/recommend`` for random known members from ``concurrency`` threads (one keep-alive client each) until
    ``requests`` are sent or ``seconds`` pass; print one JSON line of latencies, errors and stage medians."""
    members = [str(u) for u in pd.read_parquet(args.histories, columns=["user_id"])["user_id"].unique()]
    rng = random.Random(args.seed)
    bodies = [{"user_id": rng.choice(members), **REQUEST} for _ in range(args.requests)]
    lock, next_index = threading.Lock(), [0]
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    deadline = time.perf_counter() + args.seconds

    def worker() -> None:
        with httpx.Client(timeout=30) as client:
            while time.perf_counter() < deadline:
                with lock:
                    if next_index[0] >= len(bodies):
                        return
                    body = bodies[next_index[0]]
                    next_index[0] += 1
                start = time.perf_counter()
                try:
                    answer = client.post(f"{args.url}/recommend", json=body)
                    elapsed = (time.perf_counter() - start) * 1000
                    failed = None if answer.status_code == 200 else f"HTTP {answer.status_code}"
                except httpx.HTTPError as error:
                    elapsed, failed, answer = (time.perf_counter() - start) * 1000, type(error).__name__, None
                with lock:
                    if failed:
                        errors[failed] = errors.get(failed, 0) + 1
                        continue
                    latencies.append(elapsed)
                    for name, ms in parse_server_timing(answer.headers.get("server-timing", "")).items():
                        stages.setdefault(name, []).append(ms)

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    done = len(latencies) + sum(errors.values())
    summary = {"requests": done, "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
               "wall_s": round(wall, 3), "stopped_by": "requests" if done >= args.requests else "time",
               "throughput_rps": round(len(latencies) / wall, 1) if wall else None,
               "request": {"user_id": "<random member of the histories>", **REQUEST},
               "client": f"{args.concurrency} threads, one httpx.Client each (keep-alive)"}
    if latencies:
        summary.update({f"p{q}_ms": round(percentile(latencies, q), 2) for q in (50, 95, 99)})
        summary.update({"mean_ms": round(statistics.fmean(latencies), 2), "max_ms": round(max(latencies), 2),
                        "stage_median_ms": {k: round(statistics.median(v), 3) for k, v in stages.items()}})
    print(json.dumps(summary))


# ---- render ------------------------------------------------------------------------------------

def busy(loadavg: list[float], cores: int) -> bool:
    return loadavg[0] > BUSY_PER_CORE * cores


def render() -> None:
    rows = read()
    starts = [r for r in rows if r["step"] == "startup"]
    if not starts:
        sys.exit(f"error: {ROWS.relative_to(REPO)} has no measured rows; run prepare and measure first")
    startup = starts[-1]  # the latest measurement
    levels = sorted((r for r in rows if r["step"] == "level" and r["measure_id"] == startup["measure_id"]),
                    key=lambda r: r["concurrency"])
    prepared = [r for r in rows if r["step"] == "prepare" and r["bundle"]
                and r["bundle"]["bundle_id"] == startup["bundle"]["bundle_id"]]
    bundle, m = startup["bundle"], startup["machine"]
    cores = m["cpu_count"]
    lines = ["# Serving: the reference service's latency, throughput, load time and memory", "",
             (f"Rendered by `python scripts/bench_serving.py --render-only` from `results.jsonl` (measurement "
             f"`{startup['measure_id']}`, {startup['started_at']} to {(levels or [startup])[-1]['finished_at']}, "
             f"marquee commit `{startup['git_commit']}`)."), "",
             f"Machine: {m['cpu']}, {cores} CPUs, {m['platform']}, Python {m['python']}.", "",
             f"Bundle: `{bundle['path']}` (id `{bundle['bundle_id']}`), a {bundle['system'].get('kind')} "
             f"(`{bundle['task_name']}`, data `{bundle['data']}`), {bundle['items']} titles, {bundle['users']} "
             f"members, {bundle['bytes'] / 2**20:.1f} MiB; epochs trained: "
             + ", ".join(f"{k} {v}" for k, v in bundle["epochs"].items()) + ".", "",
             artwork_line(bundle.get("policy")), ""]
    if prepared:
        p = prepared[-1]
        lines += [(f"Histories: `{p['histories']['path']}`, {p['histories']['members']} members, "
                  f"{p['histories']['events']} events."), ""]
    goal_row = next((r for r in levels if r["concurrency"] == GOAL["concurrency"]), None)
    lines += ["## Goal", "", f"The issue's goal: {GOAL['text']}.", ""]
    if goal_row is None or "p99_ms" not in goal_row:
        lines += [(f"Not measured: {'no row' if goal_row is None else 'no request answered'} at "
                  f"{GOAL['concurrency']} clients."), ""]
    else:
        met = goal_row["p99_ms"] < GOAL["p99_ms"] and goal_row["errors"] == 0
        where = (f"on this {cores}-CPU machine" + ("" if cores == GOAL["cores"] else
                                                   f" (not the goal's {GOAL['cores']} cores: the verdict does not transfer)"))
        lines += [(f"**{'Met' if met else 'Not met'}**: p99 {goal_row['p99_ms']:.2f} ms at {GOAL['concurrency']} "
                  f"clients with {goal_row['errors']} errors, {where}"
                   + (", while the machine was busy (see Machine load)." if busy(startup["loadavg_start"], cores) else ".")),
                  ""]
        if not met and goal_row.get("throughput_rps"):
            # Little's law for closed-loop clients: mean latency = clients / throughput, both measured here
            needed = GOAL["concurrency"] / (GOAL["p99_ms"] / 1000)
            lines += [(f"Why: each client sends its next request when the last is answered, so the mean latency is "
                       f"clients / throughput (Little's law): {GOAL['concurrency']} / {goal_row['throughput_rps']} req/s "
                       f"= {1000 * GOAL['concurrency'] / goal_row['throughput_rps']:.1f} ms, against a measured mean of "
                       f"{goal_row['mean_ms']:.1f} ms. Even a mean, let alone a p99, under {GOAL['p99_ms']} ms at "
                       f"{GOAL['concurrency']} clients needs more than {needed:.0f} req/s, "
                       f"{needed / goal_row['throughput_rps']:.1f}x the {goal_row['throughput_rps']} req/s this "
                       "service reached with its load generator on the same CPUs."), ""]
    lines += ["## Latency and throughput", "",
              (f"Each request: `POST /recommend` with `{json.dumps({'user_id': '<random member>', **REQUEST})}`, the "
              "member drawn uniformly from the histories; latency measured by the client (a second process); "
              f"{levels[0]['warmup_requests'] if levels else '?'} warm-up requests before each level, not counted."),
              "", "| clients | requests | p50 ms | p95 ms | p99 ms | req/s | errors | stopped by |",
              "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in levels:
        lines.append(f"| {r['concurrency']} | {r['requests']} | {r.get('p50_ms', '–')} | {r.get('p95_ms', '–')} | "
                     f"{r.get('p99_ms', '–')} | {r['throughput_rps']} | {r['errors']} | {r['stopped_by']} |")
    stage_names = list(dict.fromkeys(s for r in levels for s in r.get("stage_median_ms", {})))
    if stage_names:
        lines += ["", ("Median milliseconds of each stage, from the service's `Server-Timing` header (each column's "
                       "median on its own: they do not add up to `total`, which is the handler's time without HTTP and "
                       f"JSON). `log` appends and fsyncs the impressions, here to {startup['log_dir_filesystem']}."), "",
                  "| clients | " + " | ".join(stage_names) + " |", "|---:|" + "---:|" * len(stage_names)]
        for r in levels:
            lines.append(f"| {r['concurrency']} | "
                         + " | ".join(str(r.get("stage_median_ms", {}).get(s, "–")) for s in stage_names) + " |")
    memory = startup["memory_after_warmup"]
    lines += ["", "## Start-up and memory", "",
              (f"- From starting `python -m marquee.serve` to its first healthy `/health`: "
              f"{startup['start_to_healthy_s']:.2f} s (interpreter start, imports, bundle check and load, "
              f"histories). `/health` reports no load time of its own; its uptime at that first answer was "
              f"{startup['uptime_at_first_health_s']} s."),
              f"- Server memory after {startup['warmup_requests']} warm-up requests: RSS {memory['rss_mb']} MiB"
              + (f" (peak {memory['peak_rss_mb']} MiB)" if "peak_rss_mb" in memory else "")
              + f", read from {memory['source']}."]
    if levels:
        last = levels[-1]["memory_after"]
        lines.append(f"- After the last level ({levels[-1]['concurrency']} clients): RSS {last['rss_mb']} MiB"
                     + (f" (peak {last['peak_rss_mb']} MiB)" if "peak_rss_mb" in last else "") + ".")
        lines.append(f"- The service's impression and event logs had grown to {levels[-1]['impression_log_bytes'] / 2**20:.1f} "
                     f"MiB by the end (warm-ups included), on {startup['log_dir_filesystem']}.")
    lines += ["", "## Machine load", "",
              ("1-, 5- and 15-minute load averages (`os.getloadavg`) at each step's start and end; "
              "the load generator and the service themselves raise them during a level."), "",
              "| step | start | end |", "|---|---|---|"]
    for r in [startup, *levels]:
        label = "start-up + warm-up" if r["step"] == "startup" else f"{r['concurrency']} client(s)"
        lines.append(f"| {label} | {' / '.join(map(str, r['loadavg_start']))} | {' / '.join(map(str, r['loadavg_end']))} |")
    if busy(startup["loadavg_start"], cores):
        lines += ["", (f"**The machine was busy**: the 1-minute load average was {startup['loadavg_start'][0]} on "
                      f"{cores} CPUs before the service started (above {BUSY_PER_CORE} per CPU), so other work "
                      "shared the CPUs while these figures were measured.")]
    else:
        lines += ["", (f"Before the service started the 1-minute load average was {startup['loadavg_start'][0]} on "
                      f"{cores} CPUs (at most {BUSY_PER_CORE} per CPU): the machine was otherwise quiet.")]
    lines += diversity_section()
    shots = [r for r in read() if r["step"] == "screenshot" and (OUT_DIR / r["file"]).is_file()]
    if shots:
        shot = shots[-1]
        lines += ["", "## The home page", "",
                  (f"`GET /` for member {shot['member']} at {shot['hour']}:00, in headless chromium "
                   f"(`python scripts/bench_serving.py screenshot --member {shot['member']}`, {shot['finished_at']}); "
                   f"its rows: {'; '.join(shot['rows'])}."), "", f"![the home page]({shot['file']})"]
    lines += ["", "## Commands", "", "```bash"]
    if prepared:
        lines += [prepared[-1]["command"], "# which ran:", *prepared[-1]["commands"]]
    lines += [startup["command"], "# which ran:", startup["serve_command"], *(r["load_command"] for r in levels),
              "python scripts/bench_serving.py --render-only", "```", ""]
    (OUT_DIR / "README.md").write_text("\n".join(lines))
    print(OUT_DIR / "README.md")


def diversity_section() -> list[str]:
    """The MMR table of scripts/bench_diversity.py, from its rows (the latest run of it)."""
    path = OUT_DIR / "diversity.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["started_at"] == rows[-1]["started_at"]]
    k, first = rows[0]["k"], rows[0]
    if first.get("via") == "evaluation.rerank":
        how = (f"The evaluator's MMR re-ranking over genres (`evaluation.rerank`, which runs `marquee.diversity.mmr`, "
               f"the service's function) applied to {first['model']}'s top {first['candidates']} for each of the "
               f"{first['users']} {first['data']} test members (seen titles masked), every metric read off the "
               f"re-ranked first {k}")
    else:
        how = (f"The service's MMR re-ranking over genres (`marquee.serving.pipeline.mmr`) applied to {first['model']}'s "
               f"top {first['candidates']} for each of the {first['users']} {first['data']} test members (seen titles "
               f"masked, the evaluator's rows and scores), the first {k} scored with the evaluator's metric functions")
    ci = all(f"ndcg@{k}_ci" in r for r in rows)
    lines = ["", "## Diversity, offline", "",
             f"{how} (`python scripts/bench_diversity.py`, {first['finished_at']}, commit {str(first['git_commit'])[:10]}):",
             "", f"| MMR weight | NDCG@{k} |{' 95% CI (over users) |' if ci else ''} Recall@{k} | intra-list diversity@{k} | coverage@{k} |",
             "|---:|---:|" + ("---:|" if ci else "") + "---:|---:|---:|"]
    lines += [f"| {r['weight']} | {r[f'ndcg@{k}']:.4f} |"
              + (f" [{r[f'ndcg@{k}_ci'][0]:.4f}, {r[f'ndcg@{k}_ci'][1]:.4f}] |" if ci else "")
              + f" {r[f'recall@{k}']:.4f} | {r[f'diversity@{k}']:.4f} | {r[f'coverage@{k}']:.4f} |" for r in rows]
    return lines


def screenshot(args: argparse.Namespace) -> None:
    """Serve the bundle, open ``GET /`` in headless chromium (Debian's, driven by Playwright) for one member,
    and keep the picture as experiments/serving/home_page.png."""
    import shutil

    from playwright.sync_api import sync_playwright

    work = WORK / ("tiny" if args.tiny else "ml100k")
    bundle, histories = work / "bundle", work / "histories.parquet"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: no chromium binary (Debian: apt-get install chromium)")
    port, started, load_start = free_port(), utc(), os.getloadavg()
    log_dir = tempfile.mkdtemp(prefix="bench_serving_page_")
    serve = [sys.executable, "-m", "marquee.serve", f"bundle={bundle.relative_to(REPO)}", f"port={port}",
             f"histories={histories.relative_to(REPO)}", f"log_dir={log_dir}", "seed=0"]
    stderr = Path(log_dir) / "stderr.txt"
    with stderr.open("w") as err:
        process = subprocess.Popen(serve, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(process, stderr, url, timeout=120)
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.fill("#user", str(args.member))
            page.click("#show")
            page.wait_for_selector(f"#page[data-member='{args.member}'][data-ready='1'] section.row")
            rows = [s.inner_text() for s in page.query_selector_all("section.row h2")]
            page.screenshot(path=str(OUT_DIR / "home_page.png"), full_page=True)
            browser.close()
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(log_dir, ignore_errors=True)
    append({"step": "screenshot", "name": work.name, "member": args.member, "rows": rows, "file": "home_page.png",
            "hour": 21, **provenance(started, load_start, bundle)})


# ---- command line ------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render-only", action="store_true", help="rewrite the README from the rows")
    steps = parser.add_subparsers(dest="step")
    p = steps.add_parser("prepare", help="train and export the bundle, write the histories")
    p.add_argument("--tiny", action="store_true", help="a synthetic tiny cascade (to try the script)")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each stage (default 3)")
    m = steps.add_parser("measure", help="serve the bundle and load it at each concurrency")
    m.add_argument("--tiny", action="store_true", help="measure the tiny bundle")
    m.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    m.add_argument("--requests", type=int, default=2000, help="requests per level (default 2000)")
    m.add_argument("--seconds", type=float, default=120, help="time limit per level (default 120)")
    m.add_argument("--warmup", type=int, default=100, help="warm-up requests before each level (default 100)")
    m.add_argument("--log-dir", default=None, help="where the service's fsynced impression log goes (a new folder "
                   "under this; default: the system's temporary folder)")
    c = steps.add_parser("screenshot", help="the home page of one member in headless chromium, as a PNG")
    c.add_argument("--tiny", action="store_true")
    c.add_argument("--member", default="1", help="the member's raw id (default 1)")
    g = steps.add_parser("load", help="the load generator (run by measure in a second process)")
    g.add_argument("--url", required=True)
    g.add_argument("--histories", required=True, help="Parquet whose user_id column names the members to ask for")
    g.add_argument("--concurrency", type=int, required=True)
    g.add_argument("--requests", type=int, required=True)
    g.add_argument("--seconds", type=float, required=True)
    g.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.render_only:
        render()
    elif args.step == "prepare":
        prepare(args)
    elif args.step == "measure":
        measure(args)
    elif args.step == "load":
        load(args)
    elif args.step == "screenshot":
        screenshot(args)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
