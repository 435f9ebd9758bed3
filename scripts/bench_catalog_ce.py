"""Time SASRec's full-catalog CE (forward and backward) as torch computes it and fused, at several chunk sizes.

    python scripts/bench_catalog_ce.py [--rows 414] [--items 23716] [--dim 64] [--threads 2] [--repeats 7]

The shapes default to one Amazon Video Games training step (414 target positions, 23,716 items, hidden 64).
Each variant runs ``--repeats`` times, interleaved round by round so drift hits all alike; the median and the
spread are printed, with the load average before and after. Time it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from marquee.models import sequence_losses
from marquee.models.sequence_losses import NextItemLoss


def torch_ce(states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, rows: int) -> torch.Tensor:
    """The loss before the fused function: chunks of F.cross_entropy over the masked logits."""
    terms = []
    for a in range(0, len(targets), rows):
        logits = states[a : a + rows] @ items.T
        logits[:, 0] = float("-inf")
        terms.append(F.cross_entropy(logits, targets[a : a + rows], reduction="none"))
    return torch.cat(terms).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=414)
    parser.add_argument("--items", type=int, default=23716)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    items = (0.1 * torch.randn(args.items + 1, args.dim, generator=generator)).requires_grad_()
    states = torch.randn(args.rows, args.dim, generator=generator).requires_grad_()
    targets = torch.randint(1, args.items + 1, (args.rows,), generator=generator)
    loss = NextItemLoss("ce", n_items=args.items)

    def fused(elements: int):
        def run():
            sequence_losses.CHUNK_ELEMENTS = elements
            return loss(states, targets, items)
        return run

    variants = {"torch CE, 4M-logit chunks": lambda: torch_ce(states, targets, items, max(1, 4 * 2**20 // len(items)))}
    for elements in (16 * 2**20, 8 * 2**20, 4 * 2**20, 2**20):
        variants[f"fused, {elements // 1024}k-logit chunks"] = fused(elements)
    times: dict[str, list[float]] = {name: [] for name in variants}
    load = os.getloadavg()[0]
    for _ in range(args.repeats + 1):  # the first round warms up
        for name, run in variants.items():
            start = time.perf_counter()
            value = run()
            value.backward()
            times[name].append(time.perf_counter() - start)
            states.grad = items.grad = None
    print(f"{args.rows} rows x {args.items} items x {args.dim}, {args.threads} threads, "
          f"load {load:.2f} -> {os.getloadavg()[0]:.2f}; median ms (min-max) of {args.repeats}")
    for name, seconds in times.items():
        kept = seconds[1:]
        print(f"  {name:28s} {1000 * statistics.median(kept):7.1f}  ({1000 * min(kept):.1f}-{1000 * max(kept):.1f})")


if __name__ == "__main__":
    main()
