"""The two-tower retriever on a synthetic log with planted tastes: warm and cold items recovered, saved and reloaded."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from marquee.checkpoint import load_model, save_model
from marquee.data.build import build_log
from marquee.data.datamodules import SequenceDataModule
from marquee.data.events import EventSchema
from marquee.data.raw import RawLog
from marquee.data.splits import Split
from marquee.data.synthetic import SyntheticConfig, generate_frame
from marquee.models.catalog import data_args
from marquee.retrieval.cold_start import GenrePopularity, ItemHoldout
from marquee.retrieval.two_tower import TwoTower, user_feature_table

CONFIG = {"_target_": "marquee.retrieval.two_tower.TwoTower", "dim": 32, "hidden": 64, "log_q": True,
          "uniform_negatives": 128, "max_queries": 1024, "temperature": 0.1, "pooling": "mean", "max_len": 100,
          "index": {"kind": "hnsw", "M": 16}}


def train(model: TwoTower, datamodule: SequenceDataModule, epochs: int, lr: float = 3e-3) -> TwoTower:
    """A plain torch loop over the datamodule's training windows."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in datamodule.train_dataloader():
            loss = model.training_loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@dataclass
class Planted:
    model: TwoTower
    split: Split
    datamodule: SequenceDataModule
    preference: np.ndarray  # (n_users + 1, n_items + 1) planted P(item | user), in the log's ids
    args: dict


@pytest.fixture(scope="module")
def planted() -> Planted:
    """Users who love one or two of 18 genres, Zipf(0.5) popularity within them; 10% of the items held out cold."""
    torch.manual_seed(0)
    cfg = SyntheticConfig(n_users=400, n_items=300, n_interactions=40_000, n_genres=18, taste_alpha=0.1,
                          popularity_exponent=0.5, hour_strength=0.0, device_strength=0.0, seed=3)
    interactions, items, users, truth = generate_frame(cfg)
    raw = RawLog("planted", interactions, "planted", 0, items.set_index("item_id"), users.set_index("user_id"))
    log = build_log(raw, EventSchema(types={"play": 1.0, "complete": 1.0, "skip": 1.0}))
    split = ItemHoldout(val_fraction=0.0, test_fraction=0.1, seed=0)(log)
    args = {k: v for k, v in data_args(log).items() if k not in ("n_users", "n_events")}
    args.update(user_feature_table(log.user_meta, log.n_users))
    model = TwoTower(**args, **{k: v for k, v in CONFIG.items() if k != "_target_"})
    datamodule = SequenceDataModule(split, max_len=100, batch_size=64, windows="all", seed=0)
    train(model, datamodule, epochs=20)
    # the planted P(item | user) with hour and device effects off: sum over genres of taste x P(item | genre)
    genre_mass = truth.item_genres * truth.item_popularity[:, None]  # (I, G)
    preference = np.zeros((log.n_users + 1, log.n_items + 1))
    rows, cols = log.users.encode(np.arange(1, cfg.n_users + 1)), log.items.encode(np.arange(1, cfg.n_items + 1))
    preference[np.ix_(rows, cols)] = truth.tastes @ (genre_mass / genre_mass.sum(0, keepdims=True)).T
    return Planted(model, split, datamodule, preference, args)


def _recall_of_planted_top(scores: np.ndarray, preference: np.ndarray, allowed: np.ndarray, k: int) -> float:
    """Mean share of each user's planted top-k (among ``allowed`` items) that the model's top-k holds."""
    s, p = scores[:, allowed], preference[:, allowed]
    model_top, planted_top = np.argsort(-s, 1)[:, :k], np.argsort(-p, 1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(model_top, planted_top)]))


def _genre_oracle(p: Planted, users: np.ndarray) -> np.ndarray:
    """What the data allows: each user's genre shares in training x each item's share of its genres' plays."""
    genres = np.zeros((p.model.n_items + 1, p.args["n_genres"] + 1))
    np.put_along_axis(genres, p.args["item_genres"].numpy(), 1.0, axis=1)
    genres[:, 0] = 0.0
    plays = np.zeros((p.split.log.n_users + 1, genres.shape[1]))
    np.add.at(plays, p.split.train["user_id"].to_numpy(), genres[p.split.train["item_id"].to_numpy()])
    within = genres * p.split.item_counts[:, None]
    within /= within.sum(0, keepdims=True) + 1e-12
    return (plays[users] / plays[users].sum(1, keepdims=True)) @ within.T


def _all_scores(model, datamodule) -> tuple[np.ndarray, np.ndarray]:
    users, scores = [], []
    with torch.inference_mode():
        for batch in datamodule.eval_dataloader("test"):
            users.append(batch["user"].numpy())
            scores.append(model.score(batch).numpy())
    return np.concatenate(users), np.concatenate(scores)


def test_two_tower_recovers_planted_top_items_far_above_popularity(planted):
    users, scores = _all_scores(planted.model, planted.datamodule)
    warm = np.flatnonzero(planted.split.item_counts > 0)
    preference = planted.preference[users]
    ours = _recall_of_planted_top(scores, preference, warm, 20)
    popularity = _recall_of_planted_top(np.broadcast_to(planted.split.item_counts, scores.shape), preference, warm, 20)
    oracle = _recall_of_planted_top(_genre_oracle(planted, users), preference, warm, 20)
    assert ours > 1.6 * popularity and ours > 0.8 * oracle, (ours, popularity, oracle)


def test_cold_items_get_content_vectors_that_follow_the_planted_tastes(planted):
    model, split = planted.model, planted.split
    cold = ItemHoldout.items(split, "test").numpy()
    assert not model.item_trained[cold].any() and model.item_trained[np.flatnonzero(split.item_counts)].all()
    users, scores = _all_scores(model, planted.datamodule)
    by_genre = GenrePopularity(model.n_items, planted.args["item_genres"], planted.args["n_genres"]).fit(split)
    genre_scores = by_genre.score({"user": torch.from_numpy(users)}).numpy()
    preference = planted.preference[users]
    ours = _recall_of_planted_top(scores, preference, cold, 5)
    genre_popularity = _recall_of_planted_top(genre_scores, preference, cold, 5)
    random = _recall_of_planted_top(np.random.default_rng(0).random(scores.shape), preference, cold, 5)
    assert ours > 2 * max(genre_popularity, random), (ours, genre_popularity, random)


def test_cold_item_vector_is_a_function_of_its_content_alone(planted):
    model = planted.model
    cold = int(torch.nonzero(~model.item_trained[1:])[0, 0]) + 1
    tower = copy.deepcopy(model.item_tower)  # edited below; the fixture's model stays as trained
    vector = model.item_vectors()[cold]
    id_of_unknown = tower(torch.tensor([cold]), torch.tensor([False]))[0]  # content + the shared unknown-id row
    torch.testing.assert_close(vector, id_of_unknown)
    with torch.no_grad():  # another id with the same content gets the same vector
        warm = int(torch.nonzero(model.item_trained)[0, 0])
        for name in ("item_genres", "item_title_tokens", "item_year_bucket"):
            getattr(tower, name)[warm] = getattr(tower, name)[cold]
        torch.testing.assert_close(tower(torch.tensor([warm]), torch.tensor([False]))[0], vector)


def test_index_retrieval_matches_exact_top_n_and_skips_seen_items(planted):
    model, datamodule = planted.model, planted.datamodule
    batch = next(iter(datamodule.eval_dataloader("test")))
    seen = datamodule.seen("test")
    model.index = None
    _, exact = model.retrieve(batch, 50, seen)
    model.build_index()  # HNSW by this config
    _, items = model.retrieve(batch, 50, seen)
    overlap = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(items.tolist(), exact.tolist())])
    assert overlap > 0.95
    mask = seen.mask(batch["user"])
    assert not mask.gather(1, items).any() and not mask.gather(1, exact).any()
    history = batch["items"]
    assert not (items[:, :, None] == history[:, None, :]).any()


def test_checkpoint_and_index_round_trip(planted, tmp_path):
    model, datamodule = planted.model, planted.datamodule
    model.index = None
    save_model(model, OmegaConf.create(CONFIG), tmp_path, data_args=planted.args)
    model.save_artifacts(tmp_path)  # builds the configured index first
    loaded, _ = load_model(tmp_path / "model.pt")
    loaded.eval()
    loaded.load_artifacts(tmp_path)
    assert loaded.index.kind == "hnsw" and loaded.index.size == model.n_items
    batch = next(iter(datamodule.eval_dataloader("test")))
    torch.testing.assert_close(loaded.score(batch), model.score(batch))
    assert torch.equal(loaded.item_trained, model.item_trained)
    for a, b in zip(loaded.retrieve(batch, 20), model.retrieve(batch, 20)):
        torch.testing.assert_close(a, b)


def test_pair_batches_are_refused_with_the_fix(planted):
    with pytest.raises(ValueError, match="datamodule=sequences"):
        planted.model.training_loss({"user": torch.tensor([1]), "item": torch.tensor([2])})


def test_user_metadata_becomes_disjoint_ids_with_0_for_unknown():
    n = 70
    ages = pd.array([20 + i for i in range(n - 1)] + [None], dtype="Int64")
    meta = pd.DataFrame({"age": ages, "gender": ["F", "M"] * 34 + ["F", None],
                         "zip": [f"{i:05d}" for i in range(n)]}, index=range(1, n + 1))
    out = user_feature_table(meta, n_users=n + 1)  # the last user has no metadata row
    table = out["user_features"]
    assert table.shape == (n + 2, 2)  # age buckets and gender; 70 zip codes exceed the 64-value cap
    assert (table[0] == 0).all() and (table[n + 1] == 0).all()  # padding, and the user without a row
    age, gender = table[1 : n + 1, 0], table[1 : n + 1, 1]
    assert age[-1] == 0 and (age[:-1] > 0).all() and (age[:-1].diff() >= 0).all() and len(age.unique()) == 9
    assert gender[0] == gender[2] != gender[1] and gender[-1] == 0
    assert set(age[age > 0].tolist()).isdisjoint(gender[gender > 0].tolist())
    assert out["n_user_feature_values"] == int(table.max()) == 10
