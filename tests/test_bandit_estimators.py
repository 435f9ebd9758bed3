"""Off-policy estimators: hand-computed values, IPS = replay under a uniform logger, unbiasedness on the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from marquee.bandits.estimators import (
    ESTIMATORS,
    diagnostics,
    dr_os,
    estimator_terms,
    evaluate_policy,
    slope,
    switch_dr,
)
from marquee.bandits.features import cross_features
from marquee.bandits.logs import BanditLog, Candidates
from marquee.bandits.policies import EpsilonMixture, LinearTS, LinUCB, UniformPolicy
from marquee.bandits.reward_model import LogisticRewardModel, cross_fit_q_hat
from marquee.bandits.simulator import ArtworkSimulator, SimulatorConfig

# four rows, two arms: what was shown, with which propensity, and what happened
ACTION = np.array([0, 1, 0, 1])
PROPENSITY = np.array([0.5, 0.25, 0.8, 0.5])
REWARD = np.array([1.0, 0.0, 1.0, 1.0])
TARGET = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.0, 1.0]])
Q_HAT = np.array([[0.6, 0.2], [0.4, 0.5], [0.3, 0.1], [0.7, 0.9]])
# weights 1.8, 2.0, 0.25, 2.0; direct-method terms 0.56, 0.45, 0.14, 0.9
HAND = {
    "ips": (1.8 + 0 + 0.25 + 2.0) / 4,
    "snips": 4.05 / 6.05,
    "replay": (0.9 + 0.0 + 0.2 + 1.0) / (0.9 + 0.5 + 0.2 + 1.0),
    "dm": (0.56 + 0.45 + 0.14 + 0.9) / 4,
    "dr": (1.28 - 0.55 + 0.315 + 1.1) / 4,
    "sndr": (0.56 + 0.45 + 0.14 + 0.9 + (1.8 * 0.4 - 2.0 * 0.5 + 0.25 * 0.7 + 2.0 * 0.1) / 1.5125) / 4,
}


def _hand_log() -> BanditLog:
    return BanditLog(np.zeros((4, 1)), Candidates(np.tile([0, 1], (4, 1)), np.eye(2)), ACTION, PROPENSITY, REWARD)


@pytest.mark.parametrize("name", list(HAND))
def test_estimators_on_a_hand_computed_log(name):
    terms = estimator_terms(_hand_log(), TARGET, Q_HAT, [name])[name]
    assert terms.value == pytest.approx(HAND[name], abs=1e-12)


def test_switch_dr_and_shrinkage_at_a_fixed_lambda():
    log = _hand_log()
    # λ = 1.9 keeps the residuals of rows 0 and 2 (weights 1.8, 0.25) and drops rows 1 and 3 (weight 2)
    assert switch_dr(log, TARGET, Q_HAT, lambdas=(1.9,)).value == pytest.approx((1.28 + 0.45 + 0.315 + 0.9) / 4)
    shrunk = [1.8 / (1.8**2 + 1), 2 / 5, 0.25 / (0.25**2 + 1), 2 / 5]  # λw / (w² + λ) at λ = 1
    expected = np.mean([0.56 + shrunk[0] * 0.4, 0.45 - shrunk[1] * 0.5, 0.14 + shrunk[2] * 0.7, 0.9 + shrunk[3] * 0.1])
    assert dr_os(log, TARGET, Q_HAT, lambdas=(1.0,)).value == pytest.approx(expected)
    # λ = ∞ is plain DR for both
    assert switch_dr(log, TARGET, Q_HAT, lambdas=(np.inf,)).value == pytest.approx(HAND["dr"])
    assert dr_os(log, TARGET, Q_HAT, lambdas=(np.inf,)).value == pytest.approx(HAND["dr"])


def test_diagnostics_and_bootstrap_interval_on_the_hand_log():
    w = np.array([1.8, 2.0, 0.25, 2.0])
    d = diagnostics(w)
    assert d["ess"] == pytest.approx(6.05**2 / (w**2).sum()) and d["max_weight"] == 2.0
    table = evaluate_policy(_hand_log(), TARGET, Q_HAT, n_boot=500)
    assert (table["ci_low"] <= table["value"] + 1e-12).all() and (table["value"] <= table["ci_high"] + 1e-12).all()
    assert np.isnan(table.loc["dm", "ess"]) and table.loc["ips", "max_weight"] == 2.0


def test_slope_keeps_the_unbiased_candidate_until_a_narrower_one_disagrees():
    rng = np.random.default_rng(0)
    wide = rng.normal(1.0, 3.0, 2000)  # unbiased, noisy
    agreeing = rng.normal(1.0, 1.0, 2000)
    biased = rng.normal(3.0, 0.1, 2000)  # precise but far off
    assert slope([wide, agreeing]) == 1
    assert slope([wide, agreeing, biased]) == 1


def test_a_target_that_is_not_a_distribution_is_refused():
    with pytest.raises(ValueError, match="target row 1 is not a probability distribution"):
        estimator_terms(_hand_log(), np.array([[1.0, 0.0], [0.7, 0.7], [0.5, 0.5], [0.5, 0.5]]), Q_HAT)
    with pytest.raises(ValueError, match="needs a reward model"):
        estimator_terms(_hand_log(), TARGET, None, ["dr"])


@pytest.fixture(scope="module")
def sim() -> ArtworkSimulator:
    # no per-title or per-artwork appeal: a logistic model on cross features is then exactly right (DM unbiased)
    return ArtworkSimulator.synthetic(n_users=300, n_titles=60, n_genres=4,
                                      config=SimulatorConfig(title_spread=0.0, artwork_noise=0.0, seed=3))


def test_ips_equals_replay_for_a_deterministic_target_under_a_uniform_logger(sim):
    """On a log where every request was shown each of its K artworks once (propensity 1/K), IPS and replay are
    the same number; on an ordinary uniform log they agree within sampling noise."""
    rng = np.random.default_rng(0)
    req = sim.requests(500, rng)
    k = sim.config.n_artworks
    rows = np.repeat(np.arange(len(req)), k)
    context, arms = sim.context(req)[rows], sim.candidates(req).take(rows)
    action = np.tile(np.arange(k), len(req))
    reward = (rng.random(len(rows)) < sim.play_probabilities(req)[rows, action]).astype(float)
    balanced = BanditLog(context, arms, action, np.full(len(rows), 1 / k), reward)
    for target_policy in (sim.best_artwork_policy(), LinUCB(alpha=0.0).fit(sim.simulate_log(UniformPolicy(), 500, 9))):
        target = target_policy.action_probabilities(balanced.context, balanced.candidates)
        assert set(np.unique(target)) == {0.0, 1.0}  # deterministic
        terms = estimator_terms(balanced, target, estimators=["ips", "replay"])
        assert terms["ips"].value == pytest.approx(terms["replay"].value, abs=1e-12)

    log = sim.simulate_log(UniformPolicy(), 4000, seed=1)
    table = evaluate_policy(log, sim.best_artwork_policy().action_probabilities(log.context, log.candidates),
                            estimators=["ips", "replay"], n_boot=300)
    assert abs(table.loc["ips", "value"] - table.loc["replay", "value"]) < table.loc["ips", "ci_high"] - table.loc[
        "ips", "ci_low"]


def _replicates(sim: ArtworkSimulator, logger, targets: dict, n_logs: int = 16, n_rows: int = 2000,
                claimed_propensity: float | None = None) -> dict:
    """For each target and estimator: (estimate − true value on the log's requests) and CI coverage, per log."""
    out = {(t, e): ([], []) for t in targets for e in ESTIMATORS}
    for r in range(n_logs):
        log = sim.simulate_log(logger, n_rows, seed=100 + r)
        if claimed_propensity is not None:  # a log whose propensities were recorded wrongly
            log = BanditLog(log.context, log.candidates, log.action, np.full(n_rows, claimed_propensity), log.reward,
                            log.context_names, meta=log.meta)
        q_hat = cross_fit_q_hat(lambda: LogisticRewardModel(l2=1e-3), log, cross_features, n_folds=2, seed=r)
        req = sim.requests_of(log)
        for name, policy in targets.items():
            target = policy.action_probabilities(log.context, log.candidates)
            truth = sim.value_on(req, target)
            table = evaluate_policy(log, target, q_hat, n_boot=200, seed=r)
            for e in ESTIMATORS:
                errors, covered = out[(name, e)]
                errors.append(table.loc[e, "value"] - truth)
                covered.append(table.loc[e, "ci_low"] <= truth <= table.loc[e, "ci_high"])
    return out


def _t(errors: list[float]) -> float:
    errors = np.asarray(errors)
    return float(errors.mean() / (errors.std(ddof=1) / np.sqrt(len(errors))))


@pytest.mark.slow
@pytest.mark.parametrize("logger_name", ["uniform", "production"])
def test_each_estimator_is_unbiased_on_the_simulator_within_its_ci(sim, logger_name):
    """Over 16 independent logs, each estimator's mean error against the known true value is within 3.5 standard
    errors of zero, and its 95% bootstrap CI covers the true value on most logs. Targets are stochastic; the
    reward model is a barely regularized logistic regression, correctly specified for this simulator."""
    pilot = sim.simulate_log(UniformPolicy(), 1500, seed=7)
    targets = {"linear TS": LinearTS(scale=0.5, n_samples=300).fit(pilot),
               "LinUCB ε=0.3": EpsilonMixture(LinUCB(alpha=0.0).fit(pilot), 0.3)}
    logger = UniformPolicy() if logger_name == "uniform" else sim.production_policy()
    results = _replicates(sim, logger, targets)
    for (target, estimator), (errors, covered) in results.items():
        if estimator == "replay" and logger_name != "uniform":
            continue  # replay assumes a uniform logger
        assert abs(_t(errors)) < 3.5, f"{estimator} on {target}: mean error {np.mean(errors):+.4f}, t={_t(errors):.1f}"
        if estimator != "dm":  # DM's row bootstrap holds the reward model fixed, so it omits the model's error
            assert np.mean(covered) >= 0.75, f"{estimator} on {target}: CI covered the truth on {np.mean(covered):.0%}"


@pytest.mark.slow
def test_wrong_propensities_make_ips_visibly_biased(sim):
    """The unbiasedness check has teeth: a production log that claims uniform propensities fails it."""
    pilot = sim.simulate_log(UniformPolicy(), 1500, seed=7)
    targets = {"LinUCB ε=0.3": EpsilonMixture(LinUCB(alpha=0.0).fit(pilot), 0.3)}
    results = _replicates(sim, sim.production_policy(), targets, claimed_propensity=1 / sim.config.n_artworks)
    assert abs(_t(results[("LinUCB ε=0.3", "ips")][0])) > 3.5
