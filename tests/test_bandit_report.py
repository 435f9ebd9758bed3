"""The offline A/B report and the ``marquee.bandit`` entry point on simulated and OBD logs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from marquee.bandit import run
from marquee.bandits.artwork_logs import read_artwork_log
from marquee.bandits.features import cross_features
from marquee.bandits.policies import LinUCB, UniformPolicy
from marquee.bandits.report import LOGGING, format_report, offline_ab_report
from marquee.bandits.reward_model import LogisticRewardModel, cross_fit_q_hat
from marquee.bandits.simulator import ArtworkSimulator, SimulatorConfig
from marquee.config_dir import CONFIG_DIR


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


def test_cli_on_obd_values_the_logged_bts_policy(shared_data, tmp_path):
    cfg = _compose([f"paths.output_dir={tmp_path}", "source=obd", "policies=obd",
                    "~policies.epsilon_greedy", "n_boot=100", "estimators=[ips,snips]", "reward_model.l2=100"])
    values = run(cfg)
    assert values["uniform/ips"] == pytest.approx(values["logging policy/on-policy"])  # uniform on a uniform log
    assert np.isfinite(values["bernoulli_ts/snips"])
