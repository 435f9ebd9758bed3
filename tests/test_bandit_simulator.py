"""The artwork simulator on MovieLens-100K: artworks follow titles' genres, plays follow taste and hour, truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from marquee.bandits.online import run_online
from marquee.bandits.policies import LinearTS, UniformPolicy
from marquee.bandits.simulator import TONES, ArtworkSimulator
from marquee.config_dir import CONFIG_DIR
from marquee.data.pipeline import load_log


@pytest.fixture(scope="module")
def ml100k(shared_data):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data=ml100k", "paths.output_dir=/tmp/marquee-test"])
    return load_log(cfg.data)


@pytest.fixture(scope="module")
def sim(ml100k) -> ArtworkSimulator:
    return ArtworkSimulator.from_interaction_log(ml100k)


def test_artworks_show_the_titles_genres_then_tones(ml100k, sim):
    toy_story = int(np.flatnonzero(ml100k.item_meta.loc[sim.title_ids, "title"].to_numpy() == "Toy Story")[0])
    art = sim.title_artworks(np.array([toy_story]))[0]
    shown = [sim.genre_names[g] for g in sim.artwork_genre[art] if g >= 0]
    assert shown == ["Animation", "Children's", "Comedy"] and sim.artwork_tone[art[3]] >= 0
    assert (sim.arm_table.sum(axis=1) == 1).all()  # each artwork shows exactly one genre or tone


def test_tastes_come_from_histories(ml100k, sim):
    # the members who rated the most horror have the highest horror taste
    horror = sim.genre_names.index("Horror")
    is_horror = ml100k.item_meta["genres"].map(lambda g: "Horror" in g)
    per_user = ml100k.interactions.assign(h=is_horror.reindex(ml100k.interactions["item_id"]).to_numpy())
    share = per_user.groupby("user_id")["h"].mean().reindex(sim.user_ids).to_numpy()
    top, bottom = np.argsort(share)[-50:], np.argsort(share)[:50]
    assert sim.taste[top, horror].mean() > 1.5 and sim.taste[bottom, horror].mean() < 0


def test_plays_follow_taste_for_genre_art_and_hour_for_tone_art(sim):
    log = sim.simulate_log(UniformPolicy(), 60_000, seed=0)
    genre = sim.artwork_genre[log.chosen_arm]
    taste = np.where(genre >= 0, sim.taste[sim.requests_of(log).user, np.maximum(genre, 0)], np.nan)
    assert log.reward[taste > 1].mean() > log.reward[taste < -0.5].mean() + 0.1
    dark = sim.artwork_tone[log.chosen_arm] == TONES.index("dark")
    night, morning = log.meta["hour"].to_numpy() < 6, (log.meta["hour"].to_numpy() // 6) == 1
    assert log.reward[dark & night].mean() > log.reward[dark & morning].mean() + 0.1


def test_a_logs_mean_reward_matches_the_policys_true_value(sim):
    for policy in (UniformPolicy(), sim.production_policy(), sim.best_artwork_policy()):
        log = sim.simulate_log(policy, 40_000, seed=1)
        se = log.reward.std() / np.sqrt(len(log))
        assert abs(log.reward.mean() - sim.true_value(policy, n=100_000)) < 3.5 * se + 0.002, policy.name
        assert np.allclose(log.propensity, policy.action_probabilities(log.context, log.candidates)[
            np.arange(len(log)), log.action])


def test_best_single_artwork_values_are_exact(sim):
    values = sim.artwork_values()
    rng = np.random.default_rng(0)
    for title in (0, 100, 500):
        req = sim.requests(30_000, rng)
        req = type(req)(req.user, np.full(len(req), title), req.hour)  # the same members and hours, one title
        monte_carlo = sim.play_probabilities(req).mean(axis=0)
        assert np.allclose(monte_carlo, values[sim.title_artworks(np.array([title]))[0]], atol=0.006)
    assert sim.true_value(sim.best_artwork_policy()) > sim.true_value(UniformPolicy()) + 0.03


def test_the_same_seed_gives_every_policy_the_same_stream():
    sim = ArtworkSimulator.synthetic()
    a, b = run_online(sim, LinearTS(scale=0.3), 300, seed=4), run_online(sim, LinearTS(scale=0.3), 300, seed=4)
    assert np.array_equal(a.expected, b.expected) and np.array_equal(a.reward, b.reward)
    uniform = run_online(sim, UniformPolicy(), 300, seed=4)
    assert np.array_equal(uniform.best, a.best)  # same requests, so the same best artwork each round
    assert np.allclose(uniform.regret, np.cumsum(uniform.best - uniform.expected))


def test_a_user_state_from_another_model_joins_the_context(ml100k):
    state = np.arange((ml100k.n_users + 1) * 2, dtype=np.float32).reshape(-1, 2)  # row = user id
    sim = ArtworkSimulator.from_interaction_log(ml100k, user_state=state)
    req = sim.requests(5, np.random.default_rng(0))
    assert sim.context_names[-2:] == ("state:0", "state:1")
    assert np.array_equal(sim.context(req)[:, -2:], state[sim.user_ids[req.user]])
