"""Training under DDP on CPU as users run it (``trainer=ddp_cpu``: two gloo processes started by Lightning).

The DDP run trains to what one process reaches, writes one run folder from rank zero alone, and its
evaluation is exactly a single process's evaluation of the saved model; every epoch each rank trains
on its own half of a new shuffle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning_fabric.utilities import rank_zero as fabric_rank_zero
from pytorch_lightning.plugins.environments import SLURMEnvironment
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.utilities import rank_zero_only

from marquee.config_dir import CONFIG_DIR
from marquee.data.datamodules import EpochShuffle, PairDataModule, SequenceDataModule
from marquee.data.splits import LeaveOneOut
from marquee.training.distributed import WrappedSamplerEpoch
from tests.helpers import free_port, make_log, train

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch has no gloo backend, which DDP on CPU needs")

SMALL = ("data=synthetic", "data.source.n_users=300", "data.source.n_items=150", "data.source.n_interactions=9000",
         "model.max_len=30", "evaluation.ks=[10,20]", "evaluation.n_boot=10", "evaluation.progress=false",
         "~callbacks.progress_bar", "+trainer.enable_progress_bar=false")
# per model: its overrides and the single process's batch size; DDP's 2 ranks take half each (the same global batch)
MODELS = {
    "sasrec": (("experiment=sasrec_ml100k", "model.hidden=32", "model.layers=1", "model.heads=1", "model.inner=64",
                "trainer.max_epochs=3"), 32),
    "two_tower": (("experiment=two_tower_ml100k", "model.dim=16", "model.hidden=32", "model.index.kind=flat",
                   "trainer.max_epochs=3"), 64),
}
# DDP with the same global batch is the same algorithm with other random draws (which rank gets which window,
# per-rank dropout masks and negatives), so it may differ from one process by what a change of seed does. Measured
# here (seeds 42, 7, 11; 300 users, 3 epochs): one process across seeds, test recall@10 up to 0.017 and NDCG@10
# up to 0.004 apart; DDP minus one process, same seed: SASRec +0.003..+0.007 and +0.001..+0.002; the two-tower,
# with the other rank's positives as negatives, -0.003..-0.017 and -0.0005..-0.0077.
# Allowed: 0.03 and 0.015, about two standard errors of each over 300 users.
TOLERANCE = {"test/recall@10": 0.03, "test/ndcg@10": 0.015}
# The loss, epoch by epoch, agrees far closer (measured: within 0.3% for both): SASRec's full softmax does not depend
# on the batch, and the two-tower's in-batch softmax sees the global batch's candidates through the other rank's
# positives (marquee.retrieval.cross_rank; without them each rank's softmax has half the candidates and a loss up to
# log 2 lower, which this check would catch). A rank training
# on all the windows instead of its half would take twice the steps per epoch and fall faster.
LOSS_TOLERANCE = 0.01
TIMINGS = ("seconds", "ms_per_user")


def _metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "metrics.json").read_text())


def _files(run_dir: Path) -> set[str]:
    """The run folder's files, the best checkpoint's epoch-dependent name generalized."""
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    return {"checkpoints/epoch_*.ckpt" if n.startswith("checkpoints/epoch_") else n for n in names}


def _epoch_losses(run_dir: Path) -> list[float]:
    curves = pd.read_csv(run_dir / "csv" / "version_0" / "metrics.csv")
    return curves.groupby("epoch")["train/loss_epoch"].first().tolist()


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(MODELS))
def test_ddp_on_two_cpu_processes_trains_writes_once_and_evaluates_as_one_process(model, tmp_path):
    overrides, batch = MODELS[model]
    single = train(tmp_path / "single" / "run", *SMALL, *overrides, f"datamodule.batch_size={batch}")
    assert single.returncode == 0, single.stderr
    ddp_dir = tmp_path / "ddp" / "run"
    ddp = train(ddp_dir, *SMALL, *overrides, "trainer=ddp_cpu", f"datamodule.batch_size={batch // 2}")
    assert ddp.returncode == 0, ddp.stderr

    # float32 on CPU unless asked, and no warning per logged metric
    record = json.loads((ddp_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["trainer"]["precision"] == "32-true"
    assert record["config"]["trainer"]["devices"] == 2 and "sync_dist" not in ddp.stderr
    assert "Starting with 2 processes" in ddp.stderr and "distributed_backend=gloo" in ddp.stderr

    # rank zero alone prints and writes: one table, the same files as one process, nothing beside the run folder
    assert sum(line.startswith("test/ndcg@10 ") for line in ddp.stdout.splitlines()) == 1
    assert Path(ddp.stdout.strip().splitlines()[-1]) == ddp_dir.resolve()
    assert _files(ddp_dir) == _files(tmp_path / "single" / "run")
    assert os.listdir(ddp_dir.parent) == ["run"]

    # the same training, split across two processes
    one, two = _metrics(tmp_path / "single" / "run"), _metrics(ddp_dir)
    assert two["train/epochs"] == one["train/epochs"] == 3
    for key, tolerance in TOLERANCE.items():
        assert two[key] == pytest.approx(one[key], abs=tolerance), key
    losses = _epoch_losses(ddp_dir)
    assert losses[-1] < 0.95 * losses[0]
    assert losses == pytest.approx(_epoch_losses(tmp_path / "single" / "run"), rel=LOSS_TOLERANCE)

    # evaluated again in one process, the saved model scores exactly what the two ranks measured together
    command = [sys.executable, "-m", "marquee.eval", f"run_dir={ddp_dir}", f"hydra.run.dir={tmp_path}/eval", "stages=[test]"]
    again = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    reevaluated = _metrics(tmp_path / "eval")
    compared = [k for k in reevaluated if k.startswith("test/") and not k.endswith(TIMINGS)]
    assert "test/ndcg@10" in compared and "test/ndcg@10_ci_low" in compared
    assert {k: reevaluated[k] for k in compared} == {k: two[k] for k in compared}
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "eval" / "per_user_test.parquet"),
                                  pd.read_parquet(ddp_dir / "per_user_test.parquet"))


# ---- which training rows each rank gets ------------------------------------------------------------------------


def _split():
    rows = [(u, (u * 3 + t) % 40 + 1, t) for u in range(1, 26) for t in range(12)]
    return LeaveOneOut()(make_log(rows))


class Recorder(pl.LightningModule):
    """Trains nothing; records each epoch's batches as rows (user, then targets or item), in the order it gets them."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.batches: dict[int, list[list[list[int]]]] = {}

    def training_step(self, batch, batch_idx):
        target = batch["targets"] if "targets" in batch else batch["item"][:, None]
        rows = torch.cat([batch["user"][:, None], target], 1).tolist()
        self.batches.setdefault(self.current_epoch, []).append(rows)
        return self.weight.sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _datamodules():
    split = _split()
    return {"windows": SequenceDataModule(split, max_len=4, batch_size=8, windows="all", seed=3),
            "grouped": SequenceDataModule(split, max_len=4, batch_size=8, windows="all", seed=3, length_grouping=2),
            "pairs": PairDataModule(split, batch_size=16, seed=3)}


def _record(devices: int) -> dict[str, dict[int, list[list[list[int]]]]]:
    """Two epochs of each datamodule's training batches as this process got them."""
    out = {}
    for name, datamodule in _datamodules().items():
        recorder = Recorder()
        trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                             max_epochs=2, callbacks=[WrappedSamplerEpoch()], logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        trainer.fit(recorder, datamodule=datamodule)
        out[name] = recorder.batches
    return out


def _worker(rank: int, world: int, port: int, out: str) -> None:
    # LOCAL_RANK set: Lightning joins this process to the group (as under torchrun) instead of starting others
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    Path(out, f"rank{rank}.json").write_text(json.dumps(_record(world)))


def _expected(name: str, epoch: int) -> list[list[int]]:
    """Every training row once, in the order of the datamodule's shuffle for ``epoch``."""
    datamodule = _datamodules()[name]
    shuffle = EpochShuffle(len(datamodule.train_windows if name != "pairs" else datamodule.train_pairs), seed=3)
    shuffle.set_epoch(epoch)
    if name != "pairs":
        return [[int(w["user"]), *w["targets"].tolist()] for w in map(datamodule.train_windows.__getitem__, shuffle)]
    pairs = datamodule.train_pairs[list(shuffle)]
    return torch.stack([pairs["user"], pairs["item"]], 1).tolist()


def _rows(batches: list[list[list[int]]]) -> Counter:
    """Each row as (user, its targets without padding): a length-grouped batch pads only to its longest window."""
    return Counter((row[0], *(v for v in row[1:] if v)) for batch in batches for row in batch)


@pytest.mark.slow
def test_each_rank_trains_on_its_half_of_a_new_shuffle_every_epoch(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # the sampler evens out the ranks with a row, or a batch where the loader's sampler yields batches
    for name, padding in (("windows", 1), ("grouped", 8), ("pairs", 16)):
        for epoch in ("0", "1"):
            zero, one = _rows(ranks[0][name][epoch]), _rows(ranks[1][name][epoch])
            everything = _rows([_expected(name, int(epoch))])
            assert zero + one >= everything, (name, epoch)  # every row, in one rank or the other ...
            assert (zero + one).total() - everything.total() <= padding, (name, epoch)  # ... and once
            assert len(ranks[0][name][epoch]) == len(ranks[1][name][epoch])  # as many steps: none waits on another
        # a new split every epoch: rank zero's half changes, not just its order
        assert _rows(ranks[0][name]["0"]) != _rows(ranks[0][name]["1"]), name
    # the pair loader's batches are the shuffle's batches of that very epoch (the BatchSampler got the epoch too)
    for epoch in ("0", "1"):
        expected = _expected("pairs", int(epoch))
        batches = {frozenset(map(tuple, expected[i:i + 16])) for i in range(0, len(expected), 16)}
        assert all(frozenset(map(tuple, b)) in batches for r in ranks for b in r["pairs"][epoch]), epoch


def test_one_process_shuffles_pairs_anew_every_epoch():
    # a BatchSampler over the shuffle hides set_epoch from Lightning; WrappedSamplerEpoch reaches it
    batches = _record(devices=1)["pairs"]
    rows = [[row for batch in batches[epoch] for row in batch] for epoch in (0, 1)]
    assert rows[0] == _expected("pairs", 0) and rows[1] == _expected("pairs", 1) and rows[0] != rows[1]


# ---- configs ---------------------------------------------------------------------------------------------------


def _trainer_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides)).trainer


def test_cpu_ddp_runs_float32_unless_bf16_is_asked_for_and_gpus_keep_bf16():
    assert _trainer_cfg("trainer=ddp_cpu").precision == "32-true"
    assert _trainer_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2").precision == "32-true"
    assert _trainer_cfg("trainer=ddp").precision == "bf16-mixed"  # accelerator gpu
    assert _trainer_cfg("trainer=ddp_cpu", "trainer.precision=bf16-mixed").precision == "bf16-mixed"
    trainer = instantiate(_trainer_cfg("trainer=ddp_cpu", "trainer.default_root_dir=/tmp"))
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2 and trainer.precision == "32-true"
    assert trainer.strategy.root_device.type == "cpu"  # gloo then: the training test reads it in Lightning's output


def test_slurm_tasks_become_the_ranks_of_a_multi_node_run(monkeypatch):
    # srun --nodes=2 --ntasks-per-node=2: the 4th task (node 1, local 1) is global rank 3 of 4
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)  # the Trainer sets it; restored afterwards
    monkeypatch.setattr(fabric_rank_zero.rank_zero_only, "rank", fabric_rank_zero.rank_zero_only.rank)
    for key, value in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                       "SLURM_NODEID": "1", "SLURM_JOB_ID": "7", "SLURM_JOB_NAME": "train",
                       "SLURM_NODELIST": "node[1-2]"}.items():
        monkeypatch.setenv(key, value)
    trainer = instantiate(_trainer_cfg("trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.default_root_dir=/tmp"))
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (4, 3, 1, 1)
