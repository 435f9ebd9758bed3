"""The two-tower retriever on a synthetic log with planted tastes: warm and cold items recovered, saved and reloaded."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from marquee import train as marquee_train
from marquee.checkpoint import load_system, save_system
from marquee.config_dir import CONFIG_DIR
from marquee.data.build import build_log
from marquee.data.catalog import Catalog, user_feature_table
from marquee.data.datamodules import SequenceDataModule
from marquee.data.evaluation_data import EvaluationData
from marquee.data.events import EventSchema
from marquee.data.pipeline import prepare_split
from marquee.data.raw import RawLog
from marquee.data.splits import ItemHoldout, Split
from marquee.data.synthetic import SyntheticConfig, generate_frame
from marquee.models.baselines import GenrePopularity
from marquee.retrieval.two_tower import TwoTower

CONFIG = {"_target_": "marquee.retrieval.two_tower.TwoTower", "dim": 32, "hidden": 64, "log_q": True,
          "uniform_negatives": 128, "max_queries": 1024, "temperature": 0.1, "pooling": "mean", "max_len": 100,
          "index": {"kind": "hnsw", "M": 16}}


def train(model: TwoTower, datamodule: SequenceDataModule, epochs: int, lr: float = 3e-3) -> TwoTower:
    """A plain torch loop over the datamodule's training windows (observing each batch, as the LightningModule does)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in datamodule.train_dataloader():
            loss = model.training_loss(batch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.observe(batch)
    return model.eval()


@dataclass
class Planted:
    model: TwoTower
    split: Split
    datamodule: SequenceDataModule
    data: EvaluationData  # the evaluator's rows of the split, histories cut to the model's max_len
    preference: np.ndarray  # (n_users + 1, n_items + 1) planted P(item | user), in the log's ids
    catalog: Catalog


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
    catalog = Catalog.from_split(split)
    model = TwoTower(catalog, **{k: v for k, v in CONFIG.items() if k != "_target_"})
    datamodule = SequenceDataModule(split, max_len=100, batch_size=64, windows="all", seed=0)
    train(model, datamodule, epochs=20)
    # the planted P(item | user) with hour and device effects off: sum over genres of taste x P(item | genre)
    genre_mass = truth.item_genres * truth.item_popularity[:, None]  # (I, G)
    preference = np.zeros((log.n_users + 1, log.n_items + 1))
    rows, cols = log.users.encode(np.arange(1, cfg.n_users + 1)), log.items.encode(np.arange(1, cfg.n_items + 1))
    preference[np.ix_(rows, cols)] = truth.tastes @ (genre_mass / genre_mass.sum(0, keepdims=True)).T
    return Planted(model, split, datamodule, EvaluationData(split, max_len=100), preference, catalog)


def _recall_of_planted_top(scores: np.ndarray, preference: np.ndarray, allowed: np.ndarray, k: int) -> float:
    """Mean share of each user's planted top-k (among ``allowed`` items) that the model's top-k holds."""
    s, p = scores[:, allowed], preference[:, allowed]
    model_top, planted_top = np.argsort(-s, 1)[:, :k], np.argsort(-p, 1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(model_top, planted_top)]))


def _genre_oracle(p: Planted, users: np.ndarray) -> np.ndarray:
    """What the data allows: each user's genre shares in training x each item's share of its genres' plays."""
    genres = np.zeros((p.model.n_items + 1, p.catalog.n_genres + 1))
    np.put_along_axis(genres, p.catalog.item_genres.numpy(), 1.0, axis=1)
    genres[:, 0] = 0.0
    plays = np.zeros((p.split.log.n_users + 1, genres.shape[1]))
    np.add.at(plays, p.split.train["user_id"].to_numpy(), genres[p.split.train["item_id"].to_numpy()])
    within = genres * p.split.item_counts[:, None]
    within /= within.sum(0, keepdims=True) + 1e-12
    return (plays[users] / plays[users].sum(1, keepdims=True)) @ within.T


def _all_scores(model, data: EvaluationData) -> tuple[np.ndarray, np.ndarray]:
    users, scores = [], []
    with torch.inference_mode():
        for batch in data.eval_dataloader("test"):
            users.append(batch["user"].numpy())
            scores.append(model.score(batch).numpy())
    return np.concatenate(users), np.concatenate(scores)


def test_two_tower_recovers_planted_top_items_far_above_popularity(planted):
    users, scores = _all_scores(planted.model, planted.data)
    warm = np.flatnonzero(planted.split.item_counts > 0)
    preference = planted.preference[users]
    ours = _recall_of_planted_top(scores, preference, warm, 20)
    popularity = _recall_of_planted_top(np.broadcast_to(planted.split.item_counts, scores.shape), preference, warm, 20)
    oracle = _recall_of_planted_top(_genre_oracle(planted, users), preference, warm, 20)
    assert ours > 1.6 * popularity and ours > 0.8 * oracle, (ours, popularity, oracle)


def test_cold_items_get_content_vectors_that_follow_the_planted_tastes(planted):
    model, split = planted.model, planted.split
    cold = ItemHoldout.items(split, "test")
    assert isinstance(cold, np.ndarray)
    assert not model.item_trained[cold].any() and model.item_trained[np.flatnonzero(split.item_counts)].all()
    users, scores = _all_scores(model, planted.data)
    by_genre = GenrePopularity(planted.catalog).fit(split)
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
    model, data = planted.model, planted.data
    batch = next(iter(data.eval_dataloader("test")))
    seen = data.seen("test")
    batch = {**batch, "exclude": seen.padded(batch["user"])}  # what the evaluator hands a model to skip
    model.index = None
    _, exact = model.retrieve(batch, 50)
    model.build_index()  # HNSW by this config
    _, items = model.retrieve(batch, 50)
    overlap = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(items.tolist(), exact.tolist())])
    assert overlap > 0.95
    mask = seen.mask(batch["user"])
    assert not mask.gather(1, items).any() and not mask.gather(1, exact).any()
    history = batch["items"]
    assert not (items[:, :, None] == history[:, None, :]).any()


def test_checkpoint_and_index_round_trip(planted, tmp_path):
    model, data = planted.model, planted.data
    model.index = None
    save_system(model, {"model": CONFIG}, None, planted.catalog, tmp_path,
                data_fingerprint=planted.split.log.fingerprint)  # builds the configured index first
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "artifacts" / "index.faiss").is_file()
    loaded, payload = load_system(tmp_path / "model.pt")  # reads the index back from artifacts/
    loaded.eval()
    assert isinstance(loaded, TwoTower) and payload["data_fingerprint"] == planted.split.log.fingerprint
    assert loaded.index.kind == "hnsw" and loaded.index.size == model.n_items
    batch = next(iter(data.eval_dataloader("test")))
    batch = {**batch, "exclude": data.seen("test").padded(batch["user"])}
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
    table, n_values = user_feature_table(meta, n_users=n + 1)  # the last user has no metadata row
    assert table.shape == (n + 2, 2)  # age buckets and gender; 70 zip codes exceed the 64-value cap
    assert (table[0] == 0).all() and (table[n + 1] == 0).all()  # padding, and the user without a row
    age, gender = table[1 : n + 1, 0], table[1 : n + 1, 1]
    assert age[-1] == 0 and (age[:-1] > 0).all() and (age[:-1].diff() >= 0).all() and len(age.unique()) == 9
    assert gender[0] == gender[2] != gender[1] and gender[-1] == 0
    assert set(age[age > 0].tolist()).isdisjoint(gender[gender > 0].tolist())
    assert n_values == int(table.max()) == 10


def _observed_state(model: TwoTower) -> dict[str, torch.Tensor]:
    """What :meth:`TwoTower.observe` keeps: the trained items and the logQ frequency estimate."""
    frequency = model.frequency
    return {"trained": model.item_trained.clone(), "step": frequency.step.clone(),
            "last_step": frequency.last_step.clone(), "interval": frequency.interval.clone()}


def test_training_loss_changes_no_state_and_observe_records_the_batch(planted):
    torch.manual_seed(0)
    model = TwoTower(planted.catalog, dim=16, hidden=32, pooling="mean", max_len=100, log_q=True).train()
    batch = next(iter(planted.datamodule.train_dataloader()))
    before = _observed_state(model)
    model.training_loss(batch)["loss"].backward()
    model.training_loss(batch)  # again, as the FLOP counter does: still nothing recorded
    assert all(torch.equal(before[k], v) for k, v in _observed_state(model).items())
    model.observe(batch)
    targets = batch["targets"]
    positives = targets[(targets > 0) & batch["target_positive"] & (batch["target_weight"] > 0)].unique()
    in_batch = torch.cat([batch["items"].flatten(), targets.flatten()]).unique()
    in_batch = in_batch[in_batch > 0]
    assert model.item_trained[in_batch].all() and int(model.item_trained.sum()) == len(in_batch)
    assert model.frequency.step == 1 and (model.frequency.last_step[positives] == 1).all()
    assert (model.frequency.interval[positives] > 0).all() and int((model.frequency.last_step > 0).sum()) == len(
        positives)


TOWER_RUN = ("data=synthetic", "data.source.n_users=300", "data.source.n_items=150", "data.source.n_interactions=6000",
             "model=two_tower", "datamodule=sequences", "model.dim=16", "model.hidden=32", "model.max_len=20",
             "model.index.kind=flat", "datamodule.windows=all", "datamodule.batch_size=64", "trainer.max_epochs=3",
             "trainer.check_val_every_n_epoch=3", "callbacks=none", "logger=csv", "evaluation.n_boot=10",
             "evaluation.progress=false", "evaluation.ks=[10,20]", "+trainer.enable_progress_bar=false",
             "stages=[test]")


def _tower_cfg(out: Path, *overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[*TOWER_RUN, f"paths.output_dir={out}", *overrides])


def test_user_metadata_trains_through_the_entry_point_and_changes_the_scores(tmp_path, monkeypatch):
    """The synthetic log has user metadata (age, preferred device): model.user_meta switches its embedding on."""
    initial: list[dict[str, torch.Tensor]] = []
    original = TwoTower.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        initial.append({k: v.detach().clone() for k, v in self.user_tower.state_dict().items()})

    monkeypatch.setattr(TwoTower, "__init__", recording)
    runs = {}
    for user_meta in (True, False):
        cfg = _tower_cfg(tmp_path / str(user_meta), f"model.user_meta={str(user_meta).lower()}")
        runs[user_meta] = marquee_train.run(cfg)
    keys = [k for k in runs[True] if k.startswith("test/") and ("recall@" in k or "ndcg@" in k) and "/slice/" not in k]
    assert keys and any(runs[True][k] != runs[False][k] for k in keys)

    with_meta, _ = load_system(tmp_path / "True" / "checkpoints" / "model.pt")
    without, _ = load_system(tmp_path / "False" / "checkpoints" / "model.pt")
    assert not hasattr(without.user_tower, "meta_embedding") and not without.user_tower.use_meta
    tower = with_meta.user_tower
    assert tower.use_meta and bool(tower.meta_trained) and with_meta.catalog.n_user_feature_values > 0
    init = next(s for s in initial if "meta_embedding.weight" in s)["meta_embedding.weight"]  # the user_meta run's
    assert not torch.allclose(tower.meta_embedding.weight, init)  # training moved the metadata embedding
    # the metadata reaches the user vectors: the same rows with every member's metadata unknown score otherwise
    with_meta.eval()
    split = prepare_split(cfg.data)
    batch = next(iter(EvaluationData(split, with_meta.max_len).eval_dataloader("test")))
    with torch.no_grad():
        scores = with_meta.score(batch)
        tower.user_features.zero_()
        blind = with_meta.score(batch)
    assert not torch.allclose(scores, blind)
