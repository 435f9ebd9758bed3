"""Cross-entropy over the whole item table without keeping its logits: a fused linear + softmax loss.

The plain way (``F.cross_entropy(states @ items.T, targets)``) writes the (N, n_items + 1) logits,
keeps them for backward, and moves them through memory some eight times per step (matmul out,
log-softmax in and out, its gradient in and out, two matmuls in). At hidden 64 each logit costs
128 FLOPs, so on a CPU that traffic, not arithmetic, sets the speed of a large catalog. Here each
chunk of rows is scored, reduced to its logsumexp and dropped; backward scores the chunk again
and turns it into both gradients while it is still in cache. One extra (n, d) x (d, V) matmul buys
that. Liger-Kernel ships the same idea as Triton kernels for GPUs only, hence this CPU-friendly
version in PyTorch ops.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

CACHE_ELEMENTS = 2**19  # logits per chunk: 2 MB of float32, small enough to stay in a core's share of cache


def catalog_cross_entropy(states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                          chunk_elements: int = CACHE_ELEMENTS) -> torch.Tensor:
    """(N,) ``-log softmax(states @ items.T)[target]`` with column 0 (padding) left out of the softmax.

    ``states`` (N, d), ``items`` (n_items + 1, d), ``targets`` (N,) ids in 1..n_items. Same values and
    gradients as the plain cross-entropy, without an (N, n_items + 1) tensor alive at any time.
    """
    rows = max(1, chunk_elements // len(items))
    return _CatalogCrossEntropy.apply(states, items, targets, rows)


class _CatalogCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        lse = states.new_empty(len(states))  # (N,)
        for a in range(0, len(states), rows):
            logits = states[a : a + rows] @ items.T  # (n, V)
            logits[:, 0] = float("-inf")
            lse[a : a + rows] = torch.logsumexp(logits, 1)
        target_logit = (states * items[targets]).sum(-1)  # (N,)
        ctx.save_for_backward(states, items, targets, lse)
        ctx.rows = rows
        return lse - target_logit

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        states, items, targets, lse = ctx.saved_tensors
        grad_states = torch.empty_like(states)  # (N, d)
        grad_items = torch.zeros_like(items)  # (V, d)
        for a in range(0, len(states), ctx.rows):
            chunk = states[a : a + ctx.rows]  # (n, d)
            n = len(chunk)
            # d loss / d logits = g * (softmax - onehot(target)), padding's column zero
            delta = torch.addmm(lse[a : a + n, None], chunk, items.T, beta=-1).exp_()  # (n, V) softmax
            delta[:, 0] = 0.0
            delta[torch.arange(n, device=delta.device), targets[a : a + n]] -= 1.0
            delta.mul_(grad[a : a + n, None])
            grad_states[a : a + n] = delta @ items  # (n, d)
            grad_items.addmm_(delta.T, chunk)  # (V, d)
        return grad_states, grad_items, None, None
