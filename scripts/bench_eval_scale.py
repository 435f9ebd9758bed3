"""Time and peak memory of evaluating 100,000 users against 100,000 items (synthetic) on CPU.

Each configuration runs in a fresh child process that reports its own peak RSS; results are
appended to experiments/baselines/eval_scale.jsonl as they arrive.
Usage: python scripts/bench_eval_scale.py [--users 100000 --items 100000 --batch 1024 --item-chunk 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import stamp

OUT = Path(__file__).resolve().parents[1] / "experiments" / "baselines" / "eval_scale.jsonl"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: argparse.Namespace) -> dict:
    import torch

    from marquee.data.build import build_log
    from marquee.data.catalog import Catalog
    from marquee.data.events import EventSchema
    from marquee.data.loaders.synthetic import SyntheticLog
    from marquee.data.splits import LeaveOneOut
    from marquee.evaluation.evaluator import Evaluator
    from marquee.models.base import Recommender

    class RandomFactors(Recommender):
        """Dot products of fixed random 64-d user and item vectors: a stand-in with a realistic scoring cost."""

        def __init__(self, n_users: int, n_items: int, dim: int = 64):
            super().__init__(Catalog(n_items=n_items, n_users=n_users))
            gen = torch.Generator().manual_seed(0)
            self.users = torch.randn(n_users + 1, dim, generator=gen)
            self.items = torch.randn(n_items + 1, dim, generator=gen)

        def score(self, batch, items=None):
            vectors = self.items if items is None or items.dim() == 2 else self.items[items]
            scores = self.users[batch["user"]] @ vectors.T  # (B, N + 1) or (B, C)
            return scores if items is None or items.dim() == 1 else scores.gather(1, items)

    with tempfile.TemporaryDirectory() as cache:
        raw = SyntheticLog(cache, n_users=args.users, n_items=args.items, n_interactions=args.interactions, seed=0).load()
        log = build_log(raw, EventSchema({"play": 1.0, "complete": 2.0, "skip": {"weight": 0.0, "positive": False}}))
    split = LeaveOneOut()(log)
    model = RandomFactors(log.n_users, log.n_items)
    rss_before = rss_mb()
    evaluator = Evaluator(ks=[10, 20, 50], item_chunk=args.item_chunk or None, n_boot=1000, progress=False,
                          batch_size=args.batch, device="cpu")
    data = evaluator.data(split, None)
    started = time.perf_counter()
    result = evaluator.evaluate(model, data, "test")
    seconds = time.perf_counter() - started
    return {
        "users_evaluated": int(result.metrics["test/n_users"]), "items": log.n_items,
        "interactions": len(log), "eval_batch": args.batch, "item_chunk": args.item_chunk or None,
        "torch_threads": torch.get_num_threads(), "eval_seconds": round(seconds, 2),
        "users_per_second": round(result.metrics["test/n_users"] / seconds),
        "rss_before_eval_mb": round(rss_before), "peak_rss_mb": round(rss_mb()),
        "ndcg@10": result.metrics["test/ndcg@10"], "machine": machine(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()), **stamp(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--item-chunk", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    cmd = [sys.executable, __file__, "--child"] + [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                                                   if k != "child"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
