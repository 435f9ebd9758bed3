"""Recommendations as data: planted patterns come out on top with their reasons, raw ids survive, seen items
stay hidden unless kept, the lists are the evaluator's, and the command line writes the documented Parquet or
refuses bad input with one line."""

from __future__ import annotations

import subprocess
import sys
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir

from marquee import train
from marquee.checkpoint import load_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.catalog import Catalog
from marquee.data.datasets import EvaluationUsers, to_tensors
from marquee.data.seen import SeenItems
from marquee.data.sequences import UserSequences
from marquee.data.splits import Split
from marquee.data.vocab import Vocabulary
from marquee.errors import ConfigError
from marquee.evaluation.ranking import rank_users
from marquee.models.base import Recommender
from marquee.models.baselines import EASE, ItemKNN, MostPopular
from marquee.recommendations import COLUMNS, RunSource, member_batch, member_ids, recommend
from marquee.retrieval.cascade import CascadeRecommender
from tests.helpers import make_log

PAIRS = 10
FILLER = "t_99"  # everyone's validation target; never trained


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A csv log of (user, item) rows, each user's rows in time order."""
    path.write_text("user,item,ts\n" + "".join(f"{u},{i},{1000 + n}\n" for n, (u, i) in enumerate(rows)))
    return path


def _pairs_log(path: Path) -> tuple[Path, dict[str, str]]:
    """Titles come in pairs (t_2p, t_2p+1). Each member watches one pair whole, then the filler (validation),
    then half of another pair (test): training holds whole pairs only, so the missing half is the obvious next.
    Returns the log and each member's dangling half."""
    rows, dangling = [], {}
    for u in range(4 * PAIRS):
        whole, half = u % PAIRS, (u + 3) % PAIRS
        dangling[f"u_{u}"] = f"t_{2 * half + u % 2}"
        rows += [(f"u_{u}", f"t_{2 * whole}"), (f"u_{u}", f"t_{2 * whole + 1}"), (f"u_{u}", FILLER),
                 (f"u_{u}", dangling[f"u_{u}"])]
    return _write(path, rows), dangling


def _popular_log(path: Path) -> tuple[Path, dict[str, int]]:
    """Member u watches t_0, t_1, ... t_{n_u - 1} in order, n_u from 3 to 9: in training (all but the last two
    events) t_j is watched by everyone with n_u >= j + 3, so popularity falls strictly with j up to t_6. One
    more member watches t_9 ... t_14, once each, so everyone has at least 5 unseen titles.
    Returns the log and each member's n_u (the tail member's: 0)."""
    watched = {f"u_{u}": 3 + u % 7 for u in range(28)}
    rows = [(u, f"t_{j}") for u, n in watched.items() for j in range(n)] + [("u_tail", f"t_{j}") for j in range(9, 15)]
    return _write(path, rows), {**watched, "u_tail": 0}


def _train(run_dir: Path, log: Path, *overrides: str) -> Path:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=csv_log", f"data.source.path={log}", "data.source.id_type=str", "evaluation.ks=[5]",
            "evaluation.progress=false", "evaluation.n_boot=10", "stages=[test]", "logger=csv",
            f"paths.output_dir={run_dir}", *overrides])
    train.run(cfg)
    return run_dir


@pytest.fixture(scope="module", params=[("model=ease", "model.l2=10"), ("model=itemknn",)], ids=["ease", "itemknn"])
def item_item_run(request, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An item-item model trained on the pairs log, and each member's dangling half."""
    tmp = tmp_path_factory.mktemp("item_item")
    log, dangling = _pairs_log(tmp / "pairs.csv")
    return _train(tmp / "run", log, *request.param), dangling


@pytest.fixture(scope="module")
def pop_run(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    tmp = tmp_path_factory.mktemp("pop")
    log, watched = _popular_log(tmp / "popular.csv")
    return _train(tmp / "run", log, "model=pop"), watched


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory) -> Path:
    """A sequence model reading the last 3 titles, with the hour and weekday of the event it predicts."""
    tmp = tmp_path_factory.mktemp("sasrec")
    log, _ = _popular_log(tmp / "popular.csv")
    return _train(tmp / "run", log, "model=sasrec", "datamodule=sequences", "model.max_len=3", "model.hidden=16",
                  "model.layers=1", "model.heads=1", "model.inner=32", "model.side_inputs=[time]",
                  "trainer.max_epochs=1", "callbacks=none", "+trainer.enable_progress_bar=false")


@pytest.fixture(scope="module")
def sasrec_bundle(sasrec_run, tmp_path_factory) -> Path:
    """The sequence model's serving bundle (ONNX networks, vocabularies, manifest)."""
    pytest.importorskip("onnxruntime")
    from marquee.export.writer import export_run

    return export_run(sasrec_run, tmp_path_factory.mktemp("bundle") / "bundle")


def _known(run_dir: Path) -> pd.DataFrame:
    """Every (user, item) pair of the run's log, raw ids, read from the csv itself."""
    source = RunSource(run_dir)
    frame = pd.read_csv(source.record["config"]["data"]["source"]["path"], dtype=str)
    return frame.rename(columns={"user": "user_id", "item": "item_id"})[["user_id", "item_id"]]


def test_an_item_item_model_puts_the_partner_of_the_dangling_half_first_because_of_that_half(item_item_run):
    run_dir, dangling = item_item_run
    recs = recommend(run_dir, k=3)
    first = recs[recs["rank"] == 1].set_index("user_id")
    assert len(first) == len(dangling)
    for user, half in dangling.items():
        partner = f"t_{int(half[2:]) ^ 1}"
        assert first.loc[user, "item_id"] == partner, user
        assert first.loc[user, "reason"] == f"because you watched {half}", user
        assert first.loc[user, "score"] > 0
    # no other title shares a pair with anything watched: nothing in the history explains it
    rest = recs[recs["rank"] > 1]
    assert (rest["score"] <= 0).all() and rest["reason"].isna().all()


def test_most_popular_shows_the_most_popular_unseen_title_first_with_raw_string_ids(pop_run):
    run_dir, watched = pop_run
    recs = recommend(run_dir, k=2)
    assert list(recs.columns) == list(COLUMNS)
    assert recs["reason"].isna().all()  # popularity explains nothing about a member
    items = set(Vocabulary.load(run_dir / "vocab" / "items.parquet").raw_ids)
    users = set(Vocabulary.load(run_dir / "vocab" / "users.parquet").raw_ids)
    assert set(recs["item_id"]) <= items and set(recs["user_id"]) == users == set(watched)
    first = recs[recs["rank"] == 1].set_index("user_id")["item_id"]
    for user, n in watched.items():
        if 0 < n <= 6:  # t_7 and t_8 are never trained: tied at zero
            assert first[user] == f"t_{n}", user  # ids sort as strings (t_10 < t_2): decoded, not guessed


def test_seen_titles_never_appear_when_masked_and_do_when_kept(pop_run):
    run_dir, _ = pop_run
    known = set(map(tuple, _known(run_dir).to_numpy()))
    masked = recommend(run_dir, k=5)
    assert not set(zip(masked["user_id"], masked["item_id"], strict=True)) & known
    assert (masked.groupby("user_id").size() == 5).all()
    kept = recommend(run_dir, k=5, seen="keep")
    assert (kept[kept["rank"] == 1]["item_id"] == "t_0").all()  # the most popular, seen by everyone
    assert set(zip(kept["user_id"], kept["item_id"], strict=True)) & known


def _full_histories(run_dir: Path):
    """The run's model and, computed here from the csv, every member's whole history as an evaluation batch."""
    system, _ = load_system(run_dir / "checkpoints" / "model.pt")
    users = Vocabulary.load(run_dir / "vocab" / "users.parquet")
    items = Vocabulary.load(run_dir / "vocab" / "items.parquet")
    known = _known(run_dir)
    histories = known.groupby("user_id", sort=False)["item_id"].agg(list)
    width = histories.map(len).max()
    rows = np.array([[0] * (width - len(h)) + list(items.encode(np.array(h))) for h in histories])
    batch = {"user": torch.from_numpy(users.encode(histories.index.to_numpy()).astype(np.int64)),
             "items": torch.from_numpy(rows.astype(np.int64))}
    return system, items, histories, batch


def test_the_lists_are_the_models_scores_with_seen_titles_masked_as_the_evaluator_ranks_them(item_item_run):
    run_dir, _ = item_item_run
    k = 4
    recs = recommend(run_dir, k=k)
    system, items, histories, batch = _full_histories(run_dir)
    # the framework's scores, computed independently: the model's score, history and padding masked, top k
    with torch.no_grad():
        scores = system.eval().score(batch).float()
    scores[:, 0] = float("-inf")
    for row, history in enumerate(histories):
        scores[row, torch.from_numpy(items.encode(np.array(history)).astype(np.int64))] = float("-inf")
    best, top = scores.topk(k, dim=1)
    got = recs.set_index(["user_id", "rank"])
    for row, user in enumerate(histories.index):
        assert got.loc[(user, 1), "item_id"] == items.decode(top[row, :1].numpy())[0], user
        listed = items.encode(got.loc[user, "item_id"].to_numpy()).astype(np.int64)
        # each listed score is the model's own; nothing left out scores above the last one listed
        np.testing.assert_allclose(got.loc[user, "score"].to_numpy(), scores[row, listed].numpy(), rtol=1e-6)
        assert float(best[row, -1]) == pytest.approx(got.loc[(user, k), "score"])

    # and the evaluator's ranking pass over the same whole histories lists the same titles in the same order
    assert _lists(recs) == _evaluators_lists(run_dir, k)


def _lists(recs: pd.DataFrame) -> dict[str, list[str]]:
    return recs.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].agg(list).to_dict()


def _evaluators_lists(run_dir: Path, k: int) -> dict[str, list[str]]:
    """The evaluator's top-k (its rows, its ranking pass) over every member's whole history, seen titles masked,
    the request's hour and weekday unknown."""
    source = RunSource(run_dir)
    system, events = source.system, source.events()
    targets = events.groupby("user_id").tail(1).assign(hour=-1, dow=-1)  # ids are shifted by one: 0, unknown
    rows = EvaluationUsers(events, targets, len(source.users), system.max_len)
    loader = torch.utils.data.DataLoader(rows, batch_size=7, collate_fn=to_tensors)
    seen = SeenItems.from_frame(events, len(source.users), len(source.items))
    ranked = rank_users(system, loader, seen, k, progress=False)
    return {user: source.items.decode(top).tolist()
            for user, top in zip(source.users.decode(ranked.users), ranked.top_items, strict=True)}


def test_a_sequence_model_reads_its_last_titles_with_the_context_unknown_as_the_evaluator_would(sasrec_run):
    recs = recommend(sasrec_run, k=5, batch_size=4)
    assert _lists(recs) == _evaluators_lists(sasrec_run, 5)
    assert recs["reason"].isna().all() and np.isfinite(recs["score"]).all()
    # the rows it scored: each member's latest max_len titles, and no hour or weekday for the request
    source = RunSource(sasrec_run)
    events = source.events()
    users = source.users.encode(np.array(["u_6", "u_tail"])).astype(np.int64)
    batch = member_batch(UserSequences.from_frame(events, len(source.users)), users, 3)
    assert source.items.decode(batch["items"].ravel()).tolist() == ["t_6", "t_7", "t_8", "t_12", "t_13", "t_14"]
    assert batch["target_hour"].tolist() == batch["target_dow"].tolist() == [0, 0]


def test_the_reason_is_the_history_title_that_adds_most_to_the_score_and_none_where_none_adds():
    log = make_log([(1, item, item) for item in range(1, 5)])  # items 1..4
    catalog = Catalog.from_split(Split(log, log.interactions, log.interactions[:0], log.interactions[:0], "toy"))
    batch = {"user": torch.tensor([1, 1]), "items": torch.tensor([[1, 2], [0, 1]])}  # histories {1, 2} and {1}
    items = torch.tensor([[3, 4], [3, 4]])
    ease = EASE(catalog)
    ease.weights[1, 3], ease.weights[2, 3], ease.weights[1, 4] = 0.2, 0.5, -0.1  # B[i, j]: i's share of j's score
    ease.fitted.fill_(True)
    assert ease.reasons(batch, items).because.tolist() == [[2, 0], [1, 0]]
    knn = ItemKNN(catalog, k=2)
    knn.neighbors[3], knn.weights[3] = torch.tensor([1, 2]), torch.tensor([0.2, 0.5])  # sim(1, 3), sim(2, 3)
    knn.neighbors[4], knn.weights[4] = torch.tensor([2, 3]), torch.tensor([0.4, 0.1])
    knn.fitted.fill_(True)
    assert knn.reasons(batch, items).because.tolist() == [[2, 2], [1, 0]]
    assert MostPopular(catalog).reasons(batch, items) is None  # the default: nothing to say


def test_a_bundle_recommends_what_its_run_does(sasrec_run, sasrec_bundle, tmp_path):
    for seen in ("mask", "keep"):
        from_run, from_bundle = recommend(sasrec_run, k=5, seen=seen), recommend(sasrec_bundle, k=5, seen=seen)
        assert from_bundle["item_id"].tolist() == from_run["item_id"].tolist(), seen
        np.testing.assert_allclose(from_bundle["score"], from_run["score"], atol=1e-5)
        assert from_bundle[["user_id", "rank"]].equals(from_run[["user_id", "rank"]])
    done = _cli(tmp_path, f"bundle={sasrec_bundle}", "k=2", "users=[u_tail]", f"out={tmp_path / 'recs.parquet'}")
    assert done.returncode == 0, done.stderr
    assert pd.read_parquet(tmp_path / "recs.parquet").equals(recommend(sasrec_bundle, users=["u_tail"], k=2))


class _Unseen(Recommender):
    """A retriever offering every title the row has not seen, all scored 0: the cascade's ranker decides."""

    def retrieve(self, batch: dict[str, torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
        excluded = torch.zeros(len(batch["user"]), self.n_items + 1, dtype=torch.bool)
        rows = torch.arange(len(excluded))[:, None]
        for key in ("items", "exclude"):
            excluded[rows.expand_as(batch[key]), batch[key]] = True
        excluded[:, 0] = True
        return torch.zeros(excluded.shape).masked_fill(excluded, float("-inf")).topk(n, dim=1)


class _CascadeOfRun(RunSource):
    """A source plugged in beside the run folder: the run's item-item model as ranker behind a retriever."""

    def __init__(self, run_dir: Path, n_candidates: int):
        super().__init__(run_dir)
        self.n_candidates = n_candidates

    @cached_property
    def system(self) -> Recommender:
        ranker = super().system
        return CascadeRecommender(_Unseen(ranker.catalog), ranker, self.n_candidates)


def test_a_cascade_says_retrieved_and_its_item_item_ranker_names_the_history_title(item_item_run):
    run_dir, dangling = item_item_run
    n_items = len(Vocabulary.load(run_dir / "vocab" / "items.parquet"))
    recs = recommend(_CascadeOfRun(run_dir, n_items), k=3)
    first = recs[recs["rank"] == 1].set_index("user_id")
    assert (first["reason"] == [f"because you watched {dangling[u]}" for u in first.index]).all()
    assert (recs[recs["rank"] > 1]["reason"] == "retrieved").all()
    # fewer candidates than k: only the candidates are listed
    short = recommend(_CascadeOfRun(run_dir, 2), k=3)
    assert (short.groupby("user_id").size() == 2).all()


def test_raw_member_ids_are_read_as_the_vocabulary_types_them_and_unknown_ones_are_named():
    vocab = Vocabulary.fit(np.array([196, 186, 7]))
    assert member_ids(vocab, ["196", 186, 186]).tolist() == vocab.encode(np.array([196, 186])).tolist()
    assert member_ids(vocab, "all").tolist() == [1, 2, 3]
    with pytest.raises(ConfigError, match=r"users: 2 unknown member id\(s\): 'u_1', 5"):
        member_ids(vocab, ["u_1", 5, 7])
    strings = Vocabulary.fit(np.array(["u_12", "u_7"], dtype=object))
    assert strings.decode(member_ids(strings, ["u_7"])).tolist() == ["u_7"]


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "marquee.recommend", f"hydra.run.dir={tmp_path}/out", "progress=false", *overrides]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)


def test_the_command_writes_k_rows_per_member_with_the_documented_columns(pop_run, tmp_path):
    run_dir, watched = pop_run
    out = tmp_path / "recs.parquet"
    done = _cli(tmp_path, f"run_dir={run_dir}", "k=4", f"out={out}", "batch_size=10")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out.resolve())
    parquet = pq.ParquetFile(out)
    assert parquet.schema_arrow.names == list(COLUMNS)
    assert [parquet.schema_arrow.field(c).type for c in COLUMNS] == [
        pa.string(), pa.int32(), pa.string(), pa.float32(), pa.string()]
    assert parquet.num_row_groups == -(-len(watched) // 10)  # one per batch of members
    recs = pd.read_parquet(out)
    assert recs.groupby("user_id")["rank"].agg(list).to_dict() == {user: [1, 2, 3, 4] for user in watched}
    assert recs.equals(recommend(run_dir, k=4))  # the command and the Python call agree
    chosen = _cli(tmp_path, f"run_dir={run_dir}", "users=[u_3,u_10]", "k=1", f"out={tmp_path / 'two.parquet'}")
    assert chosen.returncode == 0, chosen.stderr
    assert pd.read_parquet(tmp_path / "two.parquet")["user_id"].tolist() == ["u_3", "u_10"]


@pytest.mark.parametrize(("overrides", "says"), [
    (["users=[u_3,nobody,u_999]", "k=3"], ["users: 2 unknown member id(s): 'nobody', 'u_999'"]),
    (["k=0"], ["k: ", "between 1 and the catalog's 15 items, got 0"]),
    (["k=16"], ["k: ", "got 16"]),
    (["bundle=somewhere"], ["run_dir: give a training run (run_dir=<its folder>) or a serving bundle"]),
])
def test_bad_input_exits_2_with_one_line_naming_it_and_writes_nothing(pop_run, tmp_path, overrides, says):
    run_dir, _ = pop_run
    out = tmp_path / "recs.parquet"
    done = _cli(tmp_path, f"run_dir={run_dir}", f"out={out}", *overrides)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    for part in says:
        assert part in errors[0], errors[0]
    assert not out.exists()
