"""The offline A/B readout: bootstrap CIs and paired tests, against scipy and hand-computed values."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marquee.evaluation.statistics import (
    bootstrap_ci,
    bootstrap_cis,
    compare_runs,
    format_comparison,
    paired_comparison,
)


def test_ci_contains_true_mean_with_normal_width():
    sigma, n = 2.0, 20_000
    values = np.random.default_rng(1).normal(5.0, sigma, n)
    mean, low, high = bootstrap_ci(values, n_boot=1000, seed=0)
    assert low < 5.0 < high
    assert mean == pytest.approx(values.mean())
    expected_width = 2 * 1.96 * sigma / np.sqrt(n)
    assert high - low == pytest.approx(expected_width, rel=0.15)


def test_ci_is_deterministic_per_seed_and_shared_across_columns():
    rng = np.random.default_rng(2)
    matrix = rng.random((500, 3))
    assert bootstrap_ci(matrix[:, 1], seed=7) == bootstrap_ci(matrix[:, 1], seed=7)
    assert bootstrap_ci(matrix[:, 1], seed=7) != bootstrap_ci(matrix[:, 1], seed=8)
    # the matrix variant uses the same resamples for every column as the 1-D one does
    means, lows, highs = bootstrap_cis(matrix, seed=7)
    assert (means[1], lows[1], highs[1]) == pytest.approx(bootstrap_ci(matrix[:, 1], seed=7))


def test_ci_refuses_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([0.1, np.nan, 0.3]))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.array([]))


def test_t_test_matches_scipy_and_hand_computation():
    rng = np.random.default_rng(3)
    a, b = rng.random(12), rng.random(12)
    result = paired_comparison(a, b)
    expected = stats.ttest_rel(b, a)
    assert result.t_stat == pytest.approx(expected.statistic)
    assert result.p_ttest == pytest.approx(expected.pvalue)

    # 4 users: d = b - a = [0.1, 0.2, 0.3, 0.4], mean 0.25,
    # sample variance = (0.15² + 0.05² + 0.05² + 0.15²) / 3 = 0.05 / 3, sd = 0.129099,
    # t = 0.25 / (0.129099 / √4) = 3.872983, d_z = 0.25 / 0.129099 = 1.936492
    a = np.array([0.5, 0.4, 0.3, 0.2])
    b = np.array([0.6, 0.6, 0.6, 0.6])
    result = paired_comparison(a, b)
    assert result.t_stat == pytest.approx(0.25 / (np.sqrt(0.05 / 3) / 2))
    assert result.t_stat == pytest.approx(3.872983, abs=1e-6)
    assert result.cohens_d == pytest.approx(1.936492, abs=1e-6)
    assert result.diff == pytest.approx(0.25)
    assert result.relative == pytest.approx(0.25 / 0.35)  # mean_a = 1.4 / 4
    assert result.n_users == 4


def test_identical_runs_give_no_difference_without_warnings():
    a = np.random.default_rng(4).random(200)
    with np.errstate(all="raise"):
        result = paired_comparison(a, a.copy())
    assert result.diff == 0.0
    assert result.diff_low == result.diff_high == 0.0
    assert result.p_bootstrap == 1.0 and result.p_ttest == 1.0
    assert result.t_stat == 0.0 and result.cohens_d == 0.0


def test_constant_shift_and_rounding_noise_need_no_t_test_spread():
    a = np.random.default_rng(9).random(100)
    with np.errstate(all="raise"):
        shifted = paired_comparison(a, a + 0.1)  # every user gains 0.1, up to rounding
        rescored = paired_comparison(a, (a * 3) / 3)  # the same run, rounded differently
    assert shifted.diff == pytest.approx(0.1)
    assert shifted.t_stat == np.inf and shifted.p_ttest == 0.0 and shifted.cohens_d == np.inf
    assert shifted.p_bootstrap == pytest.approx(1 / 1000)
    assert rescored.diff == 0.0 and rescored.p_ttest == 1.0 and rescored.p_bootstrap == 1.0


def test_planted_improvement_is_detected():
    rng = np.random.default_rng(5)
    a = rng.random(1000)
    b = a + 0.05 + rng.normal(0, 0.05, 1000)
    result = paired_comparison(a, b, seed=0)
    assert result.p_bootstrap < 0.01 and result.p_ttest < 0.01
    assert result.p_bootstrap == pytest.approx(1 / 1000)  # no resample crosses 0, so the floor applies
    assert 0 < result.diff_low < 0.05 < result.diff_high


def test_pure_noise_gives_ci_containing_zero_in_most_seeds():
    contains = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        a = rng.random(500)
        b = a + rng.normal(0, 0.05, 500)
        result = paired_comparison(a, b, n_boot=500, seed=seed)
        contains += result.diff_low <= 0 <= result.diff_high
    assert contains >= 16  # 95% CIs: about 19 of 20 expected


def test_paired_comparison_refuses_bad_input():
    with pytest.raises(ValueError, match="same users"):
        paired_comparison(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        paired_comparison(np.array([0.1, np.nan]), np.array([0.2, 0.3]))


def _per_user(users, rng, shift=0.0):
    return pd.DataFrame(
        {"ndcg@10": rng.random(len(users)) + shift, "recall@10": rng.random(len(users)) + shift},
        index=pd.Index(users, name="user_id"),
    )


def test_compare_runs_aligns_users_and_reports_every_metric():
    rng = np.random.default_rng(6)
    run_a = _per_user(range(1, 301), rng)
    noise = rng.normal(0, 0.01, run_a.shape)
    run_b = (run_a + 0.1 + noise).iloc[::-1]  # another user order must not matter
    table = compare_runs(run_a, run_b)
    assert list(table.index) == ["ndcg@10", "recall@10"]
    assert table["diff"].to_numpy() == pytest.approx(0.1 + noise.mean(axis=0))
    assert table.loc["ndcg@10", "n_users"] == 300
    # the same numbers as a single paired comparison on aligned arrays
    single = paired_comparison(run_a["recall@10"].to_numpy(), run_b.loc[run_a.index, "recall@10"].to_numpy())
    assert table.loc["recall@10", "diff_low"] == pytest.approx(single.diff_low)
    text = format_comparison(table)
    assert "ndcg@10" in text and "300 users" in text and "95% CI" in text


def test_compare_runs_refuses_mismatched_users_and_missing_metrics():
    rng = np.random.default_rng(7)
    run_a = _per_user(range(1, 101), rng)
    run_b = _per_user(range(3, 103), rng)
    with pytest.raises(ValueError, match="2 only in run A, 2 only in run B"):
        compare_runs(run_a, run_b)
    with pytest.raises(ValueError, match="mrr@10"):
        compare_runs(run_a, run_a, metrics=["mrr@10"])


def test_bootstrap_of_100k_users_is_fast():
    matrix = np.random.default_rng(8).random((100_000, 4))
    start = time.perf_counter()
    means, lows, highs = bootstrap_cis(matrix, n_boot=1000)
    assert time.perf_counter() - start < 20  # a smoke bound, not a benchmark
    assert np.all(lows < means) and np.all(means < highs)
