"""Baselines: what each learns from training rows only, hand-checked values, reload and candidate scoring."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from marquee.checkpoint import build
from marquee.config_dir import CONFIG_DIR
from marquee.data.build import build_log
from marquee.data.catalog import Catalog
from marquee.data.evaluation_data import EvaluationData
from marquee.data.events import EventSchema
from marquee.data.loaders.movielens import MovieLens100K
from marquee.data.splits import LeaveOneOut, Split
from marquee.models import baselines
from marquee.models.baselines import EASE, ItemKNN, MostPopular, RandomRecommender, RecentPopular
from marquee.models.memory import LIMIT_ENV, InsufficientMemory
from tests.helpers import make_log, make_raw

DAY = 86_400


def _train_only(rows: list[tuple]) -> Split:
    """A split whose training part is every row (no val or test), for hand-computed checks."""
    log = make_log(rows)
    empty = log.interactions.iloc[:0]
    return Split(log, log.interactions, empty, empty, "all_train")


def _batch(histories: list[list[int]], users: list[int] | None = None) -> dict[str, torch.Tensor]:
    """An evaluation batch of left-padded histories (ids as encoded), as collate_eval builds it."""
    width = max(len(h) for h in histories)
    items = torch.tensor([[0] * (width - len(h)) + h for h in histories])
    return {"user": torch.tensor(users or list(range(1, len(histories) + 1))), "items": items}


def _catalog(split: Split) -> Catalog:
    return Catalog.from_split(split)


def _ids(split: Split, raw: list[int]) -> list[int]:
    return split.log.items.encode(np.array(raw)).tolist()


# ---------------------------------------------------------------- popularity


def test_most_popular_counts_training_rows_and_gives_test_only_fame_no_credit():
    # item 9 ends every user's sequence (test); item 1 is trained 3 times, item 2 twice
    rows = [(u, i, 10 + t) for u in range(1, 7) for t, i in enumerate([3, 4, 9])]
    rows += [(u, 1, 0) for u in (1, 2, 3)] + [(u, 2, 0) for u in (4, 5)]
    split = LeaveOneOut()(make_log(rows))
    hot, one, two, three = _ids(split, [9, 1, 2, 3])
    assert (split.test["item_id"] == hot).all()
    scores = MostPopular(_catalog(split)).fit(split).score(_batch([[one]]))[0]
    np.testing.assert_array_equal(scores.numpy(), split.item_counts.astype(np.float32))
    assert scores[hot] == 0 and scores[three] == 6 and scores[one] == 3 and scores[two] == 2


def test_recent_popular_prefers_the_recently_popular_and_is_most_popular_with_a_huge_half_life():
    # item 1: five users long ago; item 2: two users in the last day
    rows = [(u, 1, 0) for u in range(1, 6)] + [(u, 2, 60 * DAY + u) for u in (1, 2)] + [(3, 3, 30 * DAY)]
    split = _train_only(rows)
    old, new, middle = _ids(split, [1, 2, 3])
    catalog = _catalog(split)
    recent = RecentPopular(catalog, half_life_days=7.0).fit(split).popularity
    assert recent[new] > recent[middle] > recent[old]
    assert recent[new] == pytest.approx(2.0, rel=1e-5)  # the latest rows weigh ~1
    assert recent[middle] == pytest.approx(0.5 ** (30 / 7), rel=1e-3)
    counts = MostPopular(catalog).fit(split).popularity
    assert counts[old] > counts[new]
    torch.testing.assert_close(RecentPopular(catalog, half_life_days=1e9).fit(split).popularity, counts)


def test_recent_popular_on_ordinal_time_counts_back_from_each_users_own_latest_interaction():
    raw = make_raw([(1, 1, 0), (1, 2, 1), (1, 3, 2), (2, 3, 0), (2, 1, 1)])
    log = build_log(dataclasses.replace(raw, ordinal_time=True))
    empty = log.interactions.iloc[:0]
    split = Split(log, log.interactions, empty, empty, "all_train")
    scores = RecentPopular(_catalog(split), half_life_days=1.0).fit(split).popularity
    a, b, c = _ids(split, [1, 2, 3])
    # user 1: 3 (age 0), 2 (age 1), 1 (age 2); user 2: 1 (age 0), 3 (age 1)
    torch.testing.assert_close(scores[[a, b, c]], torch.tensor([0.25 + 1.0, 0.5, 1.0 + 0.5]))


EVENTS = EventSchema(types={"play": 1.0, "skip": {"weight": 1.0, "positive": False}})
# items A=1..D=4: plays A 1 (user 4), B 3, C 2, D 2; every user also skips A, which would make A the most popular
SKIP_ROWS = [
    (1, 2, 0, "play", 1.0), (1, 1, DAY, "skip", 1.0), (1, 3, 2 * DAY, "play", 1.0),
    (2, 2, 0, "play", 1.0), (2, 1, DAY, "skip", 1.0), (2, 3, 2 * DAY, "play", 1.0),
    (3, 2, 0, "play", 1.0), (3, 1, DAY, "skip", 1.0), (3, 4, 2 * DAY, "play", 1.0),
    (4, 1, 0, "skip", 1.0), (4, 4, DAY, "play", 1.0), (4, 1, 2 * DAY, "play", 1.0),
]


def _train_only_with_events(rows: list[tuple]) -> Split:
    log = make_log(rows, events=EVENTS)
    empty = log.interactions.iloc[:0]
    return Split(log, log.interactions, empty, empty, "all_train")


def test_most_popular_counts_positive_events_only():
    split = _train_only_with_events(SKIP_ROWS)
    a, b, c, d = _ids(split, [1, 2, 3, 4])
    popularity = MostPopular(_catalog(split)).fit(split).popularity
    assert popularity[[a, b, c, d]].tolist() == [1.0, 3.0, 2.0, 2.0]


@pytest.mark.parametrize("model_class, params", [
    (MostPopular, {}),
    (RecentPopular, {"half_life_days": 2.0}),
    (ItemKNN, {"k": 3, "shrink": 0.5}),
    (EASE, {"l2": 1.0}),
], ids=lambda v: getattr(v, "__name__", ""))
def test_skips_teach_a_baseline_nothing(model_class, params):
    with_skips = _train_only_with_events(SKIP_ROWS)
    plays_only = _train_only_with_events([r for r in SKIP_ROWS if r[3] == "play"])
    assert with_skips.log.items == plays_only.log.items and with_skips.log.users == plays_only.log.users
    batch = _batch([[1], [2, 3], [4, 1]])  # ids as encoded: raw k is id k here
    scores = model_class(_catalog(with_skips), **params).fit(with_skips).score(batch)
    expected = model_class(_catalog(plays_only), **params).fit(plays_only).score(batch)
    torch.testing.assert_close(scores, expected)
    if model_class is ItemKNN:  # A (id 1) was skipped beside B and C, yet is neither's neighbour
        assert scores[1, 1] == 0


# ---------------------------------------------------------------- ItemKNN

# users 1..4 over items A=1, B=2, C=3: |U_A| = 3, |U_B| = 3, |U_C| = 2; A∩B = 2, A∩C = 2, B∩C = 1
KNN_ROWS = [(1, 1, 0), (1, 2, 1), (2, 1, 0), (2, 2, 1), (2, 3, 2), (3, 1, 0), (3, 3, 1), (4, 2, 0)]


@pytest.mark.parametrize("shrink, one_column_blocks", [(0.0, False), (1.0, False), (1.0, True)])
def test_itemknn_similarity_is_the_shrunk_cosine_of_the_binary_matrix(shrink, one_column_blocks, monkeypatch):
    if one_column_blocks:
        monkeypatch.setattr(baselines, "_BLOCK_ENTRIES", 1)
    split = _train_only(KNN_ROWS + [(1, 1, 5)])  # a repeated interaction counts once
    a, b, c = _ids(split, [1, 2, 3])
    sim = ItemKNN(_catalog(split), k=10, shrink=shrink).fit(split).similarity()
    ab, ac, bc = 2 / (3 + shrink), 2 / (math.sqrt(6) + shrink), 1 / (math.sqrt(6) + shrink)
    expected = torch.tensor([[0, ab, ac], [ab, 0, bc], [ac, bc, 0]], dtype=torch.float32)
    torch.testing.assert_close(sim[[a, b, c]][:, [a, b, c]], expected)
    assert not sim[0].any() and not sim[:, 0].any()  # padding is nobody's neighbour


def test_itemknn_keeps_only_the_k_nearest_neighbours_of_each_target_and_sums_them_over_the_history():
    split = _train_only(KNN_ROWS)
    a, b, c = _ids(split, [1, 2, 3])
    model = ItemKNN(_catalog(split), k=1).fit(split)
    sim = model.similarity()
    # nearest of A is C (2/sqrt(6) > 2/3), of B is A (2/3 > 1/sqrt(6)), of C is A
    kept = {(int(i), int(j)) for i, j in sim.nonzero()}
    assert kept == {(c, a), (a, b), (a, c)}
    assert model.neighbors.shape == (split.log.n_items + 1, 1)
    scores = model.score(_batch([[a, c]]))[0]
    torch.testing.assert_close(scores[[a, b, c]], torch.stack([sim[c, a], sim[a, b], sim[a, c]]))


# ---------------------------------------------------------------- EASE


def _random_split(n_users: int = 40, n_items: int = 12, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    watched = rng.random((n_users, n_items)) < 0.3
    watched[:, 0] = True  # every item id appears, so raw id k + 1 is id k + 1
    watched[0] = True
    rows = [(u + 1, i + 1, i) for u, i in zip(*np.nonzero(watched))]
    return _train_only(rows)


def _ease_by_numpy(split: Split, l2: float) -> np.ndarray:
    x = np.zeros((split.log.n_users + 1, split.log.n_items + 1))
    x[split.train["user_id"], split.train["item_id"]] = 1.0
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    return b


@pytest.mark.parametrize("float32", [False, True])
def test_ease_weights_equal_the_closed_form_and_have_a_zero_diagonal(float32, monkeypatch):
    if float32:  # the large-catalog path: float32 inverse, Gram matrix built one column at a time
        monkeypatch.setattr(baselines, "EASE_FLOAT64_MAX_ITEMS", 0)
        monkeypatch.setattr(baselines, "_BLOCK_ENTRIES", 1)
    split = _random_split()
    model = EASE(_catalog(split), l2=3.0).fit(split)
    assert not model.weights.diagonal().any()
    np.testing.assert_allclose(model.weights.numpy(), _ease_by_numpy(split, 3.0), atol=1e-6, rtol=1e-4)
    history = [[2, 5, 7, 5], [1], []]  # a repeated item counts once, as in training; an empty history scores 0
    scores = model.score(_batch(history)).numpy()
    expected = _ease_by_numpy(split, 3.0)
    np.testing.assert_allclose(scores[0], expected[[2, 5, 7]].sum(0), atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(scores[1], expected[1], atol=1e-6, rtol=1e-4)
    assert not scores[2].any()


@pytest.mark.parametrize("model_class", [EASE, ItemKNN])
def test_planted_pair_watchers_of_a_are_sent_to_b(model_class):
    rng = np.random.default_rng(1)
    rows = []
    for user in range(1, 61):
        others = rng.choice(np.arange(3, 21), size=4, replace=False).tolist()
        items = ([1, 2] if user <= 20 else []) + others  # the first 20 users watch A=1 and B=2
        rows += [(user, item, t) for t, item in enumerate(items)]
    split = _train_only(rows)
    a, b = _ids(split, [1, 2])
    model = model_class(_catalog(split), **({"l2": 10.0} if model_class is EASE else {}))
    scores = model.fit(split).score(_batch([[a]]))[0]
    scores[[0, a]] = -torch.inf
    assert scores.argmax() == b


# ---------------------------------------------------------------- random


def test_random_scores_are_reproducible_per_seed_and_user_whatever_the_batch():
    model = RandomRecommender(Catalog(n_items=500), seed=3)
    first = model.score(_batch([[1], [2]], users=[5, 7]))
    second = model.score(_batch([[4, 4], [1, 9]], users=[7, 11]))
    torch.testing.assert_close(first[1], second[0])  # user 7, scored in two different batches
    assert not torch.equal(first[0], first[1])  # users differ
    assert not torch.equal(RandomRecommender(Catalog(n_items=500), seed=4).score(_batch([[1]], users=[5]))[0], first[0])
    assert first.dtype == torch.float32 and 0 <= first.min() and first.max() < 1
    assert 0.45 < first.mean() < 0.55  # uniform on [0, 1)


# ---------------------------------------------------------------- every model

MODELS = [
    (RandomRecommender, {"seed": 7}),
    (MostPopular, {}),
    (RecentPopular, {"half_life_days": 2.0}),
    (ItemKNN, {"k": 3, "shrink": 0.5}),
    (EASE, {"l2": 5.0}),
]


@pytest.fixture(scope="module")
def toy_split() -> Split:
    rng = np.random.default_rng(2)
    rows = [
        (u, int(i), int(t) * DAY) for u in range(1, 31) for t, i in enumerate(rng.choice(15, size=6, replace=False) + 1)
    ]
    return LeaveOneOut()(make_log(rows))


def _eval_batch(split: Split) -> dict[str, torch.Tensor]:
    """Every test user in one batch, with whole histories, as the evaluator receives them."""
    return next(iter(EvaluationData(split, batch_size=100_000).eval_dataloader("test")))


@pytest.mark.parametrize("model_class, params", MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_state_dict_round_trips_to_a_fresh_instance(model_class, params, toy_split):
    n, batch, catalog = toy_split.log.n_items, _eval_batch(toy_split), _catalog(toy_split)
    fitted = model_class(catalog, **params).fit(toy_split)
    fresh = model_class(catalog, **params)
    if model_class is not RandomRecommender:
        with pytest.raises(RuntimeError, match="before fit"):
            fresh.score(batch)
    fresh.load_state_dict(fitted.state_dict())
    scores = fitted.score(batch)
    assert scores.shape == (len(batch["user"]), n + 1) and scores.dtype == torch.float32
    assert scores[:, 1:].std() > 0  # not a constant
    torch.testing.assert_close(fresh.score(batch), scores, rtol=0, atol=0)


@pytest.mark.parametrize("model_class, params", MODELS, ids=lambda v: getattr(v, "__name__", ""))
def test_candidate_scores_are_the_columns_of_full_scores(model_class, params, toy_split):
    model = model_class(_catalog(toy_split), **params).fit(toy_split)
    batch = _eval_batch(toy_split)
    full = model.score(batch)
    shared = torch.tensor([3, 1, 7])
    torch.testing.assert_close(model.score(batch, shared), full[:, shared])
    per_row = torch.stack([batch["targets"][:, 0], torch.full_like(batch["user"], 2)], dim=1)  # (B, 2)
    torch.testing.assert_close(model.score(batch, per_row), full.gather(1, per_row))


def test_itemknn_sparse_similarity_for_large_catalogs_scores_like_the_dense_one(toy_split, monkeypatch):
    model = ItemKNN(_catalog(toy_split), k=3).fit(toy_split)
    batch = _eval_batch(toy_split)
    dense = model.score(batch)
    monkeypatch.setattr(baselines, "DENSE_SIMILARITY_MAX_ITEMS", 0)
    sparse_model = ItemKNN(_catalog(toy_split), k=3)
    sparse_model.load_state_dict(model.state_dict())
    assert sparse_model._by_neighbor().layout == torch.sparse_coo
    torch.testing.assert_close(sparse_model.score(batch), dense)


def test_fit_checks_the_catalog_size(toy_split):
    with pytest.raises(ValueError, match="n_items=3"):
        EASE(Catalog(n_items=3)).fit(toy_split)


def test_item_similarities_ignore_pairs_seen_only_in_held_out_rows():
    # every user's last two items (val, test) are 8 then 9: held-out co-occurrence only
    rows = [(u, i, t) for u in range(1, 6) for t, i in enumerate([1, 2, 3, 8, 9])]
    split = LeaveOneOut()(make_log(rows))
    a, hot_val, hot_test = _ids(split, [1, 8, 9])
    sim = ItemKNN(_catalog(split)).fit(split).similarity()
    assert not sim[hot_val].any() and not sim[:, hot_test].any()
    weights = EASE(_catalog(split), l2=1.0).fit(split).weights
    assert not weights[hot_val].any() and not weights[:, hot_test].any() and weights[a].any()


@pytest.mark.parametrize(
    "name, model_class",
    [
        ("random", RandomRecommender),
        ("pop", MostPopular),
        ("recent_pop", RecentPopular),
        ("itemknn", ItemKNN),
        ("ease", EASE),
    ],
)
def test_model_configs_build_with_the_catalog_from_the_entry_point(name, model_class):
    catalog = Catalog(n_items=5)
    model = build(OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{name}.yaml"), catalog=catalog)
    assert type(model) is model_class and model.n_items == 5 and model.catalog is catalog


# ---------------------------------------------------------------- memory preflight

MEMORY_ITEMS = 2_000
MIB = 2**20


def test_ease_refuses_a_catalog_whose_matrices_exceed_the_memory_limit(monkeypatch):
    # the float32 weights plus the Gram factor and its inverse in float64: 5 x 4 bytes x 2001^2 = 80,080,020 B
    need = 5 * 4 * (MEMORY_ITEMS + 1) ** 2
    assert f"{need / MIB:.0f}" == "76"
    monkeypatch.setenv(LIMIT_ENV, "50MB")
    with pytest.raises(InsufficientMemory) as refused:
        EASE(Catalog(n_items=MEMORY_ITEMS))
    message = str(refused.value)
    assert "EASE" in message and "2,000 items" in message
    assert "76 MiB" in message  # the need
    assert LIMIT_ENV in message and "50 MiB" in message  # the limit
    assert "item_core" in message and "itemknn" in message  # what to do instead
    monkeypatch.setenv(LIMIT_ENV, "100MB")  # above the need
    model = EASE(Catalog(n_items=MEMORY_ITEMS))
    assert model.weights.shape == (MEMORY_ITEMS + 1, MEMORY_ITEMS + 1)


def test_dense_itemknn_refuses_a_catalog_whose_similarity_exceeds_the_memory_limit(monkeypatch):
    # the dense float32 similarity, built and transposed: 2 x 4 bytes x 2001^2 = 32,032,008 B
    need = 2 * 4 * (MEMORY_ITEMS + 1) ** 2
    assert f"{need / MIB:.0f}" == "31"
    monkeypatch.setenv(LIMIT_ENV, "20MB")
    with pytest.raises(InsufficientMemory) as refused:
        ItemKNN(Catalog(n_items=MEMORY_ITEMS), k=10)
    message = str(refused.value)
    assert "ItemKNN" in message and "2,000 items" in message
    assert "31 MiB" in message and LIMIT_ENV in message and "20 MiB" in message
    assert "item_core" in message and "itemknn" in message
    monkeypatch.setenv(LIMIT_ENV, "40MB")  # above the need
    assert ItemKNN(Catalog(n_items=MEMORY_ITEMS), k=10).neighbors.shape == (MEMORY_ITEMS + 1, 10)
    # above the dense size the similarity is sparse, and its memory grows with k, not the catalog's square
    monkeypatch.setattr(baselines, "DENSE_SIMILARITY_MAX_ITEMS", MEMORY_ITEMS - 1)
    monkeypatch.setenv(LIMIT_ENV, "20MB")
    ItemKNN(Catalog(n_items=MEMORY_ITEMS), k=10)


# ---------------------------------------------------------------- real data


def _hit_rate_at_10(model, batch: dict[str, torch.Tensor]) -> float:
    scores = model.score(batch)
    scores.scatter_(1, batch["items"], -torch.inf)  # seen items (and padding column 0) cannot be recommended
    top = scores.topk(10, dim=1).indices  # (B, 10)
    return (top == batch["targets"][:, :1]).any(dim=1).float().mean().item()


def test_ease_beats_most_popular_on_ml100k(shared_data):
    log = build_log(MovieLens100K(shared_data / "ml-100k", download=False).load(), EventSchema({"rating": 1.0}))
    split = LeaveOneOut()(log)
    batch = _eval_batch(split)
    assert batch["targets"].shape == (943, 1)
    catalog = _catalog(split)
    popular = _hit_rate_at_10(MostPopular(catalog).fit(split), batch)
    ease = _hit_rate_at_10(EASE(catalog).fit(split), batch)
    assert popular > 0.03  # a real signal, not noise (random is ~0.006)
    assert ease > 1.3 * popular, (ease, popular)  # measured: 0.141 against 0.086
