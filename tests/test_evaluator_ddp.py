"""Under DDP each rank ranks its shard of users; the gathered metrics equal a single-process evaluation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp

from marquee.data.catalog import Catalog
from marquee.data.evaluation_data import EvaluationData
from marquee.data.splits import LeaveOneOut
from marquee.evaluation.evaluator import Evaluator
from marquee.evaluation.ranked import RankedUsers, merge_ranked
from marquee.models.base import Recommender
from tests.helpers import free_port, gloo_group, make_log


class ItemIdScores(Recommender):
    """Deterministic scores that differ per user: (item * user) mod 7."""

    def score(self, batch, items=None):
        items_all = torch.arange(self.n_items + 1)
        return self.select(((items_all[None, :] * batch["user"][:, None]) % 7).float(), items)


def _split():
    rows = [(u, (u * 3 + t) % 40, t) for u in range(1, 26) for t in range(8)]
    return LeaveOneOut()(make_log(rows))


def _evaluate() -> dict[str, float]:
    split = _split()
    evaluator = Evaluator(ks=[5], n_boot=50, progress=False, batch_size=4, device="cpu")
    model = ItemIdScores(Catalog.from_split(split))
    result = evaluator.evaluate(model, evaluator.data(split, model.max_len), "test")
    # timings differ from run to run
    return {k: v for k, v in result.metrics.items() if not k.endswith(("seconds", "ms_per_user"))}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    with gloo_group(rank, world, port):
        shard = len(EvaluationData(_split()).eval_dataloader("test").sampler)
        metrics = _evaluate()
        if rank == 0:
            with open(out, "w") as f:
                json.dump({**metrics, "shard_users": shard}, f)


@pytest.mark.slow
def test_two_rank_gloo_evaluation_equals_one_process(tmp_path):
    out = tmp_path / "metrics.json"
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    gathered = json.loads(out.read_text())
    assert gathered.pop("shard_users") == 13  # each rank ranked half of the 25 users (one padded)
    single = _evaluate()
    assert gathered["test/n_users"] == single["test/n_users"] == 25
    assert gathered == pytest.approx(single)


def test_merge_keeps_each_user_once_in_user_order():
    def part(users, width):
        u = torch.tensor(users).numpy()
        return RankedUsers(users=u, targets=(u[:, None] + 0).repeat(width, 1), ranks=u[:, None].repeat(width, 1),
                           top_items=u[:, None] * 10)

    merged = merge_ranked([part([1, 3, 5], 1), part([2, 4, 1], 2)])  # user 1 twice: the sampler's padding
    assert merged.users.tolist() == [1, 2, 3, 4, 5]
    assert merged.ranks.tolist() == [[1, 0], [2, 2], [3, 0], [4, 4], [5, 0]]
    assert merged.top_items[:, 0].tolist() == [10, 20, 30, 40, 50]
