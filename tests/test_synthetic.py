"""The synthetic log: its planted structure is really there, and generation, caching and loading hold up."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from marquee.config_dir import CONFIG_DIR
from marquee.data import synthetic
from marquee.data.build import build_log
from marquee.data.events import EventSchema
from marquee.data.loaders.synthetic import SyntheticLog
from marquee.data.synthetic import MANIFEST, SyntheticConfig, generate_frame, is_complete, write_synthetic

CFG = SyntheticConfig(n_users=1_000, n_items=500, n_interactions=50_000, chunk_size=20_000)
NIGHT, AFTERNOON = [22, 23, 0, 1, 2], [13, 14, 15, 16, 17]


@pytest.fixture(scope="module")
def log() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, synthetic.Truth]:
    return generate_frame(CFG)


def _genre_share(interactions: pd.DataFrame, truth: synthetic.Truth) -> np.ndarray:
    """(N, G): each interaction spread evenly over its item's genres."""
    genres = truth.item_genres.astype(float)
    return (genres / genres.sum(1, keepdims=True))[interactions["item_id"].to_numpy() - 1]


def _genre(truth: synthetic.Truth, name: str) -> int:
    return list(truth.genre_names).index(name)


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


@pytest.mark.parametrize("chunk_size", [1_000, 20_000, 10**9])
def test_exact_total_and_minimum_per_user_whatever_the_chunking(chunk_size):
    cfg = dataclasses.replace(CFG, n_interactions=12_345, chunk_size=chunk_size)
    interactions = generate_frame(cfg)[0]
    per_user = interactions.groupby("user_id").size()
    assert len(interactions) == 12_345
    assert per_user.index.tolist() == list(range(1, cfg.n_users + 1))
    assert per_user.min() >= cfg.min_per_user
    assert per_user.max() > 5 * per_user.median()  # heavy-tailed activity


def test_same_seed_same_log_other_seed_differs():
    small = dataclasses.replace(CFG, n_interactions=10_000)
    first, again = generate_frame(small), generate_frame(small)
    for a, b in zip(first[:3], again[:3]):
        pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(first[3].tastes, again[3].tastes)
    other = generate_frame(dataclasses.replace(small, seed=1))[0]
    assert not np.array_equal(first[0]["item_id"], other["item_id"])


def test_items_have_one_to_three_genres_and_every_genre_has_items(log):
    truth = log[3]
    per_item = truth.item_genres.sum(1)
    assert per_item.min() == 1 and per_item.max() == 3
    assert truth.item_genres.any(0).all()
    assert log[1]["genres"].map(len).tolist() == per_item.tolist()


@pytest.mark.parametrize("exponent", [0.5, 1.0])
def test_item_popularity_follows_the_planted_zipf_exponent(exponent):
    cfg = dataclasses.replace(CFG, popularity_exponent=exponent)
    plays = np.bincount(generate_frame(cfg)[0]["item_id"] - 1, minlength=cfg.n_items)
    freq = np.sort(plays)[::-1]
    rank = np.arange(1, cfg.n_items + 1)
    head = rank <= cfg.n_items // 2  # the tail is too sparse at this size to fit
    slope = np.polyfit(np.log(rank[head]), np.log(freq[head]), 1)[0]
    assert abs(-slope - exponent) < 0.15  # measured: 0.55 for 0.5, 0.90-0.97 for 1.0
    if exponent == 1.0:
        assert freq[: cfg.n_items // 10].sum() / freq.sum() > 0.45  # top 10% of items: measured 0.57-0.63


def test_users_genre_mix_follows_their_planted_taste(log):
    interactions, _, _, truth = log
    users = interactions["user_id"].to_numpy() - 1
    mix = np.zeros_like(truth.tastes, dtype=float)  # (U, G)
    np.add.at(mix, users, _genre_share(interactions, truth))
    active = np.bincount(users) >= 30
    corr = _row_corr(mix[active], truth.tastes[active])
    shuffled = _row_corr(mix[active], np.random.default_rng(0).permutation(truth.tastes[active]))
    assert corr.mean() > 0.7  # measured 0.85-0.87 over three seeds
    assert shuffled.mean() < 0.3


def test_genres_follow_the_hour_of_day():
    def shares(hour_strength: float) -> tuple[float, float]:
        interactions, _, _, truth = generate_frame(dataclasses.replace(CFG, hour_strength=hour_strength))
        share = _genre_share(interactions, truth)
        night, afternoon = interactions["hour"].isin(NIGHT), interactions["hour"].isin(AFTERNOON)
        horror, kids = share[:, _genre(truth, "Horror")], share[:, _genre(truth, "Kids")]
        return horror[night].mean() / horror[afternoon].mean(), kids[afternoon].mean() / kids[night].mean()

    horror, kids = shares(1.0)
    assert horror > 1.5 and kids > 2.0  # measured 1.6-2.4 and 2.6-4.0
    horror, kids = shares(0.0)
    assert 0.8 < horror < 1.25 and 0.8 < kids < 1.25  # the effect comes from hour_strength alone


def test_mobile_watch_fractions_are_lower_than_tv():
    def gap(device_strength: float) -> float:
        interactions = generate_frame(dataclasses.replace(CFG, device_strength=device_strength))[0]
        mean = interactions.groupby("device", observed=True)["value"].mean()
        return mean["tv"] - mean["mobile"]

    assert gap(1.0) > 0.07  # measured 0.12
    assert abs(gap(0.0)) < 0.03


def test_watch_fraction_rises_with_taste_for_the_genre(log):
    interactions, _, _, truth = log
    users, items = interactions["user_id"].to_numpy() - 1, interactions["item_id"].to_numpy() - 1
    taste = (truth.tastes[users] * truth.item_genres[items]).max(1)  # best-liked genre of the item
    assert np.corrcoef(taste, interactions["value"])[0, 1] > 0.25  # measured 0.40


def test_events_agree_with_watch_fraction(log):
    interactions = log[0]
    value, event = interactions["value"].to_numpy(), interactions["event"].astype(str).to_numpy()
    assert ((value >= 0) & (value <= 1)).all()
    expected = np.where(value < 0.1, "skip", np.where(value >= 0.9, "complete", "play"))
    np.testing.assert_array_equal(event, expected)
    assert set(event) == {"skip", "play", "complete"}


def test_timestamps_hours_and_weekdays_agree(log):
    interactions = log[0]
    ts = interactions["timestamp"].to_numpy()
    stamps = pd.to_datetime(ts, unit="s", utc=True)
    np.testing.assert_array_equal(interactions["hour"], stamps.hour)
    np.testing.assert_array_equal(interactions["dow"], stamps.day_of_week)
    assert ts.min() >= CFG.t0 and ts.max() < CFG.t0 + CFG.span_days * 86_400
    same_user = np.diff(interactions["user_id"].to_numpy()) == 0
    assert (np.diff(ts)[same_user] >= 0).all()  # each user's events come in time order
    by_hour = np.bincount(interactions["hour"], minlength=24)
    assert by_hour[19:23].sum() > 3 * by_hour[2:6].sum()  # evenings are busier than before dawn


def test_streamed_parquet_equals_the_in_memory_frame(tmp_path, monkeypatch, log):
    monkeypatch.setattr(synthetic, "ROW_GROUP_ROWS", 15_000)  # several row groups and sampling chunks per file
    write_synthetic(CFG, tmp_path, progress=False)
    interactions, items, users, truth = log
    assert pq.ParquetFile(tmp_path / "interactions.parquet").metadata.num_row_groups == 3
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "interactions.parquet"), interactions)
    read_items = pd.read_parquet(tmp_path / "items.parquet")
    read_items["genres"] = read_items["genres"].map(list)
    pd.testing.assert_frame_equal(read_items, items)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "users.parquet"), users)
    with np.load(tmp_path / "truth.npz") as saved:
        np.testing.assert_array_equal(saved["tastes"], truth.tastes)
        np.testing.assert_array_equal(saved["hour_profiles"], truth.hour_profiles)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["config"] == dataclasses.asdict(CFG)
    assert is_complete(tmp_path, CFG) and not is_complete(tmp_path, dataclasses.replace(CFG, seed=1))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_loader_and_build_log_give_the_configured_sizes(tmp_path):
    raw = SyntheticLog(tmp_path, n_users=300, n_items=200, n_interactions=6_000, seed=3).load()
    assert raw.line_offset == 0 and raw.interactions.index.equals(pd.RangeIndex(6_000))
    assert isinstance(raw.item_meta["genres"].iloc[0], list)
    log = build_log(raw, EventSchema(types={"play": 1.0, "complete": 2.0, "skip": {"weight": 1.0, "positive": False}}))
    assert (len(log), log.n_users) == (6_000, 300)
    assert log.n_items == raw.interactions["item_id"].nunique() <= 200
    assert log.context_columns == ["hour", "dow", "device"]
    assert log.genres.raw_ids.size == 18
    assert set(log.user_meta.columns) == {"age", "preferred_device"}


def test_cache_without_its_manifest_is_regenerated_not_trusted(tmp_path):
    source = SyntheticLog(tmp_path, n_users=100, n_items=50, n_interactions=2_000)
    first = source.load().interactions
    assert source.path.parent == tmp_path and is_complete(source.path, source.config)
    (source.path / MANIFEST).unlink()
    (source.path / "interactions.parquet").write_bytes(b"half-written")  # what a crash could leave
    assert not is_complete(source.path)
    pd.testing.assert_frame_equal(source.load().interactions, first)
    assert is_complete(source.path, source.config)


def test_cache_folder_depends_on_the_whole_config(tmp_path):
    base = SyntheticLog(tmp_path, n_users=100, n_items=50, n_interactions=2_000)
    assert base.path == SyntheticLog(tmp_path, n_users=100, n_items=50, n_interactions=2_000).path
    assert base.path != SyntheticLog(tmp_path, n_users=100, n_items=50, n_interactions=2_000, seed=1).path
    assert base.path != SyntheticLog(tmp_path, n_users=100, n_items=50, n_interactions=2_000, hour_strength=0.5).path


def test_data_config_builds_the_log(tmp_path):
    cfg = OmegaConf.load(CONFIG_DIR / "data" / "synthetic.yaml")
    cfg.source.cache_dir = str(tmp_path)
    log = build_log(instantiate(cfg.source).load(), instantiate(cfg.events), instantiate(cfg.filters))
    assert (len(log), log.n_users) == (cfg.source.n_interactions, cfg.source.n_users)
    assert log.events.names == ["play", "complete", "skip"]
    # a skip weighs 1 but is no target: only plays and completes are positive (id 0 is padding)
    assert log.events.weights().tolist() == [0.0, 1.0, 2.0, 1.0]
    assert log.events.positive().tolist() == [False, True, True, False]
    skipped = log.interactions["event"] == "skip"
    assert skipped.any() and not log.events.is_positive(log.interactions["event"])[skipped.to_numpy()].any()
    assert log.events.is_positive(log.interactions["event"])[~skipped.to_numpy()].all()


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="n_interactions"):
        SyntheticConfig(n_users=100, n_interactions=400)
    with pytest.raises(ValueError, match="min_per_user"):
        SyntheticConfig(min_per_user=2)


def test_command_line_writes_a_complete_folder(tmp_path, capsys):
    args = ["--n-interactions", "1500", "--n-users", "100", "--n-items", "40", "--out", str(tmp_path), "--no-progress"]
    synthetic.main(args)
    assert is_complete(tmp_path, SyntheticConfig(n_users=100, n_items=40, n_interactions=1_500))
    assert "1,500 interactions" in capsys.readouterr().out
