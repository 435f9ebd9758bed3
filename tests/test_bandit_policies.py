"""Policies: distributions over candidates, learning the planted best artwork, learning online."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marquee.bandits.logs import Candidates
from marquee.bandits.obd import load_obd, position_columns
from marquee.bandits.online import run_online
from marquee.bandits.policies import (
    ArmDistributionPolicy,
    EpsilonGreedy,
    EpsilonMixture,
    LinearTS,
    LinUCB,
    NeuralLinear,
    SoftmaxPolicy,
    UniformPolicy,
)
from marquee.bandits.policies.static import bernoulli_ts_distribution
from marquee.bandits.reward_model import NeuralRewardModel
from marquee.bandits.simulator import ArtworkSimulator, SimulatorConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sim() -> ArtworkSimulator:
    # strong, clean effects: the best artwork for a member and hour is planted by taste and tone alone
    return ArtworkSimulator.synthetic(n_users=300, n_titles=60, n_genres=4,
                                      config=SimulatorConfig(title_spread=0.0, artwork_noise=0.0, taste_effect=2.0,
                                                             tone_effect=2.0, seed=5))


def _policies(seed: int = 0) -> dict:
    model = {"epochs": 30, "lr": 1e-2, "seed": seed}
    return {
        "LinUCB": LinUCB(alpha=0.0),
        "linear TS": LinearTS(scale=0.05, n_samples=200),
        "NeuralLinear": NeuralLinear(scale=0.05, n_samples=200, model=NeuralRewardModel(hidden=(64,), **model)),
        "ε-greedy": EpsilonGreedy(epsilon=0.0, model=NeuralRewardModel(hidden=(32,), **model)),
        "softmax": SoftmaxPolicy(temperature=0.05, model=NeuralRewardModel(hidden=(32,), **model)),
    }


@pytest.mark.slow
def test_policies_trained_offline_pick_the_planted_best_artwork(sim):
    """Trained on a uniform log, each policy shows the planted best artwork wherever it clearly is the best
    (its play probability beats the runner-up's by 0.1 or more, four requests in five), and loses under 5% of
    the best artwork's value overall."""
    train = sim.simulate_log(UniformPolicy(), 4000, seed=1)
    req = sim.requests(1500, np.random.default_rng(2))
    context, arms, play = sim.context(req), sim.candidates(req), sim.play_probabilities(req)
    planted, ranked = play.argmax(axis=1), np.sort(play, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] >= 0.1
    assert clear.mean() > 0.7
    control = UniformPolicy().action_probabilities(context, arms).argmax(axis=1)
    assert (control == planted)[clear].mean() < 0.5  # an untrained choice mostly misses, so the check has teeth
    for name, policy in _policies().items():
        picked = policy.fit(train).action_probabilities(context, arms).argmax(axis=1)
        hit = (picked == planted)[clear].mean()
        value = play[np.arange(len(req)), picked].mean() / ranked[:, -1].mean()
        assert hit >= 0.85 and value >= 0.95, f"{name}: planted best on {hit:.0%} of clear requests, value {value:.1%}"


def test_every_policy_gives_a_distribution_over_each_rows_candidates(sim):
    train = sim.simulate_log(UniformPolicy(), 400, seed=3)
    req = sim.requests(50, np.random.default_rng(4))
    ids = sim.candidates(req).ids.copy()
    ids[::3, -1] = -1  # some rows have one artwork fewer
    arms = Candidates(ids, sim.arm_table)
    policies = {**_policies(), "uniform": UniformPolicy(), "production": sim.production_policy(),
                "best artwork": sim.best_artwork_policy(), "mixture": EpsilonMixture(sim.production_policy(), 0.2)}
    for name, policy in policies.items():
        for p in (policy.fit(train).action_probabilities(sim.context(req), arms),):
            assert np.allclose(p.sum(axis=1), 1.0) and (p >= 0).all(), name
            assert (p[ids < 0] == 0).all(), f"{name} puts mass on an empty slot"
            slots = policy.sample(sim.context(req), arms, np.random.default_rng(0))
            assert (ids[np.arange(len(ids)), slots] >= 0).all(), f"{name} sampled an empty slot"


def test_linucb_learns_online_and_beats_uniform(sim):
    linucb = run_online(sim, LinUCB(alpha=0.3), 1500, seed=11)
    uniform = run_online(sim, UniformPolicy(), 1500, seed=11)
    assert linucb.regret[-1] < 0.6 * uniform.regret[-1]
    assert linucb.expected[750:].mean() > uniform.expected[750:].mean() + 0.05


def test_vowpal_wabbit_runs_on_the_same_stream(sim):
    pytest.importorskip("vowpalwabbit")
    from marquee.bandits.policies.vw import VowpalWabbitPolicy

    vw = VowpalWabbitPolicy("--squarecb")
    run = run_online(sim, vw, 600, seed=11)
    assert run.expected[300:].mean() > run_online(sim, UniformPolicy(), 600, seed=11).expected[300:].mean()
    req = sim.requests(20, np.random.default_rng(0))
    p = vw.action_probabilities(sim.context(req), sim.candidates(req))
    assert np.allclose(p.sum(axis=1), 1.0) and (p > 0).all()  # squarecb keeps every arm possible


def test_bernoulli_ts_distribution_ranks_the_clearly_best_arm_first():
    alpha, beta = np.array([900.0, 10.0, 10.0, 10.0]), np.array([100.0, 990.0, 990.0, 990.0])
    dist = bernoulli_ts_distribution(alpha, beta, n_positions=2, n_sim=20_000, seed=0)
    assert dist.shape == (2, 4) and np.allclose(dist.sum(axis=1), 1.0)
    assert dist[0, 0] == 1.0 and dist[1, 0] == 0.0 and np.allclose(dist[1, 1:], 1 / 3, atol=0.02)


def test_logged_frequencies_policy_reads_the_position_from_the_obd_context(shared_data):
    bts = load_obd(shared_data / "obd", "bts", "men")
    policy = ArmDistributionPolicy.from_log(bts, position_columns(bts.context_names))
    p = policy.action_probabilities(bts.context, bts.candidates)
    assert np.allclose(p.sum(axis=1), 1.0)
    # on the rows of position 2, the probability of each item is its share of the position-2 impressions
    rows = np.flatnonzero(bts.position == 1)
    shares = np.bincount(bts.action[rows], minlength=34) / len(rows)
    assert np.allclose(p[rows[0]], shares)
