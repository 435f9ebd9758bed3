"""Where a SASRec training step's time goes, and what share of this machine's matmul peak it reaches.

    python scripts/profile_sasrec.py [--experiment sasrec_ml100k] [--steps 60] [--threads 2] [overrides ...]

Builds the model, datamodule and optimizer exactly as ``marquee.train`` does (``build_module``), then runs
``--steps`` training steps by hand under ``torch.profiler``. Time is split into data loading (the loader's next
batch), the inputs (item embedding gather, positions, side inputs), self-attention, the feed-forward blocks, the
loss over the catalog, the optimizer step, and the rest (layer norms, the target context, autograd's own work).
Forward ops are assigned by the module they run in (a profiler range opened by a forward hook); backward ops by
autograd's sequence number, which links each backward node to the forward op that made it: the profiler's own
attribution, not a guess from op names. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``
over the very batches of the unprofiled stretch (counted after it is timed), the peak from the same float32
matmul ``marquee.training.throughput`` measures, before and after that stretch (the higher). One JSON row per
run is appended to ``experiments/sasrec/profile.jsonl``; time it on an otherwise idle machine (the row records the
load average before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_retrieval import compose, machine
from provenance import stamp

REPO = Path(__file__).resolve().parents[1]
ROWS = REPO / "experiments" / "sasrec" / "profile.jsonl"
PARTS = ("data loading", "inputs (embedding gather)", "self-attention", "feed-forward", "loss over the catalog",
         "optimizer step", "other")


def scoped(module: torch.nn.Module, name: str) -> None:
    """Open a profiler range named ``name`` around every forward call of ``module``."""
    ranges: list = []

    def enter(*_):
        ranges.append(record_function(f"marquee::{name}"))
        ranges[-1].__enter__()

    def leave(*_):
        ranges.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


class LossScope:
    """The model's loss callable inside a profiler range (it is a plain object, not a module, so no hooks)."""

    def __init__(self, loss):
        self.loss = loss

    def __call__(self, *args, **kwargs):
        with record_function("marquee::loss over the catalog"):
            return self.loss(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.loss, name)


def scope_of(event) -> str | None:
    """The marquee:: range an event ran in (walking up its CPU parents), if any."""
    while event is not None:
        if event.name.startswith("marquee::"):
            return event.name.removeprefix("marquee::")
        event = event.cpu_parent
    return None


def attribute(events) -> dict[str, float]:
    """Seconds per part of one profiled stretch of steps (data loading and the optimizer are timed outside)."""
    forward_scope: dict[int, str] = {}
    seconds = dict.fromkeys(PARTS[1:-2], 0.0) | {"other": 0.0}
    for event in events:  # forward ops: self time, by the range they ran in
        if event.name.startswith(("autograd::engine::evaluate_function", "marquee::", "Optimizer.")):
            continue
        scope = scope_of(event)
        if scope is not None and event.sequence_nr >= 0:
            forward_scope[event.sequence_nr] = scope
        if not _inside_backward(event) and not _inside_optimizer(event):
            seconds[scope if scope in seconds else "other"] += event.self_cpu_time_total / 1e6
    for event in events:  # backward nodes: their whole time, by the forward op that made them
        if event.name.startswith("autograd::engine::evaluate_function"):
            scope = forward_scope.get(event.sequence_nr)
            seconds[scope if scope in seconds else "other"] += event.cpu_time_total / 1e6
    return seconds


def _inside_backward(event) -> bool:
    while event is not None:
        if event.name.startswith("autograd::engine::evaluate_function"):
            return True
        event = event.cpu_parent
    return False


def _inside_optimizer(event) -> bool:
    while event is not None:
        if event.name.startswith("Optimizer.") or event.name == "marquee::optimizer step":
            return True
        event = event.cpu_parent
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="sasrec_ml100k")
    parser.add_argument("--steps", type=int, default=60, help="profiled training steps (after 5 warm-up steps)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="", help="names this row (what changed, say)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    shared = REPO.parent / "shared" / "data"
    if shared.is_dir():
        os.environ.setdefault("MARQUEE_DATA_DIR", str(shared))
    torch.set_num_threads(args.threads)
    from hydra.utils import instantiate

    from marquee.checkpoint import build
    from marquee.data.catalog import Catalog
    from marquee.data.pipeline import prepare_split
    from marquee.training.fit import build_module
    from marquee.training.throughput import matmul_peak

    cfg = compose([f"experiment={args.experiment}", "paths.output_dir=unused", *args.overrides])
    torch.manual_seed(cfg.seed)
    split = prepare_split(cfg.data)
    catalog = Catalog.from_split(split)
    model = build(cfg.model, catalog=catalog)
    module, datamodule = build_module(cfg, model, split, instantiate(cfg.evaluation))
    datamodule.setup("fit")
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    for layer in model.encoder.layers:
        scoped(layer.self_attn, "self-attention")
        scoped(layer.linear1, "feed-forward")
        scoped(layer.linear2, "feed-forward")
    scoped(model.inputs, "inputs (embedding gather)")
    model.loss_fn = LossScope(model.loss_fn)
    model.train()
    batches = iter(datamodule.train_dataloader())

    def step(batch) -> int:
        loss = model.training_loss(batch)["loss"]
        loss.backward()
        with record_function("marquee::optimizer step"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return int((batch["targets"] > 0).sum())

    for _ in range(5):  # warm-up: allocator, first-call dispatch
        step(next(batches))
    load_before = os.getloadavg()[0]
    data_seconds = optimizer_seconds = 0.0
    tokens = sequences = 0
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(datamodule.train_dataloader())
                batch = next(batches)
            data_seconds += time.perf_counter() - t0
            tokens += step(batch)
            sequences += len(batch["targets"])
    wall = time.perf_counter() - started
    parts = attribute(prof.events())
    optimizer_seconds = sum(e.cpu_time_total for e in prof.events() if e.name == "marquee::optimizer step") / 1e6
    parts = {"data loading": data_seconds, **parts, "optimizer step": optimizer_seconds}
    profiled = sum(parts.values())
    parts["other"] += max(0.0, wall - profiled)  # profiler overhead and Python between ops
    # this shared machine's matmul peak drifts (46-144 GFLOP/s measured on 2 threads): it is measured right before
    # and right after the unprofiled stretch, and the higher one divides (the smaller, safer share of peak)
    peak_before = matmul_peak(torch.device("cpu"))  # not the process's cached figure: measured now
    # the profiler slows the steps it watches: the share of peak is read from a second, unprofiled stretch
    timed = []
    t0 = time.perf_counter()
    plain_tokens = 0
    for _ in range(args.steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(datamodule.train_dataloader())
            batch = next(batches)
        plain_tokens += step(batch)
        timed.append(batch)
    plain = time.perf_counter() - t0
    peak_after = matmul_peak(torch.device("cpu"))
    peak = max(peak_before, peak_after)
    # the FLOPs of the very batches timed (their widths differ when batches are grouped by length), counted after
    with FlopCounterMode(display=False) as counter:
        for batch in timed:
            model.training_loss(batch)["loss"].backward()
            optimizer.zero_grad(set_to_none=True)
    flops_per_token = counter.get_total_flops() / plain_tokens
    padding_share = 1 - plain_tokens / sum(b["targets"].numel() for b in timed)
    row = {"experiment": args.experiment, "label": args.label, "overrides": args.overrides, "threads": args.threads,
           "steps": args.steps, "batch_size": cfg.datamodule.batch_size, "max_len": cfg.model.max_len,
           "hidden": cfg.model.hidden, "n_items": catalog.n_items, "tokens_per_step": tokens / args.steps,
           "padding_share": padding_share,
           "profiled_seconds": wall, "seconds": {k: round(v, 4) for k, v in parts.items()},
           "unprofiled_step_seconds": plain / args.steps, "tokens_per_s": plain_tokens / plain,
           "flops_per_token": flops_per_token, "achieved_gflops": plain_tokens * flops_per_token / plain / 1e9,
           "peak_gflops": peak / 1e9, "peak_gflops_before_after": [peak_before / 1e9, peak_after / 1e9],
           "peak_share": plain_tokens * flops_per_token / plain / peak,
           "windows_per_epoch": len(datamodule.train_dataloader().dataset), "machine": machine(),
           "load_before": load_before, "load_after": os.getloadavg()[0], "torch": torch.__version__, **stamp()}
    ROWS.parent.mkdir(parents=True, exist_ok=True)
    with ROWS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
