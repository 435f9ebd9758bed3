"""The offline A/B report, its estimates plot and estimator-accuracy table, and ``marquee.bandit`` on simulated
and OBD logs."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from marquee.bandit import run
from marquee.bandits.artwork_logs import read_artwork_log
from marquee.bandits.estimator_accuracy import accuracy_table, format_accuracy, repeated_estimates
from marquee.bandits.features import cross_features
from marquee.bandits.policies import LinUCB, UniformPolicy
from marquee.bandits.report import LOGGING, estimates_figure, format_report, offline_ab_report
from marquee.bandits.reward_model import LogisticRewardModel, cross_fit_q_hat
from marquee.bandits.simulator import ArtworkSimulator, SimulatorConfig
from marquee.config_dir import CONFIG_DIR
from marquee.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setting():
    sim = ArtworkSimulator.synthetic(config=SimulatorConfig(taste_effect=2.0, seed=2))
    trained = LinUCB(alpha=0.0).fit(sim.simulate_log(UniformPolicy(), 3000, seed=0))
    log = sim.simulate_log(sim.production_policy(), 4000, seed=1)
    targets = {name: p.action_probabilities(log.context, log.candidates)
               for name, p in (("uniform", UniformPolicy()), ("LinUCB", trained))}
    q_hat = cross_fit_q_hat(lambda: LogisticRewardModel(1.0), log, cross_features)
    return sim, log, targets, q_hat, trained


def test_report_values_every_policy_against_the_logging_policy_with_paired_cis(setting):
    sim, log, targets, q_hat, trained = setting
    report = offline_ab_report(log, targets, q_hat, estimators=("snips", "dr"), n_boot=400)
    assert list(report.index) == [(LOGGING, "on-policy"), ("uniform", "snips"), ("uniform", "dr"),
                                  ("LinUCB", "snips"), ("LinUCB", "dr")]
    assert report.loc[(LOGGING, "on-policy"), "value"] == pytest.approx(log.reward.mean())
    linucb = report.loc[("LinUCB", "dr")]
    assert linucb["diff_low"] > 0 and linucb["p_not_better"] < 0.05  # clearly better than the logger
    assert linucb["ci_low"] <= sim.true_value(trained, n=50_000) <= linucb["ci_high"]
    # pairing: the difference's interval is narrower than the two separate intervals put end to end
    logging = report.loc[(LOGGING, "on-policy")]
    assert linucb["diff_high"] - linucb["diff_low"] < (linucb["ci_high"] - linucb["ci_low"]) + (
        logging["ci_high"] - logging["ci_low"])
    text = format_report(report)
    assert text.count("\n") == len(report) + 1 and "| LinUCB | dr |" in text


def test_report_against_a_named_baseline_and_without_a_reward_model(setting):
    _, log, targets, q_hat, _ = setting
    report = offline_ab_report(log, targets, None, estimators=("ips", "dr"), baseline="uniform", n_boot=200)
    assert {e for _, e in report.index} == {"on-policy", "ips"}  # DR needs q_hat and is left out
    assert report.loc[("uniform", "ips"), "diff"] == 0.0
    assert report.loc[("LinUCB", "ips"), "diff"] == pytest.approx(
        report.loc[("LinUCB", "ips"), "value"] - report.loc[("uniform", "ips"), "value"])
    with pytest.raises(ValueError, match="baseline 'nope'"):
        offline_ab_report(log, targets, q_hat, baseline="nope")


def test_estimates_figure_draws_each_estimators_value_and_ci_per_policy_beside_the_truth(setting):
    sim, log, targets, q_hat, trained = setting
    report = offline_ab_report(log, targets, q_hat, estimators=("ips", "snips", "dr"), n_boot=200)
    truth = {"uniform": sim.true_value(UniformPolicy(), n=20_000), "LinUCB": sim.true_value(trained, n=20_000)}
    report["true_value"] = [truth.get(p, np.nan) for p, _ in report.index]
    fig = estimates_figure(report)
    assert [ax.get_title() for ax in fig.axes] == ["uniform", "LinUCB"]  # a panel per candidate, none for the logger
    for ax, policy in zip(fig.axes, ["uniform", "LinUCB"]):
        rows = report.loc[policy]
        (bars,) = ax.containers  # one errorbar: a point per estimator
        points, _, (segments,) = bars.lines
        np.testing.assert_allclose(points.get_ydata(), rows["value"])
        ends = np.array([s[:, 1] for s in segments.get_segments()])  # (estimators, 2): each CI's low and high
        np.testing.assert_allclose(ends, rows[["ci_low", "ci_high"]].to_numpy())
        assert [t.get_text() for t in ax.get_xticklabels()] == ["ips", "snips", "dr"]
        lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert lines["true value"] == pytest.approx(truth[policy])
        assert lines["logging policy (on-policy)"] == pytest.approx(log.reward.mean())
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(PNG)
    # a log without a simulator has no truth: no true-value line
    without = estimates_figure(report.drop(columns="true_value"))
    assert all(line.get_label() != "true value" for ax in without.axes for line in ax.get_lines())


@pytest.fixture(scope="module")
def uniform_setting(setting):
    """The setting's simulator logging uniformly; two fixed targets and every true value (logger included)."""
    sim, _, _, _, trained = setting
    targets = {"best_artwork": sim.best_artwork_policy(), "LinUCB": trained}
    truth = {name: sim.true_value(p, n=50_000) for name, p in {LOGGING: UniformPolicy(), **targets}.items()}
    return sim, targets, truth


def test_accuracy_over_repeated_uniform_logs_ips_is_unbiased_and_the_on_policy_mean_matches_the_truth(uniform_setting):
    sim, targets, truth = uniform_setting
    repeats = 8
    estimates = repeated_estimates(sim, UniformPolicy(), targets, truth, ["ips", "snips", "dm"], n_rows=2000,
                                   repeats=repeats, seed=5)
    table = accuracy_table(estimates)
    # DM needs a reward model, none was given: left out
    assert list(table.index) == [(LOGGING, "on-policy"), ("best_artwork", "ips"), ("best_artwork", "snips"),
                                 ("LinUCB", "ips"), ("LinUCB", "snips")]
    assert (table["repeats"] == repeats).all()
    # the repeats are different logs: every estimate varies between them
    assert (estimates.groupby(["policy", "estimator"])["estimate"].std() > 0).all()
    for key in [(LOGGING, "on-policy"), ("best_artwork", "ips"), ("LinUCB", "ips")]:
        row = table.loc[key]
        assert np.isfinite(row["rmse"]) and row["rmse"] > 0
        assert row["true_value"] == truth[key[0]]
        # unbiased: the mean error within 3 standard errors of zero (plus the truth's own Monte Carlo error)
        assert abs(row["bias"]) < 3 * row["sd"] / np.sqrt(repeats) + 0.003, key
        # RMSE² = bias² + (n-1)/n · sd², and relative RMSE is RMSE over the truth
        assert row["rmse"] ** 2 == pytest.approx(row["bias"] ** 2 + (repeats - 1) / repeats * row["sd"] ** 2)
        assert row["relative_rmse"] == pytest.approx(row["rmse"] / truth[key[0]])
        errors = estimates.set_index(["policy", "estimator"]).loc[key, "estimate"] - truth[key[0]]
        assert row["relative_ee"] == pytest.approx(np.mean(np.abs(errors)) / truth[key[0]])
    text = format_accuracy(table)
    assert text.count("\n") == len(table) + 1 and "| LinUCB | ips |" in text


def test_accuracy_finds_the_planted_bias_of_a_constant_reward_model(uniform_setting):
    sim, targets, truth = uniform_setting
    constant = 0.2  # DM with q_hat = 0.2 everywhere estimates 0.2 for every policy on every log

    def q_hat_of(log):
        return np.full(log.candidates.ids.shape, constant)

    table = accuracy_table(repeated_estimates(sim, UniformPolicy(), targets, truth, ["dm", "dr"], n_rows=2000,
                                              repeats=4, seed=9, q_hat_of=q_hat_of))
    for policy in targets:
        dm = table.loc[(policy, "dm")]
        assert dm["bias"] == pytest.approx(constant - truth[policy]) and dm["sd"] == pytest.approx(0.0, abs=1e-12)
        assert dm["rmse"] == pytest.approx(abs(constant - truth[policy]))
        # DR corrects the model with the weighted residuals: most of the planted bias is gone
        assert abs(table.loc[(policy, "dr"), "bias"]) < 0.3 * abs(dm["bias"])
    with pytest.raises(ValueError, match=r"no true value for \['LinUCB'\]"):
        repeated_estimates(sim, UniformPolicy(), targets, {k: v for k, v in truth.items() if k != "LinUCB"},
                           ["ips"], n_rows=100, repeats=1)


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("bandit", overrides=overrides)


@pytest.mark.slow
def test_cli_on_a_simulated_log_writes_report_run_record_and_impressions(shared_data, tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}", "source.n_rows=3000", "source.true_value_requests=5000", "n_boot=100", "~policies.softmax",
                    "~policies.linear_ts", "estimators=[ips,dr]"])
    values = run(cfg)
    assert set(values) == {"logging policy/on-policy", "uniform/ips", "uniform/dr", "linucb/ips", "linucb/dr"}
    report = pd.read_csv(tmp_path / "report.csv", index_col=[0, 1])
    assert report["true_value"].notna().sum() == 4  # the simulator's truth beside every candidate row
    assert "| linucb | dr |" in (tmp_path / "report.md").read_text()
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["data"]["rows"] == 3000 and len(record["data"]["fingerprint"]) == 64
    assert len(read_artwork_log(tmp_path / "impressions.parquet")) == 3000
    assert (tmp_path / "estimates.png").read_bytes().startswith(PNG)
    assert not (tmp_path / "estimator_accuracy.csv").exists()  # accuracy_repeats is 0 by default


@pytest.mark.slow
def test_cli_with_accuracy_repeats_tabulates_every_estimator_against_the_truth(shared_data, tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}", "source.n_rows=2000", "source.true_value_requests=5000",
                    "n_boot=50", "~policies.softmax", "~policies.linear_ts", "estimators=[ips,dm]",
                    "source.logging_policy=uniform", "accuracy_repeats=3"])
    run(cfg)
    report = pd.read_csv(tmp_path / "report.csv", index_col=[0, 1])
    accuracy = pd.read_csv(tmp_path / "estimator_accuracy.csv", index_col=[0, 1])
    assert list(accuracy.index) == [(LOGGING, "on-policy"), ("uniform", "ips"), ("uniform", "dm"),
                                    ("linucb", "ips"), ("linucb", "dm")]
    assert (accuracy["repeats"] == 3).all() and np.isfinite(accuracy["rmse"]).all()
    # the table's truth is the report's, and uniform on a uniform log is the logger: the same truth
    for key in [("uniform", "ips"), ("linucb", "dm")]:
        assert accuracy.loc[key, "true_value"] == pytest.approx(report.loc[key, "true_value"])
    assert accuracy.loc[(LOGGING, "on-policy"), "true_value"] == pytest.approx(
        accuracy.loc[("uniform", "ips"), "true_value"])
    text = (tmp_path / "report.md").read_text()
    assert "## Estimator accuracy over 3 simulated logs" in text and "| linucb | dm |" in text


def test_cli_on_obd_values_the_logged_bts_policy(shared_data, tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}", "source=obd", "policies=obd",
                    "~policies.epsilon_greedy", "n_boot=100", "estimators=[ips,snips]", "reward_model.l2=100"])
    values = run(cfg)
    assert values["uniform/ips"] == pytest.approx(values["logging policy/on-policy"])  # uniform on a uniform log
    assert np.isfinite(values["bernoulli_ts/snips"])
    assert (tmp_path / "estimates.png").read_bytes().startswith(PNG)


def test_accuracy_repeats_without_a_simulator_is_refused(shared_data, tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}", "source=obd", "policies=obd", "accuracy_repeats=2"])
    with pytest.raises(ConfigError, match="accuracy_repeats"):
        run(cfg)
    assert not (tmp_path / "report.md").exists()
