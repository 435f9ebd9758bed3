"""Under DDP a two-tower rank gets every other rank's in-batch positives as negatives, gradients included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from marquee.retrieval.cross_rank import distributed, other_ranks_rows
from tests.helpers import free_port, gloo_group

ROWS = {0: 3, 1: 2}  # uneven rows per rank, as batches of windows give


def _worker(rank: int, world: int, port: int, out: str) -> None:
    with gloo_group(rank, world, port):
        n = ROWS[rank]
        vectors = (torch.arange(n * 2, dtype=torch.float32).view(n, 2) + 10 * rank).requires_grad_()
        ids = torch.arange(n) + 100 * rank
        rows, row_ids = other_ranks_rows(vectors, ids)
        loss = (rows * (rank + 1)).sum()  # rank r weighs the other ranks' rows by r + 1
        loss.backward()
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"rows": rows.tolist(), "ids": row_ids.tolist(), "grad": vectors.grad.tolist(),
                       "distributed": distributed()}, f)


@pytest.mark.skipif(not dist.is_gloo_available(), reason="torch was built without gloo: no CPU process group here")
def test_each_rank_gets_the_others_rows_and_pushes_gradients_back_to_their_owner(tmp_path):
    out = str(tmp_path / "rank")
    mp.spawn(_worker, args=(2, free_port(), out), nprocs=2, join=True)
    got = {r: json.loads(Path(f"{out}.{r}").read_text()) for r in (0, 1)}
    assert got[0]["rows"] == [[10.0, 11.0], [12.0, 13.0]] and got[0]["ids"] == [100, 101]  # rank 1's two rows
    assert got[1]["rows"] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]] and got[1]["ids"] == [0, 1, 2]  # rank 0's three
    # rank 0's vectors are used by rank 1's loss with weight 2; rank 1's by rank 0's with weight 1
    assert got[0]["grad"] == [[2.0, 2.0]] * 3 and got[1]["grad"] == [[1.0, 1.0]] * 2
    assert got[0]["distributed"] and got[1]["distributed"]
    assert not distributed()  # this test process is in no process group
